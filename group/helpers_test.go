package group

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// fakeClock is the only clock the tests use: nothing expires unless a test
// advances it.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

type testEnv struct {
	t     *testing.T
	c     *Coordinator
	clock *fakeClock
	cfg   Config
}

// newEnv opens a coordinator on a fresh directory with a fake clock and no
// initial rebalance delay unless cfg says otherwise.
func newEnv(t *testing.T, mod ...func(*Config)) *testEnv {
	t.Helper()
	clock := newFakeClock()
	cfg := Config{
		NodeID: 1,
		Dir:    t.TempDir(),
		Now:    clock.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, m := range mod {
		m(&cfg)
	}
	e := &testEnv{t: t, clock: clock, cfg: cfg}
	e.open()
	return e
}

func (e *testEnv) open() {
	e.t.Helper()
	c, err := Open(e.cfg)
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	e.c = c
	e.t.Cleanup(func() { c.Close() })
}

// reopen closes the coordinator and opens a new one on the same directory.
func (e *testEnv) reopen() {
	e.t.Helper()
	if err := e.c.Close(); err != nil {
		e.t.Fatalf("Close: %v", err)
	}
	e.open()
}

// advance moves the clock and runs what became due.
func (e *testEnv) advance(d time.Duration) {
	e.clock.Advance(d)
	e.c.lock()
	e.c.unlock()
}

// waitFor blocks until cond, evaluated under the coordinator lock, holds.
// It wakes on every coordinator state change; it never sleeps.
func (e *testEnv) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		e.c.mu.Lock()
		if cond() {
			e.c.mu.Unlock()
			return
		}
		if e.c.changed == nil {
			e.c.changed = make(chan struct{})
		}
		ch := e.c.changed
		e.c.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			e.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// group returns the named group's state under the lock.
func (e *testEnv) inspect(name string, fn func(g *group)) {
	e.c.mu.Lock()
	defer e.c.mu.Unlock()
	fn(e.c.groups[name])
}

func (e *testEnv) awaitingJoin(name string, n int) {
	e.t.Helper()
	e.waitFor("members parked in JoinGroup", func() bool {
		g := e.c.groups[name]
		return g != nil && g.numAwaitingJoin == n
	})
}

func (e *testEnv) awaitingSync(name string, n int) {
	e.t.Helper()
	e.waitFor("members parked in SyncGroup", func() bool {
		g := e.c.groups[name]
		if g == nil {
			return false
		}
		k := 0
		for _, m := range g.members {
			if m.awaitingSync() {
				k++
			}
		}
		return k == n
	})
}

func (e *testEnv) state(name string) string {
	var s string
	e.inspect(name, func(g *group) {
		if g == nil {
			s = "<none>"
			return
		}
		s = g.state.String()
	})
	return s
}

// consumerMeta is a consumer protocol subscription to topics.
func consumerMeta(topics ...string) []byte {
	m := kmsg.NewConsumerMemberMetadata()
	m.Version = 3
	m.Topics = topics
	return m.AppendTo(nil)
}

type joinOpt func(*kmsg.JoinGroupRequest)

func withInstance(id string) joinOpt {
	return func(r *kmsg.JoinGroupRequest) { r.InstanceID = &id }
}

func withProtocols(ps ...kmsg.JoinGroupRequestProtocol) joinOpt {
	return func(r *kmsg.JoinGroupRequest) { r.Protocols = ps }
}

func withVersion(v int16) joinOpt {
	return func(r *kmsg.JoinGroupRequest) { r.Version = v }
}

func withMember(id string) joinOpt {
	return func(r *kmsg.JoinGroupRequest) { r.MemberID = id }
}

func proto(name string, meta []byte) kmsg.JoinGroupRequestProtocol {
	return kmsg.JoinGroupRequestProtocol{Name: name, Metadata: meta}
}

// joinReq is a v9 consumer JoinGroup with a 10s session and 30s rebalance
// timeout subscribing to topic "t".
func joinReq(group string, opts ...joinOpt) *kmsg.JoinGroupRequest {
	r := kmsg.NewPtrJoinGroupRequest()
	r.Version = 9
	r.Group = group
	r.SessionTimeoutMillis = 10000
	r.RebalanceTimeoutMillis = 30000
	r.ProtocolType = "consumer"
	r.Protocols = []kmsg.JoinGroupRequestProtocol{proto("range", consumerMeta("t"))}
	for _, o := range opts {
		o(r)
	}
	return r
}

func (e *testEnv) ctx(client string) context.Context {
	return WithClientInfo(context.Background(), client, "/127.0.0.1")
}

// joinAsync sends a JoinGroup on its own goroutine, as the wire layer does.
func (e *testEnv) joinAsync(client string, req *kmsg.JoinGroupRequest) <-chan *kmsg.JoinGroupResponse {
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	go func() { ch <- e.c.JoinGroup(e.ctx(client), req) }()
	return ch
}

func (e *testEnv) syncAsync(req *kmsg.SyncGroupRequest) <-chan *kmsg.SyncGroupResponse {
	ch := make(chan *kmsg.SyncGroupResponse, 1)
	go func() { ch <- e.c.SyncGroup(context.Background(), req) }()
	return ch
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("no answer")
		panic("unreachable")
	}
}

// newMemberID does the KIP-394 dance: a v4+ join without a member id gets
// MEMBER_ID_REQUIRED and the id to use.
func (e *testEnv) newMemberID(client, group string) string {
	e.t.Helper()
	r := e.c.JoinGroup(e.ctx(client), joinReq(group))
	if r.ErrorCode != 79 || r.MemberID == "" {
		e.t.Fatalf("first join: error %d member %q, want MEMBER_ID_REQUIRED with an id", r.ErrorCode, r.MemberID)
	}
	return r.MemberID
}

func syncReq(group, member string, generation int32, assignments map[string]string) *kmsg.SyncGroupRequest {
	r := kmsg.NewPtrSyncGroupRequest()
	r.Version = 5
	r.Group = group
	r.MemberID = member
	r.Generation = generation
	for m, a := range assignments {
		r.GroupAssignment = append(r.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: m, MemberAssignment: []byte(a)})
	}
	return r
}

func (e *testEnv) heartbeat(group, member string, generation int32) int16 {
	r := kmsg.NewPtrHeartbeatRequest()
	r.Version = 4
	r.Group = group
	r.MemberID = member
	r.Generation = generation
	return e.c.Heartbeat(context.Background(), r).ErrorCode
}

// stableGroup forms a group of n dynamic members, all synced; it returns
// the member ids (the first is the leader) and the generation. The
// environment must have no initial rebalance delay.
func (e *testEnv) stableGroup(name string, n int) ([]string, int32) {
	e.t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.newMemberID("client", name)
	}
	// With no initial delay the first member forms a generation alone.
	r := e.c.JoinGroup(e.ctx("client"), joinReq(name, withMember(ids[0])))
	if r.ErrorCode != 0 {
		e.t.Fatalf("first join: error %d", r.ErrorCode)
	}
	gen := r.Generation
	if n > 1 {
		var joins []<-chan *kmsg.JoinGroupResponse
		for i := 1; i < n; i++ {
			joins = append(joins, e.joinAsync("client", joinReq(name, withMember(ids[i]))))
			e.awaitingJoin(name, i)
		}
		// The leader rejoins (as a SyncGroup answered
		// REBALANCE_IN_PROGRESS would make it) and so completes the phase.
		r = e.c.JoinGroup(e.ctx("client"), joinReq(name, withMember(ids[0])))
		if r.ErrorCode != 0 || r.LeaderID != ids[0] {
			e.t.Fatalf("leader rejoin: error %d leader %q", r.ErrorCode, r.LeaderID)
		}
		gen = r.Generation
		for _, ch := range joins {
			if jr := recv(e.t, ch); jr.ErrorCode != 0 || jr.Generation != gen {
				e.t.Fatalf("join: error %d generation %d, want generation %d", jr.ErrorCode, jr.Generation, gen)
			}
		}
	}
	assign := map[string]string{}
	for i, id := range ids {
		assign[id] = fmt.Sprintf("a%d", i)
	}
	var syncs []<-chan *kmsg.SyncGroupResponse
	for _, id := range ids[1:] {
		syncs = append(syncs, e.syncAsync(syncReq(name, id, gen, nil)))
	}
	e.awaitingSync(name, n-1)
	if r := e.c.SyncGroup(context.Background(), syncReq(name, ids[0], gen, assign)); r.ErrorCode != 0 {
		e.t.Fatalf("leader sync: %d", r.ErrorCode)
	}
	for _, ch := range syncs {
		if r := recv(e.t, ch); r.ErrorCode != 0 {
			e.t.Fatalf("follower sync: %d", r.ErrorCode)
		}
	}
	return ids, gen
}

func commitReq(group string, generation int32, member string, offsets map[string]map[int32]int64) *kmsg.OffsetCommitRequest {
	r := kmsg.NewPtrOffsetCommitRequest()
	r.Version = 9
	r.Group = group
	r.Generation = generation
	r.MemberID = member
	for _, topic := range sortedKeys(offsets) {
		t := kmsg.NewOffsetCommitRequestTopic()
		t.Topic = topic
		for _, p := range sortedKeys(offsets[topic]) {
			rp := kmsg.NewOffsetCommitRequestTopicPartition()
			rp.Partition = p
			rp.Offset = offsets[topic][p]
			t.Partitions = append(t.Partitions, rp)
		}
		r.Topics = append(r.Topics, t)
	}
	return r
}

// commitErrors returns each partition's error code, keyed "topic/partition".
func commitErrors(r *kmsg.OffsetCommitResponse) map[string]int16 {
	out := map[string]int16{}
	for _, t := range r.Topics {
		for _, p := range t.Partitions {
			out[tp(t.Topic, p.Partition)] = p.ErrorCode
		}
	}
	return out
}

func tp(topic string, p int32) string { return fmt.Sprintf("%s/%d", topic, p) }

// fetch returns OffsetFetch v8 results for one group, keyed "topic/partition".
func (e *testEnv) fetch(group string, requireStable bool, topics map[string][]int32) (map[string]int64, map[string]int16, int16) {
	r := kmsg.NewPtrOffsetFetchRequest()
	r.Version = 8
	r.RequireStable = requireStable
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group = group
	if topics != nil {
		rg.Topics = []kmsg.OffsetFetchRequestGroupTopic{}
	}
	for _, t := range sortedKeys(topics) {
		rt := kmsg.NewOffsetFetchRequestGroupTopic()
		rt.Topic = t
		rt.Partitions = topics[t]
		rg.Topics = append(rg.Topics, rt)
	}
	r.Groups = append(r.Groups, rg)
	resp := e.c.OffsetFetch(context.Background(), r)
	offsets, errs := map[string]int64{}, map[string]int16{}
	g := resp.Groups[0]
	for _, t := range g.Topics {
		for _, p := range t.Partitions {
			offsets[tp(t.Topic, p.Partition)] = p.Offset
			errs[tp(t.Topic, p.Partition)] = p.ErrorCode
		}
	}
	return offsets, errs, g.ErrorCode
}
