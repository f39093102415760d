package cleaner

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/fsx"
)

func rawBatches(t *testing.T, e *env) map[int64][]byte {
	out := map[int64][]byte{}
	if err := e.p.Log().ScanBatches(0, func(h batch.Header, b []byte) error {
		out[h.BaseOffset] = bytes.Clone(b)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestKeysOverwrittenTombstonesAgeOutMixedCompression(t *testing.T) {
	e := newEnv(t, nil, t.TempDir(), compactConfig(400))
	defer e.close()
	codecs := []int8{batch.CodecNone, batch.CodecGzip, batch.CodecSnappy, batch.CodecLz4, batch.CodecZstd}
	for i := 0; i < 20; i++ {
		e.produce(produceOpts{codec: codecs[i%len(codecs)]}, put(fmt.Sprintf("k%d", i%4), fmt.Sprintf("v%d", i)), put("stable"+fmt.Sprint(i), "s"))
		e.clock = e.clock.Add(time.Millisecond)
	}
	e.produce(produceOpts{}, tomb("k1"), put("k2", "last"))
	for i := 0; i < 3; i++ {
		e.produce(produceOpts{codec: batch.CodecZstd}, put("pad", fmt.Sprint(i)))
	}
	before := e.read(false)
	raw := rawBatches(t, e)
	active := e.p.Log().ActiveBase()
	if e.cleanAll() == 0 {
		t.Fatal("nothing cleaned")
	}
	want := newest(before, active)
	sameRecs(t, "after the first clean", e.read(false), want)
	if e.p.Size() >= sumSizes(raw) {
		t.Fatalf("log did not shrink: %d >= %d", e.p.Size(), sumSizes(raw))
	}
	// Batches kept whole are byte for byte what the producer sent.
	kept := rawBatches(t, e)
	same := 0
	for off, b := range kept {
		if old, ok := raw[off]; ok && bytes.Equal(old, b) {
			same++
		}
	}
	if same == 0 {
		t.Fatal("no batch kept byte for byte")
	}
	// The tombstone stays delete.retention.ms after the clean that first
	// kept it, then goes.
	e.produce(produceOpts{}, put("pad", "x"))
	e.cleanAll()
	if r := onlyKeys(e.read(false), "k1"); len(r) != 1 || !r[0].Null {
		t.Fatalf("before the delete horizon k1 should be a tombstone: %v", r)
	}
	e.clock = e.clock.Add(61 * time.Second)
	e.cleanAll()
	got := e.read(false)
	for _, r := range got {
		if r.Key == "k1" {
			t.Fatalf("tombstone of k1 still there after its horizon: %v", got)
		}
	}
	// ListOffsets by timestamp still lands on a record that exists.
	for _, r := range got[:3] {
		off, _, found := e.p.Log().OffsetForTimestamp(0)
		if !found || off > r.Offset {
			t.Fatalf("offset for timestamp 0: %d %v", off, found)
		}
	}
	// Reopening (recovery, index checks) gives the same view.
	e.close()
	e.open()
	sameRecs(t, "after reopen", e.read(false), got)
}

func sumSizes(m map[int64][]byte) int64 {
	var n int64
	for _, b := range m {
		n += int64(len(b))
	}
	return n
}

func TestAbortedTransactionsAndMarkers(t *testing.T) {
	e := newEnv(t, nil, t.TempDir(), compactConfig(300))
	defer e.close()
	e.produce(produceOpts{pid: 5, transactional: true}, put("a", "aborted"), put("b", "aborted"))
	e.marker(5, false)
	e.produce(produceOpts{pid: 6, transactional: true}, put("a", "committed"))
	e.marker(6, true)
	e.produce(produceOpts{pid: 5, transactional: true}, put("c", "committed-later"))
	e.marker(5, true)
	for i := 0; i < 4; i++ {
		e.produce(produceOpts{}, put("pad", fmt.Sprint(i)))
	}
	committed := e.read(true)
	e.cleanAll()
	if got := e.read(true); fmt.Sprint(onlyKeys(got, "a", "b", "c")) != fmt.Sprint(onlyKeys(committed, "a", "b", "c")) {
		t.Fatalf("read_committed changed:\n%v\n%v", got, committed)
	}
	for _, r := range e.read(false) {
		if r.Value == "aborted" {
			t.Fatalf("aborted record still in the log: %v", r)
		}
	}
	// Later passes remove the markers whose transactions have no data
	// left, after their delete horizon, and the aborted index entry with
	// the ABORT marker: pid 5's later committed record must stay visible.
	for round := 0; round < 3; round++ {
		e.produce(produceOpts{}, put("pad", "more"+fmt.Sprint(round)))
		e.produce(produceOpts{}, put("pad", "more"+fmt.Sprint(round)))
		e.cleanAll()
		e.clock = e.clock.Add(61 * time.Second)
	}
	e.produce(produceOpts{}, put("pad", "end"))
	e.cleanAll()
	if got := e.read(true); fmt.Sprint(onlyKeys(got, "a", "b", "c")) != fmt.Sprint(onlyKeys(committed, "a", "b", "c")) {
		t.Fatalf("read_committed after the markers went:\n%v\nwant %v", got, committed)
	}
	if n := len(e.p.AbortedTxnsIn(0, e.p.LogEndOffset())); n != 0 {
		t.Fatalf("%d aborted index entries left after their marker was removed", n)
	}
	markers := 0
	e.p.Log().ScanBatches(0, func(h batch.Header, b []byte) error {
		if commit, _, ok := batch.ParseControl(b); ok && !commit && h.BaseOffset < e.p.Log().ActiveBase() {
			markers++
		}
		return nil
	})
	if markers != 0 {
		t.Fatalf("%d ABORT markers of emptied transactions kept past their horizon", markers)
	}
}

func onlyKeys(recs []rec, keys ...string) []rec {
	var out []rec
	for _, r := range recs {
		for _, k := range keys {
			if r.Key == k {
				out = append(out, r)
			}
		}
	}
	return out
}

// The producer's newest batch survives as an empty batch, so producer state
// rebuilt from the log alone keeps its sequence.
func TestProducerLastBatchKeptEmpty(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, nil, dir, compactConfig(200))
	e.produce(produceOpts{pid: 9}, put("k", "old"), put("j", "old"))
	for i := 0; i < 4; i++ {
		e.produce(produceOpts{}, put("k", fmt.Sprint(i)), put("j", fmt.Sprint(i)))
	}
	e.cleanAll()
	var empty int
	e.p.Log().ScanBatches(0, func(h batch.Header, b []byte) error {
		if h.ProducerID == 9 {
			if h.NumRecords != 0 || h.LastSequence() != 1 || h.LastOffsetDelta != 1 {
				t.Fatalf("producer batch kept as %+v", h)
			}
			empty++
		}
		return nil
	})
	if empty != 1 {
		t.Fatalf("%d empty batches of producer 9", empty)
	}
	// Rebuild producer state from the log only.
	e.close()
	names, _ := fsx.Default.List(dir)
	for _, n := range names {
		if len(n) > 9 && n[len(n)-9:] == ".snapshot" {
			fsx.Default.Remove(dir + "/" + n)
		}
	}
	e.open()
	defer e.close()
	e.produce(produceOpts{pid: 9}, put("k", "new")) // sequence 2: accepted in order
	if got := e.read(false); got[len(got)-1].Value != "new" {
		t.Fatalf("%v", got)
	}
}

// compact,delete: retention runs after compaction, so old segments go by
// retention.ms and what is left is compacted.
func TestCompactDeleteAppliesRetentionAfterCompaction(t *testing.T) {
	cfg := compactConfig(300)
	cfg.Segment.RetentionMs = 10_000
	e := newEnv(t, nil, t.TempDir(), cfg)
	defer e.close()
	for i := 0; i < 10; i++ {
		e.produce(produceOpts{}, put("old", fmt.Sprint(i)), put("k", "old"))
	}
	e.clock = e.clock.Add(time.Minute)
	for i := 0; i < 10; i++ {
		e.produce(produceOpts{}, put("new", fmt.Sprint(i)), put("k", fmt.Sprint(i)))
	}
	e.cleanAll()
	// Retention ran in the clean: no closed segment is older than
	// retention.ms (a cleaned segment that merged old records with newer
	// ones lives as long as its newest, as in Kafka).
	for _, s := range e.p.Log().ClosedSegments() {
		if s.MaxTimestamp < e.clock.UnixMilli()-10_000 {
			t.Fatalf("segment %d (max timestamp %d) outlived retention.ms", s.BaseOffset, s.MaxTimestamp)
		}
	}
	if e.p.LogStartOffset() == 0 {
		t.Fatal("log start offset did not move")
	}
	got := e.read(false)
	if r := onlyKeys(got, "old"); len(r) > 1 {
		t.Fatalf("old records left: %v", r)
	}
	active := e.p.Log().ActiveBase()
	ks := onlyKeys(got, "k")
	if len(ks) == 0 || ks[len(ks)-1].Value != "9" {
		t.Fatalf("the newest k is missing: %v", got)
	}
	below := 0
	for _, r := range ks {
		if r.Offset < active {
			below++
		}
	}
	if below > 1 {
		t.Fatalf("k has %d records below the active segment, not compacted: %v", below, got)
	}
}

// A retry of any of a producer's last five batches is still answered as a
// duplicate after their records were compacted away.
func TestDuplicateWindowSurvivesCleaning(t *testing.T) {
	e := newEnv(t, nil, t.TempDir(), compactConfig(200))
	defer e.close()
	var sent [][]byte
	for i := 0; i < 5; i++ {
		ts := e.clock.UnixMilli()
		h := batch.Header{LastOffsetDelta: 0, BaseTimestamp: ts, MaxTimestamp: ts, ProducerID: 4, ProducerEpoch: 0, BaseSequence: int32(i)}
		b, _ := batch.Build(h, []batch.Record{{Key: []byte("k"), Value: []byte(fmt.Sprint(i))}})
		sent = append(sent, bytes.Clone(b))
		res := e.p.Append(b, e.clock)
		if res.ErrorCode != 0 {
			t.Fatal(res.ErrorCode)
		}
		e.durable(res.DurableAt)
	}
	for i := 0; i < 4; i++ {
		e.produce(produceOpts{}, put("k", "overwrite"), put("pad", fmt.Sprint(i)))
	}
	e.cleanAll()
	for _, r := range onlyKeys(e.read(false), "k") {
		if r.Value != "overwrite" {
			t.Fatalf("the producer's records were not compacted away: %v", r)
		}
	}
	for i, b := range sent {
		res := e.p.Append(bytes.Clone(b), e.clock)
		if res.ErrorCode != 0 || !res.Duplicate || res.BaseOffset != int64(i) {
			t.Fatalf("retry of batch %d after cleaning: %+v", i, res)
		}
	}
}

// A partition whose clean fails is not picked again before the backoff, so
// a broken log cannot spin a cleaner thread or starve the others; a stop
// abandons a clean without changing the log.
func TestFailedCleanBacksOffAndStopAbandons(t *testing.T) {
	e := newEnv(t, nil, t.TempDir(), compactConfig(60_000))
	defer e.close()
	e.c.cfg.DedupeBufferSize = 1 // 3686 keys: less than one batch below
	kvs := make([]kv, 4000)
	for i := range kvs {
		kvs[i] = put(fmt.Sprint(i), "v")
	}
	e.produce(produceOpts{}, kvs...)
	e.produce(produceOpts{}, kvs...) // rolls: the first batch is in a closed segment
	if !e.c.CleanOnce() || !errors.Is(e.c.LastError(), errBufferTooSmall) {
		t.Fatalf("first clean: %v, want the buffer-too-small error", e.c.LastError())
	}
	if e.c.CleanOnce() {
		t.Fatal("the failed partition was picked again at once")
	}
	e.clock = e.clock.Add(16 * time.Second)
	if !e.c.CleanOnce() {
		t.Fatal("the failed partition was not retried after the backoff")
	}

	e.c.cfg.DedupeBufferSize = 1 << 20
	e.clock = e.clock.Add(16 * time.Second)
	before := rawBatches(t, e)
	close(e.c.stop)
	e.c.CleanOnce()
	if err := e.c.LastError(); !errors.Is(err, errBufferTooSmall) {
		t.Fatalf("a stopped clean reported %v", err)
	}
	if after := rawBatches(t, e); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("a stopped clean changed the log")
	}
}

// A producer spilled to disk for the per-partition cap is still an active
// producer (Kafka keeps every one in memory): its newest batch survives
// the clean as an empty batch, as in TestProducerLastBatchKeptEmpty.
func TestSpilledProducerLastBatchKept(t *testing.T) {
	cfg := compactConfig(200)
	cfg.Producer.MaxPerPartition = 1
	cfg.Producer.MinIdleForEvictionMs = -1
	cfg.Producer.Spill = true
	e := newEnv(t, nil, t.TempDir(), cfg)
	defer e.close()
	e.produce(produceOpts{pid: 9}, put("k", "old"), put("j", "old"))
	for i := 0; i < 4; i++ {
		e.produce(produceOpts{pid: int64(10 + i)}, put("k", fmt.Sprint(i)), put("j", fmt.Sprint(i)))
	}
	for _, p := range e.p.Producers() {
		if p.ProducerID == 9 {
			t.Fatal("producer 9 is still in memory: the test tests nothing")
		}
	}
	all, err := e.p.AllProducers()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 {
		t.Fatalf("AllProducers lists %d producers, want 5: %+v", len(all), all)
	}
	e.cleanAll()
	kept := map[int64]int{}
	e.p.Log().ScanBatches(0, func(h batch.Header, b []byte) error {
		if h.ProducerID >= 9 && h.ProducerID < 12 { // (12 wrote the newest values: kept whole)
			if h.NumRecords != 0 || h.LastSequence() != 1 || h.LastOffsetDelta != 1 {
				t.Fatalf("batch of producer %d kept as %+v", h.ProducerID, h)
			}
			kept[h.ProducerID]++
		}
		return nil
	})
	for pid := int64(9); pid < 12; pid++ {
		if kept[pid] != 1 {
			t.Fatalf("%d empty batches of producer %d, want 1 (kept: %v)", kept[pid], pid, kept)
		}
	}
}
