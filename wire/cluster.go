package wire

import (
	"github.com/oncelog/oncelog/acl"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	// DescribeCluster v2 (KIP-1073) adds IncludeFencedBrokers and a
	// broker's IsFenced: this broker is the cluster and never fenced, so
	// it is listed either way with IsFenced false.
	register(60, 0, 2, handleDescribeCluster)
	register(23, 0, 4, handleOffsetForLeaderEpoch)
	register(10, 0, 6, handleFindCoordinator)
}

func handleDescribeCluster(c *conn, r *request) respond {
	b := c.s.b
	cfg := b.Config()
	req := r.kreq.(*kmsg.DescribeClusterRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.ClusterID = b.ClusterID
	resp.ControllerID = cfg.NodeID
	resp.EndpointType = 1
	br := kmsg.NewDescribeClusterResponseBroker()
	br.NodeID = cfg.NodeID
	br.Host, br.Port = c.advertised()
	resp.Brokers = append(resp.Brokers, br)
	if req.IncludeClusterAuthorizedOperations {
		resp.ClusterAuthorizedOperations = 0
		if c.authorizeQuiet(opDescribe, rtCluster, acl.ClusterName) {
			resp.ClusterAuthorizedOperations = c.authorizedOps(rtCluster, acl.ClusterName)
		}
	}
	return ready(resp)
}

// handleOffsetForLeaderEpoch: oncelog's only leader epoch is 0, so the end
// offset of epoch 0 is the log end; a later epoch is unknown to us.
func handleOffsetForLeaderEpoch(c *conn, r *request) respond {
	b := c.s.b
	req := r.kreq.(*kmsg.OffsetForLeaderEpochRequest)
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		denied := !c.authorize(r.key, opDescribe, rtTopic, rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LeaderEpoch, sp.EndOffset = -1, -1
			p := b.Partition(rt.Topic, rp.Partition)
			switch {
			case denied:
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			case p == nil:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case rp.CurrentLeaderEpoch > 0:
				sp.ErrorCode = kerr.UnknownLeaderEpoch.Code
			case rp.LeaderEpoch <= 0:
				sp.LeaderEpoch, sp.EndOffset = 0, p.HighWatermark()
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return ready(resp)
}

// handleFindCoordinator: this single broker coordinates every group and
// transactional id.
func handleFindCoordinator(c *conn, r *request) respond {
	cfg := c.s.b.Config()
	req := r.kreq.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	answer := func(key string) (int16, *string) {
		if req.CoordinatorType != 0 && req.CoordinatorType != 1 {
			return kerr.InvalidRequest.Code, strPtr("unknown coordinator type")
		}
		if req.CoordinatorType == 0 && !c.authorize(r.key, opDescribe, rtGroup, key) {
			return kerr.GroupAuthorizationFailed.Code, nil
		}
		if req.CoordinatorType == 1 && !c.authorize(r.key, opDescribe, rtTxnID, key) {
			return kerr.TransactionalIDAuthorizationFailed.Code, nil
		}
		if key == "" && req.CoordinatorType == 1 {
			return kerr.InvalidRequest.Code, strPtr("empty transactional id")
		}
		return 0, nil
	}
	if req.Version <= 3 {
		resp.ErrorCode, resp.ErrorMessage = answer(req.CoordinatorKey)
		if resp.ErrorCode == 0 {
			resp.NodeID = cfg.NodeID
			resp.Host, resp.Port = c.advertised()
		} else {
			resp.NodeID, resp.Port = -1, -1
		}
		return ready(resp)
	}
	for _, key := range req.CoordinatorKeys {
		sc := kmsg.NewFindCoordinatorResponseCoordinator()
		sc.Key = key
		sc.ErrorCode, sc.ErrorMessage = answer(key)
		if sc.ErrorCode == 0 {
			sc.NodeID = cfg.NodeID
			sc.Host, sc.Port = c.advertised()
		} else {
			sc.NodeID, sc.Port = -1, -1
		}
		resp.Coordinators = append(resp.Coordinators, sc)
	}
	return ready(resp)
}
