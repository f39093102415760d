package cleaner

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/fsx"
	"github.com/oncelog/oncelog/partition"
	"github.com/oncelog/oncelog/producer"
	"github.com/oncelog/oncelog/segment"
)

// env is one compacted partition on a filesystem, with a clock the cleaner
// reads.
type env struct {
	t     testing.TB
	fs    fsx.FS
	dir   string
	cfg   partition.Config
	p     *partition.Partition
	clock time.Time
	c     *Cleaner
	seqs  map[int64]int32
}

var quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

func compactConfig(segmentBytes int64) partition.Config {
	seg := segment.DefaultConfig()
	seg.SegmentBytes = segmentBytes
	seg.IndexIntervalBytes = 256
	seg.RetentionMs, seg.RetentionBytes = -1, -1
	return partition.Config{
		Segment: seg, MaxMessageBytes: 1 << 20, TimestampBeforeMaxMs: math.MaxInt64, TimestampAfterMaxMs: math.MaxInt64,
		Producer: producer.Config{ExpirationMs: math.MaxInt32, MaxPerPartition: 1000},
		Compaction: partition.CompactionConfig{
			Compact: true, MinCleanableRatio: 0.01, MaxCompactionLagMs: math.MaxInt64, DeleteRetentionMs: 60_000,
		},
	}
}

func newEnv(t testing.TB, fs fsx.FS, dir string, cfg partition.Config) *env {
	e := &env{t: t, fs: fs, dir: dir, cfg: cfg, clock: time.UnixMilli(1_700_000_000_000), seqs: map[int64]int32{}}
	e.open()
	return e
}

func (e *env) open() {
	e.t.Helper()
	p, err := partition.Open(e.fs, e.dir, "t", 0, e.cfg, producer.NewLimits(10000, nil), partition.Hooks{}, quiet)
	if err != nil {
		e.t.Fatal(err)
	}
	e.p = p
	e.c = New(Config{DedupeBufferSize: 1 << 20, Logger: quiet, Now: func() time.Time { return e.clock }}, func() []*partition.Partition { return []*partition.Partition{e.p} })
}

func (e *env) close() {
	if err := e.p.Close(); err != nil {
		e.t.Fatal(err)
	}
}

// rec is a record as a consumer sees it.
type rec struct {
	Offset int64
	Key    string
	Value  string
	Null   bool // tombstone
}

func (r rec) String() string {
	if r.Null {
		return fmt.Sprintf("%d:%s=<nil>", r.Offset, r.Key)
	}
	return fmt.Sprintf("%d:%s=%s", r.Offset, r.Key, r.Value)
}

// kv is a record to produce; a nil Value is a tombstone.
type kv struct {
	Key   string
	Value *string
}

func put(k, v string) kv { return kv{Key: k, Value: &v} }
func tomb(k string) kv   { return kv{Key: k} }

type produceOpts struct {
	codec         int8
	pid           int64 // 0: not idempotent
	transactional bool
}

// produce appends one batch and waits until it is durable; it returns its
// base offset.
func (e *env) produce(o produceOpts, kvs ...kv) int64 {
	e.t.Helper()
	ts := e.clock.UnixMilli()
	recs := make([]batch.Record, len(kvs))
	for i, x := range kvs {
		recs[i] = batch.Record{OffsetDelta: int32(i), TimestampDelta: int64(i), Key: []byte(x.Key)}
		if x.Value != nil {
			recs[i].Value = []byte(*x.Value)
		}
	}
	h := batch.Header{Attributes: int16(o.codec), LastOffsetDelta: int32(len(kvs) - 1), BaseTimestamp: ts, MaxTimestamp: ts + int64(len(kvs)-1),
		ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}
	if o.pid > 0 {
		h.ProducerID, h.ProducerEpoch, h.BaseSequence = o.pid, 0, e.seqs[o.pid]
		e.seqs[o.pid] += int32(len(kvs))
	}
	if o.transactional {
		h.Attributes |= batch.AttrTransactional
	}
	b, err := batch.Build(h, recs)
	if err != nil {
		e.t.Fatal(err)
	}
	res := e.p.Append(b, e.clock)
	if res.ErrorCode != 0 {
		e.t.Fatalf("append: error %d %s", res.ErrorCode, res.ErrorMessage)
	}
	e.durable(res.DurableAt)
	return res.BaseOffset
}

func (e *env) marker(pid int64, commit bool) int64 {
	e.t.Helper()
	off, err := e.p.WriteMarker(pid, 0, commit, math.MaxInt64, e.clock)
	if err != nil {
		e.t.Fatal(err)
	}
	e.durable(off)
	return off - 1
}

func (e *env) durable(off int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.p.WaitDurable(ctx, off); err != nil {
		e.t.Fatal(err)
	}
}

// cleanAll runs the cleaner until it finds nothing to do.
func (e *env) cleanAll() int {
	e.t.Helper()
	n := 0
	for e.c.CleanOnce() {
		if err := e.c.LastError(); err != nil {
			e.t.Fatal(err)
		}
		if n++; n > 100 {
			e.t.Fatal("the cleaner never settles")
		}
	}
	return n
}

// read is what a consumer reading from the log start sees: with committed,
// the read_committed view computed as a client does from the aborted
// transactions the partition reports (franz-go's algorithm: an aborted
// transaction starts filtering its producer's batches at its first offset
// and stops at that producer's ABORT marker).
func (e *env) read(committed bool) []rec {
	e.t.Helper()
	iso := partition.ReadUncommitted
	if committed {
		iso = partition.ReadCommitted
	}
	var out []rec
	for off := e.p.LogStartOffset(); ; {
		res := e.p.Read(partition.ReadOptions{Offset: off, MaxBytes: 1 << 20, MinOneBatch: true, Isolation: iso})
		if res.ErrorCode != 0 {
			e.t.Fatalf("read at %d: error %d", off, res.ErrorCode)
		}
		if len(res.Records) == 0 {
			return out
		}
		aborted := res.AbortedTransactions
		sort.Slice(aborted, func(i, j int) bool { return aborted[i].FirstOffset < aborted[j].FirstOffset })
		filtering := map[int64]bool{}
		for rest := res.Records; len(rest) > 0; {
			h, b, next, err := batch.Next(rest)
			if err != nil {
				e.t.Fatal(err)
			}
			rest = next
			off = h.LastOffset() + 1
			if h.NumRecords > h.LastOffsetDelta+1 || h.Size() != len(b) || batch.ComputeCRC(b) != h.CRC {
				e.t.Fatalf("batch at %d invalid: %+v", h.BaseOffset, h)
			}
			for len(aborted) > 0 && aborted[0].FirstOffset <= h.LastOffset() {
				filtering[aborted[0].ProducerID] = true
				aborted = aborted[1:]
			}
			if h.IsControl() {
				if commit, _, ok := batch.ParseControl(b); ok && !commit {
					delete(filtering, h.ProducerID)
				}
				continue
			}
			if committed && h.IsTransactional() && filtering[h.ProducerID] {
				continue
			}
			it, err := batch.Records(b, h, 0)
			if err != nil {
				e.t.Fatal(err)
			}
			for r, ok := it.Next(); ok; r, ok = it.Next() {
				out = append(out, rec{Offset: r.Offset(h), Key: string(r.Key), Value: string(r.Value), Null: r.Value == nil})
			}
			if it.Err() != nil {
				e.t.Fatal(it.Err())
			}
		}
	}
}

// newest is the expected compacted view of recs: the newest record of
// every key below end, everything at or above it.
func newest(recs []rec, end int64) []rec {
	last := map[string]int64{}
	for _, r := range recs {
		if r.Offset < end {
			last[r.Key] = r.Offset
		}
	}
	var out []rec
	for _, r := range recs {
		if r.Offset >= end || last[r.Key] == r.Offset {
			out = append(out, r)
		}
	}
	return out
}

func dropTombstonesBelow(recs []rec, end int64) []rec {
	var out []rec
	for _, r := range recs {
		if !(r.Null && r.Offset < end) {
			out = append(out, r)
		}
	}
	return out
}

func sameRecs(t testing.TB, what string, got, want []rec) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s:\n got  %v\n want %v", what, got, want)
	}
}

// decode returns the records of fetched batches.
func decode(t testing.TB, data []byte) []rec {
	var out []rec
	for rest := data; len(rest) > 0; {
		h, b, next, err := batch.Next(rest)
		if err != nil {
			t.Error(err)
			return out
		}
		rest = next
		if h.IsControl() {
			continue
		}
		it, err := batch.Records(b, h, 0)
		if err != nil {
			t.Error(err)
			return out
		}
		for r, ok := it.Next(); ok; r, ok = it.Next() {
			out = append(out, rec{Offset: r.Offset(h), Key: string(r.Key), Value: string(r.Value), Null: r.Value == nil})
		}
	}
	return out
}

func lastOffset(data []byte) int64 {
	var last int64 = -1
	for rest := data; len(rest) > 0; {
		h, _, next, err := batch.Next(rest)
		if err != nil {
			break
		}
		last, rest = h.LastOffset(), next
	}
	return last
}
