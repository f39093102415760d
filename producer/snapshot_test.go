package producer

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"slices"
	"sort"
	"testing"
	"time"
)

func sortedEntries(s *State) []EntryInfo {
	e := s.Entries()
	sort.Slice(e, func(i, j int) bool { return e[i].ProducerID < e[j].ProducerID })
	return e
}

func TestSnapshotRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := newTestState(t, Config{})
	// pid 1: five cached batches; pid 2: an open transaction; pid 3: only a
	// marker (no cached batch); pid 4: committed transaction.
	for i := range 5 {
		appendBatch(t, s, hdr(1, 3, int32(2*i), 2, t0+int64(i)), int64(2*i), t0)
	}
	appendBatch(t, s, txnHdr(2, 0, 0, 4, t0), 10, t0)
	if _, code := s.ApplyMarker(3, 7, false, 2, 14, t0); code != ErrNone {
		t.Fatal(code)
	}
	appendBatch(t, s, txnHdr(4, 1, 0, 1, t0), 15, t0)
	if _, code := s.ApplyMarker(4, 1, true, 3, 16, t0+5); code != ErrNone {
		t.Fatal(code)
	}
	if err := s.WriteSnapshot(nil, dir, 17); err != nil {
		t.Fatal(err)
	}

	r, off, err := loadState(dir, 17, Config{}, nil, t0)
	if err != nil || off != 17 {
		t.Fatalf("load: offset %d err %v", off, err)
	}
	defer r.Close()
	if got, want := sortedEntries(r), sortedEntries(s); !slices.Equal(got, want) {
		t.Fatalf("reloaded entries\n%+v\nwant\n%+v", got, want)
	}
	if off, ok := r.FirstOpenTxnOffset(); !ok || off != 10 || !r.HasOpenTxn(2) {
		t.Fatalf("open transaction lost: %d %v", off, ok)
	}
	// All five cached batches survive a reload (Kafka keeps only the
	// newest, so a retry of an older in-flight batch would be stored
	// twice): every retry is still a duplicate with its original offsets.
	for i := range 5 {
		wantDuplicate(t, r.Check(hdr(1, 3, int32(2*i), 2, t0+int64(i)), t0), int64(2*i), int64(2*i+1), t0+int64(i))
	}
	appendBatch(t, r, hdr(1, 3, 10, 1, t0), 17, t0)
	wantDuplicate(t, r.Check(txnHdr(2, 0, 0, 4, t0), t0), 10, 13, t0)
	// pid 3 knows its epoch but has no batch: the next must start at 0.
	wantReject(t, r.Check(hdr(3, 7, 4, 1, t0), t0), ErrOutOfOrderSequence)
	appendBatch(t, r, hdr(3, 7, 0, 1, t0), 18, t0)
	if _, code := r.ApplyMarker(4, 1, true, 2, 19, t0); code != ErrTransactionCoordinatorFenced {
		t.Fatalf("coordinator epoch not restored: %d", code)
	}
	// The transaction still closes with its original first offset.
	done, code := r.ApplyMarker(2, 0, true, 0, 20, t0)
	if code != ErrNone || done == nil || done.FirstOffset != 10 {
		t.Fatalf("commit after reload: %+v %d", done, code)
	}
}

func TestSnapshotLoadSkipsExpiredAndRebuildsLRU(t *testing.T) {
	dir := t.TempDir()
	s := newTestState(t, Config{ExpirationMs: 10_000})
	appendBatch(t, s, hdr(1, 0, 0, 1, t0), 0, t0)             // will expire
	appendBatch(t, s, txnHdr(2, 0, 0, 1, t0), 1, t0)          // old, but in a transaction
	appendBatch(t, s, hdr(3, 0, 0, 1, t0+8_000), 2, t0+8_000) // least recently used of the rest
	appendBatch(t, s, hdr(4, 0, 0, 1, t0+9_000), 3, t0+9_000)
	if err := s.WriteSnapshot(nil, dir, 4); err != nil {
		t.Fatal(err)
	}
	r, _, err := loadState(dir, 4, Config{ExpirationMs: 10_000, MaxPerPartition: 3, MinIdleForEvictionMs: 1}, nil, t0+10_000)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, ok := r.Entry(1); ok || r.Len() != 3 || !r.HasOpenTxn(2) {
		t.Fatalf("after load: len %d, pid 1 present or pid 2's transaction lost", r.Len())
	}
	// The LRU order came back from the file: pid 3 goes first.
	appendBatch(t, r, hdr(5, 0, 0, 1, t0), 4, t0+20_000)
	if _, ok := r.Entry(3); ok {
		t.Fatal("pid 3 should have been the least recently used")
	}
	if _, ok := r.Entry(4); !ok {
		t.Fatal("pid 4 evicted out of order")
	}
}

func TestSnapshotLoadEnforcesCaps(t *testing.T) {
	dir := t.TempDir()
	s := newTestState(t, Config{})
	for pid := range int64(10) {
		appendBatch(t, s, hdr(pid, 0, 0, 1, t0+pid), pid, t0+pid)
	}
	if err := s.WriteSnapshot(nil, dir, 10); err != nil {
		t.Fatal(err)
	}
	l := NewLimits(6, nil)
	r, _, err := loadState(dir, 10, Config{MaxPerPartition: 8, MinIdleForEvictionMs: 1}, l, t0+1000)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Len() != 6 || l.Total() != 6 {
		t.Fatalf("len %d total %d, want 6", r.Len(), l.Total())
	}
	for pid := range int64(4) {
		if _, ok := r.Entry(pid); ok {
			t.Fatalf("pid %d (among the oldest) kept", pid)
		}
		wantReject(t, r.Check(hdr(pid, 0, 1, 1, t0), t0+1000), ErrOutOfOrderSequence)
	}
}

func writeTestSnapshot(t *testing.T, dir string, offset int64, pids ...int64) {
	t.Helper()
	s := NewState(Config{}, nil, quiet)
	defer s.Close()
	for _, pid := range pids {
		s.Update(hdr(pid, 0, 0, 1, t0), 0, t0)
	}
	if err := s.WriteSnapshot(nil, dir, offset); err != nil {
		t.Fatal(err)
	}
}

func loadPids(t *testing.T, dir string, maxOffset int64) ([]int64, int64) {
	t.Helper()
	s, off, err := loadState(dir, maxOffset, Config{}, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var pids []int64
	for _, e := range sortedEntries(s) {
		pids = append(pids, e.ProducerID)
	}
	return pids, off
}

func TestCorruptSnapshotFallsBack(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func([]byte) []byte
	}{
		{"flipped byte", func(b []byte) []byte { b[len(b)-3] ^= 0x40; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }},
		{"bad version", func(b []byte) []byte { binary.BigEndian.PutUint16(b, 3); return b }},
		{"older-batch count too large", func(b []byte) []byte {
			b[len(b)-1] = 9 // the last entry's older-batch count (it has none)
			binary.BigEndian.PutUint32(b[2:], crc32.Checksum(b[6:], crc32.MakeTable(crc32.Castagnoli)))
			return b
		}},
		{"count too large", func(b []byte) []byte { binary.BigEndian.PutUint32(b[6:], 1<<30); return b }},
		{"empty", func(b []byte) []byte { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTestSnapshot(t, dir, 10, 1)
			writeTestSnapshot(t, dir, 20, 1, 2)
			path := SnapshotPath(dir, 20)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.corrupt(data), 0o644); err != nil {
				t.Fatal(err)
			}
			pids, off := loadPids(t, dir, 100)
			if off != 10 || !slices.Equal(pids, []int64{1}) {
				t.Fatalf("loaded offset %d pids %v, want the older snapshot", off, pids)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Fatal("corrupt snapshot not deleted")
			}
		})
	}
}

func TestAllSnapshotsCorruptGivesEmptyState(t *testing.T) {
	dir := t.TempDir()
	writeTestSnapshot(t, dir, 10, 1)
	if err := os.WriteFile(SnapshotPath(dir, 10), []byte("garbage, not a snapshot"), 0o644); err != nil {
		t.Fatal(err)
	}
	pids, off := loadPids(t, dir, 100)
	if off != 0 || len(pids) != 0 {
		t.Fatalf("offset %d pids %v", off, pids)
	}
	// And no directory at all is no snapshot, not an error.
	if pids, off := loadPids(t, dir+"/missing", 100); off != 0 || len(pids) != 0 {
		t.Fatal("missing directory")
	}
}

func TestSnapshotBeyondLogEndDeleted(t *testing.T) {
	dir := t.TempDir()
	writeTestSnapshot(t, dir, 10, 1)
	writeTestSnapshot(t, dir, 20, 1, 2)
	writeTestSnapshot(t, dir, 30, 1, 2, 3)
	// The log was truncated to 25: the snapshot at 30 describes data that
	// is gone; the one at 20 is usable, with the log replayed from 20.
	pids, off := loadPids(t, dir, 25)
	if off != 20 || !slices.Equal(pids, []int64{1, 2}) {
		t.Fatalf("offset %d pids %v", off, pids)
	}
	offsets, err := SnapshotOffsets(nil, dir)
	if err != nil || !slices.Equal(offsets, []int64{10, 20}) {
		t.Fatalf("snapshots left %v %v", offsets, err)
	}
	// A snapshot exactly at the log end is fine.
	if _, off := loadPids(t, dir, 20); off != 20 {
		t.Fatalf("offset %d", off)
	}
}

func TestSnapshotRetentionAndCleanup(t *testing.T) {
	dir := t.TempDir()
	for off := int64(10); off <= 50; off += 10 {
		writeTestSnapshot(t, dir, off, 1)
	}
	offsets, _ := SnapshotOffsets(nil, dir)
	if !slices.Equal(offsets, []int64{30, 40, 50}) {
		t.Fatalf("kept %v, want the newest %d", offsets, SnapshotsToKeep)
	}
	if err := DeleteSnapshotsBelow(nil, dir, 40); err != nil {
		t.Fatal(err)
	}
	offsets, _ = SnapshotOffsets(nil, dir)
	if !slices.Equal(offsets, []int64{40, 50}) {
		t.Fatalf("after DeleteSnapshotsBelow: %v", offsets)
	}
	// A half-written temporary file from a crash is ignored and removed.
	tmp := SnapshotPath(dir, 60) + tempSuffix
	if err := os.WriteFile(tmp, []byte{0, 1}, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, off := loadPids(t, dir, 100); off != 50 {
		t.Fatalf("offset %d", off)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatal("temporary snapshot not removed")
	}
}

func TestSnapshotFormat(t *testing.T) {
	// One entry, checked field by field: Kafka's layout plus the count of
	// older batches (version 2).
	dir := t.TempDir()
	s := newTestState(t, Config{})
	appendBatch(t, s, txnHdr(0x0102030405060708, 9, 100, 3, 0x1122334455), 500, t0)
	if err := s.WriteSnapshot(nil, dir, 503); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(SnapshotPath(dir, 503))
	if err != nil {
		t.Fatal(err)
	}
	if SnapshotPath(dir, 503) != dir+"/00000000000000000503.snapshot" {
		t.Fatalf("name %s", SnapshotPath(dir, 503))
	}
	be := binary.BigEndian
	if len(b) != 10+46+1 || be.Uint16(b) != 2 || be.Uint32(b[6:]) != 1 || b[len(b)-1] != 0 {
		t.Fatalf("header % x", b[:10])
	}
	e := b[10:]
	if be.Uint64(e) != 0x0102030405060708 || be.Uint16(e[8:]) != 9 || be.Uint32(e[10:]) != 102 ||
		be.Uint64(e[14:]) != 502 || be.Uint32(e[22:]) != 2 || be.Uint64(e[26:]) != 0x1122334455 ||
		int32(be.Uint32(e[34:])) != -1 || be.Uint64(e[38:]) != 500 {
		t.Fatalf("entry % x", e)
	}
}

// loadState is LoadNewestSnapshot with a fixed clock.
func loadState(dir string, maxOffset int64, cfg Config, limits *Limits, nowMs int64) (*State, int64, error) {
	s := NewState(cfg, limits, quiet)
	offset, err := s.LoadSnapshot(nil, dir, maxOffset, nowMs)
	if err != nil {
		s.Close()
		return nil, 0, err
	}
	return s, offset, nil
}

func TestLoadNewestSnapshotUsesWallClock(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().UnixMilli()
	s := newTestState(t, Config{ExpirationMs: 3_600_000})
	appendBatch(t, s, hdr(1, 0, 0, 1, now), 0, now)
	appendBatch(t, s, hdr(2, 0, 0, 1, now-7_200_000), 1, now) // expired by its timestamp
	if err := s.WriteSnapshot(nil, dir, 2); err != nil {
		t.Fatal(err)
	}
	r, off, err := LoadNewestSnapshot(nil, dir, 2, Config{ExpirationMs: 3_600_000}, nil, quiet)
	if err != nil || off != 2 {
		t.Fatal(off, err)
	}
	defer r.Close()
	if _, ok := r.Entry(2); ok || r.Len() != 1 {
		t.Fatalf("len %d; the expired pid was loaded", r.Len())
	}
}

// TestLoadsKafkaVersion1Snapshot: a version 1 (Kafka layout, newest batch
// only) snapshot still loads.
func TestLoadsKafkaVersion1Snapshot(t *testing.T) {
	dir := t.TempDir()
	be := binary.BigEndian
	b := make([]byte, 10, 10+46)
	be.PutUint16(b, 1)
	be.PutUint32(b[6:], 1)
	b = be.AppendUint64(b, 42)         // pid
	b = be.AppendUint16(b, 3)          // epoch
	b = be.AppendUint32(b, 9)          // last sequence
	b = be.AppendUint64(b, 109)        // last offset
	b = be.AppendUint32(b, 4)          // offset delta
	b = be.AppendUint64(b, uint64(t0)) // timestamp
	b = be.AppendUint32(b, ^uint32(0)) // coordinator epoch -1
	b = be.AppendUint64(b, ^uint64(0)) // no open transaction
	be.PutUint32(b[2:], crc32.Checksum(b[6:], crc32.MakeTable(crc32.Castagnoli)))
	if err := os.WriteFile(SnapshotPath(dir, 110), b, 0o644); err != nil {
		t.Fatal(err)
	}
	r, off, err := loadState(dir, 110, Config{}, nil, t0)
	if err != nil || off != 110 {
		t.Fatalf("load v1: %d %v", off, err)
	}
	defer r.Close()
	wantDuplicate(t, r.Check(hdr(42, 3, 5, 5, t0), t0), 105, 109, t0)
}
