package segment

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oncelog/oncelog/batch"
)

func smallConfig() Config {
	return Config{SegmentBytes: 4096, IndexIntervalBytes: 256, RetentionMs: -1, RetentionBytes: -1}
}

func TestAppendReadAcrossRolls(t *testing.T) {
	dir := t.TempDir()
	l, info := openLog(t, dir, smallConfig())
	if !info.Clean || l.NextOffset() != 0 || l.StartOffset() != 0 {
		t.Fatalf("new log: info %+v next %d start %d", info, l.NextOffset(), l.StartOffset())
	}
	var m model
	rng := rand.New(rand.NewPCG(1, 2))
	appendRandom(t, l, &m, rng, 400, 1_000)
	segs := l.Segments()
	if len(segs) < 10 {
		t.Fatalf("expected many rolls, got %d segments", len(segs))
	}
	var total int64
	for i, s := range segs {
		total += s.Size
		if s.Size > 4096 && i < len(segs)-1 {
			// Only an append bigger than a segment may exceed it.
			t.Errorf("segment %d is %d bytes", s.BaseOffset, s.Size)
		}
		if fileSize(t, s.Path) != s.Size {
			t.Errorf("segment %d: file %d bytes, reported %d", s.BaseOffset, fileSize(t, s.Path), s.Size)
		}
	}
	if total != l.Size() {
		t.Fatalf("Size %d, segments add up to %d", l.Size(), total)
	}
	checkContents(t, l, &m)
	// Every offset: the first batch returned is the one holding it.
	for off := int64(0); off < m.next(); off++ {
		data, err := l.Read(off, 1, m.next())
		if err != nil {
			t.Fatal(err)
		}
		if want := m.batches[m.indexOf(off)]; !bytes.Equal(data, want) {
			t.Fatalf("Read(%d, 1) did not return exactly the batch holding it", off)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, info = openLog(t, dir, smallConfig())
	defer l.Close()
	if !info.Clean || info.ScannedBytes != 0 || info.RebuiltIndexes != 0 {
		t.Fatalf("clean reopen: %+v", info)
	}
	checkContents(t, l, &m)
	appendRandom(t, l, &m, rng, 50, 5_000)
	checkContents(t, l, &m)
}

func TestReadBoundaries(t *testing.T) {
	l, _ := openLog(t, t.TempDir(), Config{SegmentBytes: 1 << 20, IndexIntervalBytes: 100})
	defer l.Close()
	var m model
	for i := range 20 {
		b := simpleBatch(m.next(), 4, int64(i), 50) // 4 records per batch
		m.add(b)
		if err := l.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	size := len(m.batches[0]) // all batches have the same size
	cat := func(from, to int) []byte { return bytes.Join(m.batches[from:to], nil) }
	tests := []struct {
		name     string
		offset   int64
		maxBytes int
		upTo     int64
		want     []byte
		err      error
	}{
		{"exact fit", 0, 3 * size, 80, cat(0, 3), nil},
		{"one byte short", 0, 3*size - 1, 80, cat(0, 2), nil},
		{"first batch bigger than maxBytes", 8, 10, 80, cat(2, 3), nil},
		{"maxBytes zero", 8, 0, 80, cat(2, 3), nil},
		{"offset mid-batch", 9, 2 * size, 80, cat(2, 4), nil},
		{"last offset in batch", 11, size, 80, cat(2, 3), nil},
		{"upTo excludes a batch ending at it", 0, 1 << 20, 12, cat(0, 3), nil},
		{"upTo excludes a batch ending past it", 0, 1 << 20, 13, cat(0, 3), nil},
		{"upTo at a batch end", 0, 1 << 20, 11, cat(0, 2), nil},
		{"first batch crosses upTo", 9, 1 << 20, 10, nil, nil},
		{"offset == upTo", 40, 1 << 20, 40, nil, nil},
		{"offset > upTo", 41, 1 << 20, 40, nil, nil},
		{"whole log", 0, 1 << 20, 80, cat(0, 20), nil},
		{"log end", 80, 1 << 20, 80, nil, nil},
		{"last batch", 79, 1 << 20, 80, cat(19, 20), nil},
		{"past the end", 81, 1 << 20, 100, nil, ErrOffsetOutOfRange},
		{"negative", -1, 1 << 20, 100, nil, ErrOffsetOutOfRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := l.Read(tt.offset, tt.maxBytes, tt.upTo)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("got %d bytes, want %d", len(got), len(tt.want))
			}
		})
	}
	// A returned slice belongs to the caller.
	got, _ := l.Read(0, size, 80)
	clear(got)
	if again, _ := l.Read(0, size, 80); !bytes.Equal(again, m.batches[0]) {
		t.Fatal("Read returned memory shared with a later read")
	}
}

func TestAppendRejectsBadInput(t *testing.T) {
	l, _ := openLog(t, t.TempDir(), smallConfig())
	defer l.Close()
	good := simpleBatch(0, 2, 1, 10)
	if err := l.Append(good); err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string][]byte{
		"wrong base offset":    simpleBatch(5, 1, 1, 10),
		"already used offset":  simpleBatch(0, 1, 1, 10),
		"truncated":            simpleBatch(2, 1, 1, 10)[:40],
		"missing tail":         simpleBatch(2, 1, 1, 10)[:70],
		"garbage":              bytes.Repeat([]byte{7}, 100),
		"second batch has gap": append(simpleBatch(2, 1, 1, 10), simpleBatch(4, 1, 1, 10)...),
	} {
		if err := l.Append(in); !errors.Is(err, ErrInvalidBatch) {
			t.Errorf("%s: err = %v, want ErrInvalidBatch", name, err)
		}
	}
	if l.NextOffset() != 2 || l.Size() != int64(len(good)) {
		t.Fatalf("rejected appends changed the log: next %d size %d", l.NextOffset(), l.Size())
	}
}

func TestBigBatchGetsItsOwnSegment(t *testing.T) {
	l, _ := openLog(t, t.TempDir(), Config{SegmentBytes: 1000, IndexIntervalBytes: 100})
	defer l.Close()
	var m model
	for _, vs := range []int{100, 5000, 100, 100, 3000} {
		b := simpleBatch(m.next(), 1, 1, vs)
		m.add(b)
		if err := l.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	var bases []int64
	for _, s := range l.Segments() {
		bases = append(bases, s.BaseOffset)
	}
	if want := []int64{0, 1, 2, 4}; !slices.Equal(bases, want) {
		t.Fatalf("segment bases %v, want %v", bases, want)
	}
	checkContents(t, l, &m)
}

func TestSegmentMsRoll(t *testing.T) {
	clock := &fakeClock{t: time.UnixMilli(1_000_000)}
	l, _ := openLog(t, t.TempDir(), Config{SegmentBytes: 1 << 20, SegmentMs: 1000})
	defer l.Close()
	l.now = clock.now
	var rolls []int64
	l.SetRollHook(func(base int64) {
		if got := l.Segments(); got[len(got)-1].BaseOffset != base {
			t.Errorf("hook for %d runs before the segment exists", base)
		}
		rolls = append(rolls, base)
	})
	var m model
	add := func() {
		b := simpleBatch(m.next(), 1, 1, 10)
		m.add(b)
		if err := l.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	add()
	clock.t = clock.t.Add(1000 * time.Millisecond)
	add() // exactly SegmentMs: no roll yet
	clock.t = clock.t.Add(time.Millisecond)
	add() // first append was 1001 ms ago: roll
	add()
	clock.t = clock.t.Add(time.Hour)
	add()
	if want := []int64{2, 4}; !slices.Equal(rolls, want) {
		t.Fatalf("rolls at %v, want %v", rolls, want)
	}
	checkContents(t, l, &m)
}

func TestCleanShutdownSkipsScan(t *testing.T) {
	dir := t.TempDir()
	l, _ := openLog(t, dir, smallConfig())
	var m model
	appendRandom(t, l, &m, rand.New(rand.NewPCG(3, 4)), 100, 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, cleanMarkerName)); err != nil {
		t.Fatalf("no clean-shutdown marker after Close: %v", err)
	}
	l, info := openLog(t, dir, smallConfig())
	if !info.Clean || info.ScannedBytes != 0 || info.TruncatedBytes != 0 {
		t.Fatalf("clean reopen scanned: %+v", info)
	}
	mustNotExist(t, filepath.Join(dir, cleanMarkerName))
	checkContents(t, l, &m)
	l.crash()
	l, info = openLog(t, dir, smallConfig())
	defer l.Close()
	if info.Clean || info.ScannedBytes == 0 {
		t.Fatalf("reopen after a crash did not scan: %+v", info)
	}
	checkContents(t, l, &m)
}

func TestRollHookAndSync(t *testing.T) {
	l, _ := openLog(t, t.TempDir(), smallConfig())
	defer l.Close()
	var hooked []int64
	l.SetRollHook(func(base int64) { hooked = append(hooked, base) })
	var m model
	appendRandom(t, l, &m, rand.New(rand.NewPCG(5, 6)), 100, 1)
	segs := l.Segments()
	var want []int64
	for _, s := range segs[1:] {
		want = append(want, s.BaseOffset)
	}
	if !slices.Equal(hooked, want) {
		t.Fatalf("hook saw %v, segments start at %v", hooked, want)
	}
	off, err := l.Sync()
	if err != nil || off != m.next() {
		t.Fatalf("Sync = %d, %v; want %d", off, err, m.next())
	}
}

func TestRetentionByTime(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{SegmentBytes: 2000, IndexIntervalBytes: 100, RetentionMs: 10_000, RetentionBytes: -1}
	l, _ := openLog(t, dir, cfg)
	defer l.Close()
	snapshot := filepath.Join(dir, "00000000000000000003.snapshot")
	if err := os.WriteFile(snapshot, []byte("producer state"), 0o644); err != nil {
		t.Fatal(err)
	}
	var m model
	// Batch i is stamped 1000*i; each segment holds three batches.
	for i := range 30 {
		b := simpleBatch(m.next(), 2, int64(1000*i), 250)
		m.add(b)
		if err := l.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	before := l.Segments()
	if len(before) != 10 {
		t.Fatalf("%d segments, want 10", len(before))
	}
	// now-RetentionMs = 15000: segments whose newest batch is stamped below
	// it (batches 0..14, five segments) go.
	n, err := l.ApplyRetention(time.UnixMilli(25_000))
	if err != nil || n != 5 {
		t.Fatalf("ApplyRetention = %d, %v; want 5", n, err)
	}
	after := l.Segments()
	if after[0].BaseOffset != before[5].BaseOffset || l.StartOffset() != before[5].BaseOffset {
		t.Fatalf("first segment %d, start %d, want %d", after[0].BaseOffset, l.StartOffset(), before[5].BaseOffset)
	}
	for _, s := range before[:5] {
		mustNotExist(t, s.Path)
		mustNotExist(t, segmentPath(dir, s.BaseOffset, ".index"))
		mustNotExist(t, segmentPath(dir, s.BaseOffset, ".timeindex"))
	}
	if _, err := os.Stat(snapshot); err != nil {
		t.Fatalf("retention touched a file it does not own: %v", err)
	}
	if _, err := l.Read(l.StartOffset()-1, 100, l.NextOffset()); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below start: %v", err)
	}
	checkContents(t, l, &m)
	// Far in the future everything but the active segment goes.
	n, err = l.ApplyRetention(time.UnixMilli(1e12))
	if err != nil || n != 4 || len(l.Segments()) != 1 {
		t.Fatalf("ApplyRetention = %d, %v, %d segments left", n, err, len(l.Segments()))
	}
	checkContents(t, l, &m)
	var total int64
	for _, s := range l.Segments() {
		total += s.Size
	}
	if l.Size() != total {
		t.Fatalf("Size %d, want %d", l.Size(), total)
	}
}

func TestRetentionBySize(t *testing.T) {
	cfg := Config{SegmentBytes: 2000, IndexIntervalBytes: 100, RetentionMs: -1, RetentionBytes: -1}
	l, _ := openLog(t, t.TempDir(), cfg)
	defer l.Close()
	var m model
	for range 30 {
		b := simpleBatch(m.next(), 2, 1, 250)
		m.add(b)
		if err := l.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := l.ApplyRetention(time.Now()); n != 0 {
		t.Fatalf("unlimited retention deleted %d segments", n)
	}
	segSize := l.Segments()[0].Size
	cfg.RetentionBytes = 4*segSize + 10
	l.SetConfig(cfg)
	n, err := l.ApplyRetention(time.Now())
	if err != nil || n != 6 {
		t.Fatalf("ApplyRetention = %d, %v; want 6", n, err)
	}
	if l.Size() > cfg.RetentionBytes || l.Size()+segSize <= cfg.RetentionBytes {
		t.Fatalf("size %d after retention to %d", l.Size(), cfg.RetentionBytes)
	}
	checkContents(t, l, &m)
	cfg.RetentionBytes = 0
	l.SetConfig(cfg)
	if _, err := l.ApplyRetention(time.Now()); err != nil {
		t.Fatal(err)
	}
	if len(l.Segments()) != 1 {
		t.Fatalf("the active segment must survive, have %d segments", len(l.Segments()))
	}
	checkContents(t, l, &m)
}

func TestDeleteRecordsBefore(t *testing.T) {
	dir := t.TempDir()
	l, _ := openLog(t, dir, Config{SegmentBytes: 2000, IndexIntervalBytes: 100})
	var m model
	for range 30 {
		b := simpleBatch(m.next(), 2, 1, 250)
		m.add(b)
		if err := l.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	segs := l.Segments()
	cut := segs[3].BaseOffset + 3 // mid-batch, inside the fourth segment
	if err := l.DeleteRecordsBefore(cut); err != nil {
		t.Fatal(err)
	}
	if l.StartOffset() != cut {
		t.Fatalf("start %d, want %d", l.StartOffset(), cut)
	}
	if got := l.Segments()[0].BaseOffset; got != segs[3].BaseOffset {
		t.Fatalf("first segment %d, want %d", got, segs[3].BaseOffset)
	}
	if _, err := l.Read(cut-1, 100, l.NextOffset()); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below start: %v", err)
	}
	data, err := l.Read(cut, 1, l.NextOffset())
	if err != nil || !bytes.Equal(data, m.batches[m.indexOf(cut)]) {
		t.Fatalf("read at start: %v", err)
	}
	if err := l.DeleteRecordsBefore(cut - 2); err != nil || l.StartOffset() != cut {
		t.Fatalf("moving start backwards: %v, start %d", err, l.StartOffset())
	}
	if err := l.DeleteRecordsBefore(l.NextOffset() + 1); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("beyond the end: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, _ = openLog(t, dir, Config{SegmentBytes: 2000, IndexIntervalBytes: 100})
	if l.StartOffset() != cut {
		t.Fatalf("start after clean reopen %d, want %d", l.StartOffset(), cut)
	}
	l.crash()
	l, _ = openLog(t, dir, Config{SegmentBytes: 2000, IndexIntervalBytes: 100})
	defer l.Close()
	if l.StartOffset() != cut {
		t.Fatalf("start after crash %d, want %d", l.StartOffset(), cut)
	}
	checkContents(t, l, &m)
	// Everything: the active segment stays but nothing is readable.
	end := l.NextOffset()
	if err := l.DeleteRecordsBefore(end); err != nil {
		t.Fatal(err)
	}
	if data, err := l.Read(end, 100, end); err != nil || data != nil {
		t.Fatalf("read at the end of an emptied log: %v", err)
	}
	if len(l.Segments()) != 1 {
		t.Fatalf("%d segments left", len(l.Segments()))
	}
}

func TestScanBatches(t *testing.T) {
	l, _ := openLog(t, t.TempDir(), smallConfig())
	defer l.Close()
	var m model
	appendRandom(t, l, &m, rand.New(rand.NewPCG(7, 8)), 300, 1)
	for _, from := range []int64{0, 1, 57, m.headers[100].BaseOffset + 1, m.next() - 1, m.next(), m.next() + 10} {
		var got []batch.Header
		err := l.ScanBatches(from, func(h batch.Header, b []byte) error {
			if !bytes.Equal(b, m.batches[m.indexOf(h.BaseOffset)]) {
				t.Fatalf("scan from %d: batch %d differs", from, h.BaseOffset)
			}
			got = append(got, h)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var want []batch.Header
		for _, h := range m.headers {
			if h.LastOffset() >= from {
				want = append(want, h)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("scan from %d: %d batches, want %d", from, len(got), len(want))
		}
	}
	stop := errors.New("stop")
	if err := l.ScanBatches(0, func(batch.Header, []byte) error { return stop }); err != stop {
		t.Fatalf("fn's error not returned: %v", err)
	}
}

func TestOffsetForTimestamp(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{SegmentBytes: 1500, IndexIntervalBytes: 64}
	l, _ := openLog(t, dir, cfg)
	var m model
	type rec struct{ offset, ts int64 }
	var recs []rec // every record, for the brute-force answer
	rng := rand.New(rand.NewPCG(9, 10))
	ts := int64(1_000)
	for range 200 {
		n := 1 + rng.IntN(4)
		tss := make([]int64, n)
		for i := range tss {
			// Mostly growing, sometimes going back: timestamps are the
			// client's and need not be ordered.
			ts += int64(rng.IntN(20)) - 4
			tss[i] = ts
		}
		b := makeBatch(m.next(), batchOpts{timestamps: tss, valueSize: rng.IntN(100)})
		for i, t := range tss {
			recs = append(recs, rec{m.next() + int64(i), t})
		}
		m.add(b)
		if err := l.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	bruteForce := func(target int64) (int64, int64, bool) {
		for _, r := range recs {
			if r.offset >= l.StartOffset() && r.ts >= target {
				return r.offset, r.ts, true
			}
		}
		return -1, -1, false
	}
	maxTs, maxOff := int64(-1), int64(-1)
	for _, r := range recs {
		if r.ts > maxTs {
			maxTs, maxOff = r.ts, r.offset
		}
	}
	check := func(stage string) {
		t.Helper()
		for target := int64(900); target <= ts+50; target += 3 {
			off, got, found := l.OffsetForTimestamp(target)
			wOff, wTs, wFound := bruteForce(target)
			if off != wOff || got != wTs || found != wFound {
				t.Fatalf("%s: OffsetForTimestamp(%d) = %d, %d, %v; want %d, %d, %v", stage, target, off, got, found, wOff, wTs, wFound)
			}
		}
		if off, got := l.MaxTimestamp(); off != maxOff || got != maxTs {
			t.Fatalf("%s: MaxTimestamp = %d, %d; want %d, %d", stage, off, got, maxOff, maxTs)
		}
	}
	check("active")
	if len(l.Segments()) < 5 {
		t.Fatalf("only %d segments", len(l.Segments()))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, _ = openLog(t, dir, cfg)
	check("reopened")
	if err := l.DeleteRecordsBefore(recs[len(recs)/2].offset); err != nil {
		t.Fatal(err)
	}
	check("after DeleteRecordsBefore")
	l.crash()
	// Rebuilt indexes give the same answers.
	for _, s := range l.Segments() {
		os.Remove(segmentPath(dir, s.BaseOffset, ".timeindex"))
	}
	l, _ = openLog(t, dir, cfg)
	defer l.Close()
	check("rebuilt")
}

func TestOffsetForTimestampCompressedAndLogAppendTime(t *testing.T) {
	l, _ := openLog(t, t.TempDir(), smallConfig())
	defer l.Close()
	batches := [][]byte{
		makeBatch(0, batchOpts{timestamps: []int64{100, 110, 120}, valueSize: 5}),
		makeBatch(3, batchOpts{timestamps: []int64{200, 230, 210}, valueSize: 5, compressed: true}),
		makeBatch(6, batchOpts{timestamps: []int64{1, 2}, valueSize: 5, logAppendTime: 500}),
	}
	for _, b := range batches {
		if err := l.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		ts, off, gotTs int64
		found          bool
	}{
		{105, 1, 110, true},
		{120, 2, 120, true},
		{121, 3, 230, true}, // compressed: batch base offset and its max timestamp
		{230, 3, 230, true},
		{231, 6, 500, true}, // LogAppendTime: every record carries the batch's time
		{500, 6, 500, true},
		{501, -1, -1, false},
	} {
		off, got, found := l.OffsetForTimestamp(tc.ts)
		if off != tc.off || got != tc.gotTs || found != tc.found {
			t.Errorf("OffsetForTimestamp(%d) = %d, %d, %v; want %d, %d, %v", tc.ts, off, got, found, tc.off, tc.gotTs, tc.found)
		}
	}
	if off, ts := l.MaxTimestamp(); off != 6 || ts != 500 {
		t.Errorf("MaxTimestamp = %d, %d", off, ts)
	}
}

func TestDetachRenamesDirectoryAway(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "topic-0")
	l, _ := openLog(t, dir, smallConfig())
	if err := l.Append(simpleBatch(0, 1, 1, 10)); err != nil {
		t.Fatal(err)
	}
	tomb, err := l.Detach()
	if err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, dir)
	if filepath.Dir(tomb) != filepath.Dir(dir) || !strings.HasPrefix(filepath.Base(tomb), "topic-0.") || !strings.HasSuffix(tomb, DeleteSuffix) {
		t.Fatalf("tombstone %q: want topic-0.<id>%s beside the log", tomb, DeleteSuffix)
	}
	if _, err := os.Stat(filepath.Join(tomb, "00000000000000000000.log")); err != nil {
		t.Fatalf("tombstone lacks the log's files: %v", err)
	}
	if err := l.Append(simpleBatch(1, 1, 1, 10)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after Detach: %v", err)
	}
	if _, err := l.Read(0, 10, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after Detach: %v", err)
	}
	// A new log in the old directory is independent of the tombstone.
	l2, _ := openLog(t, dir, smallConfig())
	if l2.NextOffset() != 0 {
		t.Fatalf("new log at the old name starts at %d", l2.NextOffset())
	}
}

func TestOpenLeavesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	keep := []string{"00000000000000000000.snapshot", "notes.txt", "00000000000000000000.log.deleted"}
	for _, name := range keep {
		os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644)
	}
	orphan := segmentPath(dir, 77, ".index")
	os.WriteFile(orphan, nil, 0o644)
	l, _ := openLog(t, dir, smallConfig())
	defer l.Close()
	for _, name := range keep {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("Open removed %s", name)
		}
	}
	mustNotExist(t, orphan)
	if segs := l.Segments(); len(segs) != 1 || segs[0].BaseOffset != 0 {
		t.Fatalf("segments %+v", segs)
	}
}
