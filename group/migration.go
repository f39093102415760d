package group

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// This file is the online migration of a group with members between the
// classic and the consumer (KIP-848) protocol, after Kafka's
// GroupMetadataManager (convertToConsumerGroup, classicGroupJoinToConsumerGroup,
// classicGroupSyncToConsumerGroup, classicGroupHeartbeatToConsumerGroup,
// classicGroupLeaveToConsumerGroup, convertToClassicGroup):
//
//   - Upgrade: the first ConsumerGroupHeartbeat to a classic group with
//     members turns it into a consumer group. Every classic member becomes
//     a consumer group member at the classic generation, Stable, owning and
//     targeting what its last SyncGroup gave it; the joining member then
//     bumps the group epoch like any join.
//   - Classic members inside a consumer group keep using JoinGroup,
//     SyncGroup, Heartbeat and LeaveGroup. The broker computes their
//     assignment (the group's assignor); a JoinGroup reconciles the member
//     with the partitions its subscription says it owns, SyncGroup hands
//     out what it may own, and Heartbeat answers REBALANCE_IN_PROGRESS when
//     it must rejoin (new group epoch, partitions to revoke, or partitions
//     it waited for now free). A classic member is never the leader.
//   - Downgrade: when the last member using the consumer protocol leaves
//     (or is fenced) and classic members remain, the group becomes a
//     classic group again at the group epoch as its generation, each
//     member holding its target assignment, and a classic rebalance starts.
//
// group.consumer.migration.policy (bidirectional, upgrade, downgrade,
// disabled) says which directions are allowed.

// Migration policies (group.consumer.migration.policy).
const (
	MigrationBidirectional = "bidirectional"
	MigrationUpgrade       = "upgrade"
	MigrationDowngrade     = "downgrade"
	MigrationDisabled      = "disabled"
	// DefaultMigrationPolicy is Kafka 4.x's default.
	DefaultMigrationPolicy = MigrationBidirectional
)

// ValidMigrationPolicy reports whether s names a migration policy (any
// case, as Kafka parses it).
func ValidMigrationPolicy(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case MigrationBidirectional, MigrationUpgrade, MigrationDowngrade, MigrationDisabled:
		return true
	}
	return false
}

func (c *Coordinator) upgradeEnabled() bool {
	p := c.cfg.ConsumerMigrationPolicy
	return p == MigrationBidirectional || p == MigrationUpgrade
}

func (c *Coordinator) downgradeEnabled() bool {
	p := c.cfg.ConsumerMigrationPolicy
	return p == MigrationBidirectional || p == MigrationDowngrade
}

// classicMember is what a consumer group keeps of a member that uses the
// classic protocol (Kafka's ClassicMemberMetadata): its session timeout and
// the protocols of its last JoinGroup, the first of which names the
// protocol it is answered with and the version of its assignment.
type classicMember struct {
	sessionTimeout time.Duration
	protocols      []kmsg.JoinGroupRequestProtocol
}

func (cm *classicMember) protocolName() string {
	if len(cm.protocols) == 0 {
		return ""
	}
	return cm.protocols[0].Name
}

// metadata is the member's subscription for a protocol (the first one's
// when it does not have it).
func (cm *classicMember) metadata(protocol string) []byte {
	for _, p := range cm.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	if len(cm.protocols) > 0 {
		return cm.protocols[0].Metadata
	}
	return nil
}

// sessionTimeout is the member's session: a classic member's own, else
// group.consumer.session.timeout.ms.
func (c *Coordinator) sessionTimeout(m *consumerMember) time.Duration {
	if m.classic != nil {
		return m.classic.sessionTimeout
	}
	return c.cfg.ConsumerSessionTimeout
}

func (cg *consumerGroup) numClassicMembers() int {
	n := 0
	for _, m := range cg.members {
		if m.classic != nil {
			n++
		}
	}
	return n
}

// supportsClassicProtocols is Kafka's ConsumerGroup.supportsClassicProtocols:
// the joining member must speak the consumer protocol type and share a
// protocol with every classic member.
func (cg *consumerGroup) supportsClassicProtocols(protocolType string, protocols []kmsg.JoinGroupRequestProtocol) bool {
	if protocolType != consumerProtocolType {
		return false
	}
	names := protocolNames(protocols)
	if len(cg.members) == 0 {
		return len(names) > 0
	}
	classic := 0
	counts := make(map[string]int)
	for _, m := range cg.members {
		if m.classic == nil {
			continue
		}
		classic++
		for _, n := range protocolNames(m.classic.protocols) {
			counts[n]++
		}
	}
	for _, n := range names {
		if counts[n] == classic {
			return true
		}
	}
	return false
}

// allClassicExcept reports whether every member but the given one (which
// uses the consumer protocol) uses the classic protocol.
func (cg *consumerGroup) allClassicExcept(m *consumerMember) bool {
	return m.classic == nil && cg.numClassicMembers() == len(cg.members)-1
}

// waitingOnUnreleasedPartition is Kafka's: the member waits for a target
// partition another member still holds.
func (cg *consumerGroup) waitingOnUnreleasedPartition(m *consumerMember) bool {
	if m.state != memberUnreleasedPartitions {
		return false
	}
	for t, ps := range m.target {
		for _, p := range ps {
			if !m.assigned.contains(t, p) && cg.currentPartitionEpoch(t, p) != -1 {
				return true
			}
		}
	}
	return false
}

// parseSubscription decodes a consumer protocol subscription.
func parseSubscription(b []byte) (*kmsg.ConsumerMemberMetadata, error) {
	s := kmsg.NewConsumerMemberMetadata()
	if err := s.ReadFrom(b); err != nil {
		return nil, err
	}
	return &s, nil
}

// subscriptionOwned is the subscription's owned partitions (v1+) by topic
// id, topics the broker does not know dropped; never nil, so that a member
// that reports none owns none (Kafka's toTopicPartitions).
func subscriptionOwned(s *kmsg.ConsumerMemberMetadata, tc *topicCache) []kmsg.ConsumerGroupHeartbeatRequestTopic {
	out := []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	for _, o := range s.OwnedPartitions {
		t, ok := tc.byName[o.Topic]
		if !ok {
			continue
		}
		rt := kmsg.NewConsumerGroupHeartbeatRequestTopic()
		rt.TopicID = t.ID
		rt.Partitions = slices.Clone(o.Partitions)
		out = append(out, rt)
	}
	return out
}

// parseClassicAssignment decodes what a classic leader assigned a member
// (empty: nothing yet) into topic ids.
func parseClassicAssignment(b []byte, tc *topicCache) (assignment, error) {
	out := make(assignment)
	if len(b) == 0 {
		return out, nil
	}
	a := kmsg.NewConsumerMemberAssignment()
	if err := a.ReadFrom(b); err != nil {
		return nil, err
	}
	for _, t := range a.Topics {
		ti, ok := tc.byName[t.Topic]
		if !ok {
			continue
		}
		for _, p := range t.Partitions {
			if p >= 0 && p < ti.Partitions {
				out.add(ti.ID, p)
			}
		}
	}
	return out, nil
}

// encodeClassicAssignment is a member's partitions as a consumer protocol
// assignment of the version its subscription metadata has (clamped to the
// versions the protocol has, as Kafka's ConsumerProtocol does).
func encodeClassicAssignment(a assignment, metadata []byte, tc *topicCache) []byte {
	version := int16(0)
	if len(metadata) >= 2 {
		version = int16(uint16(metadata[0])<<8 | uint16(metadata[1]))
	}
	out := kmsg.NewConsumerMemberAssignment()
	out.Version = min(max(version, 0), 3)
	for _, t := range a.sortedTopics() {
		ti, ok := tc.byID[t]
		if !ok {
			continue
		}
		at := kmsg.NewConsumerMemberAssignmentTopic()
		at.Topic = ti.Name
		at.Partitions = slices.Clone(a[t])
		out.Topics = append(out.Topics, at)
	}
	return out.AppendTo(nil)
}

// validateOnlineUpgrade is Kafka's: the policy allows it, the group's
// members are consumers, and they fit group.consumer.max.size.
func (c *Coordinator) validateOnlineUpgrade(g *group) bool {
	switch {
	case !c.upgradeEnabled():
		c.log.Info("cannot upgrade classic group to consumer group: online upgrade is disabled", "group", g.name)
		return false
	case !g.usesConsumerProtocol():
		c.log.Info("cannot upgrade classic group to consumer group: the group does not use the consumer embedded protocol", "group", g.name)
		return false
	case c.cfg.ConsumerMaxSize > 0 && len(g.members) > c.cfg.ConsumerMaxSize:
		c.log.Info("cannot upgrade classic group to consumer group: the group size exceeds the consumer group maximum size", "group", g.name)
		return false
	}
	return true
}

// convertToConsumerGroup turns a classic group with members into a
// consumer group (Kafka's convertToConsumerGroup and
// ConsumerGroup.fromClassicGroup). Parked JoinGroups and SyncGroups are
// answered REBALANCE_IN_PROGRESS so that their members rejoin the new
// group. A member whose embedded protocol cannot be read leaves the group
// classic.
func (c *Coordinator) convertToConsumerGroup(g *group, w *consumerWrites) *heartbeatError {
	tc := c.topics()
	generation := g.generation
	cg := newConsumerGroup()
	cg.epoch, cg.assignmentEpoch = generation, generation
	var converted []*consumerMember
	for _, old := range g.orderedMembers() {
		var meta []byte
		if g.protocol != "" {
			meta = old.metadata(g.protocol)
		} else if len(old.protocols) > 0 {
			meta = old.protocols[0].Metadata
		}
		sub, err := parseSubscription(meta)
		var owned assignment
		if err == nil {
			owned, err = parseClassicAssignment(old.assignment, tc)
		}
		if err != nil {
			c.log.Warn("cannot upgrade classic group: malformed embedded consumer protocol", "group", g.name, "member", old.id, "err", err)
			return hbErr(kerr.GroupIDNotFound, "Cannot upgrade the classic group %s to consumer group because the embedded consumer protocol is malformed.", g.name)
		}
		m := c.newConsumerMember(old.id)
		m.instanceID = old.instanceID
		m.rackID = cloneStringPtr(sub.Rack)
		m.clientID, m.clientHost = old.clientID, old.clientHost
		m.rebalanceTimeout = old.rebalanceTimeout
		m.topicNames = sortedUnique(sub.Topics)
		m.epoch, m.previousEpoch, m.state = generation, generation, memberStable
		m.assigned, m.target = owned, owned.clone()
		for t, ps := range owned {
			byP := make(map[int32]int32, len(ps))
			for _, p := range ps {
				byP[p] = generation
			}
			m.assignedAt[t] = byP
		}
		m.classic = &classicMember{sessionTimeout: old.sessionTimeout, protocols: old.protocols}
		converted = append(converted, m)
	}

	// Kafka: "If the ClassicGroup is rebalancing, inform the awaiting
	// consumers of another ongoing rebalance so that they will rejoin."
	for _, old := range g.orderedMembers() {
		g.completeJoin(old, func(r *kmsg.JoinGroupResponse) {
			r.MemberID = old.id
			r.Generation = generation
			r.ErrorCode = kerr.RebalanceInProgress.Code
		})
		g.completeSync(old, func(r *kmsg.SyncGroupResponse) { r.ErrorCode = kerr.RebalanceInProgress.Code })
		c.cancel(timerHeartbeat, g, old.id)
	}
	for id := range g.pendingJoin {
		c.cancel(timerHeartbeat, g, id)
	}
	c.cancel(timerJoin, g, "")
	c.cancel(timerSync, g, "")
	c.resetClassicState(g)

	for _, m := range converted {
		cg.setMember(m, nil, nil)
		w.member(m)
	}
	cg.subscription = c.computeSubscription(cg, tc)
	cg.resolved, cg.resolvedGen = true, tc.gen
	g.consumer = cg
	g.protocolType = consumerProtocolType
	w.groupChanged = true
	w.extra = append(w.extra, writeOp{Key: groupKey(g.name), Delete: true})
	for _, m := range converted {
		c.scheduleConsumerSession(g, m)
	}
	c.log.Info("classic group upgraded to a consumer group", "group", g.name, "epoch", generation, "members", len(converted))
	return nil
}

// resetClassicState empties the classic half of a group that becomes a
// consumer group: its members now live in g.consumer.
func (c *Coordinator) resetClassicState(g *group) {
	g.state, g.previousState = stateEmpty, stateEmpty
	g.protocol, g.leader = "", ""
	g.members = make(map[string]*member)
	g.memberOrder = nil
	g.static = make(map[string]string)
	g.pendingJoin = make(map[string]bool)
	g.pendingSync = make(map[string]bool)
	g.numAwaitingJoin = 0
	g.supportedProtocols = make(map[string]int)
	g.newMemberAdded = false
	g.subscribed, g.subscribedKnown = nil, false
}

func sortedUnique(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.Clone(n)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// validateOnlineDowngrade is Kafka's validateOnlineDowngradeWithFencedMember:
// the member leaving is the last one using the consumer protocol, others
// remain, the policy allows it and they fit group.max.size.
func (c *Coordinator) validateOnlineDowngrade(g *group, leaving *consumerMember) bool {
	cg := g.consumer
	switch {
	case !cg.allClassicExcept(leaving):
		return false
	case len(cg.members) <= 1:
		return false
	case !c.downgradeEnabled():
		c.log.Info("cannot downgrade consumer group to classic group: online downgrade is disabled", "group", g.name)
		return false
	case c.cfg.MaxSize > 0 && len(cg.members)-1 > c.cfg.MaxSize:
		c.log.Info("cannot downgrade consumer group to classic group: its size is greater than the classic group max size", "group", g.name)
		return false
	}
	return true
}

// convertToClassicGroup turns a consumer group whose last consumer
// protocol member leaves (or is replaced by a classic static member:
// leaving nil, rebalance false) into a classic group (Kafka's
// convertToClassicGroup and ClassicGroup.fromConsumerGroup): generation =
// group epoch, each member holds its target assignment, and a member
// leaving starts a rebalance so that the members rejoin under a
// client-side leader.
func (c *Coordinator) convertToClassicGroup(g *group, leaving *consumerMember, w *consumerWrites, rebalance bool) {
	cg := g.consumer
	tc := c.topics()
	// Every consumer record goes; the classic group record replaces them.
	w.groupChanged = false
	for _, id := range slices.Sorted(maps.Keys(w.deleted)) {
		// Removed earlier in this operation (a replaced static member).
		w.extra = append(w.extra, writeOp{Key: consumerMemberKey(g.name, id), Delete: true})
	}
	w.members, w.deleted = nil, nil
	w.extra = append(w.extra, writeOp{Key: consumerGroupKey(g.name), Delete: true})
	ids := cg.sortedMemberIDs()
	for _, id := range ids {
		w.extra = append(w.extra, writeOp{Key: consumerMemberKey(g.name, id), Delete: true})
		c.cancelConsumerTimers(g, id)
	}

	c.resetClassicState(g)
	g.consumer = nil
	g.protocolType = consumerProtocolType
	g.generation = cg.epoch
	for _, id := range ids {
		cm := cg.members[id]
		if cm == leaving || cm.classic == nil {
			continue
		}
		g.add(&member{
			id:               cm.id,
			instanceID:       cm.instanceID,
			clientID:         cm.clientID,
			clientHost:       cm.clientHost,
			protocolType:     consumerProtocolType,
			protocols:        cm.classic.protocols,
			rebalanceTimeout: cm.rebalanceTimeout,
			sessionTimeout:   cm.classic.sessionTimeout,
		}, nil)
	}
	g.protocol = g.selectProtocol()
	g.computeSubscribedTopics()
	for _, m := range g.orderedMembers() {
		m.assignment = encodeClassicAssignment(cg.members[m.id].target, m.metadata(g.protocol), tc)
		c.rescheduleHeartbeat(g, m, m.sessionTimeout)
	}
	g.transitionTo(stateStable, c.now())
	// The converted generation is stored, as Kafka writes it at the
	// downgrade, before the rebalance begins.
	g.snapshot()
	c.log.Info("consumer group downgraded to a classic group", "group", g.name, "generation", g.generation,
		"members", len(g.members), "rebalance", rebalance)
	if rebalance {
		c.prepareRebalance(g, fmt.Sprintf("Downgrade group %s from consumer to classic.", g.name))
	}
	w.extra = append(w.extra, c.putGroupOp(g))
}

// classicJoinToConsumerGroup serves a JoinGroup to a consumer group with
// members (Kafka's classicGroupJoinToConsumerGroup). The answer is never
// parked: the broker assigns, so the member is answered at once with its
// member epoch as the generation and no leader; jc.durable is set to the
// write the answer must wait for.
func (c *Coordinator) classicJoinToConsumerGroup(g *group, jc *joinCall) *kmsg.JoinGroupResponse {
	cg := g.consumer
	req := jc.req
	memberID := req.MemberID
	unknown := memberID == ""
	if unknown {
		memberID = newUUIDString()
	}
	if cg.members[memberID] == nil && c.cfg.ConsumerMaxSize > 0 && len(cg.members) >= c.cfg.ConsumerMaxSize {
		return jc.fail(kerr.GroupMaxSizeReached.Code, req.MemberID)
	}
	if !cg.supportsClassicProtocols(req.ProtocolType, jc.protocols) {
		return jc.fail(kerr.InconsistentGroupProtocol.Code, req.MemberID)
	}
	if unknown && jc.instanceID == nil && req.Version >= 4 {
		// KIP-394 as in a classic group, but nothing is kept: the
		// member is created when it comes back with the id.
		return jc.fail(kerr.MemberIDRequired.Code, memberID)
	}
	sub, err := parseSubscription(jc.protocols[0].Metadata)
	if err != nil {
		// Kafka fails this with an IllegalStateException.
		return jc.fail(kerr.UnknownServerError.Code, req.MemberID)
	}

	var w consumerWrites
	var m *consumerMember
	isNew := false
	// replacedConsumer: this static member replaces one that used the
	// consumer protocol (the last one, maybe: a rolling downgrade).
	replacedConsumer := false
	if jc.instanceID == nil {
		if m = cg.members[memberID]; m == nil {
			m, isNew = c.newConsumerMember(memberID), true
		}
	} else {
		instance := *jc.instanceID
		existing := cg.members[cg.static[instance]]
		switch {
		case unknown && existing == nil:
			m, isNew = c.newConsumerMember(memberID), true
		case unknown:
			// A classic static member replaces the previous
			// instance whatever protocol that one used.
			replacedConsumer = existing.classic == nil
			m = c.replaceStaticMember(g, existing, memberID, &w)
		case existing == nil:
			return jc.fail(kerr.UnknownMemberID.Code, req.MemberID)
		case existing.id != memberID:
			return jc.fail(kerr.FencedInstanceID.Code, req.MemberID)
		default:
			m = existing
		}
	}

	changed, subscriptionChanged := isNew, isNew
	if jc.instanceID != nil && (m.instanceID == nil || *m.instanceID != *jc.instanceID) {
		m.instanceID, changed = jc.instanceID, true
	}
	if sub.Rack != nil && (m.rackID == nil || *m.rackID != *sub.Rack) {
		m.rackID, changed = cloneStringPtr(sub.Rack), true
	}
	if jc.rebalance > 0 && jc.rebalance != m.rebalanceTimeout {
		m.rebalanceTimeout, changed = jc.rebalance, true
	}
	if names := sortedUnique(sub.Topics); !slices.Equal(names, m.topicNames) {
		m.topicNames, changed, subscriptionChanged = names, true, true
	}
	if m.clientID != jc.client.clientID || m.clientHost != jc.client.host {
		m.clientID, m.clientHost, changed = strings.Clone(jc.client.clientID), jc.client.host, true
	}
	cm := &classicMember{sessionTimeout: jc.session, protocols: jc.protocols}
	if m.classic == nil || !protocolsEqual(m.classic.protocols, cm.protocols) || m.classic.sessionTimeout != cm.sessionTimeout {
		changed = true
	}
	m.classic = cm
	if isNew {
		cg.setMember(m, nil, nil)
		c.log.Info("member joins the consumer group using the classic protocol", "group", g.name, "member", m.id)
	}
	if changed {
		w.member(m)
	}
	c.advanceConsumerMember(g, m, subscriptionChanged, subscriptionOwned(sub, c.topics()), &w)

	r := newJoinResponse(req.Version)
	r.MemberID = m.id
	r.Generation = m.epoch
	r.ProtocolType = kmsg.StringPtr(consumerProtocolType)
	r.Protocol = kmsg.StringPtr(m.classic.protocolName())

	c.cancel(timerConsumerJoin, g, m.id)
	if replacedConsumer && c.validateOnlineDowngradeReplaced(g) {
		// Kafka's validateOnlineDowngradeWithReplacedMemberId: the last
		// consumer protocol member was replaced by this classic one; the
		// group becomes classic, Stable, without a rebalance.
		c.convertToClassicGroup(g, nil, &w, false)
	} else {
		c.scheduleConsumerSession(g, m)
		c.scheduleClassicSyncTimeout(g, m)
	}
	jc.durable = c.write(w.ops(g))
	return r
}

// validateOnlineDowngradeReplaced is Kafka's
// validateOnlineDowngradeWithReplacedMemberId, asked once the replacement
// is made: every member now uses the classic protocol.
func (c *Coordinator) validateOnlineDowngradeReplaced(g *group) bool {
	cg := g.consumer
	switch {
	case cg.numClassicMembers() != len(cg.members):
		return false
	case !c.downgradeEnabled():
		c.log.Info("cannot downgrade consumer group to classic group: online downgrade is disabled", "group", g.name)
		return false
	case c.cfg.MaxSize > 0 && len(cg.members) > c.cfg.MaxSize:
		c.log.Info("cannot downgrade consumer group to classic group: its size is greater than the classic group max size", "group", g.name)
		return false
	}
	return true
}

func protocolsEqual(a, b []kmsg.JoinGroupRequestProtocol) bool {
	return slices.EqualFunc(a, b, func(x, y kmsg.JoinGroupRequestProtocol) bool {
		return x.Name == y.Name && string(x.Metadata) == string(y.Metadata)
	})
}

// classicMemberOf is Kafka's validateConsumerGroupMember plus
// throwIfMemberDoesNotUseClassicProtocol.
func classicMemberOf(cg *consumerGroup, memberID string, instanceID *string) (*consumerMember, int16) {
	var m *consumerMember
	if instanceID == nil {
		m = cg.members[memberID]
		if m == nil {
			return nil, kerr.UnknownMemberID.Code
		}
	} else {
		m = cg.members[cg.static[*instanceID]]
		if m == nil {
			return nil, kerr.UnknownMemberID.Code
		}
		if m.id != memberID {
			return nil, kerr.FencedInstanceID.Code
		}
	}
	if m.classic == nil {
		return nil, kerr.UnknownMemberID.Code
	}
	return m, 0
}

// classicRebalanceInProgress is Kafka's throwIfRebalanceInProgress for
// SyncGroup: a new group epoch means rejoin, unless the member is still
// revoking (it rejoins by itself once it has).
func (c *Coordinator) classicRebalanceInProgress(g *group, m *consumerMember) bool {
	if g.consumer.epoch > m.epoch && m.state != memberUnrevokedPartitions {
		c.scheduleClassicJoinTimeoutIfAbsent(g, m)
		return true
	}
	return false
}

// classicSyncToConsumerGroup serves a SyncGroup of a classic member of a
// consumer group (Kafka's classicGroupSyncToConsumerGroup): the answer is
// what the member may own now.
func (c *Coordinator) classicSyncToConsumerGroup(g *group, req *kmsg.SyncGroupRequest, instanceID, protocolType, protocol *string) *kmsg.SyncGroupResponse {
	r := newSyncResponse(req.Version)
	m, code := classicMemberOf(g.consumer, req.MemberID, instanceID)
	switch {
	case code != 0:
	case req.Generation != m.epoch:
		code = kerr.IllegalGeneration.Code
	case protocolType != nil && *protocolType != consumerProtocolType,
		protocol != nil && *protocol != m.classic.protocolName():
		code = kerr.InconsistentGroupProtocol.Code
	case c.classicRebalanceInProgress(g, m):
		code = kerr.RebalanceInProgress.Code
	}
	if code != 0 {
		r.ErrorCode = code
		return r
	}
	c.cancel(timerConsumerSync, g, m.id)
	c.scheduleConsumerSession(g, m)
	r.ProtocolType = protocolType
	r.Protocol = protocol
	r.MemberAssignment = encodeClassicAssignment(m.assigned, m.classic.metadata(m.classic.protocolName()), c.topics())
	return r
}

// classicHeartbeatToConsumerGroup serves a Heartbeat of a classic member of
// a consumer group (Kafka's classicGroupHeartbeatToConsumerGroup).
func (c *Coordinator) classicHeartbeatToConsumerGroup(g *group, req *kmsg.HeartbeatRequest, instanceID *string) int16 {
	cg := g.consumer
	m, code := classicMemberOf(cg, req.MemberID, instanceID)
	if code != 0 {
		return code
	}
	if req.Generation != m.epoch {
		return kerr.IllegalGeneration.Code
	}
	c.scheduleConsumerSession(g, m)
	// Rejoin when the group epoch moved on, when partitions must be
	// revoked, or when the partitions it waited for are free.
	if m.epoch < cg.epoch || m.state == memberUnrevokedPartitions ||
		(m.state == memberUnreleasedPartitions && !cg.waitingOnUnreleasedPartition(m)) {
		c.scheduleClassicJoinTimeoutIfAbsent(g, m)
		return kerr.RebalanceInProgress.Code
	}
	return 0
}

// classicLeaveToConsumerGroup removes leaving classic members from a
// consumer group (Kafka's classicGroupLeaveToConsumerGroup); one group
// epoch bump covers them all.
func (c *Coordinator) classicLeaveToConsumerGroup(g *group, leaving []kmsg.LeaveGroupRequestMember, resp *kmsg.LeaveGroupResponse) <-chan error {
	cg := g.consumer
	var w consumerWrites
	left := 0
	for _, lm := range leaving {
		r := kmsg.NewLeaveGroupResponseMember()
		r.MemberID = lm.MemberID
		r.InstanceID = lm.InstanceID
		var m *consumerMember
		if lm.InstanceID == nil {
			if m = cg.members[lm.MemberID]; m == nil || m.classic == nil {
				r.ErrorCode = kerr.UnknownMemberID.Code
			}
		} else {
			m = cg.members[cg.static[*lm.InstanceID]]
			switch {
			case m == nil:
				r.ErrorCode = kerr.UnknownMemberID.Code
			case lm.MemberID != "" && m.id != lm.MemberID:
				r.ErrorCode = kerr.FencedInstanceID.Code
			case m.classic == nil:
				r.ErrorCode = kerr.UnknownMemberID.Code
			default:
				r.MemberID = m.id
			}
		}
		if r.ErrorCode == 0 {
			c.log.Info("classic member left the consumer group", "group", g.name, "member", m.id, "reason", stringOr(lm.Reason, ""))
			c.cancelConsumerTimers(g, m.id)
			cg.removeMember(m)
			w.remove(m.id)
			left++
		}
		resp.Members = append(resp.Members, r)
	}
	if left > 0 {
		tc := c.topics()
		cg.subscription = c.computeSubscription(cg, tc)
		cg.resolved, cg.resolvedGen = true, tc.gen
		cg.epoch++
		w.groupChanged = true
		if len(cg.members) == 0 {
			g.stateSince = c.now()
		}
	}
	return c.write(w.ops(g))
}

// scheduleClassicJoinTimeoutIfAbsent gives a classic member told to rejoin
// its rebalance timeout to do so, else it is fenced.
func (c *Coordinator) scheduleClassicJoinTimeoutIfAbsent(g *group, m *consumerMember) {
	if c.timers.scheduled(timerKey{kind: timerConsumerJoin, group: g.name, member: m.id}) {
		return
	}
	c.scheduleConsumerFence(timerConsumerJoin, g, m.id, m.rebalanceTimeout, "the classic member failed to join within the rebalance timeout")
}

// scheduleClassicSyncTimeout gives a classic member answered in JoinGroup
// its rebalance timeout to send SyncGroup.
func (c *Coordinator) scheduleClassicSyncTimeout(g *group, m *consumerMember) {
	c.scheduleConsumerFence(timerConsumerSync, g, m.id, m.rebalanceTimeout, "the member failed to sync within timeout")
}

func (c *Coordinator) scheduleConsumerFence(kind timerKind, g *group, id string, d time.Duration, reason string) {
	c.schedule(kind, g, id, d, func() {
		if g.consumer == nil {
			return
		}
		m := g.consumer.members[id]
		if m == nil {
			return
		}
		c.log.Info("fencing consumer group member", "group", g.name, "member", id, "reason", reason)
		var w consumerWrites
		c.fenceConsumerMember(g, m, &w)
		c.write(w.ops(g))
	})
}
