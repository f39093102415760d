package group

import (
	"context"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Group types as ListGroups v5 names them (KIP-848).
const (
	classicGroupType  = "classic"
	consumerGroupType = "consumer"
)

// typeName is the group's type: "consumer" for KIP-848 groups.
func (g *group) typeName() string {
	if g.consumer != nil {
		return consumerGroupType
	}
	return classicGroupType
}

// stateName is the group's state as ListGroups reports it: a consumer
// group's states are Kafka's ConsumerGroupState.
func (g *group) stateName() string {
	if g.consumer != nil {
		return g.consumer.state()
	}
	return g.state.String()
}

// isEmpty reports whether the group has no members of either protocol.
func (g *group) isEmpty() bool {
	if g.consumer != nil {
		return len(g.consumer.members) == 0
	}
	return g.state == stateEmpty
}

// allGroupOperations is the DescribeGroups authorized-operations bitfield
// with no authorizer: every operation a group supports (READ, DELETE,
// DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS).
const allGroupOperations = 1<<3 | 1<<6 | 1<<8 | 1<<10 | 1<<11

// ListGroups handles a ListGroups request, with the state (v4+) and type
// (v5+) filters; both compare case-insensitively.
func (c *Coordinator) ListGroups(_ context.Context, req *kmsg.ListGroupsRequest) *kmsg.ListGroupsResponse {
	resp := kmsg.NewPtrListGroupsResponse()
	resp.Version = req.Version
	var states, types []string
	if req.Version >= 4 {
		states = req.StatesFilter
	}
	if req.Version >= 5 {
		types = req.TypesFilter
	}

	c.lock()
	defer c.unlock()
	if c.closed {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	for _, name := range sortedKeys(c.groups) {
		g := c.groups[name]
		if !stateMatches(states, g.stateName()) || !typeMatches(types, g.typeName()) {
			continue
		}
		if !resp.IsFlexible() && (len(g.name) > maxStringLen || len(g.protocolType) > maxStringLen) {
			// Only a data directory from before ids were bounded can
			// hold such a group; v0-v2 can't name it.
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group = g.name
		lg.ProtocolType = g.protocolType
		lg.GroupState = g.stateName()
		lg.GroupType = g.typeName()
		resp.Groups = append(resp.Groups, lg)
	}
	return resp
}

func typeMatches(filter []string, typ string) bool {
	if len(filter) == 0 {
		return true
	}
	for _, t := range filter {
		if strings.EqualFold(strings.TrimSpace(t), typ) {
			return true
		}
	}
	return false
}

// DescribeGroups handles a DescribeGroups request. Member metadata and
// assignments are shown only for Stable groups, as in Kafka. An unknown
// group, or a consumer group (KIP-848: not a classic group), is described
// as Dead, with GROUP_ID_NOT_FOUND from v6 (KIP-1043).
func (c *Coordinator) DescribeGroups(_ context.Context, req *kmsg.DescribeGroupsRequest) *kmsg.DescribeGroupsResponse {
	resp := kmsg.NewPtrDescribeGroupsResponse()
	resp.Version = req.Version

	c.lock()
	defer c.unlock()
	for _, name := range req.Groups {
		dg := kmsg.NewDescribeGroupsResponseGroup()
		dg.Group = name
		g := c.groups[name]
		switch {
		case c.closed:
			dg.ErrorCode = kerr.CoordinatorNotAvailable.Code
		case g == nil:
			dg.State = stateDead.String()
			if req.Version >= 6 {
				dg.ErrorCode = kerr.GroupIDNotFound.Code
				msg := fmt.Sprintf("Group %s not found.", name)
				dg.ErrorMessage = &msg
			}
		case g.consumer != nil:
			dg.State = stateDead.String()
			if req.Version >= 6 {
				dg.ErrorCode = kerr.GroupIDNotFound.Code
				msg := fmt.Sprintf("Group %s is not a classic group.", name)
				dg.ErrorMessage = &msg
			}
		default:
			dg.State = g.state.String()
			dg.ProtocolType = g.protocolType
			stable := g.state == stateStable
			if stable {
				dg.Protocol = g.protocol
			}
			for _, m := range g.orderedMembers() {
				dm := kmsg.NewDescribeGroupsResponseGroupMember()
				dm.MemberID = m.id
				dm.InstanceID = m.instanceID
				dm.ClientID = m.clientID
				dm.ClientHost = m.clientHost
				if stable {
					dm.ProtocolMetadata = m.metadata(g.protocol)
					dm.MemberAssignment = m.assignment
				}
				dg.Members = append(dg.Members, dm)
			}
			if req.Version >= 3 && req.IncludeAuthorizedOperations {
				dg.AuthorizedOperations = allGroupOperations
			}
		}
		resp.Groups = append(resp.Groups, dg)
	}
	return resp
}

// DeleteGroups handles a DeleteGroups request: Empty groups are deleted
// with their offsets (durably, before the answer); others get
// NON_EMPTY_GROUP or GROUP_ID_NOT_FOUND.
func (c *Coordinator) DeleteGroups(_ context.Context, req *kmsg.DeleteGroupsRequest) *kmsg.DeleteGroupsResponse {
	resp := kmsg.NewPtrDeleteGroupsResponse()
	resp.Version = req.Version

	c.lock()
	var ops []writeOp
	for _, name := range req.Groups {
		dg := kmsg.NewDeleteGroupsResponseGroup()
		dg.Group = name
		g := c.groups[name]
		switch {
		case c.closed:
			dg.ErrorCode = kerr.CoordinatorNotAvailable.Code
		case g == nil || g.state == stateDead:
			dg.ErrorCode = kerr.GroupIDNotFound.Code
		case !g.isEmpty():
			dg.ErrorCode = kerr.NonEmptyGroup.Code
		default:
			ops = c.deleteGroupLocked(g, ops)
			c.log.Info("group deleted", "group", name)
		}
		resp.Groups = append(resp.Groups, dg)
	}
	done := c.write(ops)
	c.unlock()
	if err := <-done; err != nil {
		c.log.Error("group deletion not durable", "err", err)
		for i := range resp.Groups {
			if resp.Groups[i].ErrorCode == 0 {
				resp.Groups[i].ErrorCode = kerr.NotCoordinator.Code
			}
		}
	}
	return resp
}

// deleteGroupLocked removes a group with its committed and pending
// offsets. Its deadlines become no-ops: they only act on the group object
// registered under the name.
func (c *Coordinator) deleteGroupLocked(g *group, ops []writeOp) []writeOp {
	for _, topic := range sortedKeys(g.offsets) {
		for _, p := range sortedKeys(g.offsets[topic]) {
			ops = c.deleteOffset(g, topic, p, ops)
		}
	}
	for _, pid := range sortedKeys(g.openTxns) {
		byTopic := c.pending[pid].offsets[g.name]
		for _, topic := range sortedKeys(byTopic) {
			for _, p := range sortedKeys(byTopic[topic]) {
				ops = c.deleteOffset(g, topic, p, ops)
			}
		}
	}
	g.transitionTo(stateDead, c.now())
	delete(c.groups, g.name)
	if g.consumer != nil {
		ops = append(ops, writeOp{Key: consumerGroupKey(g.name), Delete: true})
	}
	return append(ops, writeOp{Key: groupKey(g.name), Delete: true})
}
