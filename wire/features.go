package wire

import (
	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// UpdateFeatures (KIP-584) v0-v2: kafka-features.sh and kadm change
// finalized feature levels with it; ApiVersions reports them (Kafka's
// Admin.describeFeatures reads ApiVersions too).
func init() { register(57, 0, 2, handleUpdateFeatures) }

func handleUpdateFeatures(c *conn, r *request) respond {
	req := r.kreq.(*kmsg.UpdateFeaturesRequest)
	resp := req.ResponseKind().(*kmsg.UpdateFeaturesResponse)
	if !c.authorizeCluster(r.key, opAlter) {
		// Kafka's getErrorResponse: the top-level error, no results.
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return ready(resp)
	}
	updates := make([]broker.FeatureUpdate, 0, len(req.FeatureUpdates))
	for _, u := range req.FeatureUpdates {
		downgrade := u.AllowDowngrade
		if req.Version >= 1 {
			switch u.UpgradeType {
			case 1:
			case 2, 3: // safe or unsafe downgrade
				downgrade = true
			default:
				resp.ErrorCode = kerr.InvalidRequest.Code
				resp.ErrorMessage = strPtr("unknown upgrade type")
				return ready(resp)
			}
		}
		updates = append(updates, broker.FeatureUpdate{Name: u.Feature, Level: u.MaxVersionLevel, Downgrade: downgrade})
	}
	results := c.s.b.UpdateFeatures(updates, req.Version >= 1 && req.ValidateOnly)
	seen := map[string]bool{}
	for _, u := range req.FeatureUpdates {
		if seen[u.Feature] {
			continue
		}
		seen[u.Feature] = true
		res := kmsg.NewUpdateFeaturesResponseResult()
		res.Feature = u.Feature
		if err := results[u.Feature]; err != nil {
			res.ErrorCode, res.ErrorMessage = err.Code, strPtr(err.Message)
			// v2 has no per-feature results: the first failure is the
			// answer, as Kafka's controller reports it.
			if resp.ErrorCode == 0 {
				resp.ErrorCode, resp.ErrorMessage = err.Code, strPtr(err.Message)
			}
		}
		resp.Results = append(resp.Results, res)
	}
	if req.Version < 2 {
		// v0-v1 report per feature; the top-level error is for the
		// request as a whole.
		resp.ErrorCode, resp.ErrorMessage = 0, nil
	}
	return ready(resp)
}
