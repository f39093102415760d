package share

import (
	"testing"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/partition"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fakeLog is a log of whole batches; Read returns the batches from the one
// holding the offset, as partition.Read does.
type fakeLog struct {
	batches  [][]byte
	headers  []batch.Header
	aborted  []partition.AbortedTxn
	logStart int64
}

func (l *fakeLog) add(t *testing.T, base int64, n int, attrs int16, pid int64) {
	t.Helper()
	recs := make([]batch.Record, n)
	for i := range recs {
		recs[i] = batch.Record{OffsetDelta: int32(i), Value: []byte("v")}
	}
	b, err := batch.Build(batch.Header{BaseOffset: base, LastOffsetDelta: int32(n - 1), Magic: 2, Attributes: attrs, ProducerID: pid, BaseSequence: -1}, recs)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := batch.Parse(b)
	l.batches, l.headers = append(l.batches, b), append(l.headers, h)
}

func (l *fakeLog) end() int64 {
	if len(l.headers) == 0 {
		return 0
	}
	return l.headers[len(l.headers)-1].LastOffset() + 1
}

func (l *fakeLog) Read(o partition.ReadOptions) partition.ReadResult {
	res := partition.ReadResult{HighWatermark: l.end(), LastStableOffset: l.end(), LogStartOffset: l.logStart}
	if o.Offset < l.logStart || o.Offset > l.end() {
		res.ErrorCode = kerr.OffsetOutOfRange.Code
		return res
	}
	for i, h := range l.headers {
		if h.LastOffset() >= o.Offset {
			for _, b := range l.batches[i:] {
				res.Records = append(res.Records, b...)
			}
			break
		}
	}
	if o.Isolation == partition.ReadCommitted {
		res.AbortedTransactions = l.aborted
	}
	return res
}

func opts(member string, n int) acquireOptions {
	return acquireOptions{member: member, maxRecords: n, maxLocks: 100, limit: 3, lock: time.Minute, now: time.Now(), readBytes: 1 << 20}
}

func TestAcquireAcknowledgeLifecycle(t *testing.T) {
	l := &fakeLog{}
	l.add(t, 0, 5, 0, -1)
	l.add(t, 5, 5, 0, -1)
	sp := newSharePartition(0)

	got, _, err := sp.acquire(l, opts("a", 7))
	if err != nil || len(got) != 1 || got[0].FirstOffset != 0 || got[0].LastOffset != 6 || got[0].DeliveryCount != 1 {
		t.Fatalf("first acquire: %+v %v", got, err)
	}
	// b gets the rest, never a's locked records.
	got, _, _ = sp.acquire(l, opts("b", 100))
	if len(got) != 1 || got[0].FirstOffset != 7 || got[0].LastOffset != 9 {
		t.Fatalf("second acquire: %+v", got)
	}
	// b cannot acknowledge a's records.
	if ec := sp.acknowledge("b", []ackBatch{{0, 0, []int8{ackAccept}}}, 3, time.Minute, time.Now()); ec != kerr.InvalidRecordState.Code {
		t.Fatalf("foreign ack: %d", ec)
	}
	// Past the in-flight window is INVALID_REQUEST.
	if ec := sp.acknowledge("a", []ackBatch{{0, 10, []int8{ackAccept}}}, 3, time.Minute, time.Now()); ec != kerr.InvalidRequest.Code {
		t.Fatalf("ack past end: %d", ec)
	}
	// a accepts 0-2, releases 3-4, rejects 5-6.
	types := []int8{ackAccept, ackAccept, ackAccept, ackRelease, ackRelease, ackReject, ackReject}
	if ec := sp.acknowledge("a", []ackBatch{{0, 6, types}}, 3, time.Minute, time.Now()); ec != 0 {
		t.Fatalf("ack: %d", ec)
	}
	if sp.start != 3 {
		t.Fatalf("start %d, want 3", sp.start)
	}
	// The released records come back with delivery count 2.
	got, _, _ = sp.acquire(l, opts("c", 100))
	if len(got) != 1 || got[0].FirstOffset != 3 || got[0].LastOffset != 4 || got[0].DeliveryCount != 2 {
		t.Fatalf("redelivery: %+v", got)
	}
	// An accepted record acknowledged again is INVALID_RECORD_STATE only
	// in the window; below the start it is finished and ignored.
	if ec := sp.acknowledge("c", []ackBatch{{0, 4, []int8{ackAccept}}}, 3, time.Minute, time.Now()); ec != 0 {
		t.Fatalf("ack with finished prefix: %d", ec)
	}
	if ec := sp.acknowledge("b", []ackBatch{{7, 9, []int8{ackAccept}}}, 3, time.Minute, time.Now()); ec != 0 {
		t.Fatalf("b ack: %d", ec)
	}
	if sp.start != 10 || len(sp.recs) != 0 {
		t.Fatalf("after all acks start=%d recs=%d", sp.start, len(sp.recs))
	}
	// Rejected records (5, 6) are never delivered again.
	if got, _, _ := sp.acquire(l, opts("a", 100)); len(got) != 0 {
		t.Fatalf("nothing left, got %+v", got)
	}
}

func TestDeliveryLimitArchives(t *testing.T) {
	l := &fakeLog{}
	l.add(t, 0, 1, 0, -1)
	sp := newSharePartition(0)
	now := time.Now()
	for i := 1; i <= 3; i++ {
		o := opts("a", 10)
		o.now = now
		got, _, _ := sp.acquire(l, o)
		if len(got) != 1 || got[0].DeliveryCount != int16(i) {
			t.Fatalf("delivery %d: %+v", i, got)
		}
		// Lock timeout rather than a release.
		now = now.Add(2 * time.Minute)
		if !sp.expire(now, 3) {
			t.Fatalf("delivery %d: lock did not expire", i)
		}
	}
	if got, _, _ := sp.acquire(l, opts("a", 10)); len(got) != 0 {
		t.Fatalf("delivered past the limit: %+v", got)
	}
	if sp.start != 1 {
		t.Fatalf("archived record not finished: start %d", sp.start)
	}
}

func TestMaxRecordLocksBoundsWindow(t *testing.T) {
	l := &fakeLog{}
	l.add(t, 0, 50, 0, -1)
	sp := newSharePartition(0)
	o := opts("a", 100)
	o.maxLocks = 20
	got, _, _ := sp.acquire(l, o)
	if len(got) != 1 || got[0].LastOffset != 19 {
		t.Fatalf("window: %+v", got)
	}
	if got, _, _ := sp.acquire(l, o); len(got) != 0 {
		t.Fatalf("acquired past the window: %+v", got)
	}
	sp.acknowledge("a", []ackBatch{{0, 9, []int8{ackAccept}}}, 3, time.Minute, time.Now())
	got, _, _ = sp.acquire(l, o)
	if len(got) != 1 || got[0].FirstOffset != 20 || got[0].LastOffset != 29 {
		t.Fatalf("after ack: %+v", got)
	}
}

func TestReadCommittedArchivesAborted(t *testing.T) {
	l := &fakeLog{}
	l.add(t, 0, 2, batch.AttrTransactional, 7) // aborted
	l.add(t, 2, 1, batch.AttrTransactional|batch.AttrControl, 7)
	l.add(t, 3, 2, 0, -1)
	l.aborted = []partition.AbortedTxn{{ProducerID: 7, FirstOffset: 0}}
	sp := newSharePartition(0)
	o := opts("a", 100)
	o.isolation = partition.ReadCommitted
	got, _, _ := sp.acquire(l, o)
	if len(got) != 1 || got[0].FirstOffset != 2 || got[0].LastOffset != 4 {
		t.Fatalf("read_committed: %+v", got)
	}
	if sp.start != 2 {
		t.Fatalf("aborted records not finished: start %d", sp.start)
	}
}

func TestGapsAndLogStart(t *testing.T) {
	l := &fakeLog{}
	l.add(t, 0, 2, 0, -1)
	l.add(t, 10, 2, 0, -1) // 2-9 compacted away
	sp := newSharePartition(0)
	got, _, _ := sp.acquire(l, opts("a", 100))
	if len(got) != 2 || got[1].FirstOffset != 10 {
		t.Fatalf("gaps: %+v", got)
	}
	sp.acknowledge("a", []ackBatch{{0, 11, []int8{ackAccept}}}, 3, time.Minute, time.Now())
	if sp.start != 12 {
		t.Fatalf("start %d over a gap, want 12", sp.start)
	}
	// Retention past the start moves it.
	l.add(t, 12, 3, 0, -1)
	l.logStart = 13
	sp2 := newSharePartition(12)
	got, _, _ = sp2.acquire(l, opts("a", 100))
	if len(got) != 1 || got[0].FirstOffset != 13 || sp2.start != 13 {
		t.Fatalf("log start: %+v start %d", got, sp2.start)
	}
}

func TestEncodeKeepsDeliveriesReleasesLocks(t *testing.T) {
	l := &fakeLog{}
	l.add(t, 0, 6, 0, -1)
	sp := newSharePartition(0)
	sp.acquire(l, opts("a", 100))
	sp.acknowledge("a", []ackBatch{{0, 1, []int8{ackAccept}}, {3, 3, []int8{ackReject}}, {4, 4, []int8{ackRelease}}}, 3, time.Minute, time.Now())
	back, err := decodeSharePartition(sp.encode())
	if err != nil {
		t.Fatal(err)
	}
	if back.start != 2 || back.end != 6 {
		t.Fatalf("start/end %d/%d", back.start, back.end)
	}
	for off, want := range map[int64]recState{2: stateAvailable, 3: stateArchived, 4: stateAvailable, 5: stateAvailable} {
		r := back.recs[off]
		if r == nil || r.state != want || r.deliveries != 1 {
			t.Fatalf("offset %d: %+v", off, r)
		}
	}
	got, _, _ := back.acquire(l, opts("b", 100))
	if len(got) != 2 || got[0].FirstOffset != 2 || got[0].DeliveryCount != 2 || got[1].FirstOffset != 4 || got[1].LastOffset != 5 {
		t.Fatalf("after restart: %+v", got)
	}
	if _, err := decodeSharePartition([]byte{9}); err == nil {
		t.Fatal("decoded garbage")
	}
}

func TestValidateBatches(t *testing.T) {
	for _, tc := range []struct {
		b     []ackBatch
		renew bool
		want  int16
	}{
		{[]ackBatch{{0, 1, []int8{1}}}, false, 0},
		{[]ackBatch{{2, 1, []int8{1}}}, false, kerr.InvalidRequest.Code},
		{[]ackBatch{{0, 1, []int8{1}}, {1, 2, []int8{1}}}, false, kerr.InvalidRequest.Code},
		{[]ackBatch{{0, 2, []int8{1, 1}}}, false, kerr.InvalidRequest.Code},
		{[]ackBatch{{0, 0, nil}}, false, kerr.InvalidRequest.Code},
		{[]ackBatch{{0, 0, []int8{4}}}, false, kerr.InvalidRequest.Code},
		{[]ackBatch{{0, 0, []int8{4}}}, true, 0},
	} {
		if got := validateBatches(tc.b, tc.renew); got != tc.want {
			t.Errorf("%+v renew=%v: %d, want %d", tc.b, tc.renew, got, tc.want)
		}
	}
}

// TestShareFetchRecordsNeverNull: a partition with nothing to deliver is
// answered with empty, not null, records; the Java client fails on a null
// ("non-nullable field records was serialized as null").
func TestShareFetchRecordsNeverNull(t *testing.T) {
	c := &Coordinator{}
	a, b := tp{p: 0}, tp{p: 1}
	s := &session{parts: map[tp]bool{a: true, b: true}}
	resp := kmsg.NewPtrShareFetchResponse()
	c.fillFetch(resp, []fetched{{tp: a, records: []byte{1}}}, s)
	n := 0
	for _, t2 := range resp.Topics {
		for _, p := range t2.Partitions {
			n++
			if p.Records == nil {
				t.Errorf("partition %d: null records", p.Partition)
			}
		}
	}
	if n != 2 {
		t.Fatalf("%d partitions answered, want 2", n)
	}
}

func TestGroupRecordRoundTrip(t *testing.T) {
	for _, live := range []bool{false, true} {
		g, err := decodeGroup(encodeGroup(storedGroup{epoch: 7, live: live, configs: map[string]string{"share.auto.offset.reset": "earliest"}}))
		if err != nil || g.epoch != 7 || g.live != live || g.configs["share.auto.offset.reset"] != "earliest" {
			t.Fatalf("live=%v: %+v %v", live, g, err)
		}
	}
	// Version 1 records (no live byte) are live groups.
	v1 := []byte{1, 0, 0, 0, 3, 0}
	if g, err := decodeGroup(v1); err != nil || !g.live || g.epoch != 3 {
		t.Fatalf("v1: %+v %v", g, err)
	}
	if _, err := decodeGroup([]byte{2, 0, 0, 0, 3, 9, 0}); err == nil {
		t.Fatal("decoded a bad live byte")
	}
}
