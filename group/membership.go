package group

import (
	"bytes"
	"context"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// joinCall is one JoinGroup being handled: the request, normalized for its
// version, and the channel it parks on if it must wait for the rebalance.
type joinCall struct {
	req        *kmsg.JoinGroupRequest
	instanceID *string
	protocols  []kmsg.JoinGroupRequestProtocol // copied: the request's buffers are not ours
	session    time.Duration
	rebalance  time.Duration
	client     clientInfo
	waiter     *joinWaiter
	parked     bool
	// durable, if set, is the write the answer waits for (a classic
	// member of a consumer group, whose state is durable).
	durable <-chan error
}

// park returns the waiter that the rebalance will answer.
func (jc *joinCall) park() *joinWaiter {
	jc.parked = true
	return jc.waiter
}

func (jc *joinCall) fail(code int16, memberID string) *kmsg.JoinGroupResponse {
	r := newJoinResponse(jc.req.Version)
	r.MemberID = memberID
	r.ErrorCode = code
	return r
}

// JoinGroup handles a JoinGroup request. It blocks until the rebalance the
// member joins completes, or ctx ends (the answer is then NOT_COORDINATOR;
// the member stays in the rebalance as it would in Kafka, whose socket
// could not tell either).
func (c *Coordinator) JoinGroup(ctx context.Context, req *kmsg.JoinGroupRequest) *kmsg.JoinGroupResponse {
	jc := &joinCall{
		req:       req,
		protocols: cloneProtocols(req.Protocols),
		session:   millis(req.SessionTimeoutMillis),
		rebalance: millis(req.RebalanceTimeoutMillis),
		client:    clientFrom(ctx),
		waiter:    &joinWaiter{ch: make(chan *kmsg.JoinGroupResponse, 1), version: req.Version},
	}
	if req.Version >= 5 {
		jc.instanceID = cloneStringPtr(req.InstanceID)
	}
	if req.Version == 0 {
		jc.rebalance = jc.session // v0 has no rebalance timeout
	}

	c.lock()
	var resp *kmsg.JoinGroupResponse
	switch {
	case c.closed:
		resp = jc.fail(kerr.CoordinatorNotAvailable.Code, req.MemberID)
	case req.Group == "" || len(req.Group) > maxStringLen:
		// A group id an int16 string can't carry would make ListGroups
		// v0-v2 (and DescribeGroups v0-v4) malformed for every client.
		resp = jc.fail(kerr.InvalidGroupID.Code, req.MemberID)
	case !joinStringsFit(req):
		resp = jc.fail(kerr.InvalidRequest.Code, req.MemberID)
	case jc.session < c.cfg.MinSessionTimeout || jc.session > c.cfg.MaxSessionTimeout:
		resp = jc.fail(kerr.InvalidSessionTimeout.Code, req.MemberID)
	default:
		resp = c.joinLocked(jc)
	}
	c.unlock()
	if jc.durable != nil {
		if err := <-jc.durable; err != nil {
			c.log.Error("consumer group join not durable", "group", req.Group, "err", err)
			return jc.fail(kerr.NotCoordinator.Code, req.MemberID)
		}
	}
	if !jc.parked {
		return resp
	}
	return c.awaitJoin(ctx, jc.waiter, req.MemberID)
}

func (c *Coordinator) awaitJoin(ctx context.Context, w *joinWaiter, memberID string) *kmsg.JoinGroupResponse {
	select {
	case r := <-w.ch:
		return r
	case <-ctx.Done():
	case <-c.done:
	}
	select { // the answer may have raced the cancellation
	case r := <-w.ch:
		return r
	default:
	}
	r := newJoinResponse(w.version)
	r.MemberID = memberID
	r.ErrorCode = kerr.NotCoordinator.Code
	return r
}

// joinStringsFit reports whether the strings of a JoinGroup that the
// coordinator stores and answers with (to this member, and to other
// members and admin clients at older versions) fit an int16 string. Only
// flexible versions (v6+) can send longer ones.
func joinStringsFit(req *kmsg.JoinGroupRequest) bool {
	if len(req.MemberID) > maxStringLen || len(req.ProtocolType) > maxStringLen ||
		(req.InstanceID != nil && len(*req.InstanceID) > maxStringLen) {
		return false
	}
	for _, p := range req.Protocols {
		if len(p.Name) > maxStringLen {
			return false
		}
	}
	return true
}

// maxGroupMetadataBytes bounds the protocol metadata of a group's members,
// summed: the leader's JoinGroup answer carries all of it, and must stay
// readable by a client (socket.request.max.bytes-sized, as franz-go's
// default receive limit is). Kafka has no such bound; with group.max.size
// unlimited, 1,000 members of 1 MB made a 976 MB answer.
const maxGroupMetadataBytes = 100 << 20

func protocolsSize(ps []kmsg.JoinGroupRequestProtocol) int {
	n := 0
	for _, p := range ps {
		n += len(p.Name) + len(p.Metadata)
	}
	return n
}

// acceptJoiningMember is Kafka's ClassicGroup check of group.max.size: an
// Empty group takes anyone; while preparing a rebalance a member already
// waiting is accepted and others up to the limit of members waiting; in
// later states members are accepted and newcomers up to the group's size.
// The metadata bound applies to newcomers and to members whose metadata
// grows.
func (c *Coordinator) acceptJoiningMember(g *group, jc *joinCall) bool {
	memberID := jc.req.MemberID
	m := g.members[memberID]
	if size := protocolsSize(jc.protocols); size > 0 {
		total := size
		for _, other := range g.members {
			if other != m {
				total += protocolsSize(other.protocols)
			}
		}
		if total > maxGroupMetadataBytes {
			return false
		}
	}
	max := c.cfg.MaxSize
	if max <= 0 {
		return true
	}
	switch g.state {
	case stateEmpty, stateDead:
		return true
	case statePreparingRebalance:
		return (m != nil && m.awaitingJoin()) || g.numAwaitingJoin < max
	default:
		return m != nil || len(g.members) < max
	}
}

// joinLocked returns the answer, or nil if the call parked.
func (c *Coordinator) joinLocked(jc *joinCall) *kmsg.JoinGroupResponse {
	name := jc.req.Group
	unknownMember := jc.req.MemberID == ""
	g := c.groups[name]
	if g == nil {
		// A known member id for a group we do not have: the group was
		// deleted or this broker restarted. The member must start over.
		if !unknownMember {
			return jc.fail(kerr.UnknownMemberID.Code, jc.req.MemberID)
		}
		g = newGroup(strings.Clone(name), c.now())
		c.groups[g.name] = g
		// Like Kafka, the group exists from its first JoinGroup on,
		// whatever the answer to it.
		defer c.persistGroup(g)
	}
	if g.consumer != nil {
		if len(g.consumer.members) > 0 {
			// The consumer group serves the classic member
			// (migration.go).
			return c.classicJoinToConsumerGroup(g, jc)
		}
		c.downgradeEmptyConsumerGroup(g)
	}
	if !c.acceptJoiningMember(g, jc) {
		// As Kafka: the member (if it was one) leaves, and is told to
		// start over with no member id.
		c.log.Info("group is full, refusing a member", "group", g.name, "member", jc.req.MemberID,
			"members", len(g.members), "group_max_size", c.cfg.MaxSize)
		c.dropJoiningMember(g, jc.req.MemberID)
		return jc.fail(kerr.GroupMaxSizeReached.Code, "")
	}
	if unknownMember {
		return c.joinNewMember(g, jc)
	}
	return c.joinExistingMember(g, jc)
}

// dropJoiningMember removes a member (or pending member) refused by
// acceptJoiningMember.
func (c *Coordinator) dropJoiningMember(g *group, memberID string) {
	if memberID == "" {
		return
	}
	if g.pendingJoin[memberID] {
		c.cancel(timerHeartbeat, g, memberID)
		g.remove(memberID)
		return
	}
	if m := g.members[memberID]; m != nil {
		c.cancel(timerHeartbeat, g, memberID)
		c.removeMemberAndUpdateGroup(g, m, "member "+memberID+" refused: group is full")
	}
}

func (c *Coordinator) joinNewMember(g *group, jc *joinCall) *kmsg.JoinGroupResponse {
	if g.state == stateDead {
		return jc.fail(kerr.CoordinatorNotAvailable.Code, "")
	}
	if !g.supportsProtocols(jc.req.ProtocolType, jc.protocols) {
		return jc.fail(kerr.InconsistentGroupProtocol.Code, "")
	}
	newID := newMemberID(jc.client.clientID, jc.instanceID)
	if jc.instanceID != nil {
		if existing, ok := g.static[*jc.instanceID]; ok {
			c.log.Info("static member rejoins, replacing its previous member id",
				"group", g.name, "instance_id", *jc.instanceID, "old_member", existing, "state", g.state)
			return c.updateStaticMemberThenRebalance(g, jc, existing, newID)
		}
		return c.addMemberThenRebalance(g, jc, newID)
	}
	if jc.req.Version >= 4 {
		// KIP-394: hand out the id and wait for the member to come back
		// with it; a client that never does costs only a session timeout.
		g.pendingJoin[newID] = true
		c.schedule(timerHeartbeat, g, newID, jc.session, func() { c.expireHeartbeat(g, newID) })
		return jc.fail(kerr.MemberIDRequired.Code, newID)
	}
	return c.addMemberThenRebalance(g, jc, newID)
}

func (c *Coordinator) joinExistingMember(g *group, jc *joinCall) *kmsg.JoinGroupResponse {
	memberID := jc.req.MemberID
	switch {
	case g.state == stateDead:
		return jc.fail(kerr.CoordinatorNotAvailable.Code, memberID)
	case !g.supportsProtocols(jc.req.ProtocolType, jc.protocols):
		return jc.fail(kerr.InconsistentGroupProtocol.Code, memberID)
	case g.pendingJoin[memberID]:
		if jc.instanceID != nil {
			// Static members are never pending; Kafka fails this
			// with an internal error too.
			return jc.fail(kerr.UnknownServerError.Code, memberID)
		}
		return c.addMemberThenRebalance(g, jc, strings.Clone(memberID))
	}
	if code := g.validateMember(memberID, jc.instanceID); code != 0 {
		return jc.fail(code, memberID)
	}
	m := g.members[memberID]
	current := func(withMembers bool) *kmsg.JoinGroupResponse {
		r := newJoinResponse(jc.req.Version)
		c.fillJoin(g, m, r, withMembers)
		return r
	}
	switch g.state {
	case statePreparingRebalance:
		return c.updateMemberThenRebalance(g, m, jc)
	case stateCompletingRebalance:
		if m.matches(jc.protocols) {
			// The member lost our answer; give it the current one.
			return current(g.isLeader(m.id))
		}
		return c.updateMemberThenRebalance(g, m, jc)
	case stateStable:
		// A rejoining leader always rebalances: it may have seen a
		// change (new partitions, say) its metadata does not show.
		if g.isLeader(m.id) || !m.matches(jc.protocols) {
			return c.updateMemberThenRebalance(g, m, jc)
		}
		return current(false)
	default:
		return jc.fail(kerr.UnknownMemberID.Code, memberID)
	}
}

// fillJoin writes the current generation's answer for m.
func (c *Coordinator) fillJoin(g *group, m *member, r *kmsg.JoinGroupResponse, withMembers bool) {
	r.MemberID = m.id
	r.Generation = g.generation
	r.ProtocolType = stringPtrOrNil(g.protocolType)
	r.Protocol = stringPtrOrNil(g.protocol)
	r.LeaderID = g.leader
	if withMembers {
		r.Members = g.currentMembers()
	}
}

// validateMember checks that an instance id, if given, maps to memberID,
// and that memberID is a member.
func (g *group) validateMember(memberID string, instanceID *string) int16 {
	if instanceID != nil {
		existing, ok := g.static[*instanceID]
		if !ok {
			return kerr.UnknownMemberID.Code
		}
		if existing != memberID {
			return kerr.FencedInstanceID.Code
		}
	}
	if g.members[memberID] == nil {
		return kerr.UnknownMemberID.Code
	}
	return 0
}

func (c *Coordinator) addMemberThenRebalance(g *group, jc *joinCall, memberID string) *kmsg.JoinGroupResponse {
	m := &member{
		id:               memberID,
		instanceID:       jc.instanceID,
		clientID:         jc.client.clientID,
		clientHost:       jc.client.host,
		protocolType:     strings.Clone(jc.req.ProtocolType),
		protocols:        jc.protocols,
		rebalanceTimeout: jc.rebalance,
		sessionTimeout:   jc.session,
		isNew:            true,
	}
	if g.state == statePreparingRebalance && g.previousState == stateEmpty {
		g.newMemberAdded = true
	}
	g.add(m, jc.park())
	// A new member parked in JoinGroup cannot heartbeat; bound its wait
	// instead of its session.
	c.rescheduleHeartbeat(g, m, newMemberJoinTimeout)
	c.maybePrepareRebalanceOrCompleteJoin(g, "adding member "+memberID)
	return nil
}

func (c *Coordinator) updateMemberThenRebalance(g *group, m *member, jc *joinCall) *kmsg.JoinGroupResponse {
	g.updateMember(m, jc.protocols, jc.rebalance, jc.session, jc.park())
	c.maybePrepareRebalanceOrCompleteJoin(g, "member "+m.id+" rejoins")
	return nil
}

// updateStaticMemberThenRebalance hands a static member's place to its new
// member id. In a Stable group the member gets the current generation
// without a rebalance (KIP-345) if it comes back with the same protocol
// metadata. (Kafka only requires that the group's protocol choice stays,
// so a changed subscription would go unnoticed until the next rebalance.)
func (c *Coordinator) updateStaticMemberThenRebalance(g *group, jc *joinCall, oldID, newID string) *kmsg.JoinGroupResponse {
	previousLeader := g.leader
	m := g.replaceStaticMember(*jc.instanceID, oldID, newID)
	c.cancel(timerHeartbeat, g, oldID)
	c.rescheduleHeartbeat(g, m, m.sessionTimeout)
	sameMetadata := m.matches(jc.protocols)
	g.updateMember(m, jc.protocols, jc.rebalance, jc.session, jc.park())

	switch g.state {
	case stateStable:
		if !sameMetadata || g.protocol != g.selectProtocol() {
			c.maybePrepareRebalanceOrCompleteJoin(g, "static member "+newID+" rejoined with new metadata")
			return nil
		}
		// The replaced member id is the one a restart must bring back.
		g.snapshot()
		c.persistGroup(g)
		g.completeJoin(m, func(r *kmsg.JoinGroupResponse) {
			if jc.req.Version >= 9 {
				// KIP-814: a replaced leader gets the members but is
				// told not to reassign them.
				c.fillJoin(g, m, r, g.isLeader(m.id))
				r.SkipAssignment = g.isLeader(m.id)
				return
			}
			// Older leaders would run the assignor again; naming the
			// old leader keeps them following instead.
			c.fillJoin(g, m, r, false)
			r.LeaderID = previousLeader
		})
	case stateCompletingRebalance:
		// The leader may have assigned the old member id already.
		c.prepareRebalance(g, "static member "+newID+" replaced "+oldID+" during CompletingRebalance")
	default:
		c.maybeCompleteJoinPhase(g)
	}
	return nil
}

// replaceStaticMember moves a static member to a new member id. Requests
// parked under the old id are fenced.
func (g *group) replaceStaticMember(instanceID, oldID, newID string) *member {
	old := g.members[oldID]
	g.completeJoin(old, func(r *kmsg.JoinGroupResponse) {
		r.MemberID = oldID
		r.ErrorCode = kerr.FencedInstanceID.Code
	})
	g.completeSync(old, func(r *kmsg.SyncGroupResponse) {
		r.ErrorCode = kerr.FencedInstanceID.Code
		r.MemberAssignment = []byte{}
	})
	m := &member{
		id:               newID,
		instanceID:       old.instanceID,
		clientID:         old.clientID,
		clientHost:       old.clientHost,
		protocolType:     old.protocolType,
		protocols:        old.protocols,
		rebalanceTimeout: old.rebalanceTimeout,
		sessionTimeout:   old.sessionTimeout,
		assignment:       old.assignment,
	}
	delete(g.members, oldID)
	g.members[newID] = m
	for i, id := range g.memberOrder {
		if id == oldID {
			g.memberOrder[i] = newID
		}
	}
	if g.leader == oldID {
		g.leader = newID
	}
	if g.pendingSync[oldID] {
		delete(g.pendingSync, oldID)
		g.pendingSync[newID] = true
	}
	g.static[instanceID] = newID
	return m
}

func (c *Coordinator) rescheduleHeartbeat(g *group, m *member, d time.Duration) {
	id := m.id
	c.schedule(timerHeartbeat, g, id, d, func() { c.expireHeartbeat(g, id) })
}

// expireHeartbeat runs when a member's (or pending member's) session
// deadline passes without a heartbeat.
func (c *Coordinator) expireHeartbeat(g *group, memberID string) {
	if g.state == stateDead {
		return
	}
	if g.pendingJoin[memberID] {
		c.log.Info("pending member expired", "group", g.name, "member", memberID)
		g.remove(memberID)
		if g.state == statePreparingRebalance && g.hasAllMembersJoined() {
			c.completeGroupJoin(g)
		}
		return
	}
	m := g.members[memberID]
	if m == nil || m.hasSatisfiedHeartbeat() {
		return
	}
	c.log.Info("member session expired, removing it", "group", g.name, "member", memberID)
	c.removeMemberAndUpdateGroup(g, m, "session of "+memberID+" expired")
}

func (c *Coordinator) removeMemberAndUpdateGroup(g *group, m *member, reason string) {
	// A new member can time out while parked in JoinGroup; tell it to
	// start over.
	g.completeJoin(m, func(r *kmsg.JoinGroupResponse) { r.ErrorCode = kerr.UnknownMemberID.Code })
	g.remove(m.id)
	switch g.state {
	case stateStable, stateCompletingRebalance:
		c.maybePrepareRebalanceOrCompleteJoin(g, reason)
	case statePreparingRebalance:
		if g.hasAllMembersJoined() {
			c.completeGroupJoin(g)
		}
	}
}

func (c *Coordinator) maybePrepareRebalanceOrCompleteJoin(g *group, reason string) {
	if g.state.canRebalance() {
		c.prepareRebalance(g, reason)
		return
	}
	c.maybeCompleteJoinPhase(g)
}

// prepareRebalance starts a join phase. An Empty group's first join phase
// waits for InitialRebalanceDelay so that members starting together land
// in one generation; any other waits until every member rejoined or the
// rebalance timeout passed.
func (c *Coordinator) prepareRebalance(g *group, reason string) {
	if g.state == stateCompletingRebalance {
		c.resetAndPropagateAssignment(g, kerr.RebalanceInProgress.Code)
	}
	c.removeSyncExpiration(g)
	g.storingAssignment = false
	initial := g.state == stateEmpty
	if initial {
		delay := c.cfg.InitialRebalanceDelay
		remaining := max(g.rebalanceTimeout()-delay, 0)
		c.schedule(timerJoin, g, "", delay, func() { c.tryCompleteInitialRebalance(g, delay, remaining) })
	}
	c.log.Info("preparing to rebalance group", "group", g.name, "state", g.state,
		"generation", g.generation, "reason", reason)
	g.transitionTo(statePreparingRebalance, c.now())
	if !initial {
		c.maybeCompleteJoinElseSchedule(g)
	}
}

func (c *Coordinator) maybeCompleteJoinElseSchedule(g *group) {
	if g.hasAllMembersJoined() {
		c.completeGroupJoin(g)
		return
	}
	c.schedule(timerJoin, g, "", g.rebalanceTimeout(), func() { c.completeGroupJoin(g) })
}

// tryCompleteInitialRebalance ends the initial delay, or extends it by one
// more delay if a member joined meanwhile, never past the rebalance
// timeout.
func (c *Coordinator) tryCompleteInitialRebalance(g *group, delay, remaining time.Duration) {
	if g.newMemberAdded && remaining != 0 {
		g.newMemberAdded = false
		next := min(c.cfg.InitialRebalanceDelay, remaining)
		rest := max(remaining-delay, 0)
		c.schedule(timerJoin, g, "", next, func() { c.tryCompleteInitialRebalance(g, next, rest) })
		return
	}
	c.completeGroupJoin(g)
}

func (c *Coordinator) maybeCompleteJoinPhase(g *group) {
	if g.state != statePreparingRebalance || g.previousState == stateEmpty || !g.hasAllMembersJoined() {
		return
	}
	c.completeGroupJoin(g)
}

// completeGroupJoin ends the join phase: dynamic members that did not
// rejoin are dropped, the generation advances and every parked JoinGroup
// is answered (the leader's with all members' metadata).
func (c *Coordinator) completeGroupJoin(g *group) {
	if g.state != statePreparingRebalance {
		return
	}
	c.cancel(timerJoin, g, "")
	for _, m := range g.orderedMembers() {
		if !m.awaitingJoin() && m.instanceID == nil {
			c.log.Info("member did not rejoin in time, removing it", "group", g.name, "member", m.id)
			g.remove(m.id)
			c.cancel(timerHeartbeat, g, m.id)
		}
	}
	if !g.maybeElectNewJoinedLeader() && len(g.members) > 0 {
		// Only static members that have not rejoined remain: wait for
		// them, or for their sessions to expire.
		c.log.Error("group could not complete rebalance because no members rejoined", "group", g.name)
		c.schedule(timerJoin, g, "", g.rebalanceTimeout(), func() { c.completeGroupJoin(g) })
		return
	}

	now := c.now()
	g.generation++
	g.pendingSync = make(map[string]bool)
	if len(g.members) == 0 {
		g.protocol = ""
		g.computeSubscribedTopics()
		g.transitionTo(stateEmpty, now)
		c.log.Info("group is now empty", "group", g.name, "generation", g.generation)
		c.persistGroup(g)
		return
	}
	g.protocol = g.selectProtocol()
	g.computeSubscribedTopics()
	g.transitionTo(stateCompletingRebalance, now)
	c.persistGroup(g)
	c.log.Info("group rebalanced", "group", g.name, "generation", g.generation,
		"members", len(g.members), "protocol", g.protocol, "leader", g.leader)
	for _, m := range g.orderedMembers() {
		g.completeJoin(m, func(r *kmsg.JoinGroupResponse) { c.fillJoin(g, m, r, g.isLeader(m.id)) })
		c.rescheduleHeartbeat(g, m, m.sessionTimeout)
		m.isNew = false
		g.pendingSync[m.id] = true
	}
	gen := g.generation
	c.schedule(timerSync, g, "", g.rebalanceTimeout(), func() { c.expirePendingSync(g, gen) })
}

// expirePendingSync drops members that were answered in the join phase but
// never sent SyncGroup, and rebalances without them.
func (c *Coordinator) expirePendingSync(g *group, generation int32) {
	if generation != g.generation || len(g.pendingSync) == 0 {
		return
	}
	if g.state != stateCompletingRebalance && g.state != stateStable {
		return
	}
	var missing []string
	for _, id := range g.memberOrder {
		if g.pendingSync[id] {
			missing = append(missing, id)
		}
	}
	for id := range g.pendingSync {
		if g.members[id] == nil {
			missing = append(missing, id)
		}
	}
	for _, id := range missing {
		g.remove(id)
		c.cancel(timerHeartbeat, g, id)
	}
	c.prepareRebalance(g, "members "+strings.Join(missing, ", ")+" did not sync in time")
}

func (c *Coordinator) removeSyncExpiration(g *group) {
	clear(g.pendingSync)
	c.cancel(timerSync, g, "")
}

func (c *Coordinator) resetAndPropagateAssignment(g *group, code int16) {
	for _, m := range g.members {
		m.assignment = []byte{}
	}
	c.propagateAssignment(g, code)
}

// propagateAssignment answers every parked SyncGroup.
func (c *Coordinator) propagateAssignment(g *group, code int16) {
	for _, m := range g.orderedMembers() {
		answered := g.completeSync(m, func(r *kmsg.SyncGroupResponse) {
			r.ErrorCode = code
			if code == 0 {
				r.ProtocolType = stringPtrOrNil(g.protocolType)
				r.Protocol = stringPtrOrNil(g.protocol)
			}
			r.MemberAssignment = m.assignment
		})
		if answered {
			// The session restarts when the member gets its assignment.
			c.rescheduleHeartbeat(g, m, m.sessionTimeout)
		}
	}
}

// SyncGroup handles a SyncGroup request. A member of a group completing a
// rebalance waits until the leader sends the assignment (or ctx ends).
func (c *Coordinator) SyncGroup(ctx context.Context, req *kmsg.SyncGroupRequest) *kmsg.SyncGroupResponse {
	var instanceID, protocolType, protocol *string
	if req.Version >= 3 {
		instanceID = req.InstanceID
	}
	if req.Version >= 5 {
		protocolType, protocol = req.ProtocolType, req.Protocol
	}
	fail := func(code int16) *kmsg.SyncGroupResponse {
		r := newSyncResponse(req.Version)
		r.ErrorCode = code
		return r
	}

	c.lock()
	g := c.groups[req.Group]
	var resp *kmsg.SyncGroupResponse
	var waiter *syncWaiter
	var stored func()
	switch {
	case c.closed:
		resp = fail(kerr.CoordinatorNotAvailable.Code)
	case req.Group == "":
		resp = fail(kerr.InvalidGroupID.Code)
	case g != nil && g.consumer != nil && len(g.consumer.members) > 0:
		resp = c.classicSyncToConsumerGroup(g, req, instanceID, protocolType, protocol)
	case g == nil || g.state == stateEmpty:
		resp = fail(kerr.UnknownMemberID.Code)
	case g.state == stateDead:
		resp = fail(kerr.CoordinatorNotAvailable.Code)
	default:
		if code := g.validateMember(req.MemberID, instanceID); code != 0 {
			resp = fail(code)
			break
		}
		if req.Generation != g.generation {
			resp = fail(kerr.IllegalGeneration.Code)
			break
		}
		if inconsistent(protocolType, g.protocolType) || inconsistent(protocol, g.protocol) {
			resp = fail(kerr.InconsistentGroupProtocol.Code)
			break
		}
		m := g.members[req.MemberID]
		switch g.state {
		case statePreparingRebalance:
			resp = fail(kerr.RebalanceInProgress.Code)
		case stateCompletingRebalance:
			waiter = &syncWaiter{ch: make(chan *kmsg.SyncGroupResponse, 1), version: req.Version}
			m.sync = waiter
			c.removePendingSyncMember(g, m.id)
			if g.isLeader(m.id) && !g.storingAssignment {
				stored = c.storeLeaderSync(g, req)
			}
		case stateStable:
			c.removePendingSyncMember(g, m.id)
			resp = newSyncResponse(req.Version)
			resp.ProtocolType = stringPtrOrNil(g.protocolType)
			resp.Protocol = stringPtrOrNil(g.protocol)
			resp.MemberAssignment = m.assignment
		}
	}
	c.unlock()
	if stored != nil {
		stored()
	}
	if waiter == nil {
		return resp
	}
	select {
	case r := <-waiter.ch:
		return r
	case <-ctx.Done():
	case <-c.done:
	}
	select {
	case r := <-waiter.ch:
		return r
	default:
	}
	return fail(kerr.NotCoordinator.Code)
}

// storeLeaderSync installs the leader's assignment (members it left out
// get an empty one) and makes the generation durable, as Kafka's
// storeGroup does; the returned function, called without the lock, waits
// for the write and only then answers every parked SyncGroup and makes
// the group Stable, so that no member holds an assignment a restart would
// not bring back. Members that sync meanwhile park as before.
func (c *Coordinator) storeLeaderSync(g *group, req *kmsg.SyncGroupRequest) func() {
	assignments := make(map[string][]byte, len(req.GroupAssignment))
	for _, a := range req.GroupAssignment {
		assignments[a.MemberID] = bytes.Clone(a.MemberAssignment)
	}
	c.log.Info("assignment received from leader", "group", g.name, "generation", g.generation,
		"leader", req.MemberID, "members", len(g.members))
	for _, m := range g.members {
		a, ok := assignments[m.id]
		if !ok {
			a = []byte{}
		}
		m.assignment = a
	}
	g.snapshot()
	g.storingAssignment = true
	done := c.write([]writeOp{c.putGroupOp(g)})
	gen := g.generation
	return func() {
		err := <-done
		c.lock()
		defer c.unlock()
		if c.groups[g.name] != g || g.generation != gen || !g.storingAssignment {
			return // the group moved on; parked members were answered
		}
		g.storingAssignment = false
		if g.state != stateCompletingRebalance {
			return
		}
		if err != nil {
			// Kafka answers a failed __consumer_offsets append of the
			// group's metadata with an error and rebalances; the
			// members rejoin.
			c.log.Error("group assignment not durable", "group", g.name, "err", err)
			c.resetAndPropagateAssignment(g, kerr.NotCoordinator.Code)
			c.prepareRebalance(g, "failed to store the group's assignment")
			return
		}
		c.propagateAssignment(g, 0)
		g.transitionTo(stateStable, c.now())
	}
}

func (c *Coordinator) removePendingSyncMember(g *group, memberID string) {
	delete(g.pendingSync, memberID)
	if len(g.pendingSync) == 0 {
		c.cancel(timerSync, g, "")
	}
}

// inconsistent reports whether a SyncGroup v5+ protocol field contradicts
// the group's.
func inconsistent(requested *string, current string) bool {
	return requested != nil && current != "" && *requested != current
}

// Heartbeat handles a Heartbeat request.
func (c *Coordinator) Heartbeat(_ context.Context, req *kmsg.HeartbeatRequest) *kmsg.HeartbeatResponse {
	resp := kmsg.NewPtrHeartbeatResponse()
	resp.Version = req.Version
	var instanceID *string
	if req.Version >= 3 {
		instanceID = req.InstanceID
	}

	c.lock()
	defer c.unlock()
	g := c.groups[req.Group]
	switch {
	case c.closed:
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
	case req.Group == "":
		resp.ErrorCode = kerr.InvalidGroupID.Code
	case g == nil:
		resp.ErrorCode = kerr.UnknownMemberID.Code
	case g.consumer != nil:
		resp.ErrorCode = c.classicHeartbeatToConsumerGroup(g, req, instanceID)
	case g.state == stateDead:
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
	default:
		if code := g.validateMember(req.MemberID, instanceID); code != 0 {
			resp.ErrorCode = code
			break
		}
		if req.Generation != g.generation {
			resp.ErrorCode = kerr.IllegalGeneration.Code
			break
		}
		m := g.members[req.MemberID]
		switch g.state {
		case stateEmpty:
			resp.ErrorCode = kerr.UnknownMemberID.Code
		case statePreparingRebalance:
			c.rescheduleHeartbeat(g, m, m.sessionTimeout)
			resp.ErrorCode = kerr.RebalanceInProgress.Code
		default: // CompletingRebalance (heartbeats may start after the join answer), Stable
			c.rescheduleHeartbeat(g, m, m.sessionTimeout)
		}
	}
	return resp
}

// LeaveGroup handles a LeaveGroup request: one member before v3, a batch
// (by member id, or by instance id alone for admin removal) from v3.
func (c *Coordinator) LeaveGroup(_ context.Context, req *kmsg.LeaveGroupRequest) *kmsg.LeaveGroupResponse {
	resp := kmsg.NewPtrLeaveGroupResponse()
	resp.Version = req.Version
	leaving := req.Members
	if req.Version < 3 {
		leaving = []kmsg.LeaveGroupRequestMember{{MemberID: req.MemberID}}
	}
	// Before v3 a member's error is the top-level error.
	defer func() {
		if req.Version >= 3 {
			return
		}
		if resp.ErrorCode == 0 {
			for _, m := range resp.Members {
				if m.ErrorCode != 0 {
					resp.ErrorCode = m.ErrorCode
					break
				}
			}
		}
		resp.Members = nil
	}()

	c.lock()
	g := c.groups[req.Group]
	if !c.closed && g != nil && g.consumer != nil {
		// Classic members of a consumer group; its state is durable,
		// so the answer waits for the write.
		done := c.classicLeaveToConsumerGroup(g, leaving, resp)
		c.unlock()
		if err := <-done; err != nil {
			c.log.Error("consumer group leave not durable", "group", req.Group, "err", err)
			resp.Members = nil
			resp.ErrorCode = kerr.NotCoordinator.Code
		}
		return resp
	}
	defer c.unlock()
	switch {
	case c.closed:
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	case req.Group == "":
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp
	case g != nil && g.state == stateDead:
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}

	left := 0
	for _, lm := range leaving {
		r := kmsg.NewLeaveGroupResponseMember()
		r.MemberID = lm.MemberID
		r.InstanceID = lm.InstanceID
		r.ErrorCode = c.leaveOne(g, lm)
		if r.ErrorCode == 0 {
			left++
		}
		resp.Members = append(resp.Members, r)
	}
	if left > 0 {
		switch g.state {
		case stateStable, stateCompletingRebalance:
			c.maybePrepareRebalanceOrCompleteJoin(g, "members left the group")
		case statePreparingRebalance:
			c.maybeCompleteJoinPhase(g)
		}
	}
	return resp
}

// leaveOne removes one leaving member and returns its error code.
func (c *Coordinator) leaveOne(g *group, lm kmsg.LeaveGroupRequestMember) int16 {
	if g == nil {
		return kerr.UnknownMemberID.Code
	}
	memberID := lm.MemberID
	switch {
	case memberID == "":
		// Admin removal of a static member by instance id.
		if lm.InstanceID == nil {
			return kerr.UnknownMemberID.Code
		}
		id, ok := g.static[*lm.InstanceID]
		if !ok {
			return kerr.UnknownMemberID.Code
		}
		memberID = id
	case g.pendingJoin[memberID]:
		g.remove(memberID)
		c.cancel(timerHeartbeat, g, memberID)
		c.log.Info("pending member left the group", "group", g.name, "member", memberID)
		return 0
	default:
		if code := g.validateMember(memberID, lm.InstanceID); code != 0 {
			return code
		}
	}
	m := g.members[memberID]
	c.cancel(timerHeartbeat, g, memberID)
	c.log.Info("member left the group", "group", g.name, "member", memberID, "reason", stringOr(lm.Reason, ""))
	g.completeJoin(m, func(r *kmsg.JoinGroupResponse) { r.ErrorCode = kerr.UnknownMemberID.Code })
	// Kafka leaves such a SyncGroup unanswered; telling the member it is
	// gone is kinder than a request timeout.
	g.completeSync(m, func(r *kmsg.SyncGroupResponse) { r.ErrorCode = kerr.UnknownMemberID.Code })
	g.remove(memberID)
	return 0
}

func millis(ms int32) time.Duration { return time.Duration(ms) * time.Millisecond }

func stringPtrOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func stringOr(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}

func cloneStringPtr(p *string) *string {
	if p == nil {
		return nil
	}
	s := strings.Clone(*p)
	return &s
}

func cloneProtocols(ps []kmsg.JoinGroupRequestProtocol) []kmsg.JoinGroupRequestProtocol {
	out := make([]kmsg.JoinGroupRequestProtocol, len(ps))
	for i, p := range ps {
		out[i] = kmsg.JoinGroupRequestProtocol{Name: strings.Clone(p.Name), Metadata: bytes.Clone(p.Metadata)}
	}
	return out
}
