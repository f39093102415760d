package share

import (
	"encoding/binary"
	"errors"
	"sort"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/partition"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The state of one share-partition (group, topic, partition): Kafka's
// SharePartition. Records in [start, end) are "in flight": end is one past
// the last offset ever taken from the log, start (the share-partition start
// offset, SPSO) the first offset not yet finished. Every record offset in
// [start, end) has an entry in recs; an offset in that range without one is
// a gap in the log (compacted away), which nothing ever acquires.
//
// Invariant: end - start <= the in-flight bound (max record locks) when new
// records are taken from the log, so recs stays bounded.

type recState int8

const (
	stateAvailable recState = iota // may be acquired
	stateAcquired                  // locked by a member until deadline
	stateAcked                     // accepted: done
	stateArchived                  // rejected, delivery limit, gap, aborted: done
)

type record struct {
	state      recState
	deliveries int16
	owner      string // member holding the lock
	deadline   time.Time
}

// Acknowledge types (Kafka's AcknowledgeType; RENEW is KIP-1222).
const (
	ackGap     int8 = 0
	ackAccept  int8 = 1
	ackRelease int8 = 2
	ackReject  int8 = 3
	ackRenew   int8 = 4
)

type sharePartition struct {
	start, end int64
	recs       map[int64]*record
}

func newSharePartition(start int64) *sharePartition {
	return &sharePartition{start: start, end: start, recs: map[int64]*record{}}
}

// advance moves start past finished records and gaps.
func (sp *sharePartition) advance() {
	for sp.start < sp.end {
		r, ok := sp.recs[sp.start]
		if !ok {
			// A gap: jump to the next tracked offset, or to end.
			next := sp.end
			for off := range sp.recs {
				if off > sp.start && off < next {
					next = off
				}
			}
			sp.start = next
			continue
		}
		if r.state != stateAcked && r.state != stateArchived {
			return
		}
		delete(sp.recs, sp.start)
		sp.start++
	}
}

// reset moves the partition to start at off, forgetting every record
// (AlterShareGroupOffsets, or the log start passing the SPSO).
func (sp *sharePartition) reset(off int64) {
	sp.start, sp.end = off, off
	clear(sp.recs)
}

// trimTo drops in-flight state below the log start: records deleted by
// retention or DeleteRecords cannot be delivered, as in Kafka.
func (sp *sharePartition) trimTo(logStart int64) {
	if sp.start >= logStart {
		return
	}
	if sp.end <= logStart {
		sp.reset(logStart)
		return
	}
	for off := range sp.recs {
		if off < logStart {
			delete(sp.recs, off)
		}
	}
	sp.start = logStart
	sp.advance()
}

// release makes an acquired record available again, or archives it when it
// has been delivered limit times (group.share.delivery.count.limit).
func (r *record) release(limit int16) {
	r.owner, r.deadline = "", time.Time{}
	if r.deliveries >= limit {
		r.state = stateArchived
		return
	}
	r.state = stateAvailable
}

// releaseOwned releases every record member holds; it reports whether any
// became available.
func (sp *sharePartition) releaseOwned(member string, limit int16) (changed bool) {
	for _, r := range sp.recs {
		if r.state == stateAcquired && r.owner == member {
			r.release(limit)
			changed = true
		}
	}
	if changed {
		sp.advance()
	}
	return changed
}

// expire releases records whose lock deadline passed.
func (sp *sharePartition) expire(now time.Time, limit int16) (changed bool) {
	for _, r := range sp.recs {
		if r.state == stateAcquired && !now.Before(r.deadline) {
			r.release(limit)
			changed = true
		}
	}
	if changed {
		sp.advance()
	}
	return changed
}

// Log is what acquisition reads: a partition's Read.
type Log interface {
	Read(partition.ReadOptions) partition.ReadResult
}

// acquireOptions bound one acquisition.
type acquireOptions struct {
	member     string
	maxRecords int
	maxLocks   int // group.share.partition.max.record.locks
	limit      int16
	lock       time.Duration
	now        time.Time
	isolation  partition.Isolation
	readBytes  int // bytes per log read while scanning
}

type acquired = kmsg.ShareFetchResponseTopicPartitionAcquiredRecord

var errStorage = errors.New("share: log read failed")

// acquire locks up to o.maxRecords records for o.member: first released
// records inside the in-flight window, then new ones from the log while
// the window has room. It returns the acquired ranges (consecutive offsets
// with one delivery count each) and whether the state changed.
func (sp *sharePartition) acquire(log Log, o acquireOptions) (ranges []acquired, changed bool, err error) {
	count := 0
	take := func(off int64, r *record) {
		r.state, r.owner, r.deadline = stateAcquired, o.member, o.now.Add(o.lock)
		r.deliveries++
		count++
		changed = true
		if n := len(ranges); n > 0 && ranges[n-1].LastOffset == off-1 && ranges[n-1].DeliveryCount == r.deliveries {
			ranges[n-1].LastOffset = off
			return
		}
		ar := kmsg.NewShareFetchResponseTopicPartitionAcquiredRecord()
		ar.FirstOffset, ar.LastOffset, ar.DeliveryCount = off, off, r.deliveries
		ranges = append(ranges, ar)
	}
	// Released records first, in offset order.
	var avail []int64
	for off, r := range sp.recs {
		if r.state == stateAvailable {
			avail = append(avail, off)
		}
	}
	sort.Slice(avail, func(i, j int) bool { return avail[i] < avail[j] })
	for _, off := range avail {
		if count >= o.maxRecords {
			break
		}
		r := sp.recs[off]
		if r.deliveries >= o.limit {
			r.state = stateArchived
			changed = true
			continue
		}
		take(off, r)
	}
	// Then the log past end.
	for count < o.maxRecords && sp.end-sp.start < int64(o.maxLocks) {
		res := log.Read(partition.ReadOptions{Offset: sp.end, MaxBytes: o.readBytes, MinOneBatch: true, Isolation: o.isolation})
		if res.ErrorCode == kerr.OffsetOutOfRange.Code && sp.end < res.LogStartOffset {
			sp.trimTo(res.LogStartOffset)
			changed = true
			continue
		}
		if res.ErrorCode != 0 {
			if count > 0 || changed {
				break
			}
			return nil, false, errStorage
		}
		if len(res.Records) == 0 {
			break
		}
		aborted := newAbortTracker(res.AbortedTransactions)
		data := res.Records
		progressed := false
		for len(data) > 0 && count < o.maxRecords && sp.end-sp.start < int64(o.maxLocks) {
			h, _, rest, err := batch.Next(data)
			if err != nil {
				break
			}
			data = rest
			isAborted := o.isolation == partition.ReadCommitted && aborted.aborted(h)
			for off := max(h.BaseOffset, sp.end); off <= h.LastOffset(); off++ {
				if count >= o.maxRecords || sp.end-sp.start >= int64(o.maxLocks) {
					break
				}
				r := &record{}
				sp.recs[off] = r
				sp.end = off + 1
				progressed, changed = true, true
				if isAborted {
					// read_committed never delivers an aborted
					// transaction's records (Kafka archives them).
					r.state = stateArchived
					continue
				}
				take(off, r)
			}
		}
		if !progressed {
			break
		}
	}
	if changed {
		sp.advance()
	}
	return ranges, changed, nil
}

// abortTracker tells which transactional batches of a read_committed read
// belong to aborted transactions, the way a consumer does: a producer's
// batches are aborted from its aborted transaction's first offset until its
// abort marker.
type abortTracker struct {
	pending []partition.AbortedTxn // by first offset
	active  map[int64]bool
}

func newAbortTracker(txns []partition.AbortedTxn) *abortTracker {
	p := append([]partition.AbortedTxn(nil), txns...)
	sort.Slice(p, func(i, j int) bool { return p[i].FirstOffset < p[j].FirstOffset })
	return &abortTracker{pending: p, active: map[int64]bool{}}
}

func (a *abortTracker) aborted(h batch.Header) bool {
	for len(a.pending) > 0 && a.pending[0].FirstOffset <= h.LastOffset() {
		a.active[a.pending[0].ProducerID] = true
		a.pending = a.pending[1:]
	}
	if !h.IsTransactional() {
		return false
	}
	if h.IsControl() {
		// The marker itself is a control record: delivered (and
		// acknowledged as a gap by clients) like Kafka does; it ends
		// the producer's aborted range.
		delete(a.active, h.ProducerID)
		return false
	}
	return a.active[h.ProducerID]
}

// ackBatch is one acknowledgement batch of a ShareFetch or
// ShareAcknowledge partition.
type ackBatch struct {
	first, last int64
	types       []int8
}

// validateBatches checks the batches' shape as Kafka does: in order, not
// overlapping, one type or one per offset, known types.
func validateBatches(batches []ackBatch, renew bool) int16 {
	prev := int64(-1)
	maxType := ackReject
	if renew {
		maxType = ackRenew
	}
	for _, b := range batches {
		if b.first < 0 || b.first > b.last || b.first <= prev || len(b.types) == 0 {
			return kerr.InvalidRequest.Code
		}
		if len(b.types) > 1 && int64(len(b.types)) != b.last-b.first+1 {
			return kerr.InvalidRequest.Code
		}
		for _, t := range b.types {
			if t < 0 || t > maxType {
				return kerr.InvalidRequest.Code
			}
		}
		prev = b.last
	}
	return 0
}

// acknowledge applies batches for member, all or nothing: any offset past
// the in-flight window is INVALID_REQUEST, any record not acquired by
// member INVALID_RECORD_STATE (Kafka's SharePartition.acknowledge). Offsets
// below the start are finished already and ignored, as are gaps.
func (sp *sharePartition) acknowledge(member string, batches []ackBatch, limit int16, lock time.Duration, now time.Time) int16 {
	for _, b := range batches {
		if b.last >= sp.end {
			return kerr.InvalidRequest.Code
		}
		for off := max(b.first, sp.start); off <= b.last; off++ {
			r, ok := sp.recs[off]
			if !ok {
				continue
			}
			if r.state != stateAcquired || r.owner != member {
				return kerr.InvalidRecordState.Code
			}
		}
	}
	for _, b := range batches {
		for off := max(b.first, sp.start); off <= b.last; off++ {
			r, ok := sp.recs[off]
			if !ok {
				continue
			}
			t := b.types[0]
			if len(b.types) > 1 {
				t = b.types[off-b.first]
			}
			switch t {
			case ackAccept:
				r.state, r.owner = stateAcked, ""
			case ackRelease:
				r.release(limit)
			case ackGap, ackReject:
				r.state, r.owner = stateArchived, ""
			case ackRenew:
				r.deadline = now.Add(lock)
			}
		}
	}
	sp.advance()
	return 0
}

// finishedBelow counts finished (acked or archived) records below hw, for
// the lag DescribeShareGroupOffsets reports.
func (sp *sharePartition) finishedBelow(hw int64) int64 {
	n := int64(0)
	for off, r := range sp.recs {
		if off < hw && (r.state == stateAcked || r.state == stateArchived) {
			n++
		}
	}
	return n
}

// The durable form of a share-partition (Kafka's share-group state batch):
//
//	version byte, start varint, end varint, n uvarint,
//	n x (offset-start uvarint, state byte, deliveries uvarint)
//
// for every record that is not a never-delivered available one. An
// acquired record is stored as available with its delivery count: a
// restart releases every lock but keeps the count, as Kafka's persister
// does.
const stateVersion = 1

func (sp *sharePartition) encode() []byte {
	offs := make([]int64, 0, len(sp.recs))
	for off, r := range sp.recs {
		if r.state != stateAvailable || r.deliveries > 0 {
			offs = append(offs, off)
		}
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	b := []byte{stateVersion}
	b = binary.AppendVarint(b, sp.start)
	b = binary.AppendVarint(b, sp.end)
	b = binary.AppendUvarint(b, uint64(len(offs)))
	for _, off := range offs {
		r := sp.recs[off]
		st := r.state
		if st == stateAcquired {
			st = stateAvailable
		}
		b = binary.AppendUvarint(b, uint64(off-sp.start))
		b = append(b, byte(st))
		b = binary.AppendUvarint(b, uint64(r.deliveries))
	}
	return b
}

var errCorrupt = errors.New("share: corrupt share-partition state")

func decodeSharePartition(b []byte) (*sharePartition, error) {
	if len(b) < 1 || b[0] != stateVersion {
		return nil, errCorrupt
	}
	b = b[1:]
	start, n := binary.Varint(b)
	if n <= 0 {
		return nil, errCorrupt
	}
	b = b[n:]
	end, n := binary.Varint(b)
	if n <= 0 || end < start {
		return nil, errCorrupt
	}
	b = b[n:]
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(end-start) {
		return nil, errCorrupt
	}
	b = b[n:]
	sp := &sharePartition{start: start, end: end, recs: make(map[int64]*record, count)}
	for range count {
		d, n := binary.Uvarint(b)
		if n <= 0 || len(b) < n+1 {
			return nil, errCorrupt
		}
		st := recState(b[n])
		b = b[n+1:]
		dc, n := binary.Uvarint(b)
		if n <= 0 || st > stateArchived || dc > 1<<15-1 {
			return nil, errCorrupt
		}
		b = b[n:]
		sp.recs[start+int64(d)] = &record{state: st, deliveries: int16(dc)}
	}
	sp.advance()
	return sp, nil
}
