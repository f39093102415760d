package group

import (
	"bytes"
	"encoding/binary"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupState is the classic group state machine of Kafka's ClassicGroup.
type groupState int8

const (
	stateEmpty groupState = iota
	statePreparingRebalance
	stateCompletingRebalance
	stateStable
	stateDead
)

func (s groupState) String() string {
	switch s {
	case stateEmpty:
		return "Empty"
	case statePreparingRebalance:
		return "PreparingRebalance"
	case stateCompletingRebalance:
		return "CompletingRebalance"
	case stateStable:
		return "Stable"
	default:
		return "Dead"
	}
}

// canRebalance reports whether PreparingRebalance may be entered from s.
func (s groupState) canRebalance() bool {
	return s == stateStable || s == stateCompletingRebalance || s == stateEmpty
}

// consumerProtocolType is the protocol type of Kafka consumers; only such
// groups have subscriptions the broker can read (KIP-496 offset deletion,
// KIP-211 offset expiry).
const consumerProtocolType = "consumer"

// offsetValue is one committed (or pending transactional) offset.
type offsetValue struct {
	offset      int64
	leaderEpoch int32
	metadata    string
	commitMs    int64
	expireMs    int64 // -1: expires by the group's retention rules (v2-v4 commits set a deadline)
	// seq orders every offset write the coordinator made, like a record's
	// position in __consumer_offsets: a transactional offset committed by
	// its marker does not overwrite a newer plain commit.
	seq uint64
}

type joinWaiter struct {
	ch      chan *kmsg.JoinGroupResponse
	version int16
}

type syncWaiter struct {
	ch      chan *kmsg.SyncGroupResponse
	version int16
}

type member struct {
	id         string
	instanceID *string
	clientID   string
	clientHost string

	protocolType     string
	protocols        []kmsg.JoinGroupRequestProtocol
	rebalanceTimeout time.Duration
	sessionTimeout   time.Duration

	assignment []byte

	// join is set while the member's JoinGroup is parked; sync while its
	// SyncGroup is parked.
	join *joinWaiter
	sync *syncWaiter

	// isNew members have not yet received a JoinGroup answer; they expire
	// even while parked.
	isNew bool
}

func (m *member) awaitingJoin() bool { return m.join != nil }
func (m *member) awaitingSync() bool { return m.sync != nil }

// hasSatisfiedHeartbeat reports whether a member that reached its session
// deadline is still alive: members parked in a rebalance are.
func (m *member) hasSatisfiedHeartbeat() bool {
	if m.isNew {
		return false
	}
	return m.awaitingJoin() || m.awaitingSync()
}

func (m *member) metadata(protocol string) []byte {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	return nil
}

// matches reports whether protocols are the member's current ones, in order.
func (m *member) matches(protocols []kmsg.JoinGroupRequestProtocol) bool {
	if len(m.protocols) != len(protocols) {
		return false
	}
	for i := range protocols {
		if m.protocols[i].Name != protocols[i].Name || !bytes.Equal(m.protocols[i].Metadata, protocols[i].Metadata) {
			return false
		}
	}
	return true
}

// vote returns the member's most preferred protocol among candidates.
func (m *member) vote(candidates map[string]bool) string {
	for _, p := range m.protocols {
		if candidates[p.Name] {
			return p.Name
		}
	}
	return ""
}

// group is one classic group: membership, rebalance progress and its
// committed offsets.
type group struct {
	name          string
	state         groupState
	previousState groupState
	stateSince    time.Time

	protocolType string // "" until the first member joins; "" forever for simple (commit-only) groups
	protocol     string // selected protocol of the current generation
	generation   int32
	leader       string

	members     map[string]*member
	memberOrder []string          // insertion order: deterministic leader choice and listings
	static      map[string]string // instance id -> member id
	pendingJoin map[string]bool   // member ids handed out with MEMBER_ID_REQUIRED
	pendingSync map[string]bool   // members that got a JoinGroup answer but did not sync yet

	numAwaitingJoin    int
	supportedProtocols map[string]int // protocol name -> number of members supporting it
	newMemberAdded     bool           // extends the initial rebalance delay

	// subscribed is the union of the consumer members' topics, parsed when
	// a generation starts; subscribedKnown is false when it could not be.
	subscribed      map[string]bool
	subscribedKnown bool

	// stored is the last completed generation as it was made durable
	// (nil: none since the group was created or went Empty). Like Kafka,
	// which writes a classic group's members to __consumer_offsets only
	// when a generation completes, the group record always carries this
	// generation, so a restart brings it back Stable with these members.
	stored *storedGeneration
	// storingAssignment is set while the leader's assignment is being
	// made durable, before any member is answered.
	storingAssignment bool

	// consumer is set while the group is a KIP-848 consumer group; the
	// classic fields above then stay Empty.
	consumer *consumerGroup

	offsets map[string]map[int32]offsetValue // topic -> partition
	// openTxns are producer ids with pending transactional offsets here.
	openTxns map[int64]bool
}

func newGroup(name string, now time.Time) *group {
	return &group{
		name:               name,
		state:              stateEmpty,
		previousState:      stateEmpty,
		stateSince:         now,
		members:            make(map[string]*member),
		static:             make(map[string]string),
		pendingJoin:        make(map[string]bool),
		pendingSync:        make(map[string]bool),
		supportedProtocols: make(map[string]int),
		offsets:            make(map[string]map[int32]offsetValue),
		openTxns:           make(map[int64]bool),
	}
}

func (g *group) transitionTo(s groupState, now time.Time) {
	g.previousState = g.state
	g.state = s
	g.stateSince = now
}

func (g *group) orderedMembers() []*member {
	ms := make([]*member, 0, len(g.memberOrder))
	for _, id := range g.memberOrder {
		ms = append(ms, g.members[id])
	}
	return ms
}

func (g *group) isLeader(memberID string) bool { return g.leader != "" && g.leader == memberID }

func (g *group) usesConsumerProtocol() bool { return g.protocolType == consumerProtocolType }

// rebalanceTimeout is the largest rebalance timeout of the members.
func (g *group) rebalanceTimeout() time.Duration {
	var max time.Duration
	for _, m := range g.members {
		if m.rebalanceTimeout > max {
			max = m.rebalanceTimeout
		}
	}
	return max
}

func protocolNames(protocols []kmsg.JoinGroupRequestProtocol) []string {
	names := make([]string, 0, len(protocols))
	seen := make(map[string]bool, len(protocols))
	for _, p := range protocols {
		if !seen[p.Name] {
			seen[p.Name] = true
			names = append(names, p.Name)
		}
	}
	return names
}

// supportsProtocols reports whether a member with this protocol type and
// these protocols may join: an Empty group takes any non-empty proposal,
// otherwise the type must match and one protocol must be supported by
// every current member.
func (g *group) supportsProtocols(protocolType string, protocols []kmsg.JoinGroupRequestProtocol) bool {
	names := protocolNames(protocols)
	if g.state == stateEmpty {
		return protocolType != "" && len(names) > 0
	}
	if g.protocolType != protocolType {
		return false
	}
	for _, n := range names {
		if g.supportedProtocols[n] == len(g.members) {
			return true
		}
	}
	return false
}

func (g *group) addSupportedProtocols(m *member, delta int) {
	for _, n := range protocolNames(m.protocols) {
		g.supportedProtocols[n] += delta
		if g.supportedProtocols[n] == 0 {
			delete(g.supportedProtocols, n)
		}
	}
}

// add adds a member; join, if not nil, is its parked JoinGroup.
func (g *group) add(m *member, join *joinWaiter) {
	if m.instanceID != nil {
		g.static[*m.instanceID] = m.id
	}
	if len(g.members) == 0 {
		g.protocolType = m.protocolType
	}
	if g.leader == "" {
		g.leader = m.id
	}
	g.members[m.id] = m
	g.memberOrder = append(g.memberOrder, m.id)
	g.addSupportedProtocols(m, 1)
	m.join = join
	if join != nil {
		g.numAwaitingJoin++
	}
	delete(g.pendingJoin, m.id)
}

// remove drops a member (or pending member) without touching its parked
// requests; callers answer those first.
func (g *group) remove(memberID string) {
	if m, ok := g.members[memberID]; ok {
		g.addSupportedProtocols(m, -1)
		if m.awaitingJoin() {
			g.numAwaitingJoin--
		}
		if m.instanceID != nil && g.static[*m.instanceID] == memberID {
			delete(g.static, *m.instanceID)
		}
		delete(g.members, memberID)
		for i, id := range g.memberOrder {
			if id == memberID {
				g.memberOrder = append(g.memberOrder[:i], g.memberOrder[i+1:]...)
				break
			}
		}
	}
	if g.leader == memberID {
		g.leader = ""
		if len(g.memberOrder) > 0 {
			g.leader = g.memberOrder[0]
		}
	}
	delete(g.pendingJoin, memberID)
	delete(g.pendingSync, memberID)
}

// updateMember replaces a member's protocols and timeouts from a new
// JoinGroup; join is the new parked request (nil: none).
func (g *group) updateMember(m *member, protocols []kmsg.JoinGroupRequestProtocol, rebalanceTimeout, sessionTimeout time.Duration, join *joinWaiter) {
	g.addSupportedProtocols(m, -1)
	m.protocols = protocols
	g.addSupportedProtocols(m, 1)
	m.rebalanceTimeout = rebalanceTimeout
	m.sessionTimeout = sessionTimeout
	switch {
	case join != nil && !m.awaitingJoin():
		g.numAwaitingJoin++
	case join == nil && m.awaitingJoin():
		g.numAwaitingJoin--
	}
	// A JoinGroup that is replaced is never answered, as in Kafka; its
	// handler returns when its context ends.
	m.join = join
}

// completeJoin answers a member's parked JoinGroup.
func (g *group) completeJoin(m *member, fill func(*kmsg.JoinGroupResponse)) bool {
	if m.join == nil {
		return false
	}
	resp := newJoinResponse(m.join.version)
	fill(resp)
	m.join.ch <- resp
	m.join = nil
	g.numAwaitingJoin--
	return true
}

// completeSync answers a member's parked SyncGroup.
func (g *group) completeSync(m *member, fill func(*kmsg.SyncGroupResponse)) bool {
	if m.sync == nil {
		return false
	}
	resp := newSyncResponse(m.sync.version)
	fill(resp)
	m.sync.ch <- resp
	m.sync = nil
	return true
}

func (g *group) hasAllMembersJoined() bool {
	return len(g.members) == g.numAwaitingJoin && len(g.pendingJoin) == 0
}

// maybeElectNewJoinedLeader keeps the leader if it rejoined, else picks the
// first member that did. It returns false if no member rejoined.
func (g *group) maybeElectNewJoinedLeader() bool {
	if g.leader == "" {
		return false
	}
	if l := g.members[g.leader]; l != nil && l.awaitingJoin() {
		return true
	}
	for _, m := range g.orderedMembers() {
		if m.awaitingJoin() {
			g.leader = m.id
			return true
		}
	}
	return false
}

// selectProtocol lets each member vote for its preferred protocol among
// those every member supports; ties go to the protocol voted for first.
func (g *group) selectProtocol() string {
	candidates := make(map[string]bool)
	for name, n := range g.supportedProtocols {
		if n == len(g.members) {
			candidates[name] = true
		}
	}
	votes := make(map[string]int)
	var order []string
	for _, m := range g.orderedMembers() {
		v := m.vote(candidates)
		if votes[v] == 0 {
			order = append(order, v)
		}
		votes[v]++
	}
	best := ""
	for _, p := range order {
		if votes[p] > votes[best] {
			best = p
		}
	}
	return best
}

// computeSubscribedTopics reads the topics of every member's consumer
// protocol metadata (its version-0 prefix, which every version keeps).
func (g *group) computeSubscribedTopics() {
	g.subscribed, g.subscribedKnown = nil, false
	if g.protocolType != consumerProtocolType {
		return
	}
	topics := make(map[string]bool)
	if len(g.members) > 0 {
		if g.protocol == "" {
			return
		}
		for _, m := range g.members {
			ts, ok := parseSubscriptionTopics(m.metadata(g.protocol))
			if !ok {
				return
			}
			for _, t := range ts {
				topics[t] = true
			}
		}
	}
	g.subscribed, g.subscribedKnown = topics, true
}

// isSubscribedToTopic reports whether the group's consumers subscribe to
// topic; when unknown, a consumer group counts as subscribed to everything.
func (g *group) isSubscribedToTopic(topic string) bool {
	if g.consumer != nil {
		return g.consumer.subscribedTopicNames()[topic]
	}
	if g.subscribedKnown {
		return g.subscribed[topic]
	}
	return g.usesConsumerProtocol()
}

// parseSubscriptionTopics decodes the start of a ConsumerProtocol
// subscription: int16 version, then an array of int16-length strings.
func parseSubscriptionTopics(b []byte) ([]string, bool) {
	if len(b) < 6 {
		return nil, false
	}
	n := int32(binary.BigEndian.Uint32(b[2:6]))
	b = b[6:]
	if n < 0 || int(n) > len(b)/2 {
		return nil, false
	}
	topics := make([]string, 0, n)
	for range n {
		if len(b) < 2 {
			return nil, false
		}
		l := int(int16(binary.BigEndian.Uint16(b)))
		b = b[2:]
		if l < 0 || l > len(b) {
			return nil, false
		}
		topics = append(topics, string(b[:l]))
		b = b[l:]
	}
	return topics, true
}

// currentMembers is the member list the leader receives in its JoinGroup
// answer: every member's metadata for the selected protocol.
func (g *group) currentMembers() []kmsg.JoinGroupResponseMember {
	out := make([]kmsg.JoinGroupResponseMember, 0, len(g.members))
	for _, m := range g.orderedMembers() {
		jm := kmsg.NewJoinGroupResponseMember()
		jm.MemberID = m.id
		jm.InstanceID = m.instanceID
		jm.ProtocolMetadata = m.metadata(g.protocol)
		out = append(out, jm)
	}
	return out
}

// storedGeneration is a completed generation of a classic group: what
// Kafka's GroupMetadataValue holds.
type storedGeneration struct {
	generation int32
	protocol   string
	leader     string
	members    []storedMember
}

// storedMember is one member of a stored generation; only the selected
// protocol's metadata is kept, as in Kafka's MemberMetadata record.
type storedMember struct {
	id               string
	instanceID       *string
	clientID         string
	clientHost       string
	rebalanceTimeout time.Duration
	sessionTimeout   time.Duration
	subscription     []byte
	assignment       []byte
}

// snapshot records the current generation, with its members and their
// assignments, as the one the group record carries from now on.
func (g *group) snapshot() {
	sg := &storedGeneration{generation: g.generation, protocol: g.protocol, leader: g.leader}
	for _, m := range g.orderedMembers() {
		sg.members = append(sg.members, storedMember{
			id:               m.id,
			instanceID:       m.instanceID,
			clientID:         m.clientID,
			clientHost:       m.clientHost,
			rebalanceTimeout: m.rebalanceTimeout,
			sessionTimeout:   m.sessionTimeout,
			subscription:     m.metadata(g.protocol),
			assignment:       m.assignment,
		})
	}
	g.stored = sg
}

func (g *group) record() groupRecord {
	r := groupRecord{
		protocolType: g.protocolType,
		generation:   g.generation,
		emptySinceMs: -1,
	}
	switch {
	case g.state == stateEmpty || g.state == stateDead:
		g.stored = nil
		r.emptySinceMs = g.stateSince.UnixMilli()
	case g.stored != nil:
		// Mid-rebalance: the last completed generation stays the
		// durable one.
		r.stored = g.stored
		r.generation = g.stored.generation
	}
	return r
}

func (g *group) hasOffset(topic string, partition int32) bool {
	_, ok := g.offsets[topic][partition]
	return ok
}

func newJoinResponse(version int16) *kmsg.JoinGroupResponse {
	r := kmsg.NewPtrJoinGroupResponse()
	r.Version = version
	return r
}

func newSyncResponse(version int16) *kmsg.SyncGroupResponse {
	r := kmsg.NewPtrSyncGroupResponse()
	r.Version = version
	return r
}

// stateMatches implements ListGroups' case-insensitive state filter.
func stateMatches(filter []string, state string) bool {
	if len(filter) == 0 {
		return true
	}
	want := strings.ToLower(state)
	for _, f := range filter {
		if strings.ToLower(strings.TrimSpace(f)) == want {
			return true
		}
	}
	return false
}
