package wire

import (
	"context"
	"strings"

	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/share"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Share groups (KIP-932), answered by the share coordinator. The versions
// are Kafka 4.4's: ShareGroupHeartbeat and ShareGroupDescribe v1 only (v0
// was the early-access protocol Kafka 4.1 dropped), ShareFetch and
// ShareAcknowledge v1-v2 (v2: KIP-1222 lock renewal, the RENEW type),
// DescribeShareGroupOffsets v0-v1 (v1: lag), Alter/Delete v0.
func init() {
	register(76, 1, 1, func(c *conn, r *request) respond {
		req := r.kreq.(*kmsg.ShareGroupHeartbeatRequest)
		who := share.ClientInfo{ClientID: r.clientID, Host: "/" + c.remoteIP()}
		if resp := authorizeShareHeartbeat(c, r.key, req); resp != nil {
			return ready(resp)
		}
		return func(ctx context.Context) kmsg.Response { return c.s.b.Shares.Heartbeat(ctx, req, who) }
	})
	register(77, 1, 1, func(c *conn, r *request) respond {
		return ready(shareDescribeAuthorized(c, r.key, r.kreq.(*kmsg.ShareGroupDescribeRequest), c.s.b.Shares.Describe))
	})
	register(78, 1, 2, func(c *conn, r *request) respond {
		req := r.kreq.(*kmsg.ShareFetchRequest)
		return func(ctx context.Context) kmsg.Response {
			return shareFetchAuthorized(c, r.key, req, func(req *kmsg.ShareFetchRequest) *kmsg.ShareFetchResponse {
				return c.s.b.Shares.Fetch(ctx, c.readerDone, req, r.received)
			})
		}
	})
	register(79, 1, 2, func(c *conn, r *request) respond {
		req := r.kreq.(*kmsg.ShareAcknowledgeRequest)
		return func(ctx context.Context) kmsg.Response {
			return shareAcknowledgeAuthorized(c, r.key, req, func(req *kmsg.ShareAcknowledgeRequest) *kmsg.ShareAcknowledgeResponse {
				return c.s.b.Shares.Acknowledge(ctx, req)
			})
		}
	})
	register(90, 0, 1, func(c *conn, r *request) respond {
		return ready(shareDescribeOffsetsAuthorized(c, r.key, r.kreq.(*kmsg.DescribeShareGroupOffsetsRequest), c.s.b.Shares.DescribeOffsets))
	})
	register(91, 0, 0, func(c *conn, r *request) respond {
		req := r.kreq.(*kmsg.AlterShareGroupOffsetsRequest)
		return func(ctx context.Context) kmsg.Response {
			return shareAlterOffsetsAuthorized(c, r.key, req, func(req *kmsg.AlterShareGroupOffsetsRequest) *kmsg.AlterShareGroupOffsetsResponse {
				return c.s.b.Shares.AlterOffsets(ctx, req)
			})
		}
	})
	register(92, 0, 0, func(c *conn, r *request) respond {
		req := r.kreq.(*kmsg.DeleteShareGroupOffsetsRequest)
		return func(ctx context.Context) kmsg.Response {
			return shareDeleteOffsetsAuthorized(c, r.key, req, func(req *kmsg.DeleteShareGroupOffsetsRequest) *kmsg.DeleteShareGroupOffsetsResponse {
				return c.s.b.Shares.DeleteOffsets(ctx, req)
			})
		}
	})
}

// withShareGroups adds the share groups to a ListGroups answer, as Kafka
// lists every group type (protocol type "share", type "share").
func withShareGroups(b *broker.Broker, req *kmsg.ListGroupsRequest, resp *kmsg.ListGroupsResponse) *kmsg.ListGroupsResponse {
	if resp.ErrorCode != 0 {
		return resp
	}
	matches := func(filter []string, v string) bool {
		if len(filter) == 0 {
			return true
		}
		for _, f := range filter {
			if strings.EqualFold(f, v) {
				return true
			}
		}
		return false
	}
	for _, g := range b.Shares.List() {
		if !matches(req.StatesFilter, g.State) || !matches(req.TypesFilter, "share") {
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.ProtocolType, lg.GroupState, lg.GroupType = g.ID, "share", g.State, "share"
		resp.Groups = append(resp.Groups, lg)
	}
	return resp
}

// describeGroupsShare marks share groups in a DescribeGroups answer as
// Kafka does: DescribeGroups describes classic groups only.
func describeGroupsShare(b *broker.Broker, resp *kmsg.DescribeGroupsResponse) *kmsg.DescribeGroupsResponse {
	for i := range resp.Groups {
		g := &resp.Groups[i]
		if b.Shares.Exists(g.Group) && !b.Groups.Exists(g.Group) {
			g.ErrorCode = kerr.GroupIDNotFound.Code
			msg := "Group " + g.Group + " is not a classic group."
			g.ErrorMessage = &msg
			g.State = "Dead"
		}
	}
	return resp
}

// deleteGroupsShare deletes the share groups a DeleteGroups names (Kafka has
// no share-specific delete) and hands the rest to the group coordinator.
func deleteGroupsShare(b *broker.Broker, ctx context.Context, req *kmsg.DeleteGroupsRequest) kmsg.Response {
	var shares []kmsg.DeleteGroupsResponseGroup
	rest := req.Groups[:0:0]
	for _, id := range req.Groups {
		if !b.Shares.Exists(id) {
			rest = append(rest, id)
			continue
		}
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group, rg.ErrorCode = id, b.Shares.Delete(ctx, id)
		shares = append(shares, rg)
	}
	req.Groups = rest
	resp := b.Groups.DeleteGroups(ctx, req)
	resp.Groups = append(resp.Groups, shares...)
	return resp
}

// shareGroupConfigEntries describes a group's share configs (a GROUP
// resource): the group's value (source GROUP_CONFIG) or the broker's
// default.
func shareGroupConfigEntries(b *broker.Broker, id string) []broker.ConfigEntry {
	values, set := b.Shares.GroupConfigs(id)
	var out []broker.ConfigEntry
	for _, name := range share.GroupConfigNames {
		e := broker.ConfigEntry{Name: name, Value: values[name], Source: broker.SourceDefault, ValueType: 3}
		if set[name] {
			e.Source = 8 // GROUP_CONFIG
		}
		if name == "share.auto.offset.reset" || name == "share.isolation.level" {
			e.ValueType = 2
		}
		out = append(out, e)
	}
	return out
}

// alterShareGroupConfigs applies an IncrementalAlterConfigs GROUP resource:
// SET and DELETE only (the share configs are no lists).
func alterShareGroupConfigs(b *broker.Broker, rr kmsg.IncrementalAlterConfigsRequestResource, validateOnly bool) (int16, string) {
	if strings.TrimSpace(rr.ResourceName) == "" {
		return kerr.InvalidGroupID.Code, "the group id must not be empty"
	}
	var changes []share.ConfigChange
	for _, ce := range rr.Configs {
		switch ce.Op {
		case 0:
			if ce.Value == nil {
				return kerr.InvalidConfig.Code, "null value for " + ce.Name
			}
			changes = append(changes, share.ConfigChange{Name: ce.Name, Value: *ce.Value})
		case 1:
			changes = append(changes, share.ConfigChange{Name: ce.Name, Delete: true})
		default:
			return kerr.InvalidConfig.Code, "APPEND and SUBTRACT apply to list configs; " + ce.Name + " is not one"
		}
	}
	return b.Shares.AlterGroupConfigs(context.Background(), rr.ResourceName, changes, validateOnly)
}

// joinShareGroup answers a classic JoinGroup for a share group's id as
// Kafka 4.4 does (INCONSISTENT_GROUP_PROTOCOL, measured): an id is one
// group type.
func joinShareGroup(req *kmsg.JoinGroupRequest) *kmsg.JoinGroupResponse {
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	resp.ErrorCode, resp.Generation, resp.MemberID = kerr.InconsistentGroupProtocol.Code, -1, ""
	return resp
}

// offsetCommitShareGroup answers an OffsetCommit to a share group: a share
// group has no committed offsets, so every partition is GROUP_ID_NOT_FOUND.
func offsetCommitShareGroup(req *kmsg.OffsetCommitRequest) *kmsg.OffsetCommitResponse {
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, kerr.GroupIDNotFound.Code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}
