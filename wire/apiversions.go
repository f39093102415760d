package wire

import (
	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const apiVersionsKey = 18

// v5 (KIP-1242) lets a client name the cluster and node it means to reach;
// Kafka 4.4 advertises it by default (it is not latestVersionUnstable).
func init() { register(apiVersionsKey, 0, 5, handleApiVersions) }

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
	if !validApiVersionsRequest(req) {
		resp.ErrorCode = kerr.InvalidRequest.Code
		return ready(resp)
	}
	// Kafka's SaslServerAuthenticator answers the ApiVersions that comes
	// before authentication without this check; KafkaApis makes it.
	preAuth := c.listener.Protocol.SASL() && c.sasl.stage != saslDone
	if !preAuth && wrongClusterOrNode(req, c.s.b.ClusterID, c.s.b.Config().NodeID) {
		resp.ErrorCode = kerr.RebootstrapRequired.Code
		return ready(resp)
	}
	resp.ApiKeys = supportedAPIs()
	addFeatures(c, resp)
	return ready(resp)
}

// validApiVersionsRequest is Kafka's ApiVersionsRequest.isValid: from v5
// ClusterId and NodeId come together or not at all (KIP-1242), and from
// v3 the client software name and version must match Kafka's pattern.
func validApiVersionsRequest(req *kmsg.ApiVersionsRequest) bool {
	if req.Version >= 5 && (req.ClusterID == nil) != (req.NodeID == -1) {
		return false
	}
	return req.Version < 3 || validSoftwareName(req.ClientSoftwareName) && validSoftwareName(req.ClientSoftwareVersion)
}

// wrongClusterOrNode is KafkaApis' KIP-1242 check: a v5 request that names
// a cluster must name this broker's cluster and node id, or the client's
// metadata is stale (the address now belongs to another broker or cluster)
// and it is told REBOOTSTRAP_REQUIRED, with no API list.
func wrongClusterOrNode(req *kmsg.ApiVersionsRequest, clusterID string, nodeID int32) bool {
	return req.Version >= 5 && req.ClusterID != nil && (*req.ClusterID != clusterID || req.NodeID != nodeID)
}

// addFeatures fills the KIP-584 feature fields (v3+): what this broker
// supports and the finalized levels clients act on. kgo, for one, turns
// on transaction version 2 when transaction.version is finalized at 2.
func addFeatures(c *conn, resp *kmsg.ApiVersionsResponse) {
	for _, f := range broker.SupportedFeatures {
		if resp.Version < 4 && f.Min == 0 {
			// KAFKA-17011: v3 clients cannot take a minimum of 0, so
			// Kafka leaves such features out below v4.
			continue
		}
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
