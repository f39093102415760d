package group

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// commitIdentity is who an offset commit claims to be.
type commitIdentity struct {
	generation int32
	memberID   string
	instanceID *string
}

// validateOffsetCommitLocked finds the group a commit goes to and checks
// the committer, as Kafka's ClassicGroup.validateOffsetCommit does. A
// commit with a negative generation to an unknown group creates a simple
// group (offset storage only). The group is nil when code is not 0.
func (c *Coordinator) validateOffsetCommitLocked(groupID string, id commitIdentity, transactional bool, version int16) (*group, int16) {
	g := c.groups[groupID]
	if g == nil {
		switch {
		case len(groupID) > maxStringLen:
			// Not creatable: older ListGroups versions could not name it.
			return nil, kerr.InvalidGroupID.Code
		case id.generation < 0:
			g = newGroup(strings.Clone(groupID), c.now())
			c.groups[g.name] = g
		case !transactional && version >= 9:
			return nil, kerr.GroupIDNotFound.Code
		case transactional && version >= 6:
			// Measured: Kafka 4.4 answers a member's TxnOffsetCommit
			// v6 (KIP-1319) to a missing group so, and v3-v5 with
			// ILLEGAL_GENERATION (e2e TestTopicIDGroupAPIsMatchKafka).
			return nil, kerr.GroupIDNotFound.Code
		default:
			return nil, kerr.IllegalGeneration.Code
		}
	}
	if g.state == stateDead {
		return nil, kerr.CoordinatorNotAvailable.Code
	}
	if g.consumer != nil {
		if code := validateConsumerCommit(g.consumer, id, transactional, version); code != 0 {
			return nil, code
		}
		return g, 0
	}
	if id.generation < 0 && g.state == stateEmpty {
		// An admin client or a consumer without group management.
		return g, 0
	}
	if id.generation >= 0 || id.memberID != "" || id.instanceID != nil {
		if code := g.validateMember(id.memberID, id.instanceID); code != 0 {
			return nil, code
		}
		if id.generation != g.generation {
			return nil, kerr.IllegalGeneration.Code
		}
	} else if !transactional && g.state != stateEmpty {
		// Only members commit to a group that has members. Old
		// TxnOffsetCommit versions carry no member, so they may.
		return nil, kerr.UnknownMemberID.Code
	}
	if !transactional && g.state == stateCompletingRebalance {
		// The member knows the new generation but has no assignment yet.
		return nil, kerr.RebalanceInProgress.Code
	}
	return g, 0
}

// OffsetCommit handles an OffsetCommit request; it answers once the
// offsets are synced to disk.
func (c *Coordinator) OffsetCommit(_ context.Context, req *kmsg.OffsetCommitRequest) *kmsg.OffsetCommitResponse {
	resp := kmsg.NewPtrOffsetCommitResponse()
	resp.Version = req.Version
	id := commitIdentity{generation: -1}
	if req.Version >= 1 {
		id.generation, id.memberID = req.Generation, req.MemberID
	}
	if req.Version >= 7 {
		id.instanceID = req.InstanceID
	}
	retention := int64(-1)
	if req.Version >= 2 && req.Version <= 4 {
		retention = req.RetentionTimeMillis
	}
	parts := make([]*kmsg.OffsetCommitResponseTopicPartition, 0)
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition = p.Partition
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			parts = append(parts, &resp.Topics[i].Partitions[j])
		}
	}
	failAll := func(code int16) *kmsg.OffsetCommitResponse {
		for _, p := range parts {
			if p.ErrorCode == 0 {
				p.ErrorCode = code
			}
		}
		return resp
	}

	c.lock()
	if c.closed {
		c.unlock()
		return failAll(kerr.CoordinatorNotAvailable.Code)
	}
	g, code := c.validateOffsetCommitLocked(req.Group, id, false, req.Version)
	if code != 0 {
		c.unlock()
		return failAll(code)
	}
	if g.state == stateStable || g.state == statePreparingRebalance {
		// A commit keeps a classic member's session alive.
		if m := g.members[id.memberID]; m != nil {
			c.rescheduleHeartbeat(g, m, m.sessionTimeout)
		}
	}
	now := c.now()
	var ops []writeOp
	i := 0
	for _, t := range req.Topics {
		topic := strings.Clone(t.Topic)
		for _, p := range t.Partitions {
			rp := parts[i]
			i++
			if p.Metadata != nil && len(*p.Metadata) > offsetMetadataMaxBytes {
				rp.ErrorCode = kerr.OffsetMetadataTooLarge.Code
				continue
			}
			if code := c.consumerPartitionCommitCheck(g, id, topic, p.Partition); code != 0 {
				rp.ErrorCode = code
				continue
			}
			v := offsetValue{
				offset:      p.Offset,
				leaderEpoch: -1,
				metadata:    strings.Clone(stringOr(p.Metadata, "")),
				commitMs:    now.UnixMilli(),
				expireMs:    -1,
				seq:         c.nextSeq(),
			}
			if req.Version >= 6 {
				v.leaderEpoch = p.LeaderEpoch
			}
			if req.Version == 1 && p.Timestamp != -1 {
				v.commitMs = p.Timestamp
			}
			if retention != -1 {
				v.expireMs = now.UnixMilli() + retention
			}
			c.setOffset(g, topic, p.Partition, v)
			ops = append(ops, writeOp{Key: offsetKey(g.name, topic, p.Partition), Value: encodeOffsetValue(v, false, 0)})
		}
	}
	done := c.write(ops)
	c.unlock()
	if err := <-done; err != nil {
		c.log.Error("offset commit not durable", "group", req.Group, "err", err)
		// Kafka answers a failed __consumer_offsets write so; the
		// client finds the coordinator again and retries.
		return failAll(kerr.NotCoordinator.Code)
	}
	return resp
}

func (c *Coordinator) setOffset(g *group, topic string, partition int32, v offsetValue) {
	ps := g.offsets[topic]
	if ps == nil {
		ps = make(map[int32]offsetValue)
		g.offsets[topic] = ps
	}
	ps[partition] = v
}

// fetchRequest is one group's part of an OffsetFetch, whatever the version.
type fetchRequest struct {
	group  string
	all    bool // Topics was null: every committed partition
	topics []fetchTopic
	// memberID and memberEpoch (v9+) identify a consumer group member,
	// whose epoch is checked (KIP-848); nil and -1 for anyone else.
	memberID    *string
	memberEpoch int32
}

type fetchTopic struct {
	topic      string
	partitions []int32
}

// OffsetFetch handles an OffsetFetch request, single-group (v0-v7) or
// batched (v8+). Unknown groups and partitions answer offset -1.
// RequireStable (v7+) answers UNSTABLE_OFFSET_COMMIT for a partition with
// transactional offsets awaiting their marker.
func (c *Coordinator) OffsetFetch(_ context.Context, req *kmsg.OffsetFetchRequest) *kmsg.OffsetFetchResponse {
	resp := kmsg.NewPtrOffsetFetchResponse()
	resp.Version = req.Version
	requireStable := req.Version >= 7 && req.RequireStable

	var fetches []fetchRequest
	if req.Version <= 7 {
		f := fetchRequest{group: req.Group, all: req.Version >= 2 && req.Topics == nil, memberEpoch: -1}
		for _, t := range req.Topics {
			f.topics = append(f.topics, fetchTopic{t.Topic, t.Partitions})
		}
		fetches = append(fetches, f)
	} else {
		for _, rg := range req.Groups {
			f := fetchRequest{group: rg.Group, all: rg.Topics == nil, memberEpoch: -1}
			if req.Version >= 9 {
				f.memberID, f.memberEpoch = rg.MemberID, rg.MemberEpoch
			}
			for _, t := range rg.Topics {
				f.topics = append(f.topics, fetchTopic{t.Topic, t.Partitions})
			}
			fetches = append(fetches, f)
		}
	}

	c.lock()
	groups := make([]kmsg.OffsetFetchResponseGroup, 0, len(fetches))
	for _, f := range fetches {
		groups = append(groups, c.fetchLocked(f, requireStable))
	}
	c.unlock()

	if req.Version >= 8 {
		resp.Groups = groups
		return resp
	}
	g := groups[0]
	if req.Version >= 2 {
		resp.ErrorCode = g.ErrorCode
	}
	for _, t := range g.Topics {
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition = p.Partition
			rp.Offset = p.Offset
			rp.LeaderEpoch = p.LeaderEpoch
			rp.Metadata = p.Metadata
			rp.ErrorCode = p.ErrorCode
			if req.Version < 2 && g.ErrorCode != 0 {
				rp.ErrorCode = g.ErrorCode // no top-level error yet
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

func (c *Coordinator) fetchLocked(f fetchRequest, requireStable bool) kmsg.OffsetFetchResponseGroup {
	out := kmsg.NewOffsetFetchResponseGroup()
	out.Group = f.group
	partition := func(g *group, topic string, p int32) kmsg.OffsetFetchResponseGroupTopicPartition {
		rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
		rp.Partition = p
		rp.Offset = -1
		rp.Metadata = new(string)
		switch {
		case g != nil && requireStable && c.hasPending(g, topic, p):
			rp.ErrorCode = kerr.UnstableOffsetCommit.Code
		case g != nil && g.hasOffset(topic, p):
			v := g.offsets[topic][p]
			rp.Offset = v.offset
			rp.LeaderEpoch = v.leaderEpoch
			md := v.metadata
			rp.Metadata = &md
		}
		return rp
	}
	if c.closed {
		out.ErrorCode = kerr.CoordinatorNotAvailable.Code
		for _, t := range f.topics {
			rt := kmsg.NewOffsetFetchResponseGroupTopic()
			rt.Topic = t.topic
			for _, p := range t.partitions {
				rp := partition(nil, t.topic, p)
				rt.Partitions = append(rt.Partitions, rp)
			}
			out.Topics = append(out.Topics, rt)
		}
		return out
	}
	g := c.groups[f.group]
	if g != nil && g.consumer != nil {
		if code := validateConsumerFetch(g.consumer, f.memberID, f.memberEpoch); code != 0 {
			out.ErrorCode = code
			return out
		}
	}
	if f.all {
		if g == nil {
			return out
		}
		for _, topic := range sortedKeys(g.offsets) {
			rt := kmsg.NewOffsetFetchResponseGroupTopic()
			rt.Topic = topic
			for _, p := range sortedKeys(g.offsets[topic]) {
				rt.Partitions = append(rt.Partitions, partition(g, topic, p))
			}
			out.Topics = append(out.Topics, rt)
		}
		return out
	}
	for _, t := range f.topics {
		rt := kmsg.NewOffsetFetchResponseGroupTopic()
		rt.Topic = t.topic
		for _, p := range t.partitions {
			rt.Partitions = append(rt.Partitions, partition(g, t.topic, p))
		}
		out.Topics = append(out.Topics, rt)
	}
	return out
}

// OffsetDelete handles an OffsetDelete request (KIP-496). A consumer group
// with members may only lose offsets of topics it does not subscribe to;
// any other group must be Empty.
func (c *Coordinator) OffsetDelete(_ context.Context, req *kmsg.OffsetDeleteRequest) *kmsg.OffsetDeleteResponse {
	resp := kmsg.NewPtrOffsetDeleteResponse()
	resp.Version = req.Version

	c.lock()
	g := c.groups[req.Group]
	switch {
	case c.closed:
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
	case req.Group == "":
		resp.ErrorCode = kerr.InvalidGroupID.Code
	case g == nil || g.state == stateDead:
		resp.ErrorCode = kerr.GroupIDNotFound.Code
	case g.state != stateEmpty && !g.usesConsumerProtocol():
		resp.ErrorCode = kerr.NonEmptyGroup.Code
	}
	if resp.ErrorCode != 0 {
		c.unlock()
		return resp
	}
	var ops []writeOp
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		subscribed := g.isSubscribedToTopic(t.Topic)
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition = p.Partition
			if subscribed {
				rp.ErrorCode = kerr.GroupSubscribedToTopic.Code
			} else {
				ops = c.deleteOffset(g, t.Topic, p.Partition, ops)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	done := c.write(ops)
	c.unlock()
	if err := <-done; err != nil {
		c.log.Error("offset delete not durable", "group", req.Group, "err", err)
		resp.ErrorCode = kerr.NotCoordinator.Code
		resp.Topics = nil
	}
	return resp
}

// deleteOffset removes a partition's committed offset and any pending
// transactional offsets for it, like Kafka's offset tombstone.
func (c *Coordinator) deleteOffset(g *group, topic string, partition int32, ops []writeOp) []writeOp {
	if g.hasOffset(topic, partition) {
		delete(g.offsets[topic], partition)
		if len(g.offsets[topic]) == 0 {
			delete(g.offsets, topic)
		}
		ops = append(ops, writeOp{Key: offsetKey(g.name, topic, partition), Delete: true})
	}
	for _, pid := range sortedKeys(g.openTxns) {
		pt := c.pending[pid]
		byTopic := pt.offsets[g.name]
		if _, ok := byTopic[topic][partition]; !ok {
			continue
		}
		delete(byTopic[topic], partition)
		if len(byTopic[topic]) == 0 {
			delete(byTopic, topic)
		}
		if len(byTopic) == 0 {
			delete(pt.offsets, g.name)
			delete(g.openTxns, pid)
		}
		if len(pt.offsets) == 0 {
			delete(c.pending, pid)
		}
		ops = append(ops, writeOp{Key: pendingKey(pid, g.name, topic, partition), Delete: true})
	}
	return ops
}

// hasPending reports whether a transaction holds an offset for the
// partition that is not yet committed or aborted.
func (c *Coordinator) hasPending(g *group, topic string, partition int32) bool {
	for pid := range g.openTxns {
		if _, ok := c.pending[pid].offsets[g.name][topic][partition]; ok {
			return true
		}
	}
	return false
}

func (c *Coordinator) addPending(g *group, pid int64, epoch int16, topic string, partition int32, v offsetValue) {
	pt := c.pending[pid]
	if pt == nil {
		pt = &pendingTxn{epoch: epoch, offsets: make(map[string]map[string]map[int32]offsetValue)}
		c.pending[pid] = pt
	}
	pt.epoch = max(pt.epoch, epoch)
	byTopic := pt.offsets[g.name]
	if byTopic == nil {
		byTopic = make(map[string]map[int32]offsetValue)
		pt.offsets[g.name] = byTopic
	}
	if byTopic[topic] == nil {
		byTopic[topic] = make(map[int32]offsetValue)
	}
	byTopic[topic][partition] = v
	g.openTxns[pid] = true
}

// TxnOffsetCommit handles a TxnOffsetCommit request: the offsets are stored
// as pending for the producer until CompleteTxn commits or aborts them.
// From v3 the committer is checked against the group like OffsetCommit
// does (KIP-447), except that a rebalance in progress does not matter.
//
// Whether the producer id and epoch own an ongoing transaction that
// includes this group (INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED,
// INVALID_TXN_STATE, TRANSACTION_ABORTABLE) is the transaction
// coordinator's to check before calling this; here a producer epoch older
// than the one that already has pending offsets gets INVALID_PRODUCER_EPOCH,
// as Kafka's log would answer the stale write.
func (c *Coordinator) TxnOffsetCommit(_ context.Context, req *kmsg.TxnOffsetCommitRequest) *kmsg.TxnOffsetCommitResponse {
	resp := kmsg.NewPtrTxnOffsetCommitResponse()
	resp.Version = req.Version
	id := commitIdentity{generation: -1}
	if req.Version >= 3 {
		id = commitIdentity{generation: req.Generation, memberID: req.MemberID, instanceID: req.InstanceID}
	}
	var parts []*kmsg.TxnOffsetCommitResponseTopicPartition
	for _, t := range req.Topics {
		rt := kmsg.NewTxnOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			rp.Partition = p.Partition
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			parts = append(parts, &resp.Topics[i].Partitions[j])
		}
	}
	failAll := func(code int16) *kmsg.TxnOffsetCommitResponse {
		for _, p := range parts {
			if p.ErrorCode == 0 {
				p.ErrorCode = code
			}
		}
		return resp
	}

	c.lock()
	if c.closed {
		c.unlock()
		return failAll(kerr.CoordinatorNotAvailable.Code)
	}
	if req.Group == "" {
		c.unlock()
		return failAll(kerr.InvalidGroupID.Code)
	}
	if pt := c.pending[req.ProducerID]; pt != nil && req.ProducerEpoch < pt.epoch {
		c.unlock()
		return failAll(kerr.InvalidProducerEpoch.Code)
	}
	g, code := c.validateOffsetCommitLocked(req.Group, id, true, req.Version)
	if code != 0 {
		c.unlock()
		return failAll(code)
	}
	now := c.now()
	var ops []writeOp
	i := 0
	for _, t := range req.Topics {
		topic := strings.Clone(t.Topic)
		for _, p := range t.Partitions {
			rp := parts[i]
			i++
			if p.Metadata != nil && len(*p.Metadata) > offsetMetadataMaxBytes {
				rp.ErrorCode = kerr.OffsetMetadataTooLarge.Code
				continue
			}
			if code := c.consumerPartitionCommitCheck(g, id, topic, p.Partition); code != 0 {
				rp.ErrorCode = code
				continue
			}
			v := offsetValue{
				offset:      p.Offset,
				leaderEpoch: -1,
				metadata:    strings.Clone(stringOr(p.Metadata, "")),
				commitMs:    now.UnixMilli(),
				expireMs:    -1,
				seq:         c.nextSeq(),
			}
			if req.Version >= 2 {
				v.leaderEpoch = p.LeaderEpoch
			}
			c.addPending(g, req.ProducerID, req.ProducerEpoch, topic, p.Partition, v)
			ops = append(ops, writeOp{
				Key:   pendingKey(req.ProducerID, g.name, topic, p.Partition),
				Value: encodeOffsetValue(v, true, req.ProducerEpoch),
			})
		}
	}
	done := c.write(ops)
	c.unlock()
	if err := <-done; err != nil {
		c.log.Error("transactional offset commit not durable", "group", req.Group, "err", err)
		return failAll(kerr.NotCoordinator.Code)
	}
	return resp
}

// CompleteTxn applies a transaction marker to the offsets producerID
// committed through TxnOffsetCommit: COMMIT makes them the committed
// offsets (a plain commit made after the transactional one is kept), ABORT
// drops them. It returns once the result is synced to disk. Calling it for
// a producer without pending offsets does nothing, so the transaction
// coordinator may call it for every transaction it completes, and again
// after a restart.
func (c *Coordinator) CompleteTxn(producerID int64, commit bool) error {
	c.lock()
	if c.closed {
		c.unlock()
		return errStoreClosed
	}
	pt := c.pending[producerID]
	if pt == nil {
		c.unlock()
		return nil
	}
	delete(c.pending, producerID)
	var ops []writeOp
	for _, groupID := range sortedKeys(pt.offsets) {
		g := c.groups[groupID]
		byTopic := pt.offsets[groupID]
		for _, topic := range sortedKeys(byTopic) {
			for _, p := range sortedKeys(byTopic[topic]) {
				v := byTopic[topic][p]
				ops = append(ops, writeOp{Key: pendingKey(producerID, groupID, topic, p), Delete: true})
				if !commit || g == nil {
					continue
				}
				if cur, ok := g.offsets[topic][p]; ok && cur.seq > v.seq {
					continue
				}
				c.setOffset(g, topic, p, v)
				ops = append(ops, writeOp{Key: offsetKey(groupID, topic, p), Value: encodeOffsetValue(v, false, 0)})
			}
		}
		if g != nil {
			delete(g.openTxns, producerID)
		}
	}
	done := c.write(ops)
	c.unlock()
	if err := <-done; err != nil {
		return fmt.Errorf("complete transaction offsets of producer %d: %w", producerID, err)
	}
	return nil
}

// scheduleOffsetExpiry runs the retention sweep every
// offsetsRetentionCheckInterval, at fixed times: a late run (a clock that
// jumped) does not shift the ones after it.
func (c *Coordinator) scheduleOffsetExpiry(at time.Time) {
	key := timerKey{kind: timerOffsetExpiry}
	c.timers.schedule(key, at, func() {
		c.expireOffsetsLocked()
		next := at.Add(offsetsRetentionCheckInterval)
		for now := c.now(); !next.After(now); {
			next = next.Add(offsetsRetentionCheckInterval)
		}
		c.scheduleOffsetExpiry(next)
	})
}

// expireOffsetsLocked removes offsets past retention (KIP-211) and deletes
// Empty groups left without offsets, as Kafka's periodic cleanup does.
func (c *Coordinator) expireOffsetsLocked() {
	now := c.now()
	var ops []writeOp
	for _, name := range sortedKeys(c.groups) {
		g := c.groups[name]
		var allExpired bool
		ops, allExpired = c.expireGroupOffsets(g, now, ops)
		if allExpired && g.isEmpty() {
			c.log.Info("deleting empty group without offsets", "group", g.name)
			ops = c.deleteGroupLocked(g, ops)
		}
	}
	c.write(ops)
}

// expireGroupOffsets deletes the group's expired offsets and reports
// whether none remain (nor any pending transactional offset).
func (c *Coordinator) expireGroupOffsets(g *group, now time.Time, ops []writeOp) ([]writeOp, bool) {
	if len(g.offsets) == 0 {
		return ops, len(g.openTxns) == 0
	}
	base := g.expirationBase()
	if base == nil {
		return ops, false
	}
	allExpired := true
	nowMs := now.UnixMilli()
	retentionMs := c.cfg.OffsetsRetention.Milliseconds()
	for _, topic := range sortedKeys(g.offsets) {
		if g.isSubscribedToTopic(topic) {
			allExpired = false
			continue
		}
		for _, p := range sortedKeys(g.offsets[topic]) {
			v := g.offsets[topic][p]
			expired := nowMs-base(v) >= retentionMs
			if v.expireMs >= 0 {
				expired = nowMs >= v.expireMs // a v2-v4 commit's own retention
			}
			if !expired || c.hasPending(g, topic, p) {
				allExpired = false
				continue
			}
			ops = c.deleteOffset(g, topic, p, ops)
		}
	}
	return ops, allExpired && len(g.openTxns) == 0
}

// expirationBase returns the time an offset's retention counts from, or
// nil if the group's offsets do not expire in its current state.
func (g *group) expirationBase() func(offsetValue) int64 {
	if g.consumer != nil {
		if len(g.consumer.members) == 0 {
			emptySince := g.stateSince.UnixMilli()
			return func(offsetValue) int64 { return emptySince }
		}
		// Only offsets of topics no member subscribes to.
		return func(v offsetValue) int64 { return v.commitMs }
	}
	if g.protocolType == "" {
		// Simple group: retention runs from each commit.
		return func(v offsetValue) int64 { return v.commitMs }
	}
	if g.state == stateEmpty {
		emptySince := g.stateSince.UnixMilli()
		return func(offsetValue) int64 { return emptySince }
	}
	if g.usesConsumerProtocol() && g.subscribedKnown && g.state == stateStable {
		// Only offsets of topics no member subscribes to.
		return func(v offsetValue) int64 { return v.commitMs }
	}
	return nil
}

func sortedKeys[K interface{ ~string | ~int32 | ~int64 }, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// validateConsumerCommit is Kafka's ConsumerGroup.validateOffsetCommit: an
// admin (epoch < 0) may commit to an empty group, a transactional commit
// without member fields is accepted, anyone else must be a member using
// OffsetCommit v9+ (for the member epoch) whose epoch is not ahead of the
// group's idea of it. An older epoch is checked per partition
// (consumerPartitionCommitCheck, KIP-1251).
func validateConsumerCommit(cg *consumerGroup, id commitIdentity, transactional bool, version int16) int16 {
	if id.generation < 0 && len(cg.members) == 0 {
		return 0
	}
	if transactional && id.generation < 0 && id.memberID == "" && id.instanceID == nil {
		return 0
	}
	m := cg.members[id.memberID]
	if m == nil {
		return kerr.UnknownMemberID.Code
	}
	if m.classic != nil {
		// A classic member commits with its generation (its member
		// epoch), any version, as in a classic group.
		if id.generation != m.epoch {
			return kerr.IllegalGeneration.Code
		}
		return 0
	}
	if !transactional && version < 9 {
		return kerr.UnsupportedVersion.Code
	}
	if id.generation > m.epoch || id.generation < 0 {
		return kerr.StaleMemberEpoch.Code
	}
	return 0
}

// consumerPartitionCommitCheck accepts a member's commit made with an
// epoch older than its current one only for a partition it was assigned
// at or before that epoch and still holds (KIP-1251, Kafka 4.3): such a
// commit raced an epoch bump that did not take the partition away.
func (c *Coordinator) consumerPartitionCommitCheck(g *group, id commitIdentity, topic string, partition int32) int16 {
	if g.consumer == nil {
		return 0
	}
	m := g.consumer.members[id.memberID]
	if m == nil || id.generation < 0 || id.generation >= m.epoch {
		return 0
	}
	t, ok := c.topics().byName[topic]
	if !ok {
		return kerr.StaleMemberEpoch.Code
	}
	if at, ok := m.assignedAt[t.ID][partition]; ok && at <= id.generation {
		return 0
	}
	return kerr.StaleMemberEpoch.Code
}

// validateConsumerFetch is Kafka's ConsumerGroup.validateOffsetFetch: a
// fetch naming no member (epoch < 0) is anyone's; a member's must carry
// its current epoch.
func validateConsumerFetch(cg *consumerGroup, memberID *string, epoch int32) int16 {
	if memberID == nil && epoch < 0 {
		return 0
	}
	var m *consumerMember
	if memberID != nil {
		m = cg.members[*memberID]
	}
	if m == nil {
		return kerr.UnknownMemberID.Code
	}
	if epoch != m.epoch {
		if m.classic != nil {
			return kerr.IllegalGeneration.Code
		}
		return kerr.StaleMemberEpoch.Code
	}
	return 0
}
