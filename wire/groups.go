package wire

import (
	"context"

	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/group"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The group APIs are answered by the group coordinator; they may block
// (JoinGroup and SyncGroup wait for the rebalance), so they run on the
// writer goroutine.
func init() {
	forward := func(key int16, fn func(b *broker.Broker, ctx context.Context, req kmsg.Request) kmsg.Response) {
		v := group.Versions[key]
		register(key, v[0], v[1], func(c *conn, r *request) respond {
			return func(ctx context.Context) kmsg.Response {
				ctx = group.WithClientInfo(ctx, r.clientID, "/"+c.remoteIP())
				return fn(c.s.b, ctx, r.kreq)
			}
		})
	}
	forward(8, func(b *broker.Broker, ctx context.Context, req kmsg.Request) kmsg.Response {
		return offsetCommit(b, ctx, req.(*kmsg.OffsetCommitRequest))
	})
	forward(9, func(b *broker.Broker, ctx context.Context, req kmsg.Request) kmsg.Response {
		return b.Groups.OffsetFetch(ctx, req.(*kmsg.OffsetFetchRequest))
	})
	forward(11, func(b *broker.Broker, ctx context.Context, req kmsg.Request) kmsg.Response {
		jreq := req.(*kmsg.JoinGroupRequest)
		if b.Shares.Exists(jreq.Group) {
			return joinShareGroup(jreq)
		}
		return b.Groups.JoinGroup(ctx, jreq)
	})
	forward(12, func(b *broker.Broker, ctx context.Context, req kmsg.Request) kmsg.Response {
		return b.Groups.Heartbeat(ctx, req.(*kmsg.HeartbeatRequest))
	})
	forward(13, func(b *broker.Broker, ctx context.Context, req kmsg.Request) kmsg.Response {
		return b.Groups.LeaveGroup(ctx, req.(*kmsg.LeaveGroupRequest))
	})
	forward(14, func(b *broker.Broker, ctx context.Context, req kmsg.Request) kmsg.Response {
		return b.Groups.SyncGroup(ctx, req.(*kmsg.SyncGroupRequest))
	})
	forward(15, func(b *broker.Broker, ctx context.Context, req kmsg.Request) kmsg.Response {
		return describeGroupsShare(b, b.Groups.DescribeGroups(ctx, req.(*kmsg.DescribeGroupsRequest)))
	})
	forward(16, func(b *broker.Broker, ctx context.Context, req kmsg.Request) kmsg.Response {
		lreq := req.(*kmsg.ListGroupsRequest)
		return withShareGroups(b, lreq, b.Groups.ListGroups(ctx, lreq))
	})
	forward(42, func(b *broker.Broker, ctx context.Context, req kmsg.Request) kmsg.Response {
		return deleteGroupsShare(b, ctx, req.(*kmsg.DeleteGroupsRequest))
	})
	forward(47, func(b *broker.Broker, ctx context.Context, req kmsg.Request) kmsg.Response {
		return offsetDelete(b, ctx, req.(*kmsg.OffsetDeleteRequest))
	})
}

// offsetCommit answers partitions of unknown topics with
// UNKNOWN_TOPIC_OR_PARTITION, as Kafka's request layer does, and hands the
// rest to the coordinator.
func offsetCommit(b *broker.Broker, ctx context.Context, req *kmsg.OffsetCommitRequest) kmsg.Response {
	if b.Shares.Exists(req.Group) {
		return offsetCommitShareGroup(req)
	}
	var unknown []kmsg.OffsetCommitResponseTopic
	known := req.Topics[:0:0]
	for _, t := range req.Topics {
		if b.Topic(t.Topic) != nil {
			known = append(known, t)
			continue
		}
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, kerr.UnknownTopicOrPartition.Code
			rt.Partitions = append(rt.Partitions, rp)
		}
		unknown = append(unknown, rt)
	}
	req.Topics = known
	resp := b.Groups.OffsetCommit(ctx, req)
	resp.Topics = append(resp.Topics, unknown...)
	return resp
}

func offsetDelete(b *broker.Broker, ctx context.Context, req *kmsg.OffsetDeleteRequest) kmsg.Response {
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
