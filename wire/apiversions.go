package wire

import (
	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const apiVersionsKey = 18

func init() { register(apiVersionsKey, 0, 4, handleApiVersions) }

// apiVersionsFallback answers an ApiVersions request of a version we don't
// serve the way Kafka does (KIP-511): a v0 response with UNSUPPORTED_VERSION
// and the ApiVersions range, so the client retries at a version we know.
func apiVersionsFallback() kmsg.Response {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	resp.ErrorCode = kerr.UnsupportedVersion.Code
	k := kmsg.NewApiVersionsResponseApiKey()
	h := handlers[apiVersionsKey]
	k.ApiKey, k.MinVersion, k.MaxVersion = apiVersionsKey, h.min, h.max
	resp.ApiKeys = append(resp.ApiKeys, k)
	return resp
}

func handleApiVersions(c *conn, r *request) respond {
	req := r.kreq.(*kmsg.ApiVersionsRequest)
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	if req.Version >= 3 && (!validSoftwareName(req.ClientSoftwareName) || !validSoftwareName(req.ClientSoftwareVersion)) {
		resp.ErrorCode = kerr.InvalidRequest.Code
		return ready(resp)
	}
	resp.ApiKeys = supportedAPIs()
	addFeatures(c, resp)
	return ready(resp)
}

// addFeatures fills the KIP-584 feature fields (v3+): what this broker
// supports and the finalized levels clients act on. kgo, for one, turns
// on transaction version 2 when transaction.version is finalized at 2.
func addFeatures(c *conn, resp *kmsg.ApiVersionsResponse) {
	for _, f := range broker.SupportedFeatures {
		sf := kmsg.NewApiVersionsResponseSupportedFeature()
		sf.Name, sf.MinVersion, sf.MaxVersion = f.Name, f.Min, f.Max
		resp.SupportedFeatures = append(resp.SupportedFeatures, sf)
	}
	fin := c.s.b.Features()
	for _, f := range broker.SupportedFeatures {
		if level, ok := fin.Levels[f.Name]; ok {
			ff := kmsg.NewApiVersionsResponseFinalizedFeature()
			ff.Name, ff.MinVersionLevel, ff.MaxVersionLevel = f.Name, level, level
			resp.FinalizedFeatures = append(resp.FinalizedFeatures, ff)
		}
	}
	resp.FinalizedFeaturesEpoch = fin.Epoch
}

// validSoftwareName is Kafka's [a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?
// check on the v3+ client software name and version.
func validSoftwareName(s string) bool {
	if s == "" {
		return false
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for i := 0; i < len(s); i++ {
		c := s[i]
		if alnum(c) {
			continue
		}
		if (c == '-' || c == '.') && i > 0 && i < len(s)-1 {
			continue
		}
		return false
	}
	return true
}
