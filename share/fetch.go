package share

import (
	"context"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/partition"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// defaultMaxRecords is what a ShareFetch with MaxRecords 0 acquires
// (Kafka's share.max.fetch.records default is 500).
const defaultMaxRecords = 500

// ackPart is one partition's acknowledgements of a request.
type ackPart struct {
	tp      tp
	batches []ackBatch
}

func acksOfFetch(topics []kmsg.ShareFetchRequestTopic) []ackPart {
	var out []ackPart
	for _, t := range topics {
		for _, p := range t.Partitions {
			if len(p.AcknowledgementBatches) == 0 {
				continue
			}
			ap := ackPart{tp: tp{t.TopicID, p.Partition}}
			for _, b := range p.AcknowledgementBatches {
				ap.batches = append(ap.batches, ackBatch{b.FirstOffset, b.LastOffset, b.AcknowledgeTypes})
			}
			out = append(out, ap)
		}
	}
	return out
}

func acksOfAcknowledge(topics []kmsg.ShareAcknowledgeRequestTopic) []ackPart {
	var out []ackPart
	for _, t := range topics {
		for _, p := range t.Partitions {
			ap := ackPart{tp: tp{t.TopicID, p.Partition}}
			for _, b := range p.AcknowledgementBatches {
				ap.batches = append(ap.batches, ackBatch{b.FirstOffset, b.LastOffset, b.AcknowledgeTypes})
			}
			out = append(out, ap)
		}
	}
	return out
}

// partitionOf finds a live partition, or the error code for it.
func (c *Coordinator) partitionOf(k tp) (*partition.Partition, int16) {
	t, ok := c.cfg.Topics.TopicByID(k.id)
	if !ok {
		return nil, kerr.UnknownTopicID.Code
	}
	if k.p < 0 || int(k.p) >= len(t.Partitions) {
		return nil, kerr.UnknownTopicOrPartition.Code
	}
	return t.Partitions[k.p], 0
}

// sharePartitionLocked returns g's state for k, initialized at the log end
// (share.auto.offset.reset latest) or start (earliest) on first use.
func (c *Coordinator) sharePartitionLocked(g *group, k tp, p *partition.Partition) *sharePartition {
	if sp := g.parts[k]; sp != nil {
		return sp
	}
	start := p.HighWatermark()
	if c.groupConfig(g, cfgAutoOffsetReset) == "earliest" {
		start = p.LogStartOffset()
	}
	sp := newSharePartition(start)
	g.parts[k] = sp
	return sp
}

// ackLocked applies one request's acknowledgements; codes holds each
// partition's result. Changed partitions are added to ops.
func (c *Coordinator) ackLocked(g *group, member string, acks []ackPart, renew bool, ops *[]writeOp) map[tp]int16 {
	codes := map[tp]int16{}
	limit, lock, now := c.deliveryLimit(g), c.lockDuration(g), time.Now()
	for _, a := range acks {
		if ec := validateBatches(a.batches, renew); ec != 0 {
			codes[a.tp] = ec
			continue
		}
		p, ec := c.partitionOf(a.tp)
		if ec != 0 {
			codes[a.tp] = ec
			continue
		}
		sp := c.sharePartitionLocked(g, a.tp, p)
		if ec := sp.acknowledge(member, a.batches, limit, lock, now); ec != 0 {
			codes[a.tp] = ec
			continue
		}
		codes[a.tp] = 0
		*ops = append(*ops, writeOp{Key: partitionKey(g.id, a.tp.id, a.tp.p), Value: sp.encode()})
		if releases(a.batches) {
			// Another member's parked fetch can take them now.
			c.wakeLocked()
		}
	}
	return codes
}

func releases(batches []ackBatch) bool {
	for _, b := range batches {
		for _, t := range b.types {
			if t == ackRelease {
				return true
			}
		}
	}
	return false
}

// releaseSessionLocked releases member's locks on the session's partitions.
func (c *Coordinator) releaseSessionLocked(g *group, member string, s *session, ops *[]writeOp) {
	limit := c.deliveryLimit(g)
	woke := false
	for k := range s.parts {
		if sp := g.parts[k]; sp != nil && sp.releaseOwned(member, limit) {
			*ops = append(*ops, writeOp{Key: partitionKey(g.id, k.id, k.p), Value: sp.encode()})
			woke = true
		}
	}
	if woke {
		c.wakeLocked()
	}
}

func strp(s string) *string { return &s }

// Fetch answers ShareFetch: session bookkeeping (epoch 0 opens, -1 closes,
// any other must be the session's next epoch), piggybacked
// acknowledgements, then acquisition of records for the session's
// partitions, waiting up to MaxWait for some. conn is closed when the
// client's connection goes away: that ends a wait early and ends the
// sessions opened on it.
func (c *Coordinator) Fetch(ctx context.Context, conn <-chan struct{}, req *kmsg.ShareFetchRequest, received time.Time) *kmsg.ShareFetchResponse {
	resp := req.ResponseKind().(*kmsg.ShareFetchResponse)
	var groupID, memberID string
	if req.GroupID != nil {
		groupID = *req.GroupID
	}
	if req.MemberID != nil {
		memberID = *req.MemberID
	}
	renew := req.Version >= 2 && req.IsRenewAck
	fail := func(e *kerr.Error, msg string) *kmsg.ShareFetchResponse {
		resp.ErrorCode, resp.ErrorMessage = e.Code, strp(msg)
		return resp
	}
	if memberID == "" || len(memberID) > 36 || groupID == "" {
		return fail(kerr.InvalidRequest, "GroupId and MemberId must be set; MemberId at most 36 characters.")
	}
	acks := acksOfFetch(req.Topics)
	if renew {
		// KIP-1222: a renewal only acknowledges; it fetches nothing.
		if req.MaxBytes != 0 || req.MinBytes != 0 || req.MaxRecords != 0 || req.MaxWaitMillis != 0 {
			return fail(kerr.InvalidRequest, "A renew-acknowledge ShareFetch must not ask for records.")
		}
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				if len(p.AcknowledgementBatches) == 0 {
					return fail(kerr.InvalidRequest, "A renew-acknowledge ShareFetch names only partitions it acknowledges.")
				}
			}
		}
	}
	if c.cfg.ClassicGroup(groupID) {
		return fail(kerr.GroupIDNotFound, "Group "+groupID+" is not a share group.")
	}

	key := sessionKey{groupID, memberID}
	c.mu.Lock()
	g := c.liveGroup(groupID)
	if req.ShareSessionEpoch == 0 {
		g = c.makeLiveLocked(groupID)
	}
	resp.AcquisitionLockTimeoutMillis = int32(c.lockDuration(g).Milliseconds())
	var ops []writeOp
	s := c.sessions[key]
	switch {
	case req.ShareSessionEpoch == -1:
		if s == nil || g == nil {
			c.mu.Unlock()
			return fail(kerr.ShareSessionNotFound, "The share session was not found.")
		}
		codes := c.ackLocked(g, memberID, acks, renew, &ops)
		c.releaseSessionLocked(g, memberID, s, &ops)
		delete(c.sessions, key)
		done := c.store.enqueue(ops)
		c.mu.Unlock()
		c.fillAckCodes(resp, codes, waitDurable(ctx, done))
		return resp
	case req.ShareSessionEpoch == 0:
		if len(acks) > 0 {
			c.mu.Unlock()
			return fail(kerr.InvalidRequest, "Acknowledgements are not allowed when opening a share session.")
		}
		if s != nil {
			// A new session replaces the old: its locks go back.
			c.releaseSessionLocked(g, memberID, s, &ops)
			delete(c.sessions, key)
		}
		if len(c.sessions) >= c.cfg.MaxShareSessions {
			done := c.store.enqueue(ops)
			c.mu.Unlock()
			waitDurable(ctx, done)
			return fail(kerr.ShareSessionLimitReached, "The broker holds group.share.max.share.sessions share sessions.")
		}
		s = &session{parts: map[tp]bool{}, conn: conn}
		c.sessions[key] = s
		c.watchConnLocked(conn)
	case s == nil || g == nil:
		c.mu.Unlock()
		return fail(kerr.ShareSessionNotFound, "The share session was not found.")
	case req.ShareSessionEpoch != s.epoch:
		c.mu.Unlock()
		return fail(kerr.InvalidShareSessionEpoch, "The share session epoch is invalid.")
	}
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			s.parts[tp{t.TopicID, p.Partition}] = true
		}
	}
	for _, f := range req.ForgottenTopicsData {
		for _, p := range f.Partitions {
			delete(s.parts, tp{f.TopicID, p})
		}
	}
	s.epoch = nextEpoch(s.epoch)
	codes := c.ackLocked(g, memberID, acks, renew, &ops)
	// Snapshots are queued under the lock that took them, so the store
	// applies them in the order the state changed.
	dones := []<-chan error{c.store.enqueue(ops)}
	c.mu.Unlock()
	if renew {
		c.fillAckCodes(resp, codes, waitAll(ctx, dones))
		return resp
	}

	maxRecords := int(req.MaxRecords)
	if maxRecords <= 0 {
		maxRecords = defaultMaxRecords
	}
	deadline := received.Add(time.Duration(req.MaxWaitMillis) * time.Millisecond)
	var w *partition.Watcher
	var watched []*partition.Partition
	defer func() {
		for _, p := range watched {
			p.Unwatch(w)
		}
	}()
	for {
		got, wake, done := c.acquire(g, key, s, maxRecords)
		dones = append(dones, done)
		if got != nil || !time.Now().Before(deadline) {
			err := waitAll(ctx, dones)
			c.fillFetch(resp, got, s)
			c.fillAckCodes(resp, codes, err)
			return resp
		}
		if w == nil {
			w = partition.NewWatcher()
			for k := range s.parts {
				if p, ec := c.partitionOf(k); ec == 0 {
					p.Watch(w)
					watched = append(watched, p)
				}
			}
			continue
		}
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-w.C:
		case <-wake:
		case <-t.C:
		case <-ctx.Done():
			deadline = time.Now()
		case <-conn:
			deadline = time.Now()
		}
		t.Stop()
	}
}

// waitAll waits for every queued write; the first error wins.
func waitAll(ctx context.Context, dones []<-chan error) error {
	var first error
	for _, d := range dones {
		if err := waitDurable(ctx, d); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func nextEpoch(e int32) int32 {
	if e == 1<<31-1 {
		return 1
	}
	return e + 1
}

// fetched is one partition's acquisition result.
type fetched struct {
	tp      tp
	code    int16
	ranges  []acquired
	records []byte
}

// acquire takes records for the session's partitions. It returns nil when
// nothing was acquired and no partition has an error, with the channel
// that is closed when records are next released.
func (c *Coordinator) acquire(g *group, key sessionKey, s *session, maxRecords int) ([]fetched, <-chan struct{}, <-chan error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	wake := c.released
	if c.sessions[key] != s {
		// Closed or replaced meanwhile (member fenced): nothing more.
		return []fetched{}, wake, c.store.enqueue(nil)
	}
	var ops []writeOp
	limit, lock, iso, now := c.deliveryLimit(g), c.lockDuration(g), c.isolation(g), time.Now()
	var out []fetched
	answer := false
	for k := range s.parts {
		f := fetched{tp: k}
		p, ec := c.partitionOf(k)
		if ec != 0 {
			f.code, answer = ec, true
			out = append(out, f)
			continue
		}
		if maxRecords <= 0 {
			continue
		}
		sp := c.sharePartitionLocked(g, k, p)
		ranges, changed, err := sp.acquire(p, acquireOptions{
			member: key.member, maxRecords: maxRecords, maxLocks: c.maxRecordLocks(g),
			limit: limit, lock: lock, now: now, isolation: iso, readBytes: 1 << 20,
		})
		if err != nil {
			f.code, answer = kerr.KafkaStorageError.Code, true
			out = append(out, f)
			continue
		}
		if changed {
			ops = append(ops, writeOp{Key: partitionKey(g.id, k.id, k.p), Value: sp.encode()})
		}
		if len(ranges) == 0 {
			continue
		}
		for _, r := range ranges {
			maxRecords -= int(r.LastOffset - r.FirstOffset + 1)
		}
		f.ranges = ranges
		f.records = c.readRange(p, ranges[0].FirstOffset, ranges[len(ranges)-1].LastOffset, iso)
		answer = true
		out = append(out, f)
	}
	done := c.store.enqueue(ops)
	if !answer {
		return nil, wake, done
	}
	return out, wake, done
}

// readRange returns the whole batches holding offsets [first, last].
func (c *Coordinator) readRange(p *partition.Partition, first, last int64, iso partition.Isolation) []byte {
	var out []byte
	off := first
	for off <= last && len(out) < c.cfg.FetchMaxBytes {
		res := p.Read(partition.ReadOptions{Offset: off, MaxBytes: c.cfg.FetchMaxBytes - len(out), MinOneBatch: len(out) == 0, Isolation: iso})
		if res.ErrorCode != 0 || len(res.Records) == 0 {
			break
		}
		data := res.Records
		for len(data) > 0 {
			h, b, rest, err := batch.Next(data)
			if err != nil || h.BaseOffset > last {
				return out
			}
			out = append(out, b...)
			off = h.LastOffset() + 1
			data = rest
		}
	}
	return out
}

func (c *Coordinator) fillFetch(resp *kmsg.ShareFetchResponse, got []fetched, s *session) {
	byTP := map[tp]fetched{}
	for _, f := range got {
		byTP[f.tp] = f
	}
	// Every session partition is answered (a full response): clients
	// confirm acknowledgements by a partition's presence.
	c.mu.Lock()
	keys := make([]tp, 0, len(s.parts))
	for k := range s.parts {
		keys = append(keys, k)
	}
	c.mu.Unlock()
	for _, k := range keys {
		f := byTP[k]
		rp := fetchPartition(resp, k)
		rp.ErrorCode = f.code
		if f.records != nil {
			rp.Records = f.records
		}
		rp.AcquiredRecords = f.ranges
	}
}

func fetchPartition(resp *kmsg.ShareFetchResponse, k tp) *kmsg.ShareFetchResponseTopicPartition {
	var t *kmsg.ShareFetchResponseTopic
	for i := range resp.Topics {
		if resp.Topics[i].TopicID == k.id {
			t = &resp.Topics[i]
		}
	}
	if t == nil {
		nt := kmsg.NewShareFetchResponseTopic()
		nt.TopicID = k.id
		resp.Topics = append(resp.Topics, nt)
		t = &resp.Topics[len(resp.Topics)-1]
	}
	for i := range t.Partitions {
		if t.Partitions[i].Partition == k.p {
			return &t.Partitions[i]
		}
	}
	p := kmsg.NewShareFetchResponseTopicPartition()
	p.Partition = k.p
	// Records is not nullable: the Java client fails to parse a null
	// ("non-nullable field records was serialized as null").
	p.Records = []byte{}
	// Kafka's schema default: no leader hint.
	p.CurrentLeader.LeaderID, p.CurrentLeader.LeaderEpoch = -1, -1
	t.Partitions = append(t.Partitions, p)
	return &t.Partitions[len(t.Partitions)-1]
}

// fillAckCodes sets each acknowledged partition's AcknowledgeErrorCode; a
// failed store write fails every acknowledgement (none is known durable).
func (c *Coordinator) fillAckCodes(resp *kmsg.ShareFetchResponse, codes map[tp]int16, storeErr error) {
	for k, ec := range codes {
		if storeErr != nil && ec == 0 {
			ec = kerr.CoordinatorNotAvailable.Code
		}
		fetchPartition(resp, k).AcknowledgeErrorCode = ec
	}
}

// Acknowledge answers ShareAcknowledge: acknowledgements in the share
// session (which ShareFetch opened); epoch -1 also closes the session,
// releasing its remaining locks.
func (c *Coordinator) Acknowledge(ctx context.Context, req *kmsg.ShareAcknowledgeRequest) *kmsg.ShareAcknowledgeResponse {
	resp := req.ResponseKind().(*kmsg.ShareAcknowledgeResponse)
	var groupID, memberID string
	if req.GroupID != nil {
		groupID = *req.GroupID
	}
	if req.MemberID != nil {
		memberID = *req.MemberID
	}
	fail := func(e *kerr.Error, msg string) *kmsg.ShareAcknowledgeResponse {
		resp.ErrorCode, resp.ErrorMessage = e.Code, strp(msg)
		return resp
	}
	if memberID == "" || len(memberID) > 36 || groupID == "" {
		return fail(kerr.InvalidRequest, "GroupId and MemberId must be set; MemberId at most 36 characters.")
	}
	renew := req.Version >= 2 && req.IsRenewAck
	key := sessionKey{groupID, memberID}
	c.mu.Lock()
	g := c.liveGroup(groupID)
	resp.AcquisitionLockTimeoutMillis = int32(c.lockDuration(g).Milliseconds())
	s := c.sessions[key]
	switch {
	case req.ShareSessionEpoch == 0:
		c.mu.Unlock()
		return fail(kerr.InvalidShareSessionEpoch, "ShareAcknowledge cannot open a share session.")
	case s == nil || g == nil:
		c.mu.Unlock()
		return fail(kerr.ShareSessionNotFound, "The share session was not found.")
	case req.ShareSessionEpoch != -1 && req.ShareSessionEpoch != s.epoch:
		c.mu.Unlock()
		return fail(kerr.InvalidShareSessionEpoch, "The share session epoch is invalid.")
	}
	var ops []writeOp
	codes := c.ackLocked(g, memberID, acksOfAcknowledge(req.Topics), renew, &ops)
	if req.ShareSessionEpoch == -1 {
		c.releaseSessionLocked(g, memberID, s, &ops)
		delete(c.sessions, key)
	} else {
		s.epoch = nextEpoch(s.epoch)
	}
	done := c.store.enqueue(ops)
	c.mu.Unlock()
	err := waitDurable(ctx, done)
	for _, t := range req.Topics {
		rt := kmsg.NewShareAcknowledgeResponseTopic()
		rt.TopicID = t.TopicID
		for _, p := range t.Partitions {
			rp := kmsg.NewShareAcknowledgeResponseTopicPartition()
			rp.Partition = p.Partition
			rp.CurrentLeader.LeaderID, rp.CurrentLeader.LeaderEpoch = -1, -1
			rp.ErrorCode = codes[tp{t.TopicID, p.Partition}]
			if err != nil && rp.ErrorCode == 0 {
				rp.ErrorCode = kerr.CoordinatorNotAvailable.Code
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}
