package group

import (
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// This file is the KIP-848 consumer group protocol ("consumer" groups):
// ConsumerGroupHeartbeat and ConsumerGroupDescribe, after Kafka's
// ConsumerGroupMetadataManager, ConsumerGroup and CurrentAssignmentBuilder.
//
// The broker assigns partitions. Every change of membership or of the
// subscribed topics' metadata bumps the group epoch; the target assignment
// is recomputed (by the group's assignor) when the group epoch is ahead of
// the target assignment epoch; each member then reconciles towards its
// target, one heartbeat at a time. A partition a member must give up is
// revoked first (the member stays in its epoch until its heartbeat no
// longer lists it), and a partition is given to its new owner only once
// no other member holds it (partition epochs), so no partition ever has
// two owners.

// Kafka's defaults of the group.consumer.* settings.
const (
	DefaultConsumerSessionTimeout    = 45 * time.Second
	DefaultConsumerHeartbeatInterval = 5 * time.Second
	// defaultConsumerRebalanceTimeout is used when a member never sent
	// one (it must, in its first heartbeat).
	defaultConsumerRebalanceTimeout = 5 * time.Minute
)

// Member epochs with a meaning of their own (ConsumerGroupHeartbeatRequest).
const (
	joinGroupMemberEpoch        = 0
	leaveGroupMemberEpoch       = -1
	leaveGroupStaticMemberEpoch = -2
)

// memberState is a consumer member's reconciliation state (Kafka's
// MemberState).
type memberState int8

const (
	// memberStable: the member has its target assignment at the target
	// epoch.
	memberStable memberState = iota
	// memberUnrevokedPartitions: the member must stop owning some
	// partitions before it may move to the next epoch.
	memberUnrevokedPartitions
	// memberUnreleasedPartitions: the member is at the target epoch but
	// waits for partitions that other members still own.
	memberUnreleasedPartitions
)

func (s memberState) String() string {
	switch s {
	case memberStable:
		return "stable"
	case memberUnrevokedPartitions:
		return "unrevoked_partitions"
	default:
		return "unreleased_partitions"
	}
}

// consumerMember is one member of a consumer group.
type consumerMember struct {
	id         string
	instanceID *string
	rackID     *string
	clientID   string
	clientHost string

	// topicNames is the sorted subscription by name; regex, if not "",
	// the subscription by regular expression (RE2, matched against the
	// whole topic name).
	topicNames     []string
	regex          string
	serverAssignor string // "" when the member did not name one

	rebalanceTimeout time.Duration

	epoch         int32
	previousEpoch int32
	state         memberState
	// assigned is what the member owns (and was told it owns); pending
	// what it must revoke before moving on. Both count as held.
	assigned assignment
	pending  assignment
	// assignedAt is the member epoch at which each assigned partition
	// was given to it (KIP-1251): offsets of a partition may be
	// committed with any epoch from that one up to the member's epoch.
	assignedAt map[topicID]map[int32]int32
	// target is the member's part of the group's target assignment.
	target assignment
	// classic is set while the member uses the classic protocol
	// (JoinGroup/SyncGroup/Heartbeat) in this consumer group
	// (migration.go).
	classic *classicMember
}

func (m *consumerMember) reconciledTo(targetEpoch int32) bool {
	return m.state == memberStable && m.epoch == targetEpoch
}

// consumerGroup is the KIP-848 part of a group: the group record's
// consumer field is set while the group is a consumer group.
type consumerGroup struct {
	epoch           int32
	assignmentEpoch int32
	members         map[string]*consumerMember
	static          map[string]string // instance id -> member id
	// partitionEpochs is, for every held partition, the epoch of the
	// member holding it (assigned or pending revocation).
	partitionEpochs map[topicID]map[int32]int32
	// subscription is the metadata of every existing topic a member
	// subscribes to, by name, as of the last resolution; the group epoch
	// is bumped when it changes.
	subscription []assignorTopic
	// resolvedGen is the topic generation subscription was resolved at;
	// resolved is false until it was resolved in this process.
	resolvedGen uint64
	resolved    bool
}

func newConsumerGroup() *consumerGroup {
	return &consumerGroup{
		members:         make(map[string]*consumerMember),
		static:          make(map[string]string),
		partitionEpochs: make(map[topicID]map[int32]int32),
	}
}

// Consumer group states, as ListGroups and ConsumerGroupDescribe name them.
const (
	consumerStateEmpty       = "Empty"
	consumerStateAssigning   = "Assigning"
	consumerStateReconciling = "Reconciling"
	consumerStateStable      = "Stable"
)

func (cg *consumerGroup) state() string {
	if len(cg.members) == 0 {
		return consumerStateEmpty
	}
	if cg.epoch > cg.assignmentEpoch {
		return consumerStateAssigning
	}
	for _, m := range cg.members {
		if !m.reconciledTo(cg.assignmentEpoch) {
			return consumerStateReconciling
		}
	}
	return consumerStateStable
}

func (cg *consumerGroup) sortedMemberIDs() []string {
	return slices.Sorted(maps.Keys(cg.members))
}

// currentPartitionEpoch is the epoch of the member holding a partition, or
// -1 if none does.
func (cg *consumerGroup) currentPartitionEpoch(t topicID, p int32) int32 {
	if e, ok := cg.partitionEpochs[t][p]; ok {
		return e
	}
	return -1
}

func (cg *consumerGroup) addPartitionEpochs(a assignment, epoch int32) {
	for t, ps := range a {
		byP := cg.partitionEpochs[t]
		if byP == nil {
			byP = make(map[int32]int32)
			cg.partitionEpochs[t] = byP
		}
		for _, p := range ps {
			byP[p] = epoch
		}
	}
}

func (cg *consumerGroup) removePartitionEpochs(a assignment) {
	for t, ps := range a {
		byP := cg.partitionEpochs[t]
		for _, p := range ps {
			delete(byP, p)
		}
		if len(byP) == 0 {
			delete(cg.partitionEpochs, t)
		}
	}
}

// setMember installs m (new or updated) and keeps the partition epochs in
// step with what it holds. old is what the member held before (nil: new).
func (cg *consumerGroup) setMember(m *consumerMember, oldAssigned, oldPending assignment) {
	cg.removePartitionEpochs(oldAssigned)
	cg.removePartitionEpochs(oldPending)
	cg.members[m.id] = m
	if m.instanceID != nil {
		cg.static[*m.instanceID] = m.id
	}
	cg.addPartitionEpochs(m.assigned, m.epoch)
	cg.addPartitionEpochs(m.pending, m.epoch)
}

func (cg *consumerGroup) removeMember(m *consumerMember) {
	cg.removePartitionEpochs(m.assigned)
	cg.removePartitionEpochs(m.pending)
	delete(cg.members, m.id)
	if m.instanceID != nil && cg.static[*m.instanceID] == m.id {
		delete(cg.static, *m.instanceID)
	}
}

// preferredAssignor is the assignor the group uses: the one most members
// name (ties to the first name in order), else the broker's default.
func (c *Coordinator) preferredAssignor(cg *consumerGroup) string {
	counts := make(map[string]int)
	for _, m := range cg.members {
		if m.serverAssignor != "" {
			counts[m.serverAssignor]++
		}
	}
	best := ""
	for _, name := range slices.Sorted(maps.Keys(counts)) {
		if best == "" || counts[name] > counts[best] {
			best = name
		}
	}
	if best == "" {
		best = c.cfg.ConsumerAssignors[0]
	}
	return best
}

// TopicInfo is a topic as the coordinator needs it for assignments.
type TopicInfo struct {
	Name       string
	ID         [16]byte
	Partitions int32
}

// topicCache is the coordinator's copy of the broker's topics, reloaded
// when the broker's topic generation moves.
type topicCache struct {
	valid  bool
	gen    uint64
	sorted []TopicInfo // by name
	byName map[string]TopicInfo
	byID   map[topicID]TopicInfo
}

// topics returns the current topics and their generation. Called with c.mu
// held.
func (c *Coordinator) topics() *topicCache {
	tc := &c.topicCache
	var gen uint64
	if c.cfg.TopicsGeneration != nil {
		// Read before the list: a change between the two is seen
		// again at the next call.
		gen = c.cfg.TopicsGeneration()
		if tc.valid && gen == tc.gen {
			return tc
		}
	}
	var list []TopicInfo
	if c.cfg.Topics != nil {
		list = c.cfg.Topics()
	}
	slices.SortFunc(list, func(a, b TopicInfo) int { return strings.Compare(a.Name, b.Name) })
	tc.sorted = list
	tc.byName = make(map[string]TopicInfo, len(list))
	tc.byID = make(map[topicID]TopicInfo, len(list))
	for _, t := range list {
		tc.byName[t.Name] = t
		tc.byID[t.ID] = t
	}
	tc.gen = gen
	tc.valid = c.cfg.TopicsGeneration != nil
	return tc
}

// compileTopicRegex compiles a SubscribedTopicRegex: Kafka matches it
// (RE2/J) against the whole topic name.
func compileTopicRegex(re string) (*regexp.Regexp, error) {
	return regexp.Compile("^(?:" + re + ")$")
}

// regexCache keeps compiled subscription regexes: members of a group
// usually share one, and every resolution needs it.
func (c *Coordinator) compiledRegex(re string) *regexp.Regexp {
	if r, ok := c.regexes[re]; ok {
		return r
	}
	r, err := compileTopicRegex(re)
	if err != nil {
		return nil // validated when it was accepted; cannot happen
	}
	if len(c.regexes) >= maxCachedRegexes {
		clear(c.regexes)
	}
	c.regexes[re] = r
	return r
}

// maxCachedRegexes bounds the compiled-regex cache.
const maxCachedRegexes = 1024

// memberTopics resolves a member's subscription against the topics: the
// named topics that exist, and every topic its regex matches.
func (c *Coordinator) memberTopics(m *consumerMember, tc *topicCache) map[string]bool {
	out := make(map[string]bool, len(m.topicNames))
	for _, n := range m.topicNames {
		if _, ok := tc.byName[n]; ok {
			out[n] = true
		}
	}
	if m.regex != "" {
		if re := c.compiledRegex(m.regex); re != nil {
			for _, t := range tc.sorted {
				if re.MatchString(t.Name) {
					out[t.Name] = true
				}
			}
		}
	}
	return out
}

// computeSubscription is the metadata of every topic some member
// subscribes to, sorted by name.
func (c *Coordinator) computeSubscription(cg *consumerGroup, tc *topicCache) []assignorTopic {
	names := make(map[string]bool)
	for _, m := range cg.members {
		for n := range c.memberTopics(m, tc) {
			names[n] = true
		}
	}
	out := make([]assignorTopic, 0, len(names))
	for _, n := range slices.Sorted(maps.Keys(names)) {
		t := tc.byName[n]
		out = append(out, assignorTopic{id: t.ID, name: t.Name, partitions: t.Partitions})
	}
	return out
}

// subscribedTopicNames is every topic name some member subscribes to (as
// last resolved), for offset expiry and OffsetDelete.
func (cg *consumerGroup) subscribedTopicNames() map[string]bool {
	out := make(map[string]bool, len(cg.subscription))
	for _, t := range cg.subscription {
		out[t.name] = true
	}
	for _, m := range cg.members {
		for _, n := range m.topicNames {
			out[n] = true
		}
	}
	return out
}

// updateTargetAssignment runs the group's assignor over every member and
// moves the target assignment epoch to the group epoch.
func (c *Coordinator) updateTargetAssignment(g *group, tc *topicCache, w *consumerWrites) {
	cg := g.consumer
	ids := cg.sortedMemberIDs()
	members := make([]assignorMember, 0, len(ids))
	for _, id := range ids {
		m := cg.members[id]
		topics := make(map[topicID]bool)
		for n := range c.memberTopics(m, tc) {
			topics[tc.byName[n].ID] = true
		}
		members = append(members, assignorMember{id: id, topics: topics, current: m.target})
	}
	assignorName := c.preferredAssignor(cg)
	result := newAssignor(assignorName).assign(members, cg.subscription)
	for _, id := range ids {
		m := cg.members[id]
		t := result[id]
		if t == nil {
			t = make(assignment)
		}
		if !t.equal(m.target) {
			m.target = t
			w.member(m)
		}
	}
	cg.assignmentEpoch = cg.epoch
	w.groupChanged = true
	c.log.Info("consumer group target assignment computed", "group", g.name, "epoch", cg.epoch,
		"assignor", assignorName, "members", len(ids), "topics", len(cg.subscription))
}

// reconcile moves a member towards its target assignment (Kafka's
// CurrentAssignmentBuilder). owned is what the member reported holding
// (nil: not reported). It reports whether anything changed.
func (c *Coordinator) reconcile(g *group, m *consumerMember, owned []kmsg.ConsumerGroupHeartbeatRequestTopic, w *consumerWrites) bool {
	cg := g.consumer
	ownsAny := func(a assignment) bool {
		if owned == nil {
			return true
		}
		for _, t := range owned {
			for _, p := range t.Partitions {
				if a.contains(t.TopicID, p) {
					return true
				}
			}
		}
		return false
	}
	switch m.state {
	case memberStable:
		if m.epoch == cg.assignmentEpoch {
			return false
		}
	case memberUnrevokedPartitions:
		if ownsAny(m.pending) {
			return false
		}
	case memberUnreleasedPartitions:
	}

	oldAssigned, oldPending := m.assigned, m.pending
	oldEpoch, oldState := m.epoch, m.state
	newAssigned := make(assignment)
	newPending := make(assignment)
	toAssign := make(assignment)
	unreleased := false
	topics := make(map[topicID]bool)
	for t := range m.target {
		topics[t] = true
	}
	for t := range m.assigned {
		topics[t] = true
	}
	for t := range topics {
		target := m.target[t]
		for _, p := range m.assigned[t] {
			if slices.Contains(target, p) {
				newAssigned.add(t, p)
			} else {
				newPending.add(t, p)
			}
		}
		for _, p := range target {
			if newAssigned.contains(t, p) {
				continue
			}
			if cg.currentPartitionEpoch(t, p) != -1 {
				unreleased = true // another member still holds it
				continue
			}
			toAssign.add(t, p)
		}
	}

	// As Kafka's updateMemberEpoch, the previous epoch is the one the
	// member had before this step, even when the step keeps it.
	m.previousEpoch = m.epoch
	if len(newPending) > 0 && ownsAny(newPending) {
		// Revoke first: the member stays in its epoch until it no
		// longer reports these partitions.
		m.state = memberUnrevokedPartitions
		m.assigned, m.pending = newAssigned, newPending
	} else {
		for t, ps := range toAssign {
			for _, p := range ps {
				newAssigned.add(t, p)
			}
		}
		m.state = memberStable
		if unreleased {
			m.state = memberUnreleasedPartitions
		}
		m.epoch = cg.assignmentEpoch
		m.assigned, m.pending = newAssigned, make(assignment)
	}
	// Assignment epochs: kept partitions keep theirs, new ones get the
	// member's epoch, dropped ones lose theirs.
	at := make(map[topicID]map[int32]int32, len(m.assigned))
	for t, ps := range m.assigned {
		byP := make(map[int32]int32, len(ps))
		for _, p := range ps {
			if e, ok := m.assignedAt[t][p]; ok {
				byP[p] = e
			} else {
				byP[p] = m.epoch
			}
		}
		at[t] = byP
	}
	m.assignedAt = at

	changed := m.epoch != oldEpoch || m.state != oldState || !m.assigned.equal(oldAssigned) || !m.pending.equal(oldPending)
	if changed {
		cg.setMember(m, oldAssigned, oldPending)
		w.member(m)
	}
	return changed
}

// consumerWrites collects what a consumer group operation changed, to be
// written as one batch at the end.
type consumerWrites struct {
	groupChanged bool
	members      map[string]*consumerMember
	deleted      map[string]bool
	// extra are other changes of the same operation: the records of the
	// group's other protocol when it migrates (migration.go).
	extra []writeOp
}

func (w *consumerWrites) member(m *consumerMember) {
	if w.members == nil {
		w.members = make(map[string]*consumerMember)
	}
	w.members[m.id] = m
	delete(w.deleted, m.id)
}

func (w *consumerWrites) remove(id string) {
	if w.deleted == nil {
		w.deleted = make(map[string]bool)
	}
	w.deleted[id] = true
	delete(w.members, id)
}

func (w *consumerWrites) ops(g *group) []writeOp {
	ops := slices.Clone(w.extra)
	if g.consumer == nil {
		return ops // downgraded: extra has it all
	}
	if w.groupChanged {
		ops = append(ops, writeOp{Key: consumerGroupKey(g.name), Value: encodeConsumerGroupRecord(g)})
	}
	for _, id := range slices.Sorted(maps.Keys(w.members)) {
		ops = append(ops, writeOp{Key: consumerMemberKey(g.name, id), Value: encodeConsumerMember(w.members[id])})
	}
	for _, id := range slices.Sorted(maps.Keys(w.deleted)) {
		ops = append(ops, writeOp{Key: consumerMemberKey(g.name, id), Delete: true})
	}
	return ops
}

// heartbeatError is a ConsumerGroupHeartbeat error: the code and Kafka's
// message.
type heartbeatError struct {
	code int16
	msg  string
}

func hbErr(e *kerr.Error, format string, args ...any) *heartbeatError {
	return &heartbeatError{code: e.Code, msg: fmt.Sprintf(format, args...)}
}

func blank(s *string) bool { return s != nil && strings.TrimSpace(*s) == "" }

// validateHeartbeat is Kafka's throwIfConsumerGroupHeartbeatRequestIsInvalid.
func (c *Coordinator) validateHeartbeat(req *kmsg.ConsumerGroupHeartbeatRequest) *heartbeatError {
	if (req.Version >= 1 || req.MemberEpoch > 0 || req.MemberEpoch == leaveGroupMemberEpoch) && strings.TrimSpace(req.MemberID) == "" {
		return hbErr(kerr.InvalidRequest, "MemberId can't be empty.")
	}
	if strings.TrimSpace(req.Group) == "" {
		return hbErr(kerr.InvalidRequest, "GroupId can't be empty.")
	}
	if blank(req.InstanceID) {
		return hbErr(kerr.InvalidRequest, "InstanceId can't be empty.")
	}
	if blank(req.RackID) {
		return hbErr(kerr.InvalidRequest, "RackId can't be empty.")
	}
	switch {
	case req.MemberEpoch == joinGroupMemberEpoch:
		if req.RebalanceTimeoutMillis == -1 {
			return hbErr(kerr.InvalidRequest, "RebalanceTimeoutMs must be provided in first request.")
		}
		if req.Topics == nil || len(req.Topics) > 0 {
			return hbErr(kerr.InvalidRequest, "TopicPartitions must be empty when (re-)joining.")
		}
		hasNames := len(req.SubscribedTopicNames) > 0
		hasRegex := req.SubscribedTopicRegex != nil && *req.SubscribedTopicRegex != ""
		if !hasNames && !hasRegex {
			return hbErr(kerr.InvalidRequest, "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.")
		}
	case req.MemberEpoch == leaveGroupStaticMemberEpoch:
		if req.InstanceID == nil {
			return hbErr(kerr.InvalidRequest, "InstanceId can't be null.")
		}
	case req.MemberEpoch < leaveGroupStaticMemberEpoch:
		return hbErr(kerr.InvalidRequest, "MemberEpoch is invalid.")
	}
	if req.ServerAssignor != nil && !slices.Contains(c.cfg.ConsumerAssignors, *req.ServerAssignor) {
		return hbErr(kerr.UnsupportedAssignor, "ServerAssignor %s is not supported. Supported assignors: %s.",
			*req.ServerAssignor, strings.Join(c.cfg.ConsumerAssignors, ", "))
	}
	if req.SubscribedTopicRegex != nil && *req.SubscribedTopicRegex != "" {
		if _, err := compileTopicRegex(*req.SubscribedTopicRegex); err != nil {
			return hbErr(kerr.InvalidRegularExpression, "SubscribedTopicRegex `%s` is not a valid regular expression: %v.",
				*req.SubscribedTopicRegex, err)
		}
	}
	if len(req.Group) > maxStringLen || len(req.MemberID) > maxStringLen {
		return hbErr(kerr.InvalidRequest, "GroupId and MemberId must fit %d bytes.", maxStringLen)
	}
	return nil
}

// ConsumerGroupHeartbeat handles a ConsumerGroupHeartbeat request (KIP-848):
// join (epoch 0), heartbeat, leave (-1) or static leave (-2). It answers
// once what the heartbeat changed is synced to disk.
func (c *Coordinator) ConsumerGroupHeartbeat(ctx context.Context, req *kmsg.ConsumerGroupHeartbeatRequest) *kmsg.ConsumerGroupHeartbeatResponse {
	resp := kmsg.NewPtrConsumerGroupHeartbeatResponse()
	resp.Version = req.Version
	fail := func(e *heartbeatError) *kmsg.ConsumerGroupHeartbeatResponse {
		resp.ErrorCode = e.code
		resp.ErrorMessage = kmsg.StringPtr(e.msg)
		return resp
	}
	if e := c.validateHeartbeat(req); e != nil {
		return fail(e)
	}
	ci := clientFrom(ctx)

	c.lock()
	if c.closed {
		c.unlock()
		return fail(hbErr(kerr.CoordinatorNotAvailable, "The coordinator is not available."))
	}
	var w consumerWrites
	var g *group
	var e *heartbeatError
	if req.MemberEpoch == leaveGroupMemberEpoch || req.MemberEpoch == leaveGroupStaticMemberEpoch {
		g, e = c.consumerLeaveLocked(req, resp, &w)
	} else {
		g, e = c.consumerHeartbeatLocked(req, ci, resp, &w)
	}
	var done <-chan error
	if g != nil {
		done = c.write(w.ops(g))
	}
	c.unlock()
	if e != nil {
		return fail(e)
	}
	if done != nil {
		if err := <-done; err != nil {
			c.log.Error("consumer group heartbeat not durable", "group", req.Group, "err", err)
			*resp = *kmsg.NewPtrConsumerGroupHeartbeatResponse()
			resp.Version = req.Version
			return fail(hbErr(kerr.NotCoordinator, "The group state could not be written."))
		}
	}
	return resp
}

// consumerGroupFor finds the consumer group of a heartbeat, creating it
// (or converting an empty classic group) when create is set.
func (c *Coordinator) consumerGroupFor(name string, create bool, w *consumerWrites) (*group, *heartbeatError) {
	g := c.groups[name]
	if g == nil {
		if !create {
			return nil, hbErr(kerr.GroupIDNotFound, "Consumer group %s not found.", name)
		}
		g = newGroup(strings.Clone(name), c.now())
		g.protocolType = consumerProtocolType
		g.consumer = newConsumerGroup()
		c.groups[g.name] = g
		w.groupChanged = true
		return g, nil
	}
	if g.consumer != nil {
		return g, nil
	}
	if create && g.state == stateEmpty && len(g.members) == 0 {
		// An empty classic (or simple) group becomes a consumer group;
		// its committed offsets stay. Kafka deletes the classic group's
		// record the same way.
		for id := range g.pendingJoin {
			c.cancel(timerHeartbeat, g, id)
		}
		clear(g.pendingJoin)
		g.consumer = newConsumerGroup()
		g.protocolType = consumerProtocolType
		w.extra = append(w.extra, writeOp{Key: groupKey(g.name), Delete: true})
		w.groupChanged = true
		c.log.Info("empty classic group converted to a consumer group", "group", g.name)
		return g, nil
	}
	if create && c.validateOnlineUpgrade(g) {
		if e := c.convertToConsumerGroup(g, w); e != nil {
			return nil, e
		}
		return g, nil
	}
	return nil, hbErr(kerr.GroupIDNotFound, "Group %s is not a consumer group.", name)
}

func (c *Coordinator) consumerHeartbeatLocked(req *kmsg.ConsumerGroupHeartbeatRequest, ci clientInfo, resp *kmsg.ConsumerGroupHeartbeatResponse, w *consumerWrites) (*group, *heartbeatError) {
	join := req.MemberEpoch == joinGroupMemberEpoch
	g, e := c.consumerGroupFor(req.Group, join, w)
	if e != nil {
		return nil, e
	}
	cg := g.consumer
	if _, ok := cg.members[req.MemberID]; !ok && c.cfg.ConsumerMaxSize > 0 && len(cg.members) >= c.cfg.ConsumerMaxSize {
		return g, hbErr(kerr.GroupMaxSizeReached, "The consumer group has reached its maximum capacity of %d members.", c.cfg.ConsumerMaxSize)
	}
	memberID := req.MemberID
	if memberID == "" {
		memberID = newUUIDString() // v0 lets the broker choose
	}

	// The member as it is before this heartbeat, or a new one.
	var m *consumerMember
	isNew := false
	if req.InstanceID == nil {
		m = cg.members[memberID]
		if m == nil {
			if !join {
				return g, hbErr(kerr.UnknownMemberID, "Member %s is not a member of group %s.", memberID, g.name)
			}
			m, isNew = c.newConsumerMember(memberID), true
		} else if e := checkMemberEpoch(m, req); e != nil {
			return g, e
		}
	} else {
		instance := *req.InstanceID
		existing := cg.members[cg.static[instance]]
		switch {
		case join && existing == nil:
			m = cg.members[memberID]
			if m == nil {
				m, isNew = c.newConsumerMember(memberID), true
			}
		case join:
			// A static member using the classic protocol is replaced
			// at once; one using the consumer protocol must have left.
			if existing.classic == nil && existing.epoch != leaveGroupStaticMemberEpoch {
				return g, hbErr(kerr.UnreleasedInstanceID, "Static member %s with instance id %s cannot join the group because the instance id is owned by %s member.",
					memberID, instance, existing.id)
			}
			m = c.replaceStaticMember(g, existing, memberID, w)
		case existing == nil:
			return g, hbErr(kerr.UnknownMemberID, "Instance id %s is unknown.", instance)
		case existing.id != memberID:
			return g, hbErr(kerr.FencedInstanceID, "Static member %s with instance id %s was fenced by member %s.",
				memberID, instance, existing.id)
		default:
			if e := checkMemberEpoch(existing, req); e != nil {
				return g, e
			}
			m = existing
		}
	}

	// 1. Update the member; a changed subscription bumps the group epoch.
	changed := isNew
	subscriptionChanged := isNew
	if req.InstanceID != nil && (m.instanceID == nil || *m.instanceID != *req.InstanceID) {
		m.instanceID, changed = kmsg.StringPtr(*req.InstanceID), true
	}
	if req.RackID != nil && (m.rackID == nil || *m.rackID != *req.RackID) {
		m.rackID, changed = kmsg.StringPtr(*req.RackID), true
	}
	if req.RebalanceTimeoutMillis > 0 && millis(req.RebalanceTimeoutMillis) != m.rebalanceTimeout {
		m.rebalanceTimeout, changed = millis(req.RebalanceTimeoutMillis), true
	}
	if req.ServerAssignor != nil && *req.ServerAssignor != m.serverAssignor {
		m.serverAssignor, changed = *req.ServerAssignor, true
		subscriptionChanged = true // the group's assignor may change
	}
	if req.SubscribedTopicNames != nil {
		names := slices.Clone(req.SubscribedTopicNames)
		for i := range names {
			names[i] = strings.Clone(names[i])
		}
		slices.Sort(names)
		names = slices.Compact(names)
		if !slices.Equal(names, m.topicNames) {
			m.topicNames, changed, subscriptionChanged = names, true, true
		}
	}
	if req.SubscribedTopicRegex != nil && *req.SubscribedTopicRegex != m.regex {
		m.regex, changed, subscriptionChanged = strings.Clone(*req.SubscribedTopicRegex), true, true
	}
	if m.clientID != ci.clientID || m.clientHost != ci.host {
		m.clientID, m.clientHost, changed = strings.Clone(ci.clientID), ci.host, true
	}
	if m.classic != nil {
		// The member now speaks the consumer protocol (Kafka clears
		// its classic metadata the same way).
		m.classic, changed = nil, true
	}
	if isNew {
		cg.setMember(m, nil, nil)
		c.log.Info("member joins the consumer group", "group", g.name, "member", m.id)
	}
	if changed {
		w.member(m)
	}
	before := m.assigned
	c.advanceConsumerMember(g, m, subscriptionChanged, req.Topics, w)
	c.scheduleConsumerSession(g, m)

	resp.MemberID = kmsg.StringPtr(m.id)
	resp.MemberEpoch = m.epoch
	resp.HeartbeatIntervalMillis = int32(c.cfg.ConsumerHeartbeatInterval.Milliseconds())
	full := join || (req.RebalanceTimeoutMillis != -1 && (req.SubscribedTopicNames != nil || req.SubscribedTopicRegex != nil) && req.Topics != nil)
	if full || !before.equal(m.assigned) {
		resp.Assignment = responseAssignment(m.assigned)
	}
	return g, nil
}

// advanceConsumerMember runs what follows a member's update, for consumer
// and classic members alike: the subscription is resolved again when it
// or the topics changed (new metadata bumps the group epoch), a group
// epoch ahead of the target assignment recomputes it, and the member
// reconciles towards its target with the partitions it reports owning.
func (c *Coordinator) advanceConsumerMember(g *group, m *consumerMember, subscriptionChanged bool, owned []kmsg.ConsumerGroupHeartbeatRequestTopic, w *consumerWrites) {
	cg := g.consumer

	// 2. Resolve the subscription when it or the topics changed; new
	// metadata bumps the group epoch too.
	tc := c.topics()
	bump := subscriptionChanged
	if subscriptionChanged || !cg.resolved || cg.resolvedGen != tc.gen || c.cfg.TopicsGeneration == nil {
		sub := c.computeSubscription(cg, tc)
		if !slices.Equal(sub, cg.subscription) {
			cg.subscription = sub
			bump = true
		}
		cg.resolved, cg.resolvedGen = true, tc.gen
	}
	if bump {
		cg.epoch++
		w.groupChanged = true
		c.log.Info("consumer group epoch bumped", "group", g.name, "epoch", cg.epoch)
	}

	// 3. A newer group epoch means a new target assignment.
	if cg.epoch > cg.assignmentEpoch {
		c.updateTargetAssignment(g, tc, w)
	}

	// 4. Reconcile the member towards its target. Classic members have
	// join and sync timeouts instead of a rebalance timeout, as in Kafka.
	if c.reconcile(g, m, owned, w) && m.classic == nil {
		if m.state == memberUnrevokedPartitions {
			c.scheduleConsumerRebalanceTimeout(g, m)
		} else {
			c.cancel(timerConsumerRebalance, g, m.id)
		}
	}
}

func (c *Coordinator) newConsumerMember(id string) *consumerMember {
	return &consumerMember{
		id:               strings.Clone(id),
		rebalanceTimeout: defaultConsumerRebalanceTimeout,
		assigned:         make(assignment),
		pending:          make(assignment),
		target:           make(assignment),
		assignedAt:       make(map[topicID]map[int32]int32),
	}
}

// checkMemberEpoch is Kafka's throwIfMemberEpochIsInvalid: a member may
// come with its previous epoch if it owns no more than it was assigned
// (the answer that bumped its epoch may have been lost).
func checkMemberEpoch(m *consumerMember, req *kmsg.ConsumerGroupHeartbeatRequest) *heartbeatError {
	got := req.MemberEpoch
	if got == joinGroupMemberEpoch {
		return nil
	}
	if got > m.epoch {
		return hbErr(kerr.FencedMemberEpoch, "The consumer group member has a greater member epoch (%d) than the one known by the group coordinator (%d). The member must abandon all its partitions and rejoin.", got, m.epoch)
	}
	if got < m.epoch && (got != m.previousEpoch || !ownsSubsetOf(req.Topics, m.assigned)) {
		return hbErr(kerr.FencedMemberEpoch, "The consumer group member has a smaller member epoch (%d) than the one known by the group coordinator (%d). The member must abandon all its partitions and rejoin.", got, m.epoch)
	}
	return nil
}

// ownsSubsetOf reports whether the reported partitions are all in a
// (nil reported partitions are not).
func ownsSubsetOf(owned []kmsg.ConsumerGroupHeartbeatRequestTopic, a assignment) bool {
	if owned == nil {
		return false
	}
	for _, t := range owned {
		for _, p := range t.Partitions {
			if !a.contains(t.TopicID, p) {
				return false
			}
		}
	}
	return true
}

// replaceStaticMember lets a static member that left with epoch -2 come
// back under a new member id: the new member takes the old one's
// subscription and assignment, at epoch 0.
func (c *Coordinator) replaceStaticMember(g *group, old *consumerMember, newID string, w *consumerWrites) *consumerMember {
	cg := g.consumer
	c.cancelConsumerTimers(g, old.id)
	cg.removeMember(old)
	w.remove(old.id)
	m := *old
	m.id = strings.Clone(newID)
	m.epoch, m.previousEpoch = 0, 0
	m.assigned, m.pending, m.target = old.assigned.clone(), make(assignment), old.target.clone()
	m.assignedAt = make(map[topicID]map[int32]int32)
	cg.setMember(&m, nil, nil)
	w.member(&m)
	c.log.Info("static member rejoins the consumer group under a new member id", "group", g.name,
		"instance", *old.instanceID, "old_member", old.id, "member", m.id)
	return &m
}

// consumerLeaveLocked handles epochs -1 (leave) and -2 (a static member
// leaves for now: it keeps its assignment until its session expires).
func (c *Coordinator) consumerLeaveLocked(req *kmsg.ConsumerGroupHeartbeatRequest, resp *kmsg.ConsumerGroupHeartbeatResponse, w *consumerWrites) (*group, *heartbeatError) {
	g := c.groups[req.Group]
	if g == nil {
		return nil, hbErr(kerr.GroupIDNotFound, "Consumer group %s not found.", req.Group)
	}
	if g.consumer == nil {
		return nil, hbErr(kerr.GroupIDNotFound, "Group %s is not a consumer group.", req.Group)
	}
	cg := g.consumer
	resp.MemberID = kmsg.StringPtr(req.MemberID)
	resp.MemberEpoch = req.MemberEpoch
	var m *consumerMember
	if req.InstanceID == nil {
		m = cg.members[req.MemberID]
		if m == nil {
			return g, hbErr(kerr.UnknownMemberID, "Member %s is not a member of group %s.", req.MemberID, g.name)
		}
	} else {
		instance := *req.InstanceID
		m = cg.members[cg.static[instance]]
		if m == nil {
			return g, hbErr(kerr.UnknownMemberID, "Instance id %s is unknown.", instance)
		}
		if m.id != req.MemberID {
			return g, hbErr(kerr.FencedInstanceID, "Static member %s with instance id %s was fenced by member %s.",
				req.MemberID, instance, m.id)
		}
		if req.MemberEpoch == leaveGroupStaticMemberEpoch {
			// It keeps what it has (others cannot take it) until its
			// session expires or it comes back.
			oldAssigned, oldPending := m.assigned, m.pending
			m.epoch = leaveGroupStaticMemberEpoch
			m.pending = make(assignment)
			cg.setMember(m, oldAssigned, oldPending)
			c.cancel(timerConsumerRebalance, g, m.id)
			c.scheduleConsumerSession(g, m)
			w.member(m)
			c.log.Info("static member temporarily left the consumer group", "group", g.name, "member", m.id, "instance", instance)
			return g, nil
		}
	}
	c.log.Info("member left the consumer group", "group", g.name, "member", m.id)
	c.fenceConsumerMember(g, m, w)
	return g, nil
}

// fenceConsumerMember removes a member and bumps the group epoch, so the
// remaining members get its partitions.
func (c *Coordinator) fenceConsumerMember(g *group, m *consumerMember, w *consumerWrites) {
	if c.validateOnlineDowngrade(g, m) {
		// The last member using the consumer protocol leaves: the
		// classic members carry on in a classic group.
		c.convertToClassicGroup(g, m, w, true)
		return
	}
	cg := g.consumer
	c.cancelConsumerTimers(g, m.id)
	cg.removeMember(m)
	w.remove(m.id)
	tc := c.topics()
	cg.subscription = c.computeSubscription(cg, tc)
	cg.resolved, cg.resolvedGen = true, tc.gen
	cg.epoch++
	w.groupChanged = true
	if len(cg.members) == 0 {
		g.stateSince = c.now() // offsets expire from here
	}
}

func (c *Coordinator) cancelConsumerTimers(g *group, memberID string) {
	c.cancel(timerConsumerSession, g, memberID)
	c.cancel(timerConsumerRebalance, g, memberID)
	c.cancel(timerConsumerJoin, g, memberID)
	c.cancel(timerConsumerSync, g, memberID)
}

// scheduleConsumerSession (re)starts a member's session: without a
// heartbeat within group.consumer.session.timeout.ms it is fenced.
func (c *Coordinator) scheduleConsumerSession(g *group, m *consumerMember) {
	id := m.id
	c.schedule(timerConsumerSession, g, id, c.sessionTimeout(m), func() {
		if g.consumer == nil {
			return
		}
		m := g.consumer.members[id]
		if m == nil {
			return
		}
		c.log.Info("consumer group member session expired", "group", g.name, "member", id)
		var w consumerWrites
		c.fenceConsumerMember(g, m, &w)
		c.write(w.ops(g))
	})
}

// scheduleConsumerRebalanceTimeout gives a member that must revoke
// partitions its rebalance timeout to do so; a member still in that epoch
// then is fenced. Every reconciliation step that leaves the member
// revoking restarts it, as in Kafka.
func (c *Coordinator) scheduleConsumerRebalanceTimeout(g *group, m *consumerMember) {
	id, epoch := m.id, m.epoch
	c.schedule(timerConsumerRebalance, g, id, m.rebalanceTimeout, func() {
		if g.consumer == nil {
			return
		}
		m := g.consumer.members[id]
		if m == nil || m.epoch != epoch {
			return
		}
		c.log.Info("consumer group member did not revoke its partitions within its rebalance timeout", "group", g.name, "member", id)
		var w consumerWrites
		c.fenceConsumerMember(g, m, &w)
		c.write(w.ops(g))
	})
}

func responseAssignment(a assignment) *kmsg.ConsumerGroupHeartbeatResponseAssignment {
	ra := kmsg.NewConsumerGroupHeartbeatResponseAssignment()
	ra.Topics = []kmsg.ConsumerGroupHeartbeatResponseAssignmentTopic{}
	for _, t := range a.sortedTopics() {
		rt := kmsg.NewConsumerGroupHeartbeatResponseAssignmentTopic()
		rt.TopicID = t
		rt.Partitions = slices.Clone(a[t])
		ra.Topics = append(ra.Topics, rt)
	}
	return &ra
}

func newUUIDString() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// ConsumerGroupDescribe handles a ConsumerGroupDescribe request.
func (c *Coordinator) ConsumerGroupDescribe(_ context.Context, req *kmsg.ConsumerGroupDescribeRequest) *kmsg.ConsumerGroupDescribeResponse {
	resp := kmsg.NewPtrConsumerGroupDescribeResponse()
	resp.Version = req.Version
	c.lock()
	defer c.unlock()
	tc := c.topics()
	for _, name := range req.Groups {
		dg := kmsg.NewConsumerGroupDescribeResponseGroup()
		dg.Group = name
		g := c.groups[name]
		switch {
		case c.closed:
			dg.ErrorCode = kerr.CoordinatorNotAvailable.Code
		case g == nil:
			dg.ErrorCode = kerr.GroupIDNotFound.Code
			dg.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("Group %s not found.", name))
		case g.consumer == nil:
			dg.ErrorCode = kerr.GroupIDNotFound.Code
			dg.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("Group %s is not a consumer group.", name))
		default:
			cg := g.consumer
			dg.State = cg.state()
			dg.Epoch = cg.epoch
			dg.AssignmentEpoch = cg.assignmentEpoch
			dg.AssignorName = c.preferredAssignor(cg)
			for _, id := range cg.sortedMemberIDs() {
				m := cg.members[id]
				dm := kmsg.NewConsumerGroupDescribeResponseGroupMember()
				dm.MemberID = m.id
				dm.InstanceID = m.instanceID
				dm.RackID = m.rackID
				dm.MemberEpoch = m.epoch
				dm.ClientID = m.clientID
				dm.ClientHost = m.clientHost
				dm.SubscribedTopics = slices.Clone(m.topicNames)
				if dm.SubscribedTopics == nil {
					dm.SubscribedTopics = []string{}
				}
				if m.regex != "" {
					dm.SubscribedTopicRegex = kmsg.StringPtr(m.regex)
				}
				dm.Assignment = describeAssignment(m.assigned, tc)
				dm.TargetAssignment = describeAssignment(m.target, tc)
				dm.MemberType = 1 // consumer protocol
				if m.classic != nil {
					dm.MemberType = 0 // classic protocol
				}
				dg.Members = append(dg.Members, dm)
			}
		}
		if req.IncludeAuthorizedOperations && dg.ErrorCode == 0 {
			dg.AuthorizedOperations = allGroupOperations
		}
		resp.Groups = append(resp.Groups, dg)
	}
	return resp
}

func describeAssignment(a assignment, tc *topicCache) kmsg.Assignment {
	out := kmsg.NewAssignment()
	out.TopicPartitions = []kmsg.AssignmentTopicPartition{}
	for _, t := range a.sortedTopics() {
		tp := kmsg.NewAssignmentTopicPartition()
		tp.TopicID = t
		tp.Topic = tc.byID[t].Name
		tp.Partitions = slices.Clone(a[t])
		out.TopicPartitions = append(out.TopicPartitions, tp)
	}
	return out
}

// downgradeEmptyConsumerGroup turns an empty consumer group into a classic
// one when a classic member joins it, as Kafka does; offsets stay.
func (c *Coordinator) downgradeEmptyConsumerGroup(g *group) {
	g.consumer = nil
	g.protocolType = ""
	g.generation = 0
	c.write([]writeOp{{Key: consumerGroupKey(g.name), Delete: true}, c.putGroupOp(g)})
	c.log.Info("empty consumer group converted to a classic group", "group", g.name)
}
