package wire

import (
	"context"

	"github.com/oncelog/oncelog/group"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The group APIs are answered by the group coordinator; they may block
// (JoinGroup and SyncGroup wait for the rebalance), so they run on the
// writer goroutine.
func init() {
	forward := func(key int16, fn func(c *group.Coordinator, ctx context.Context, req kmsg.Request) kmsg.Response) {
		v := group.Versions[key]
		register(key, v[0], v[1], func(c *conn, r *request) respond {
			return func(ctx context.Context) kmsg.Response { return fn(c.s.b.Groups, ctx, r.kreq) }
		})
	}
	forward(8, func(g *group.Coordinator, ctx context.Context, req kmsg.Request) kmsg.Response {
		return g.OffsetCommit(ctx, req.(*kmsg.OffsetCommitRequest))
	})
	forward(9, func(g *group.Coordinator, ctx context.Context, req kmsg.Request) kmsg.Response {
		return g.OffsetFetch(ctx, req.(*kmsg.OffsetFetchRequest))
	})
	forward(11, func(g *group.Coordinator, ctx context.Context, req kmsg.Request) kmsg.Response {
		return g.JoinGroup(ctx, req.(*kmsg.JoinGroupRequest))
	})
	forward(12, func(g *group.Coordinator, ctx context.Context, req kmsg.Request) kmsg.Response {
		return g.Heartbeat(ctx, req.(*kmsg.HeartbeatRequest))
	})
	forward(13, func(g *group.Coordinator, ctx context.Context, req kmsg.Request) kmsg.Response {
		return g.LeaveGroup(ctx, req.(*kmsg.LeaveGroupRequest))
	})
	forward(14, func(g *group.Coordinator, ctx context.Context, req kmsg.Request) kmsg.Response {
		return g.SyncGroup(ctx, req.(*kmsg.SyncGroupRequest))
	})
	forward(15, func(g *group.Coordinator, ctx context.Context, req kmsg.Request) kmsg.Response {
		return g.DescribeGroups(ctx, req.(*kmsg.DescribeGroupsRequest))
	})
	forward(16, func(g *group.Coordinator, ctx context.Context, req kmsg.Request) kmsg.Response {
		return g.ListGroups(ctx, req.(*kmsg.ListGroupsRequest))
	})
	forward(42, func(g *group.Coordinator, ctx context.Context, req kmsg.Request) kmsg.Response {
		return g.DeleteGroups(ctx, req.(*kmsg.DeleteGroupsRequest))
	})
	forward(47, func(g *group.Coordinator, ctx context.Context, req kmsg.Request) kmsg.Response {
		return g.OffsetDelete(ctx, req.(*kmsg.OffsetDeleteRequest))
	})
}
