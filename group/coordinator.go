// Package group is the consumer group coordinator and durable offset store
// of a single-broker cluster: this broker coordinates every group.
//
// It implements Kafka's classic group protocol (JoinGroup, SyncGroup,
// Heartbeat, LeaveGroup: the state machine of Kafka's ClassicGroup, with
// static membership and KIP-394 member ids), the KIP-848 consumer group
// protocol (ConsumerGroupHeartbeat, ConsumerGroupDescribe: consumer.go,
// assignor.go), the offset APIs (OffsetCommit,
// OffsetFetch, OffsetDelete, TxnOffsetCommit with KIP-447 fencing) and the
// group admin APIs. Handlers take decoded kmsg requests and return kmsg
// responses of the same version; answers follow Kafka's group coordinator
// (group-coordinator module, 2024) unless a comment says otherwise.
//
// Durability: a group's existence, protocol type and generation, committed
// offsets and pending transactional offsets live in a pebble store. Every
// OffsetCommit, TxnOffsetCommit, OffsetDelete, DeleteGroups and CompleteTxn
// is fsynced before it is answered; writes from concurrent requests share
// one fsync. A classic group's members and assignments are stored when a
// generation completes (the leader's SyncGroup, durable before any member
// gets its assignment), as Kafka stores GroupMetadataValue: after a
// restart the group is Stable in that generation, its members' sessions
// start afresh and they carry on without a rebalance. Consumer groups keep their members, epochs and
// assignments (consumer_store.go): their members carry on.
//
// Time: deadlines (sessions, rebalance timeouts, the initial rebalance
// delay, offset retention) are kept against Config.Now and run when that
// clock has passed them, checked at every request and by a background
// loop; a test that drives the clock controls exactly when anything
// expires.
package group

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/oncelog/oncelog/internal/fsx"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Versions are the request versions served, per API key: the wire layer's
// ApiVersions answer must list exactly these. The versions that name
// topics by id (OffsetCommit v10, OffsetFetch v10) reach the coordinator
// with the names the wire layer resolved (wire/topicids.go).
// TxnOffsetCommit is registered with the transaction APIs (txn.Versions),
// since the transaction coordinator checks it first.
var Versions = map[int16][2]int16{
	8:  {0, 10}, // OffsetCommit (v10: topic ids, resolved by the wire layer)
	9:  {0, 10}, // OffsetFetch (v10: topic ids, resolved by the wire layer)
	11: {0, 9},  // JoinGroup
	12: {0, 4},  // Heartbeat
	13: {0, 5},  // LeaveGroup
	14: {0, 5},  // SyncGroup
	15: {0, 6},  // DescribeGroups
	16: {0, 5},  // ListGroups
	42: {0, 3},  // DeleteGroups (v3: ErrorMessage, null as Kafka 4.4 answers it)
	47: {0, 0},  // OffsetDelete
	68: {0, 1},  // ConsumerGroupHeartbeat (KIP-848)
	69: {0, 1},  // ConsumerGroupDescribe (KIP-848)
}

// Kafka's defaults for the settings below.
const (
	DefaultMinSessionTimeout     = 6 * time.Second
	DefaultMaxSessionTimeout     = 30 * time.Minute
	DefaultInitialRebalanceDelay = 3 * time.Second
	DefaultOffsetsRetention      = 7 * 24 * time.Hour

	// newMemberJoinTimeout bounds how long a new member may wait in a
	// rebalance (group.new.member.join.timeout in Kafka).
	newMemberJoinTimeout = 5 * time.Minute
	// offsetsRetentionCheckInterval is offsets.retention.check.interval.ms.
	offsetsRetentionCheckInterval = 10 * time.Minute
	// offsetMetadataMaxBytes is offset.metadata.max.bytes.
	offsetMetadataMaxBytes = 4096
	// maxTimerPoll bounds the background loop's sleep, so that a clock
	// other than the wall clock is still followed.
	maxTimerPoll = time.Second
)

// Config configures a Coordinator. Zero durations take Kafka's defaults,
// except InitialRebalanceDelay, whose zero means no delay; use
// DefaultInitialRebalanceDelay for Kafka's 3s.
type Config struct {
	NodeID int32
	// Dir is the pebble store directory.
	Dir string
	// MinSessionTimeout and MaxSessionTimeout bound a JoinGroup's session
	// timeout (group.min/max.session.timeout.ms).
	MinSessionTimeout, MaxSessionTimeout time.Duration
	// InitialRebalanceDelay is group.initial.rebalance.delay.ms: how long
	// the first rebalance of an Empty group waits for more members.
	InitialRebalanceDelay time.Duration
	// OffsetsRetention is offsets.retention.minutes.
	OffsetsRetention time.Duration
	// MaxSize is group.max.size: the most members a group may have; a
	// JoinGroup that would exceed it is answered GROUP_MAX_SIZE_REACHED.
	// Zero or negative means no limit (Kafka's default, Int.MaxValue).
	MaxSize int

	// ConsumerSessionTimeout is group.consumer.session.timeout.ms: a
	// consumer group (KIP-848) member without a heartbeat for this long
	// is fenced.
	ConsumerSessionTimeout time.Duration
	// ConsumerHeartbeatInterval is group.consumer.heartbeat.interval.ms,
	// told to every member in each heartbeat answer.
	ConsumerHeartbeatInterval time.Duration
	// ConsumerMaxSize is group.consumer.max.size (zero or negative: no
	// limit, Kafka's Int.MaxValue).
	ConsumerMaxSize int
	// ConsumerMigrationPolicy is group.consumer.migration.policy: which
	// online conversions of a group with members between the classic and
	// the consumer protocol are allowed (bidirectional, upgrade,
	// downgrade, disabled; "" is Kafka's default, bidirectional).
	ConsumerMigrationPolicy string
	// ConsumerAssignors is group.consumer.assignors as short names
	// (AssignorByName); the first is the default. Empty: uniform, range.
	ConsumerAssignors []string
	// Topics lists the topics consumer groups may subscribe to (internal
	// topics excluded), and TopicsGeneration changes whenever that list
	// or a partition count does, so that the list is read again only
	// then (nil: read it at every heartbeat).
	Topics           func() []TopicInfo
	TopicsGeneration func() uint64

	Logger *slog.Logger
	// Now is the clock; time.Now if nil.
	Now func() time.Time

	// FS is the filesystem of the store (nil: the operating system's;
	// tests inject faults and crashes through it).
	FS fsx.FS
	// OnStoreFatal (may be nil) is told when the store fails for good
	// (internal/pebblestore); the failing request gets an error code.
	OnStoreFatal func(error)
}

// Coordinator is the group coordinator. Its methods are safe for concurrent
// use; JoinGroup and SyncGroup block until the rebalance lets them answer.
type Coordinator struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	store *store

	mu      sync.Mutex
	groups  map[string]*group
	pending map[int64]*pendingTxn // producer id -> its uncommitted offsets
	lastSeq uint64
	timers  *timers
	closed  bool
	// topicCache and regexes serve consumer group subscriptions.
	topicCache topicCache
	regexes    map[string]*regexp.Regexp
	// changed, when not nil, is closed at the end of the next locked
	// operation; tests wait on it instead of sleeping.
	changed chan struct{}

	wake chan struct{} // tells the background loop that deadlines changed
	done chan struct{} // closed by Close
	loop sync.WaitGroup
}

// pendingTxn holds a producer's transactional offsets until its
// transaction's marker arrives.
type pendingTxn struct {
	epoch   int16
	offsets map[string]map[string]map[int32]offsetValue // group -> topic -> partition
}

// Open opens (or creates) the store in cfg.Dir and restores every group
// and offset from it.
func Open(cfg Config) (*Coordinator, error) {
	if cfg.Dir == "" {
		return nil, errors.New("group: Config.Dir is required")
	}
	if cfg.MinSessionTimeout <= 0 {
		cfg.MinSessionTimeout = DefaultMinSessionTimeout
	}
	if cfg.MaxSessionTimeout <= 0 {
		cfg.MaxSessionTimeout = DefaultMaxSessionTimeout
	}
	if cfg.InitialRebalanceDelay < 0 {
		cfg.InitialRebalanceDelay = 0
	}
	if cfg.OffsetsRetention <= 0 {
		cfg.OffsetsRetention = DefaultOffsetsRetention
	}
	if cfg.ConsumerSessionTimeout <= 0 {
		cfg.ConsumerSessionTimeout = DefaultConsumerSessionTimeout
	}
	if cfg.ConsumerHeartbeatInterval <= 0 {
		cfg.ConsumerHeartbeatInterval = DefaultConsumerHeartbeatInterval
	}
	cfg.ConsumerMigrationPolicy = strings.ToLower(strings.TrimSpace(cfg.ConsumerMigrationPolicy))
	if cfg.ConsumerMigrationPolicy == "" {
		cfg.ConsumerMigrationPolicy = DefaultMigrationPolicy
	}
	if !ValidMigrationPolicy(cfg.ConsumerMigrationPolicy) {
		return nil, fmt.Errorf("group: unknown consumer group migration policy %q (have bidirectional, upgrade, downgrade, disabled)", cfg.ConsumerMigrationPolicy)
	}
	if len(cfg.ConsumerAssignors) == 0 {
		cfg.ConsumerAssignors = DefaultConsumerAssignors
	}
	assignors := make([]string, 0, len(cfg.ConsumerAssignors))
	for _, a := range cfg.ConsumerAssignors {
		short := AssignorByName(strings.TrimSpace(a))
		if short == "" {
			return nil, fmt.Errorf("group: unknown consumer group assignor %q (have %s)", a, strings.Join(DefaultConsumerAssignors, ", "))
		}
		if !slices.Contains(assignors, short) {
			assignors = append(assignors, short)
		}
	}
	cfg.ConsumerAssignors = assignors
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger.With("component", "group")
	st, err := openStore(cfg.Dir, cfg.FS, log, cfg.OnStoreFatal)
	if err != nil {
		return nil, err
	}
	c := &Coordinator{
		cfg:     cfg,
		log:     log,
		now:     cfg.Now,
		store:   st,
		groups:  make(map[string]*group),
		pending: make(map[int64]*pendingTxn),
		timers:  newTimers(),
		regexes: make(map[string]*regexp.Regexp),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	if err := c.restore(); err != nil {
		st.close()
		return nil, err
	}
	c.scheduleOffsetExpiry(c.now().Add(offsetsRetentionCheckInterval))
	c.loop.Add(1)
	go c.runTimers()
	return c, nil
}

// restore rebuilds the in-memory state from the store. A classic group
// with a stored generation comes back Stable with its members (Kafka's
// loadGroup), every session restarted from now; others come back Empty.
func (c *Coordinator) restore() error {
	l, err := c.store.load()
	if err != nil {
		return fmt.Errorf("load group store: %w", err)
	}
	now := c.now()
	for name, rec := range l.groups {
		g := newGroup(name, now)
		g.protocolType = rec.protocolType
		g.generation = rec.generation
		if rec.emptySinceMs >= 0 {
			g.stateSince = time.UnixMilli(rec.emptySinceMs)
		}
		c.restoreClassicMembers(g, rec.stored, now)
		g.computeSubscribedTopics()
		c.groups[name] = g
	}
	c.restoreConsumerGroups(l, now)
	// Offsets without a group record belong to simple groups (commit-only
	// consumers); Kafka recreates those the same way.
	getGroup := func(name string) *group {
		g := c.groups[name]
		if g == nil {
			g = newGroup(name, now)
			c.groups[name] = g
		}
		return g
	}
	for name, byTopic := range l.offsets {
		g := getGroup(name)
		g.offsets = byTopic
		for _, ps := range byTopic {
			for _, v := range ps {
				c.lastSeq = max(c.lastSeq, v.seq)
			}
		}
	}
	for _, p := range l.pending {
		g := getGroup(p.group)
		c.addPending(g, p.producerID, p.producerEpoch, p.topic, p.partition, p.value)
		c.lastSeq = max(c.lastSeq, p.value.seq)
	}
	var offsets int
	for _, g := range c.groups {
		for _, ps := range g.offsets {
			offsets += len(ps)
		}
	}
	c.log.Info("group coordinator loaded", "node", c.cfg.NodeID, "groups", len(c.groups),
		"offsets", offsets, "open_txns", len(c.pending))
	return nil
}

// restoreClassicMembers puts a stored generation's members back and starts
// their sessions.
func (c *Coordinator) restoreClassicMembers(g *group, sg *storedGeneration, now time.Time) {
	if sg == nil || len(sg.members) == 0 {
		return
	}
	for _, sm := range sg.members {
		g.add(&member{
			id:               sm.id,
			instanceID:       sm.instanceID,
			clientID:         sm.clientID,
			clientHost:       sm.clientHost,
			protocolType:     g.protocolType,
			protocols:        []kmsg.JoinGroupRequestProtocol{{Name: sg.protocol, Metadata: sm.subscription}},
			rebalanceTimeout: sm.rebalanceTimeout,
			sessionTimeout:   sm.sessionTimeout,
			assignment:       sm.assignment,
		}, nil)
	}
	g.protocol = sg.protocol
	if g.members[sg.leader] != nil {
		g.leader = sg.leader
	}
	g.stored = sg
	g.transitionTo(stateStable, now)
	for _, m := range g.orderedMembers() {
		c.rescheduleHeartbeat(g, m, m.sessionTimeout)
	}
	if max := c.cfg.MaxSize; max > 0 && len(g.members) > max {
		// group.max.size was lowered since the generation was stored:
		// Kafka's onLoaded rebalances, and only max members get back in.
		c.prepareRebalance(g, fmt.Sprintf("freshly-loaded group %s (size %d) is over capacity %d", g.name, len(g.members), max))
	}
}

// Close answers every parked JoinGroup and SyncGroup with NOT_COORDINATOR,
// stops the coordinator and closes its store after pending writes land.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	for _, g := range c.groups {
		for _, m := range g.orderedMembers() {
			g.completeJoin(m, func(r *kmsg.JoinGroupResponse) {
				r.MemberID = m.id
				r.ErrorCode = kerr.NotCoordinator.Code
			})
			g.completeSync(m, func(r *kmsg.SyncGroupResponse) { r.ErrorCode = kerr.NotCoordinator.Code })
		}
	}
	c.notifyLocked()
	c.mu.Unlock()
	close(c.done)
	c.loop.Wait()
	return c.store.close()
}

// lock takes the coordinator lock and runs every deadline that is due, so
// that each operation sees the state as of now.
func (c *Coordinator) lock() {
	c.mu.Lock()
	c.runDueLocked()
}

// unlock runs deadlines the operation made due (a zero initial rebalance
// delay, say), wakes test waiters and the background loop, and unlocks.
func (c *Coordinator) unlock() {
	c.runDueLocked()
	c.notifyLocked()
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Coordinator) runDueLocked() {
	if c.closed {
		return
	}
	now := c.now()
	for e := c.timers.popDue(now); e != nil; e = c.timers.popDue(now) {
		e.fn()
	}
}

func (c *Coordinator) notifyLocked() {
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

// runTimers runs deadlines when nothing else does: a parked JoinGroup waits
// for the rebalance timeout even if no other request arrives.
func (c *Coordinator) runTimers() {
	defer c.loop.Done()
	t := time.NewTimer(maxTimerPoll)
	defer t.Stop()
	for {
		c.mu.Lock()
		next, ok := c.timers.next()
		now := c.now()
		c.mu.Unlock()
		wait := maxTimerPoll
		if ok {
			wait = min(max(next.Sub(now), 0), maxTimerPoll)
		}
		t.Reset(wait)
		select {
		case <-c.done:
			return
		case <-c.wake:
		case <-t.C:
			c.lock()
			c.unlock()
		}
	}
}

func (c *Coordinator) schedule(kind timerKind, g *group, memberID string, d time.Duration, fn func()) {
	key := timerKey{kind: kind, group: g.name, member: memberID}
	c.timers.schedule(key, c.now().Add(d), func() {
		// A deadline outlives nothing: a deleted (or recreated) group's
		// deadlines do not touch the group now under that name.
		if c.groups[g.name] == g {
			fn()
		}
	})
}

func (c *Coordinator) cancel(kind timerKind, g *group, memberID string) {
	c.timers.cancel(timerKey{kind: kind, group: g.name, member: memberID})
}

// write queues durable changes in the order they were made in memory.
// Called with c.mu held; wait on the result after unlocking.
func (c *Coordinator) write(ops []writeOp) <-chan error {
	return c.store.enqueue(ops)
}

func (c *Coordinator) putGroupOp(g *group) writeOp {
	return writeOp{Key: groupKey(g.name), Value: encodeGroupRecord(g.record())}
}

// persistGroup records the group's metadata without waiting for the sync:
// since one writer applies changes in order, the group is on disk before
// any of its offsets is acknowledged. (The leader's assignment is the one
// write answers wait for: storeLeaderSync.)
// (A failed write is logged by the store.)
func (c *Coordinator) persistGroup(g *group) {
	c.write([]writeOp{c.putGroupOp(g)})
}

func (c *Coordinator) nextSeq() uint64 {
	c.lastSeq++
	return c.lastSeq
}

// clientInfoKey carries the requesting client's id and address.
type clientInfoKey struct{}

type clientInfo struct{ clientID, host string }

// WithClientInfo returns a context that tells the coordinator which client
// sent a request: the request header's client id, and the client's host
// (Kafka shows "/" + IP address). JoinGroup uses them for new member ids
// and DescribeGroups reports them.
func WithClientInfo(ctx context.Context, clientID, clientHost string) context.Context {
	return context.WithValue(ctx, clientInfoKey{}, clientInfo{clientID, clientHost})
}

func clientFrom(ctx context.Context) clientInfo {
	ci, _ := ctx.Value(clientInfoKey{}).(clientInfo)
	return ci
}

// maxStringLen is the longest string a non-flexible (int16 length) version
// of a request or response can carry. Every id the coordinator stores and
// later answers with must fit it, or an older client's response would be
// malformed.
const maxStringLen = 1<<15 - 1

// memberIDSuffixLen is the "-" and UUID newMemberID appends.
const memberIDSuffixLen = 37

// newMemberID builds a member id as Kafka does: the instance id (static
// members) or the client id, a dash, and a random UUID. A prefix so long
// that the id would not fit an int16 string is cut (at a UTF-8 boundary):
// Kafka would build an id that JoinGroup v0-v5 and DescribeGroups v0-v4
// cannot encode.
func newMemberID(clientID string, instanceID *string) string {
	prefix := clientID
	if instanceID != nil {
		prefix = *instanceID
	}
	if len(prefix) > maxStringLen-memberIDSuffixLen {
		cut := maxStringLen - memberIDSuffixLen
		for cut > 0 && !utf8.RuneStart(prefix[cut]) {
			cut--
		}
		prefix = prefix[:cut]
	}
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%s-%x-%x-%x-%x-%x", prefix, u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// GroupInfo describes a group for metrics and the CLI.
type GroupInfo struct {
	Group        string
	State        string
	ProtocolType string
	Protocol     string
	Generation   int32
	Leader       string
	Members      []MemberInfo
}

// MemberInfo describes one member of a group.
type MemberInfo struct {
	MemberID   string
	InstanceID string // "" for dynamic members
	ClientID   string
	ClientHost string
}

// Groups lists every group, sorted by name.
func (c *Coordinator) Groups() []GroupInfo {
	c.lock()
	defer c.unlock()
	out := make([]GroupInfo, 0, len(c.groups))
	for _, g := range c.groups {
		gi := GroupInfo{
			Group:        g.name,
			State:        g.stateName(),
			ProtocolType: g.protocolType,
			Protocol:     g.protocol,
			Generation:   g.generation,
			Leader:       g.leader,
		}
		if cg := g.consumer; cg != nil {
			gi.Generation = cg.epoch
			for _, id := range cg.sortedMemberIDs() {
				m := cg.members[id]
				mi := MemberInfo{MemberID: m.id, ClientID: m.clientID, ClientHost: m.clientHost}
				if m.instanceID != nil {
					mi.InstanceID = *m.instanceID
				}
				gi.Members = append(gi.Members, mi)
			}
		}
		for _, m := range g.orderedMembers() {
			mi := MemberInfo{MemberID: m.id, ClientID: m.clientID, ClientHost: m.clientHost}
			if m.instanceID != nil {
				mi.InstanceID = *m.instanceID
			}
			gi.Members = append(gi.Members, mi)
		}
		out = append(out, gi)
	}
	slices.SortFunc(out, func(a, b GroupInfo) int {
		if a.Group < b.Group {
			return -1
		}
		if a.Group > b.Group {
			return 1
		}
		return 0
	})
	return out
}

// CommittedOffsets returns a copy of a group's committed offsets (topic ->
// partition -> offset), or nil if the group does not exist. Pending
// transactional offsets are not included.
func (c *Coordinator) CommittedOffsets(groupID string) map[string]map[int32]int64 {
	c.lock()
	defer c.unlock()
	g := c.groups[groupID]
	if g == nil {
		return nil
	}
	out := make(map[string]map[int32]int64, len(g.offsets))
	for t, ps := range g.offsets {
		m := make(map[int32]int64, len(ps))
		for p, v := range ps {
			m[p] = v.offset
		}
		out[t] = m
	}
	return out
}
