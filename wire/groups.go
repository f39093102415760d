package wire

import (
	"context"

	"github.com/oncelog/oncelog/acl"
	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/group"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The group APIs are answered by the group coordinator; they may block
// (JoinGroup and SyncGroup wait for the rebalance), so they run on the
// writer goroutine.
func init() {
	forward := func(key int16, fn func(c *conn, r *request, ctx context.Context) kmsg.Response) {
		v := group.Versions[key]
		register(key, v[0], v[1], func(c *conn, r *request) respond {
			return func(ctx context.Context) kmsg.Response {
				ctx = group.WithClientInfo(ctx, r.clientID, "/"+c.remoteIP())
				return fn(c, r, ctx)
			}
		})
	}
	// Each API checks what KafkaApis checks (groups_authz.go) before the
	// coordinator sees the request.
	forward(8, func(c *conn, r *request, ctx context.Context) kmsg.Response {
		return authorizedOffsetCommit(c, r, ctx, r.kreq.(*kmsg.OffsetCommitRequest))
	})
	forward(9, func(c *conn, r *request, ctx context.Context) kmsg.Response {
		return authorizedOffsetFetch(c, r, ctx, r.kreq.(*kmsg.OffsetFetchRequest))
	})
	forward(11, func(c *conn, r *request, ctx context.Context) kmsg.Response {
		req := r.kreq.(*kmsg.JoinGroupRequest)
		if !c.authorize(r.key, opRead, rtGroup, req.Group) {
			resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
			resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
			return resp
		}
		if c.s.b.Shares.Exists(req.Group) {
			return joinShareGroup(req)
		}
		return c.s.b.Groups.JoinGroup(ctx, req)
	})
	forward(12, func(c *conn, r *request, ctx context.Context) kmsg.Response {
		req := r.kreq.(*kmsg.HeartbeatRequest)
		if !c.authorize(r.key, opRead, rtGroup, req.Group) {
			resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
			resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
			return resp
		}
		return c.s.b.Groups.Heartbeat(ctx, req)
	})
	forward(13, func(c *conn, r *request, ctx context.Context) kmsg.Response {
		req := r.kreq.(*kmsg.LeaveGroupRequest)
		if !c.authorize(r.key, opRead, rtGroup, req.Group) {
			resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
			resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
			return resp
		}
		return c.s.b.Groups.LeaveGroup(ctx, req)
	})
	forward(14, func(c *conn, r *request, ctx context.Context) kmsg.Response {
		req := r.kreq.(*kmsg.SyncGroupRequest)
		if !c.authorize(r.key, opRead, rtGroup, req.Group) {
			resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
			resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
			return resp
		}
		return c.s.b.Groups.SyncGroup(ctx, req)
	})
	forward(15, func(c *conn, r *request, ctx context.Context) kmsg.Response {
		return authorizedDescribeGroups(c, r, ctx, r.kreq.(*kmsg.DescribeGroupsRequest))
	})
	forward(16, func(c *conn, r *request, ctx context.Context) kmsg.Response {
		lreq := r.kreq.(*kmsg.ListGroupsRequest)
		resp := withShareGroups(c.s.b, lreq, c.s.b.Groups.ListGroups(ctx, lreq))
		// Kafka: DESCRIBE on the cluster lists every group, otherwise
		// only the groups the principal may describe.
		if !c.authorizeQuiet(opDescribe, rtCluster, acl.ClusterName) {
			kept := resp.Groups[:0]
			for _, g := range resp.Groups {
				if c.authorizeQuiet(opDescribe, rtGroup, g.Group) {
					kept = append(kept, g)
				}
			}
			resp.Groups = kept
		}
		return resp
	})
	forward(42, func(c *conn, r *request, ctx context.Context) kmsg.Response {
		return authorizedDeleteGroups(c, r, ctx, r.kreq.(*kmsg.DeleteGroupsRequest))
	})
	forward(47, func(c *conn, r *request, ctx context.Context) kmsg.Response {
		return authorizedOffsetDelete(c, r, ctx, r.kreq.(*kmsg.OffsetDeleteRequest))
	})
}

// offsetCommit answers partitions of unknown topics, and partitions a
// topic does not have, with UNKNOWN_TOPIC_OR_PARTITION, as Kafka's request
// layer does, and hands the rest to the coordinator.
func offsetCommit(b *broker.Broker, ctx context.Context, req *kmsg.OffsetCommitRequest) kmsg.Response {
	if b.Shares.Exists(req.Group) {
		return offsetCommitShareGroup(req)
	}
	var unknown []kmsg.OffsetCommitResponseTopic
	// missing are the partitions of existing topics that do not exist,
	// by topic: merged into the coordinator's answer for the topic.
	missing := map[string][]kmsg.OffsetCommitResponseTopicPartition{}
	requested := req.Topics
	known := req.Topics[:0:0]
	for _, t := range req.Topics {
		topic := b.Topic(t.Topic)
		if topic == nil {
			unknown = append(unknown, offsetCommitErrorTopic(t, kerr.UnknownTopicOrPartition.Code))
			continue
		}
		exist := t.Partitions[:0:0]
		for _, p := range t.Partitions {
			if p.Partition >= 0 && int(p.Partition) < len(topic.Partitions) {
				exist = append(exist, p)
				continue
			}
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, kerr.UnknownTopicOrPartition.Code
			missing[t.Topic] = append(missing[t.Topic], rp)
		}
		if len(exist) > 0 {
			t.Partitions = exist
			known = append(known, t)
		}
	}
	req.Topics = known
	resp := b.Groups.OffsetCommit(ctx, req)
	for i := range resp.Topics {
		t := &resp.Topics[i]
		if m, ok := missing[t.Topic]; ok {
			t.Partitions = append(m, t.Partitions...)
			delete(missing, t.Topic)
		}
	}
	for _, t := range requested {
		if m, ok := missing[t.Topic]; ok {
			rt := kmsg.NewOffsetCommitResponseTopic()
			rt.Topic, rt.Partitions = t.Topic, m
			resp.Topics = append(resp.Topics, rt)
			delete(missing, t.Topic)
		}
	}
	resp.Topics = append(resp.Topics, unknown...)
	return resp
}

func offsetDelete(b *broker.Broker, ctx context.Context, req *kmsg.OffsetDeleteRequest) *kmsg.OffsetDeleteResponse {
	var unknown []kmsg.OffsetDeleteResponseTopic
	known := req.Topics[:0:0]
	for _, t := range req.Topics {
		if b.Topic(t.Topic) != nil {
			known = append(known, t)
			continue
		}
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, kerr.UnknownTopicOrPartition.Code
			rt.Partitions = append(rt.Partitions, rp)
		}
		unknown = append(unknown, rt)
	}
	req.Topics = known
	resp := b.Groups.OffsetDelete(ctx, req)
	if resp.ErrorCode == 0 {
		resp.Topics = append(resp.Topics, unknown...)
	}
	return resp
}
