package soak

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Topics the hostile clients aim at.
const (
	poisonTopic = "soak-poison" // nothing may ever be stored in it
	bigTopic    = "soak-big"    // prefilled, for the fetch bomb
	churnTopic  = "soak-churn"  // deleted and auto-created over and over
)

// smallResponse bounds the answers that carry no records or member lists.
const smallResponse = 1 << 20

// kind is one sort of hostile client: workers run attempt in a loop, a pause
// apart, until the hostile phase ends.
type kind struct {
	name        string
	expect      string
	needsAnswer bool
	workers     int
	pause       time.Duration
	attempt     func(ctx context.Context) []outcome
}

// hostile runs the hostile kinds against one broker address.
type hostile struct {
	cfg   Config
	addr  string
	tally *tally

	pipelineFrame []byte // one Produce request of cfg.PipelineRequestBytes
	bombBatch     []byte // a zstd batch that decompresses to cfg.BombBytes
	seq           int64
	mu            sync.Mutex
}

func newHostile(cfg Config, addr string) (*hostile, error) {
	h := &hostile{cfg: cfg, addr: addr, tally: newTally()}
	var err error
	if h.bombBatch, err = zstdBomb(cfg.BombBytes); err != nil {
		return nil, err
	}
	h.pipelineFrame = largeProduceFrame(cfg.PipelineRequestBytes)
	return h, nil
}

func (h *hostile) kinds() []kind {
	c := h.cfg
	ks := []kind{
		{name: "slowloris", workers: c.SlowlorisConns, pause: 100 * time.Millisecond, attempt: h.slowloris,
			expect: fmt.Sprintf("a 100 MiB frame trickled 1 byte/500ms is closed after --request-read-timeout-ms (%v); one over socket.request.max.bytes at once", c.RequestReadTimeout)},
		{name: "pipelined large produce", workers: 1, pause: time.Second, attempt: h.pipeline, needsAnswer: true,
			expect: fmt.Sprintf("%d pipelined %d MiB Produce requests on one connection: each MESSAGE_TOO_LARGE, read as the queued.max.request.bytes budget allows", c.PipelineDepth, c.PipelineRequestBytes>>20)},
		{name: "idle connection flood", workers: 1, pause: 5 * time.Second, attempt: h.idleFlood,
			expect: fmt.Sprintf("%d connections: those over --max-connections (%d) closed at once, idle ones closed after --connections-max-idle-ms (%v)", c.MaxConnections+floodExtra, c.MaxConnections, c.ConnectionsMaxIdle)},
		{name: "poison: lying record count", workers: 1, pause: 20 * time.Millisecond, needsAnswer: true,
			attempt: h.poison(batchtest.Frame(batchtest.Records(1), 0, math.MaxInt32, 0), kerr.InvalidRecord.Code, kerr.CorruptMessage.Code),
			expect:  "a batch claiming 2^31-1 records holding 1: INVALID_RECORD or CORRUPT_MESSAGE"},
		{name: "poison: bad gzip", workers: 1, pause: 20 * time.Millisecond, needsAnswer: true,
			attempt: h.poison(batchtest.Frame(randomBytes(256), batch.CodecGzip, 1, 0), kerr.CorruptMessage.Code, kerr.InvalidRecord.Code),
			expect:  "gzip-flagged random bytes: CORRUPT_MESSAGE or INVALID_RECORD"},
		{name: "poison: bad zstd", workers: 1, pause: 20 * time.Millisecond, needsAnswer: true,
			attempt: h.poison(batchtest.Frame(randomBytes(256), batch.CodecZstd, 1, 0), kerr.CorruptMessage.Code, kerr.InvalidRecord.Code),
			expect:  "zstd-flagged random bytes: CORRUPT_MESSAGE or INVALID_RECORD"},
		{name: "poison: zstd bomb", workers: 2, pause: 100 * time.Millisecond, needsAnswer: true,
			attempt: h.poison(h.bombBatch, kerr.MessageTooLarge.Code, kerr.CorruptMessage.Code, kerr.InvalidRecord.Code),
			expect:  fmt.Sprintf("%d KiB of zstd that decompress to %d MiB: MESSAGE_TOO_LARGE (--max-decompressed-batch-bytes)", len(h.bombBatch)>>10, c.BombBytes>>20)},
		{name: "poison: future timestamp", workers: 1, pause: 20 * time.Millisecond, needsAnswer: true,
			attempt: h.poison(nil, kerr.InvalidTimestamp.Code),
			expect:  "a CreateTime 10 years ahead: INVALID_TIMESTAMP"},
		{name: "fetch 1000x one partition", workers: 2, pause: 200 * time.Millisecond, attempt: h.fetchBomb, needsAnswer: true,
			expect: fmt.Sprintf("Fetch naming %s-0 1000 times, MaxBytes 2^31-1: a well-formed answer of at most --fetch-max-bytes (%d MiB) plus one batch", bigTopic, c.FetchMaxBytes>>20)},
		{name: "join flood", workers: 1, pause: 2 * time.Second, attempt: h.joinFlood, needsAnswer: true,
			expect: fmt.Sprintf("%d JoinGroups with %d KiB metadata into one group: at most --group-max-size (%d) joined, the rest GROUP_MAX_SIZE_REACHED", c.JoinMembers, c.JoinMetadataBytes>>10, c.GroupMaxSize)},
		{name: "over-long ids", workers: 1, pause: 100 * time.Millisecond, attempt: h.longIDs, needsAnswer: true,
			expect: "JoinGroup v6 with a 40,000-byte group id: INVALID_GROUP_ID, member id: INVALID_REQUEST or UNKNOWN_MEMBER_ID; ListGroups v0 decodes"},
		{name: "delete vs auto-create", workers: 1, pause: 200 * time.Millisecond, attempt: h.deleteChurn, needsAnswer: true,
			expect: fmt.Sprintf("DeleteTopics %s looping while a producer auto-creates it: NONE or UNKNOWN_TOPIC_OR_PARTITION", churnTopic)},
		{name: "produce vs delete", workers: 1, pause: 10 * time.Millisecond, attempt: h.churnProduce, needsAnswer: true,
			expect: fmt.Sprintf("Produce by name to %s (auto-created by the write) while it is being deleted: NONE or UNKNOWN_TOPIC_OR_PARTITION", churnTopic)},
		{name: "create huge partition counts", workers: 1, pause: 50 * time.Millisecond, attempt: h.createHuge, needsAnswer: true,
			expect: fmt.Sprintf("CreateTopics with 9,999 (over --max-partitions) / 100,001 / 1,000,000 / 2^31-1 partitions, and of %d topics at once: INVALID_PARTITIONS or POLICY_VIOLATION", manyTopics)},
	}
	return ks
}

// run runs every kind until ctx ends and returns when all workers have.
func (h *hostile) run(ctx context.Context) {
	var wg sync.WaitGroup
	var kinds []kind
	for _, k := range h.kinds() {
		if h.cfg.selected(k.name) {
			kinds = append(kinds, k)
		}
	}
	for _, k := range kinds {
		h.tally.register(k.name, k.expect, k.needsAnswer)
	}
	for _, k := range kinds {
		for range max(k.workers, 1) {
			wg.Go(func() {
				for ctx.Err() == nil {
					outs := k.attempt(ctx)
					if ctx.Err() != nil {
						return // interrupted by the end of the phase: not judged
					}
					for _, o := range outs {
						h.tally.add(k.name, o)
					}
					select {
					case <-ctx.Done():
					case <-time.After(k.pause):
					}
				}
			})
		}
	}
	wg.Wait()
}

// produceOnce sends one Produce v9 of batch b to poisonTopic and judges the
// partition's error code.
func (h *hostile) produceOnce(ctx context.Context, b []byte, expected ...int16) outcome {
	c, err := dialRaw(ctx, h.addr)
	if err != nil {
		return dialOutcome(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	req := kmsg.NewPtrProduceRequest()
	req.Version = 9
	req.Acks = -1
	req.TimeoutMillis = 10000
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: poisonTopic, Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: b}}}}
	resp, _, err := c.roundTrip(req, smallResponse)
	if err != nil {
		return connOutcome(err)
	}
	pr := resp.(*kmsg.ProduceResponse)
	if len(pr.Topics) != 1 || len(pr.Topics[0].Partitions) != 1 {
		return unexpected("malformed", "produce response with %d topics", len(pr.Topics))
	}
	return answeredCode(pr.Topics[0].Partitions[0].ErrorCode, expected...)
}

// poison returns an attempt producing b (or, if nil, a batch stamped 10
// years ahead, rebuilt each time from the clock) to the poison topic.
func (h *hostile) poison(b []byte, expected ...int16) func(context.Context) []outcome {
	return func(ctx context.Context) []outcome {
		batch := b
		if batch == nil {
			batch = batchtest.Frame(batchtest.Records(1), 0, 1, time.Now().AddDate(10, 0, 0).UnixMilli())
		}
		return []outcome{h.produceOnce(ctx, batch, expected...)}
	}
}

// dialOutcome judges a failed dial: refused or reset while the broker is at
// --max-connections is a closed connection, a timeout a connection never
// accepted; anything else is not expected.
func dialOutcome(err error) outcome {
	switch {
	case isClosed(err) || strings.Contains(err.Error(), "connection refused"):
		return closedOutcome()
	case isTimeout(err) || strings.Contains(err.Error(), "i/o timeout"):
		// The kernel dropped the SYN: the accept queue was full for a
		// moment (the idle flood dials hundreds of connections). The
		// broker took nothing on; counted apart so it shows.
		return outcome{label: "dial timed out", expected: true}
	}
	return unexpected("dial failed", "dial: %v", err)
}

// connOutcome judges an error on an open connection.
func connOutcome(err error) outcome {
	switch {
	case isClosed(err):
		return closedOutcome()
	case isTimeout(err):
		return unexpected("no answer", "no answer before the deadline: %v", err)
	}
	return unexpected("bad answer", "%v", err)
}

// slowloris declares a frame and trickles it; every other attempt declares
// one byte over socket.request.max.bytes, which must be refused at once.
func (h *hostile) slowloris(ctx context.Context) []outcome {
	h.mu.Lock()
	h.seq++
	oversize := h.seq%4 == 0
	h.mu.Unlock()
	c, err := dialRaw(ctx, h.addr)
	if err != nil {
		return []outcome{dialOutcome(err)}
	}
	defer c.Close()
	declared := uint32(maxRequestBytes)
	if oversize {
		declared++
	}
	head := binary.BigEndian.AppendUint32(nil, declared)
	head = append(head, 0, 0, 0, 9, 0, 0, 0, 1) // Produce v9, correlation id 1
	if _, err := c.Write(head); err != nil {
		return []outcome{connOutcome(err)}
	}
	limit := h.cfg.RequestReadTimeout*3 + 10*time.Second
	closed := make(chan error, 1)
	go func() {
		c.SetReadDeadline(time.Now().Add(limit))
		var b [1]byte
		_, err := c.Read(b[:])
		closed <- err
	}()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-closed:
			switch {
			case isClosed(err):
				if oversize {
					return []outcome{{label: "closed (frame over socket.request.max.bytes)", expected: true}}
				}
				return []outcome{{label: "closed (read timeout)", expected: true}}
			case isTimeout(err):
				return []outcome{unexpected("still open", "a trickled frame still open after %v", limit)}
			case err == nil:
				return []outcome{unexpected("answered", "the broker answered a frame it never fully received")}
			}
			return []outcome{connOutcome(err)}
		case <-ctx.Done():
			return nil
		case <-tick.C:
			c.SetWriteDeadline(time.Now().Add(limit))
			c.Write([]byte{0}) // a write error shows up as the read ending
		}
	}
}

// maxRequestBytes is the broker's socket.request.max.bytes (its default;
// the soak does not change it).
const maxRequestBytes = 100 << 20

// pipeline writes PipelineDepth copies of one large Produce request back to
// back on one connection while reading the answers.
func (h *hostile) pipeline(ctx context.Context) []outcome {
	c, err := dialRaw(ctx, h.addr)
	if err != nil {
		return []outcome{dialOutcome(err)}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	depth := h.cfg.PipelineDepth
	frame := bytes.Clone(h.pipelineFrame)
	writeErr := make(chan error, 1)
	go func() {
		for i := range depth {
			binary.BigEndian.PutUint32(frame[8:], uint32(i+1)) // correlation id
			if _, err := c.Write(frame); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	}()
	req := kmsg.NewPtrProduceRequest()
	req.Version = 9
	var outs []outcome
	for i := range depth {
		resp, _, err := c.recv(req, int32(i+1), smallResponse)
		if err != nil {
			outs = append(outs, connOutcome(err))
			break
		}
		pr := resp.(*kmsg.ProduceResponse)
		if len(pr.Topics) != 1 || len(pr.Topics[0].Partitions) != 1 {
			outs = append(outs, unexpected("malformed", "produce response with %d topics", len(pr.Topics)))
			break
		}
		outs = append(outs, answeredCode(pr.Topics[0].Partitions[0].ErrorCode, kerr.MessageTooLarge.Code))
	}
	c.Close()
	<-writeErr
	return outs
}

// largeProduceFrame is a Produce v9 request (correlation id patched per
// copy at bytes 8..11) to poisonTopic whose one batch holds one record of
// about size bytes: over message.max.bytes, so never stored.
func largeProduceFrame(size int) []byte {
	value := make([]byte, max(size-1024, 1))
	r := kmsg.Record{Value: value}
	// Length 0 encodes as one byte; the rest is what Length counts.
	r.Length = int32(len(r.AppendTo(nil)) - 1)
	records := r.AppendTo(nil)
	b := batchtest.Frame(records, 0, 1, time.Now().UnixMilli())
	req := kmsg.NewPtrProduceRequest()
	req.Version = 9
	req.Acks = -1
	req.TimeoutMillis = 10000
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: poisonTopic, Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: b}}}}
	return kmsg.NewRequestFormatter(kmsg.FormatterClientID("oncelog-soak-hostile")).AppendRequest(nil, req, 1)
}

// floodExtra is how many connections past --max-connections a flood opens.
const floodExtra = 50

// floodIdleKept is how many accepted flood connections are left idle until
// the broker closes them.
const floodIdleKept = 10

// idleFlood opens --max-connections + floodExtra idle connections, checks
// that the broker closed those over the limit at once, keeps a few of the
// others idle until the broker closes them too, and closes the rest.
func (h *hostile) idleFlood(ctx context.Context) []outcome {
	n := h.cfg.MaxConnections + floodExtra
	conns := make([]*rawConn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var outs []outcome
	for range n {
		c, err := dialRaw(ctx, h.addr)
		if err != nil {
			outs = append(outs, dialOutcome(err))
			continue
		}
		conns = append(conns, c)
	}
	// A connection over the limit is closed as soon as it is accepted.
	var held []*rawConn
	refused := 0
	results := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			var b [1]byte
			_, results[i] = c.Read(b[:])
		})
	}
	wg.Wait()
	for i, err := range results {
		switch {
		case isClosed(err):
			refused++
			outs = append(outs, outcome{label: "closed at once (over max.connections)", expected: true})
		case isTimeout(err):
			held = append(held, conns[i])
		default:
			outs = append(outs, unexpected("bad answer", "idle connection: %v", err))
		}
	}
	if len(held) > h.cfg.MaxConnections {
		outs = append(outs, unexpected("over the limit", "%d idle connections held, --max-connections is %d", len(held), h.cfg.MaxConnections))
	}
	if refused == 0 {
		outs = append(outs, unexpected("none refused", "%d connections opened, none closed by --max-connections %d", len(conns), h.cfg.MaxConnections))
	}
	// Close all but a few at once, so normal clients can reconnect.
	for i, c := range held {
		if i >= floodIdleKept {
			c.Close()
			outs = append(outs, outcome{label: "held (under max.connections)", expected: true})
		}
	}
	keep := held[:min(len(held), floodIdleKept)]
	limit := h.cfg.ConnectionsMaxIdle*2 + 10*time.Second
	for _, c := range keep {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(limit))
			var b [1]byte
			_, err := c.Read(b[:])
			h.mu.Lock()
			defer h.mu.Unlock()
			switch {
			case isClosed(err):
				outs = append(outs, outcome{label: "closed idle (connections.max.idle.ms)", expected: true})
			case isTimeout(err) && ctx.Err() == nil:
				outs = append(outs, unexpected("idle never closed", "idle connection still open after %v", limit))
			}
		})
	}
	wg.Wait()
	return outs
}

// fetchBomb fetches bigTopic's partition 0 named 1,000 times with every
// byte limit at 2^31-1.
func (h *hostile) fetchBomb(ctx context.Context) []outcome {
	c, err := dialRaw(ctx, h.addr)
	if err != nil {
		return []outcome{dialOutcome(err)}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	req := kmsg.NewPtrFetchRequest()
	req.Version = 11
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MinBytes = 1
	req.MaxBytes = math.MaxInt32
	req.SessionEpoch = -1
	t := kmsg.FetchRequestTopic{Topic: bigTopic}
	for range 1000 {
		p := kmsg.NewFetchRequestTopicPartition()
		p.Partition = 0
		p.FetchOffset = 0
		p.PartitionMaxBytes = math.MaxInt32
		t.Partitions = append(t.Partitions, p)
	}
	req.Topics = []kmsg.FetchRequestTopic{t}
	bound := h.fetchBound()
	resp, size, err := c.roundTrip(req, bound)
	if err != nil {
		if size > bound {
			return []outcome{unexpected("too large", "fetch answer of %d bytes, bound %d", size, bound)}
		}
		return []outcome{connOutcome(err)}
	}
	fr := resp.(*kmsg.FetchResponse)
	if fr.ErrorCode != 0 {
		return []outcome{answeredCode(fr.ErrorCode, kerr.InvalidRequest.Code)}
	}
	records := 0
	for _, t := range fr.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				return []outcome{answeredCode(p.ErrorCode)}
			}
			records += len(p.RecordBatches)
		}
	}
	if records == 0 {
		return []outcome{unexpected("empty", "fetch of a prefilled partition returned no records")}
	}
	return []outcome{{label: fmt.Sprintf("answered, <= %d MiB", (bound+1<<20-1)>>20), answered: true, expected: true, bytes: size}}
}

// fetchBound is the largest acceptable fetch answer: fetch.max.bytes, one
// batch past it (the first batch is returned whole), and the 1,000
// partition entries' headers.
func (h *hostile) fetchBound() int {
	return h.cfg.FetchMaxBytes + bigRecordBytes + 1<<10 + 1000*128
}

// joinFlood sends JoinMembers JoinGroup v3 requests with JoinMetadataBytes
// of member metadata into one fresh group at once, then LeaveGroup for
// every member that joined.
func (h *hostile) joinFlood(ctx context.Context) []outcome {
	h.mu.Lock()
	h.seq++
	group := fmt.Sprintf("soak-join-flood-%d", h.seq)
	h.mu.Unlock()
	metadata := make([]byte, h.cfg.JoinMetadataBytes)
	// The leader's answer lists every member's metadata: bounded by
	// group.max.size members.
	bound := h.cfg.GroupMaxSize*(h.cfg.JoinMetadataBytes+1024) + smallResponse
	type joined struct {
		c        *rawConn
		memberID string
	}
	var (
		mu      sync.Mutex
		outs    []outcome
		members []joined
		wg      sync.WaitGroup
		full    int
	)
	for range h.cfg.JoinMembers {
		wg.Go(func() {
			c, err := dialRaw(ctx, h.addr)
			if err != nil {
				mu.Lock()
				outs = append(outs, dialOutcome(err))
				mu.Unlock()
				return
			}
			c.SetDeadline(time.Now().Add(60 * time.Second))
			req := kmsg.NewPtrJoinGroupRequest()
			req.Version = 3
			req.Group = group
			req.SessionTimeoutMillis = 10000
			req.RebalanceTimeoutMillis = 5000
			req.ProtocolType = "consumer"
			req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: metadata}}
			resp, size, err := c.roundTrip(req, bound)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				c.Close()
				if size > bound {
					outs = append(outs, unexpected("too large", "JoinGroup answer of %d bytes, bound %d", size, bound))
					return
				}
				outs = append(outs, connOutcome(err))
				return
			}
			jr := resp.(*kmsg.JoinGroupResponse)
			if jr.ErrorCode == kerr.GroupMaxSizeReached.Code {
				full++
			}
			o := answeredCode(jr.ErrorCode, 0, kerr.GroupMaxSizeReached.Code, kerr.RebalanceInProgress.Code, kerr.UnknownMemberID.Code)
			o.bytes = size
			outs = append(outs, o)
			if jr.ErrorCode == 0 {
				members = append(members, joined{c, jr.MemberID})
			} else {
				c.Close()
			}
		})
	}
	wg.Wait()
	if len(members) > h.cfg.GroupMaxSize {
		outs = append(outs, unexpected("over group.max.size", "%d members joined one group, --group-max-size is %d", len(members), h.cfg.GroupMaxSize))
	}
	answered := 0
	for _, o := range outs {
		if o.answered {
			answered++
		}
	}
	// Only a flood whose every join was answered (none closed by the idle
	// flood's --max-connections) must have hit the limit.
	if answered > h.cfg.GroupMaxSize && full == 0 {
		outs = append(outs, unexpected("no GROUP_MAX_SIZE_REACHED", "%d joins into one group, none refused by --group-max-size %d", h.cfg.JoinMembers, h.cfg.GroupMaxSize))
	}
	for _, m := range members {
		leave := kmsg.NewPtrLeaveGroupRequest()
		leave.Version = 0
		leave.Group = group
		leave.MemberID = m.memberID
		m.c.roundTrip(leave, smallResponse) // best effort: the session timeout expires it anyway
		m.c.Close()
	}
	return outs
}

// longID is longer than an int16 string can carry.
var longID = strings.Repeat("x", 40000)

// longIDs asks, at a flexible version, for ids no older response version
// could carry, then checks that ListGroups v0 still decodes.
func (h *hostile) longIDs(ctx context.Context) []outcome {
	c, err := dialRaw(ctx, h.addr)
	if err != nil {
		return []outcome{dialOutcome(err)}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var outs []outcome
	join := func(group, member string, expected ...int16) bool {
		req := kmsg.NewPtrJoinGroupRequest()
		req.Version = 6
		req.Group = group
		req.MemberID = member
		req.SessionTimeoutMillis = 10000
		req.RebalanceTimeoutMillis = 5000
		req.ProtocolType = "consumer"
		req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{0}}}
		resp, _, err := c.roundTrip(req, smallResponse)
		if err != nil {
			outs = append(outs, connOutcome(err))
			return false
		}
		outs = append(outs, answeredCode(resp.(*kmsg.JoinGroupResponse).ErrorCode, expected...))
		return true
	}
	if !join(longID, "", kerr.InvalidGroupID.Code) {
		return outs
	}
	if !join("soak-long-member", longID, kerr.InvalidRequest.Code, kerr.UnknownMemberID.Code) {
		return outs
	}
	list := kmsg.NewPtrListGroupsRequest()
	list.Version = 0
	resp, _, err := c.roundTrip(list, 16<<20)
	if err != nil {
		return append(outs, connOutcome(err))
	}
	return append(outs, answeredCode(resp.(*kmsg.ListGroupsResponse).ErrorCode, 0))
}

// deleteChurn deletes churnTopic, which a franz-go producer (see
// churnProducer) keeps auto-creating.
func (h *hostile) deleteChurn(ctx context.Context) []outcome {
	c, err := dialRaw(ctx, h.addr)
	if err != nil {
		return []outcome{dialOutcome(err)}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var outs []outcome
	for range 5 {
		req := kmsg.NewPtrDeleteTopicsRequest()
		req.Version = 4
		req.TimeoutMillis = 10000
		req.TopicNames = []string{churnTopic}
		resp, _, err := c.roundTrip(req, smallResponse)
		if err != nil {
			return append(outs, connOutcome(err))
		}
		dr := resp.(*kmsg.DeleteTopicsResponse)
		if len(dr.Topics) != 1 {
			return append(outs, unexpected("malformed", "DeleteTopics answer with %d topics", len(dr.Topics)))
		}
		outs = append(outs, answeredCode(dr.Topics[0].ErrorCode, 0, kerr.UnknownTopicOrPartition.Code))
		// Long enough for the producer to re-create the topic and write
		// to it, so deletes race writes rather than each other.
		time.Sleep(200 * time.Millisecond)
	}
	return outs
}

// churnProduce writes one record to churnTopic by name, which auto-creates
// it when deleteChurn has just deleted it. The records are not checked
// for loss: a deleted topic's records are meant to go.
func (h *hostile) churnProduce(ctx context.Context) []outcome {
	c, err := dialRaw(ctx, h.addr)
	if err != nil {
		return []outcome{dialOutcome(err)}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var outs []outcome
	for range 20 {
		req := kmsg.NewPtrProduceRequest()
		req.Version = 9
		req.Acks = -1
		req.TimeoutMillis = 10000
		req.Topics = []kmsg.ProduceRequestTopic{{Topic: churnTopic, Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: batchtest.Plain(1)}}}}
		resp, _, err := c.roundTrip(req, smallResponse)
		if err != nil {
			return append(outs, connOutcome(err))
		}
		pr := resp.(*kmsg.ProduceResponse)
		if len(pr.Topics) != 1 || len(pr.Topics[0].Partitions) != 1 {
			return append(outs, unexpected("malformed", "produce response with %d topics", len(pr.Topics)))
		}
		outs = append(outs, answeredCode(pr.Topics[0].Partitions[0].ErrorCode, 0, kerr.UnknownTopicOrPartition.Code))
		time.Sleep(10 * time.Millisecond)
	}
	return outs
}

// hugeCounts are the partition counts createHuge asks for: 9,999 (within
// Kafka 4.0's per-request bound of 10,000 topics plus partitions, but with
// the soak's own topics over --max-partitions' default of 10,000), just
// over the per-topic cap of 100,000, a million, and the int32 maximum.
var hugeCounts = []int32{9_999, 100_001, 1_000_000, math.MaxInt32}

// manyTopics is how many one-partition topics createHuge asks for in one
// request (the 100,000 topics exhausted file descriptors).
const manyTopics = 20_000

func (h *hostile) createHuge(ctx context.Context) []outcome {
	c, err := dialRaw(ctx, h.addr)
	if err != nil {
		return []outcome{dialOutcome(err)}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var outs []outcome
	for i, n := range hugeCounts {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.Version = 5
		req.TimeoutMillis = 10000
		t := kmsg.NewCreateTopicsRequestTopic()
		t.Topic = fmt.Sprintf("soak-huge-%d", i)
		t.NumPartitions = n
		t.ReplicationFactor = 1
		req.Topics = []kmsg.CreateTopicsRequestTopic{t}
		resp, _, err := c.roundTrip(req, smallResponse)
		if err != nil {
			return append(outs, connOutcome(err))
		}
		cr := resp.(*kmsg.CreateTopicsResponse)
		if len(cr.Topics) != 1 {
			return append(outs, unexpected("malformed", "CreateTopics answer with %d topics", len(cr.Topics)))
		}
		outs = append(outs, answeredCode(cr.Topics[0].ErrorCode, kerr.InvalidPartitions.Code, kerr.PolicyViolation.Code))
	}
	req := kmsg.NewPtrCreateTopicsRequest()
	req.Version = 5
	req.TimeoutMillis = 10000
	for i := range manyTopics {
		t := kmsg.NewCreateTopicsRequestTopic()
		t.Topic = fmt.Sprintf("soak-huge-many-%d", i)
		t.NumPartitions = 1
		t.ReplicationFactor = 1
		req.Topics = append(req.Topics, t)
	}
	resp, _, err := c.roundTrip(req, 32<<20)
	if err != nil {
		return append(outs, connOutcome(err))
	}
	cr := resp.(*kmsg.CreateTopicsResponse)
	if len(cr.Topics) != manyTopics {
		return append(outs, unexpected("malformed", "CreateTopics of %d topics answered for %d", manyTopics, len(cr.Topics)))
	}
	// One outcome for the request: the first topic not refused, if any.
	for _, t := range cr.Topics {
		if t.ErrorCode != kerr.PolicyViolation.Code && t.ErrorCode != kerr.InvalidPartitions.Code {
			return append(outs, answeredCode(t.ErrorCode, kerr.PolicyViolation.Code, kerr.InvalidPartitions.Code))
		}
	}
	return append(outs, answeredCode(cr.Topics[0].ErrorCode, kerr.PolicyViolation.Code, kerr.InvalidPartitions.Code))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// zstdBomb is a batch of one record whose value is size zero bytes,
// zstd-compressed (a few KiB): the broker must stop decompressing it at
// --max-decompressed-batch-bytes. It is built by streaming, so the soak
// never holds the decompressed bytes either.
func zstdBomb(size int64) ([]byte, error) {
	var body []byte
	body = binary.AppendVarint(body, 0) // length: filled in below
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		return nil, err
	}
	// Record: length, attributes, timestamp delta, offset delta, key
	// length -1, value length, value, header count 0.
	var rec []byte
	rec = append(rec, 0)
	rec = binary.AppendVarint(rec, 0)
	rec = binary.AppendVarint(rec, 0)
	rec = binary.AppendVarint(rec, -1)
	rec = binary.AppendVarint(rec, size)
	length := int64(len(rec)) + size + 1
	body = binary.AppendVarint(body[:0], length)
	if _, err := enc.Write(append(body, rec...)); err != nil {
		return nil, err
	}
	zeros := make([]byte, 1<<20)
	for left := size; left > 0; left -= int64(len(zeros)) {
		if _, err := enc.Write(zeros[:min(left, int64(len(zeros)))]); err != nil {
			return nil, err
		}
	}
	if _, err := enc.Write(binary.AppendVarint(nil, 0)); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return batchtest.Frame(buf.Bytes(), batch.CodecZstd, 1, time.Now().UnixMilli()), nil
}
