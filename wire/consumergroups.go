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
					// Kafka: READ on the group, DESCRIBE on every
					// subscribed topic.
					if code := authorizeConsumerGroupHeartbeat(c, r.key, req); code != 0 {
						resp := req.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
						resp.ErrorCode = code
						return resp
					}
					if isShareGroup(b, req.Group) {
						resp := req.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
						resp.ErrorCode = kerr.GroupIDNotFound.Code
						resp.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("Group %s is not a consumer group.", req.Group))
						return resp
					}
					return b.Groups.ConsumerGroupHeartbeat(ctx, req)
				default:
					dreq := req.(*kmsg.ConsumerGroupDescribeRequest)
					// Kafka: DESCRIBE on each group.
					allowed := dreq.Groups[:0:0]
					denied := map[string]bool{}
					for _, g := range dreq.Groups {
						if c.authorize(r.key, opDescribe, rtGroup, g) {
							allowed = append(allowed, g)
						} else {
							denied[g] = true
						}
					}
					sub := *dreq
					sub.Groups = allowed
					resp := b.Groups.ConsumerGroupDescribe(ctx, &sub)
					for g := range denied {
						dg := kmsg.NewConsumerGroupDescribeResponseGroup()
						dg.Group, dg.ErrorCode = g, kerr.GroupAuthorizationFailed.Code
						resp.Groups = append(resp.Groups, dg)
					}
					for i := range resp.Groups {
						if g := &resp.Groups[i]; dreq.IncludeAuthorizedOperations && g.ErrorCode == 0 {
							g.AuthorizedOperations = c.authorizedOps(rtGroup, g.Group)
						}
					}
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

func authorizeConsumerGroupHeartbeat(c *conn, api int16, req *kmsg.ConsumerGroupHeartbeatRequest) int16 {
	if !c.authorize(api, opRead, rtGroup, req.Group) {
		return kerr.GroupAuthorizationFailed.Code
	}
	for _, t := range req.SubscribedTopicNames {
		if !c.authorize(api, opDescribe, rtTopic, t) {
			return kerr.TopicAuthorizationFailed.Code
		}
	}
	return 0
}
