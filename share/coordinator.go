// Package share is the share-group coordinator (KIP-932, Kafka's queues):
// membership and assignment (ShareGroupHeartbeat, ShareGroupDescribe), share
// sessions and record acquisition with locks and delivery counts
// (ShareFetch, ShareAcknowledge), the share-group offset admin APIs and
// group configs, with each share-partition's state durable in pebble.
//
// Unlike a consumer group, every member may read every partition: records
// are handed out one lock at a time, so the coordinator, not the client,
// decides who gets which record. A record is delivered until a member
// accepts or rejects it or it has been delivered
// group.share.delivery.count.limit times; an accepted record is never
// delivered again, also across a broker kill -9.
package share

import (
	"context"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/oncelog/oncelog/internal/fsx"
	"github.com/oncelog/oncelog/partition"
)

// Config holds the broker's share-group settings, under Kafka's names.
type Config struct {
	Dir          string
	FS           fsx.FS
	Logger       *slog.Logger
	OnStoreFatal func(error)

	// SessionTimeout is group.share.session.timeout.ms (Kafka: 45000).
	SessionTimeout time.Duration
	// HeartbeatInterval is group.share.heartbeat.interval.ms (5000).
	HeartbeatInterval time.Duration
	// MaxSize is group.share.max.size, members per group (200).
	MaxSize int
	// RecordLockDuration is group.share.record.lock.duration.ms (30000),
	// the default of a group's share.record.lock.duration.ms.
	RecordLockDuration time.Duration
	// DeliveryCountLimit is group.share.delivery.count.limit (5).
	DeliveryCountLimit int
	// PartitionMaxRecordLocks is group.share.partition.max.record.locks
	// (2000): the most records in flight per share-partition.
	PartitionMaxRecordLocks int
	// MaxShareSessions is group.share.max.share.sessions (2000).
	MaxShareSessions int
	// FetchMaxBytes bounds the record bytes of one ShareFetch partition.
	FetchMaxBytes int

	Topics Topics
	// ClassicGroup reports whether id names a classic consumer group: a
	// group id is one type only.
	ClassicGroup func(id string) bool
}

// Defaults are Kafka 4.4's.
func (c *Config) setDefaults() {
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 45 * time.Second
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 5 * time.Second
	}
	if c.MaxSize <= 0 {
		c.MaxSize = 200
	}
	if c.RecordLockDuration <= 0 {
		c.RecordLockDuration = 30 * time.Second
	}
	if c.DeliveryCountLimit <= 0 {
		c.DeliveryCountLimit = 5
	}
	if c.PartitionMaxRecordLocks <= 0 {
		c.PartitionMaxRecordLocks = 2000
	}
	if c.MaxShareSessions <= 0 {
		c.MaxShareSessions = 2000
	}
	if c.FetchMaxBytes <= 0 {
		c.FetchMaxBytes = 50 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ClassicGroup == nil {
		c.ClassicGroup = func(string) bool { return false }
	}
}

// Topic is what the coordinator needs of a topic.
type Topic struct {
	Name       string
	ID         [16]byte
	Partitions []*partition.Partition
}

// Topics looks topics up (the broker).
type Topics interface {
	TopicByName(name string) (Topic, bool)
	TopicByID(id [16]byte) (Topic, bool)
}

type tp struct {
	id [16]byte
	p  int32
}

type group struct {
	id      string
	epoch   int32
	configs map[string]string
	members map[string]*member
	parts   map[tp]*sharePartition
	// live is false for a group that only has configs: as in Kafka,
	// setting a group's configs does not make the group exist.
	live bool
	// subscribed is the topic metadata the assignment was computed
	// from; a change (a topic created, grown or deleted) bumps the epoch.
	subscribed string
}

type member struct {
	id, clientID, host string
	rack               *string
	epoch, prevEpoch   int32
	topics             []string // sorted
	assign             map[[16]byte][]int32
	last               time.Time
}

type sessionKey struct{ group, member string }

type session struct {
	epoch int32
	parts map[tp]bool
	// conn is closed when the connection that opened the session goes
	// away: Kafka ends a share session with its connection and releases
	// its locks.
	conn <-chan struct{}
}

// Coordinator owns every share group.
type Coordinator struct {
	cfg   Config
	store *store

	mu       sync.Mutex
	groups   map[string]*group
	sessions map[sessionKey]*session
	// released is closed (and replaced) whenever records become
	// available again, waking parked ShareFetches.
	released chan struct{}
	// watched are the connections with a goroutine waiting for their
	// close (one per connection holding sessions).
	watched map[<-chan struct{}]bool

	stop    chan struct{}
	stopped chan struct{}
}

// Open loads the stored share groups and starts the sweeper (session
// timeouts, lock expiry).
func Open(cfg Config) (*Coordinator, error) {
	cfg.setDefaults()
	st, err := openStore(filepath.Clean(cfg.Dir), cfg.FS, cfg.Logger, cfg.OnStoreFatal)
	if err != nil {
		return nil, err
	}
	groups, parts, err := st.load()
	if err != nil {
		st.close()
		return nil, err
	}
	c := &Coordinator{
		cfg:      cfg,
		store:    st,
		groups:   map[string]*group{},
		sessions: map[sessionKey]*session{},
		released: make(chan struct{}),
		watched:  map[<-chan struct{}]bool{},
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	for id, g := range groups {
		c.groups[id] = &group{id: id, epoch: g.epoch, configs: g.configs, live: g.live, members: map[string]*member{}, parts: map[tp]*sharePartition{}}
	}
	for _, p := range parts {
		g := c.groups[p.group]
		if g == nil {
			g = c.newGroup(p.group)
		}
		g.live = true
		g.parts[tp{p.id, p.part}] = p.sp
	}
	go c.sweep()
	return c, nil
}

// Close stops the sweeper and the store.
func (c *Coordinator) Close() error {
	select {
	case <-c.stop:
		return nil
	default:
	}
	close(c.stop)
	<-c.stopped
	return c.store.close()
}

// liveGroup returns the group id names, nil if there is none or it only
// has configs.
func (c *Coordinator) liveGroup(id string) *group {
	if g := c.groups[id]; g != nil && g.live {
		return g
	}
	return nil
}

// makeLiveLocked returns group id, creating it, and makes it exist.
func (c *Coordinator) makeLiveLocked(id string) *group {
	g := c.groups[id]
	if g == nil {
		g = c.newGroup(id)
	}
	g.live = true
	return g
}

func (c *Coordinator) newGroup(id string) *group {
	g := &group{id: id, configs: map[string]string{}, members: map[string]*member{}, parts: map[tp]*sharePartition{}}
	c.groups[id] = g
	return g
}

// wakeLocked wakes parked fetches after records were released.
func (c *Coordinator) wakeLocked() {
	close(c.released)
	c.released = make(chan struct{})
}

// sweepInterval is how often locks and sessions are checked: often enough
// for a lock of a second to expire within a tenth of it.
func (c *Coordinator) sweepInterval() time.Duration {
	d := min(c.cfg.RecordLockDuration, c.cfg.SessionTimeout) / 10
	return max(10*time.Millisecond, min(d, time.Second))
}

func (c *Coordinator) sweep() {
	defer close(c.stopped)
	t := time.NewTicker(c.sweepInterval())
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			c.sweepOnce(now)
		}
	}
}

// sweepOnce fences members past their session timeout and releases
// expired locks.
func (c *Coordinator) sweepOnce(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ops []writeOp
	woke := false
	for _, g := range c.groups {
		for _, m := range g.members {
			if now.Sub(m.last) >= c.sessionTimeout(g) {
				ops = append(ops, c.removeMemberLocked(g, m.id)...)
				woke = true
			}
		}
		limit := c.deliveryLimit(g)
		for k, sp := range g.parts {
			if sp.expire(now, limit) {
				ops = append(ops, writeOp{Key: partitionKey(g.id, k.id, k.p), Value: sp.encode()})
				woke = true
			}
		}
	}
	if woke {
		c.wakeLocked()
	}
	// Durable in order with later changes; nothing waits on it.
	c.store.enqueue(ops)
}

// removeMemberLocked drops m from g (left or fenced): its sessions go, its
// locks are released, the others get a new assignment.
func (c *Coordinator) removeMemberLocked(g *group, id string) []writeOp {
	delete(g.members, id)
	delete(c.sessions, sessionKey{g.id, id})
	g.epoch++
	c.assignLocked(g)
	ops := []writeOp{{Key: groupKey(g.id), Value: c.encodeGroupLocked(g)}}
	limit := c.deliveryLimit(g)
	for k, sp := range g.parts {
		if sp.releaseOwned(id, limit) {
			ops = append(ops, writeOp{Key: partitionKey(g.id, k.id, k.p), Value: sp.encode()})
		}
	}
	return ops
}

func (c *Coordinator) encodeGroupLocked(g *group) []byte {
	return encodeGroup(storedGroup{epoch: g.epoch, configs: g.configs, live: g.live})
}

// watchConnLocked ends the sessions opened on conn when it closes.
func (c *Coordinator) watchConnLocked(conn <-chan struct{}) {
	if conn == nil || c.watched[conn] {
		return
	}
	c.watched[conn] = true
	go func() {
		select {
		case <-conn:
		case <-c.stop:
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.watched, conn)
		var ops []writeOp
		for k, s := range c.sessions {
			if s.conn != conn {
				continue
			}
			if g := c.groups[k.group]; g != nil {
				c.releaseSessionLocked(g, k.member, s, &ops)
			}
			delete(c.sessions, k)
		}
		c.store.enqueue(ops)
	}()
}

// sortedTopics returns a member's subscription sorted and deduplicated.
func sortedTopics(names []string) []string {
	out := append([]string(nil), names...)
	sort.Strings(out)
	n := 0
	for i, s := range out {
		if i == 0 || s != out[i-1] {
			out[n] = s
			n++
		}
	}
	return out[:n]
}

// waitDurable waits for queued ops; ctx ending first leaves them queued
// (they still apply in order).
func waitDurable(ctx context.Context, done <-chan error) error {
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
