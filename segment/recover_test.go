package segment

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// crashedLog appends batches across several segments, syncs, appends a few
// more and crashes. It returns the directory, the model and the last
// segment's path.
func crashedLog(t *testing.T, seed uint64) (string, *model, string) {
	t.Helper()
	dir := t.TempDir()
	l, _ := openLog(t, dir, smallConfig())
	m := &model{}
	rng := rand.New(rand.NewPCG(seed, seed))
	appendRandom(t, l, m, rng, 60, 1)
	// Leave room for three more batches in the active segment.
	for segs := l.Segments(); segs[len(segs)-1].Size+1000 > smallConfig().SegmentBytes; segs = l.Segments() {
		appendRandom(t, l, m, rng, 1, 1)
	}
	if off, err := l.Sync(); err != nil || off != m.next() {
		t.Fatalf("Sync = %d, %v", off, err)
	}
	for range 3 { // three more batches in the last segment, unsynced
		b := simpleBatch(m.next(), 3, 5, 40)
		m.add(b)
		if err := l.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	segs := l.Segments()
	last := segs[len(segs)-1]
	if last.Size < int64(len(m.batches[len(m.batches)-1])*3) {
		t.Fatalf("test setup: the last three batches should share the last segment")
	}
	l.crash()
	return dir, m, last.Path
}

// truncateModel drops the last n batches.
func (m *model) truncate(n int) {
	m.batches = m.batches[:len(m.batches)-n]
	m.headers = m.headers[:len(m.headers)-n]
}

func reopenAndCheck(t *testing.T, dir string, m *model, wantTruncated int64) {
	t.Helper()
	l, info := openLog(t, dir, smallConfig())
	defer l.Close()
	if info.Clean || info.TruncatedBytes != wantTruncated {
		t.Fatalf("recovery: %+v, want %d bytes truncated", info, wantTruncated)
	}
	checkContents(t, l, m)
	// The log continues where the intact data ends.
	appendRandom(t, l, m, rand.New(rand.NewPCG(99, 99)), 5, 10)
	checkContents(t, l, m)
}

func TestRecoveryTornTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		keep int // bytes of the last batch left on disk
	}{
		{"one byte", 1},
		{"inside the header", 30},
		{"header only", 61},
		{"all but one byte", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, m, path := crashedLog(t, 1)
			lastLen := len(m.batches[len(m.batches)-1])
			keep := tc.keep
			if keep < 0 {
				keep = lastLen + keep
			}
			size := fileSize(t, path)
			if err := os.Truncate(path, size-int64(lastLen)+int64(keep)); err != nil {
				t.Fatal(err)
			}
			m.truncate(1)
			reopenAndCheck(t, dir, m, int64(keep))
			if got := fileSize(t, path); got < size-int64(lastLen) {
				t.Fatalf("file shrank below the intact data: %d", got)
			}
		})
	}
}

func TestRecoveryGarbageTail(t *testing.T) {
	hugeHeader := simpleBatch(0, 1, 1, 10)[:61]
	binary.BigEndian.PutUint32(hugeHeader[8:], 1<<30) // length far past the file
	for name, garbage := range map[string][]byte{
		"one byte":                  {0x42},
		"zeros":                     make([]byte, 4096),
		"random":                    randomBytes(777),
		"header, huge length":       hugeHeader,
		"valid batch, stale offset": simpleBatch(3, 2, 1, 20),
	} {
		t.Run(name, func(t *testing.T) {
			dir, m, path := crashedLog(t, 2)
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(garbage)
			f.Close()
			reopenAndCheck(t, dir, m, int64(len(garbage)))
		})
	}
}

func randomBytes(n int) []byte {
	rng := rand.New(rand.NewPCG(uint64(n), 0))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestRecoveryCorruptBatch(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fromEnd  int // which batch: 1 = last, 3 = the first of the three unsynced
		position int // byte inside the batch
	}{
		{"last batch, records", 1, 70},
		{"last batch, attributes", 1, 21},
		{"last batch, last byte", 1, -1},
		{"last batch, CRC field", 1, 18},
		{"last batch, base offset", 1, 7},
		{"last batch, magic", 1, 16},
		{"earlier batch, records", 3, 80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, m, path := crashedLog(t, 3)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var badLen int
			for _, b := range m.batches[len(m.batches)-tc.fromEnd:] {
				badLen += len(b)
			}
			pos := tc.position
			if pos < 0 {
				pos += len(m.batches[len(m.batches)-tc.fromEnd])
			}
			data[len(data)-badLen+pos] ^= 0x10
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			m.truncate(tc.fromEnd)
			reopenAndCheck(t, dir, m, int64(badLen))
		})
	}
}

func TestRecoveryEmptySegmentAfterRoll(t *testing.T) {
	dir, m, _ := crashedLog(t, 4)
	// A crash right after a roll created the next segment file.
	empty := segmentPath(dir, m.next(), ".log")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l, info := openLog(t, dir, smallConfig())
	if info.TruncatedBytes != 0 {
		t.Fatalf("truncated %d bytes", info.TruncatedBytes)
	}
	segs := l.Segments()
	if last := segs[len(segs)-1]; last.BaseOffset != m.next() || last.Size != 0 {
		t.Fatalf("last segment %+v", last)
	}
	checkContents(t, l, m)
	b := simpleBatch(m.next(), 1, 1, 10)
	m.add(b)
	if err := l.Append(b); err != nil {
		t.Fatal(err)
	}
	if fileSize(t, empty) != int64(len(b)) {
		t.Fatal("append did not go to the empty segment")
	}
	l.crash()
	l, _ = openLog(t, dir, smallConfig())
	defer l.Close()
	checkContents(t, l, m)
}

func TestRecoveryStaleCleanMarker(t *testing.T) {
	dir := t.TempDir()
	l, _ := openLog(t, dir, smallConfig())
	var m model
	appendRandom(t, l, &m, rand.New(rand.NewPCG(5, 5)), 20, 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// As if a later run appended a batch plus half of another and crashed
	// before the marker's removal reached the disk.
	segs := l.Segments()
	extra := simpleBatch(m.next(), 2, 1, 30)
	torn := simpleBatch(m.next()+2, 2, 1, 30)[:50]
	f, err := os.OpenFile(segs[len(segs)-1].Path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(slices.Concat(extra, torn))
	f.Close()
	m.add(extra)
	l, info := openLog(t, dir, smallConfig())
	defer l.Close()
	if info.Clean || info.TruncatedBytes != int64(len(torn)) {
		t.Fatalf("stale marker trusted: %+v", info)
	}
	checkContents(t, l, &m)
}

func TestIndexRebuild(t *testing.T) {
	dir := t.TempDir()
	l, _ := openLog(t, dir, smallConfig())
	var m model
	appendRandom(t, l, &m, rand.New(rand.NewPCG(6, 6)), 200, 1_000)
	segs := l.Segments()
	if len(segs) < 6 {
		t.Fatalf("%d segments", len(segs))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	idx := func(i int, ext string) string { return segmentPath(dir, segs[i].BaseOffset, ext) }
	readIdx := func(i int) []byte {
		b, err := os.ReadFile(idx(i, ".index"))
		if err != nil || len(b) < 4*offsetEntrySize {
			t.Fatalf("index %d: %d bytes, %v", i, len(b), err)
		}
		return b
	}
	// Segment 0: index files missing.
	os.Remove(idx(0, ".index"))
	os.Remove(idx(0, ".timeindex"))
	// Segment 1: truncated mid-entry.
	b := readIdx(1)
	os.WriteFile(idx(1, ".index"), b[:len(b)-3], 0o644)
	// Segment 2: the last entry points at another batch.
	b = readIdx(2)
	n := len(b) / offsetEntrySize
	copy(b[(n-1)*offsetEntrySize+4:], b[(n-2)*offsetEntrySize+4:(n-1)*offsetEntrySize])
	os.WriteFile(idx(2, ".index"), b, 0o644)
	// Segment 3: a middle entry points two batches too far; only the full
	// check on first use can see it.
	b = readIdx(3)
	copy(b[offsetEntrySize+4:2*offsetEntrySize], b[3*offsetEntrySize+4:4*offsetEntrySize])
	os.WriteFile(idx(3, ".index"), b, 0o644)
	// Segment 4: time index garbage of a plausible size.
	tb, _ := os.ReadFile(idx(4, ".timeindex"))
	os.WriteFile(idx(4, ".timeindex"), bytes.Repeat([]byte{0xff}, len(tb)), 0o644)
	// Last segment: its index, written by Close, removed; the marker is valid.
	last := len(segs) - 1
	os.Remove(idx(last, ".index"))

	l, info := openLog(t, dir, smallConfig())
	defer l.Close()
	if !info.Clean || info.RebuiltIndexes != 5 || info.TruncatedBytes != 0 {
		t.Fatalf("recovery info %+v, want 5 rebuilt indexes", info)
	}
	checkContents(t, l, &m)
	for off := int64(0); off < m.next(); off++ {
		data, err := l.Read(off, 1, m.next())
		if err != nil || !bytes.Equal(data, m.batches[m.indexOf(off)]) {
			t.Fatalf("Read(%d) after index rebuild: wrong batch (%v)", off, err)
		}
	}
	for _, i := range []int{0, 1, 2, 3, 4} {
		if fileSize(t, idx(i, ".index"))%offsetEntrySize != 0 || fileSize(t, idx(i, ".timeindex"))%timeEntrySize != 0 {
			t.Fatalf("segment %d: rebuilt index not rewritten", i)
		}
	}
	// The time index of segment 0 answers again.
	h := m.headers[m.indexOf(segs[0].BaseOffset+1)]
	if off, _, found := l.OffsetForTimestamp(h.MaxTimestamp); !found || off > h.LastOffset() {
		t.Fatalf("OffsetForTimestamp after rebuild: %d, %v", off, found)
	}
}

// TestRecoveryKeepsSyncedData crashes a log many times with random damage
// past the last Sync (what a disk may hold after a crash: short files,
// garbage, zeros, torn batches) and checks that recovery keeps every synced
// batch and yields an intact prefix of what was appended.
func TestRecoveryKeepsSyncedData(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 7))
	var m model
	l, _ := openLog(t, dir, smallConfig())
	for round := range 40 {
		appendRandom(t, l, &m, rng, 1+rng.IntN(20), int64(round))
		durable, err := l.Sync()
		if err != nil {
			t.Fatal(err)
		}
		appendRandom(t, l, &m, rng, rng.IntN(8), int64(round))
		segs := l.Segments()
		lastSeg := segs[len(segs)-1]
		// Bytes of the last segment below the durable offset, and where
		// its batches start.
		var durablePos, pos int64
		var starts []int64
		for i, h := range m.headers {
			if h.BaseOffset < lastSeg.BaseOffset {
				continue
			}
			starts = append(starts, pos)
			pos += int64(len(m.batches[i]))
			if h.LastOffset() < durable {
				durablePos = pos
			}
		}
		l.crash()
		damage(t, rng, lastSeg.Path, durablePos, starts)

		var info RecoveryInfo
		l, info = openLog(t, dir, smallConfig())
		if info.Clean {
			t.Fatal("crash reported as clean")
		}
		if l.NextOffset() < durable {
			t.Fatalf("round %d: synced data lost: next %d < durable %d", round, l.NextOffset(), durable)
		}
		// The model keeps the batches recovery kept.
		keep := m.indexOf(l.NextOffset())
		if keep < len(m.headers) && m.headers[keep].BaseOffset != l.NextOffset() {
			t.Fatalf("round %d: recovery stopped mid-batch at %d", round, l.NextOffset())
		}
		m.truncate(len(m.headers) - keep)
		checkContents(t, l, &m)
	}
	l.Close()
}

// damage mangles a file from byte `from` on the way a crash could. starts
// are the positions of the batches in it: a flipped bit is kept out of the
// partition leader epoch, the one header field no check covers.
func damage(t *testing.T, rng *rand.Rand, path string, from int64, starts []int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := from + rng.Int64N(int64(len(data))-from+1)
	switch rng.IntN(4) {
	case 0: // torn: the file ends early
		data = data[:at]
	case 1: // garbage written over and past the end
		data = append(data[:at], randomBytes(1+rng.IntN(300))...)
	case 2: // the file size grew but the data never arrived
		data = append(data, make([]byte, 1+rng.IntN(5000))...)
	case 3: // a bit flip in unsynced data
		for _, s := range starts {
			if at >= s+12 && at < s+16 {
				at = s + 20
			}
		}
		if at < int64(len(data)) {
			data[at] ^= 1 << rng.IntN(8)
		}
	}
	if err := os.WriteFile(filepath.Clean(path), data, 0o644); err != nil {
		t.Fatal(err)
	}
}
