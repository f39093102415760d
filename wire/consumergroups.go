package wire

import (
	"context"
	"fmt"

	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/group"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ConsumerGroupHeartbeat (68) and ConsumerGroupDescribe (69): the KIP-848
// consumer group protocol, answered by the group coordinator. A heartbeat
// waits for its state to be synced, so it runs on the writer goroutine
// like the other group APIs.
func init() {
	for _, key := range []int16{68, 69} {
		v := group.Versions[key]
		register(key, v[0], v[1], func(c *conn, r *request) respond {
			return func(ctx context.Context) kmsg.Response {
				ctx = group.WithClientInfo(ctx, r.clientID, "/"+c.remoteIP())
				b := c.s.b
				switch req := r.kreq.(type) {
				case *kmsg.ConsumerGroupHeartbeatRequest:
					if isShareGroup(b, req.Group) {
						resp := req.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
						resp.ErrorCode = kerr.GroupIDNotFound.Code
						resp.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("Group %s is not a consumer group.", req.Group))
						return resp
					}
					return b.Groups.ConsumerGroupHeartbeat(ctx, req)
				default:
					resp := b.Groups.ConsumerGroupDescribe(ctx, req.(*kmsg.ConsumerGroupDescribeRequest))
					for i := range resp.Groups {
						if g := &resp.Groups[i]; g.ErrorCode == kerr.GroupIDNotFound.Code && isShareGroup(b, g.Group) {
							g.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("Group %s is not a consumer group.", g.Group))
						}
					}
					return resp
				}
			}
		})
	}
}

// isShareGroup reports whether id is a share group (KIP-932): a group id
// has one type, and the consumer protocol must not take a share group's.
func isShareGroup(b *broker.Broker, id string) bool {
	return b.Shares != nil && b.Shares.Exists(id) && !b.Groups.Exists(id)
}
