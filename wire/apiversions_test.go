package wire

import (
	"testing"

	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestApiVersionsV5ClusterAndNode: KIP-1242 as Kafka 4.4's KafkaApis and
// ApiVersionsRequest.isValid have it. A v5 request naming this cluster and
// node gets the API list; naming another cluster or node gets
// REBOOTSTRAP_REQUIRED with no list; a cluster id without a node id (or
// the reverse) is INVALID_REQUEST; v4 carries neither and is not checked.
func TestApiVersionsV5ClusterAndNode(t *testing.T) {
	b, addr := startInProcess(t)
	rc := dialRaw(t, addr)
	node := b.Config().NodeID
	ask := func(version int16, cluster *string, nodeID int32) *kmsg.ApiVersionsResponse {
		t.Helper()
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = version
		req.ClientSoftwareName, req.ClientSoftwareVersion = "test", "1.0"
		req.ClusterID, req.NodeID = cluster, nodeID
		return rc.do(req).(*kmsg.ApiVersionsResponse)
	}
	other := "another-cluster"
	for _, tc := range []struct {
		name     string
		version  int16
		cluster  *string
		node     int32
		wantCode int16
	}{
		{"neither", 5, nil, -1, 0},
		{"this cluster and node", 5, &b.ClusterID, node, 0},
		{"another cluster", 5, &other, node, kerr.RebootstrapRequired.Code},
		{"another node", 5, &b.ClusterID, node + 1, kerr.RebootstrapRequired.Code},
		{"cluster without node", 5, &b.ClusterID, -1, kerr.InvalidRequest.Code},
		{"node without cluster", 5, nil, node, kerr.InvalidRequest.Code},
	} {
		resp := ask(tc.version, tc.cluster, tc.node)
		if resp.ErrorCode != tc.wantCode {
			t.Errorf("%s: error %d, want %d", tc.name, resp.ErrorCode, tc.wantCode)
		}
		if listed := len(resp.ApiKeys) > 0; listed != (tc.wantCode == 0) {
			t.Errorf("%s: %d API keys listed with error %d", tc.name, len(resp.ApiKeys), resp.ErrorCode)
		}
	}
}

// TestApiVersionsFeaturesBelowV4: Kafka leaves supported features whose
// minimum is 0 out of v0-v3 answers (KAFKA-17011) and lists them from v4.
func TestApiVersionsFeaturesBelowV4(t *testing.T) {
	_, addr := startInProcess(t)
	rc := dialRaw(t, addr)
	for _, v := range []int16{3, 4, 5} {
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = v
		req.ClientSoftwareName, req.ClientSoftwareVersion = "test", "1.0"
		resp := rc.do(req).(*kmsg.ApiVersionsResponse)
		listed := false
		for _, f := range resp.SupportedFeatures {
			listed = listed || f.Name == broker.TransactionVersionFeature
		}
		if listed != (v >= 4) {
			t.Errorf("v%d: transaction.version (min 0) listed = %v", v, listed)
		}
	}
}

// TestApiVersionsV5BeforeSASLAuthentication: Kafka's SaslServerAuthenticator
// answers the ApiVersions that precedes authentication without the
// KIP-1242 check; once authenticated the check applies.
func TestApiVersionsV5BeforeSASLAuthentication(t *testing.T) {
	sb := startSASL(t, DefaultConfig())
	sb.addUser(t, "alice", "s3cret")
	sc := dialSASL(t, sb.addr)
	other := "another-cluster"
	ask := func() *kmsg.ApiVersionsResponse {
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = 5
		req.ClientSoftwareName, req.ClientSoftwareVersion = "test", "1.0"
		req.ClusterID, req.NodeID = &other, sb.b.Config().NodeID
		return sc.do(req).(*kmsg.ApiVersionsResponse)
	}
	if resp := ask(); resp.ErrorCode != 0 || len(resp.ApiKeys) == 0 {
		t.Fatalf("before authentication: error %d, %d keys; want the API list", resp.ErrorCode, len(resp.ApiKeys))
	}
	sc.scramLogin("alice", "s3cret")
	if resp := ask(); resp.ErrorCode != kerr.RebootstrapRequired.Code {
		t.Fatalf("after authentication: error %d, want REBOOTSTRAP_REQUIRED", resp.ErrorCode)
	}
}
