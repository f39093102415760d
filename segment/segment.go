package segment

import (
	"container/list"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/fsx"
)

// crcCoveredFrom is where the CRC-32C of a batch starts (the attributes
// field); batch.ComputeCRC covers the same range. Only the streaming check of
// batches bigger than a read chunk needs it.
const crcCoveredFrom = 21

// maxRelative bounds relative offsets and file positions, which the index
// files store as uint32.
const maxRelative = math.MaxUint32

func logFileName(base int64) string       { return fmt.Sprintf("%020d.log", base) }
func indexFileName(base int64) string     { return fmt.Sprintf("%020d.index", base) }
func timeIndexFileName(base int64) string { return fmt.Sprintf("%020d.timeindex", base) }

// segment is one .log file and its two indexes.
//
// Ownership: base, dir and file never change. size, next, maxTs, maxTsRel and
// build are written under Log.mu (by the writer, which also holds
// Log.writeMu) and only while the segment is active or during Open; once a
// segment is closed (a newer one exists) they are frozen. Readers copy them
// into a segSnap under Log.mu.RLock.
type segment struct {
	base int64
	fs   fsx.FS
	dir  string
	file fsx.File

	size     int64         // bytes of complete batches, all a reader may see
	next     int64         // offset after the last batch (the next segment's base once closed)
	maxTs    int64         // closed segments: max batch MaxTimestamp, -1 if none
	maxTsRel uint32        // closed segments: relative base of the first batch that reached maxTs
	build    *indexBuilder // active segment only: its indexes, in memory

	firstAppend time.Time // active segment: when its first batch was appended (writer-owned)

	// Closed segments load their indexes on first use.
	loadMu sync.Mutex
	loaded atomic.Pointer[loadedIndex]

	// refMu keeps the file and the mapped indexes alive: every reader holds
	// the read lock while it uses them; closing takes the write lock, so
	// retention waits for readers instead of pulling a file from under them.
	refMu  sync.RWMutex
	closed bool // guarded by refMu

	// A closed segment's file may be closed while it is cold (file nil,
	// see fileCache): readers reopen it with readFile, under fileMu.
	fileMu sync.Mutex
	used   atomic.Bool   // read since the cache last looked
	elem   *list.Element // in the file cache; guarded by files.mu
}

type loadedIndex struct {
	view    indexView
	release func() error
}

func (s *segment) logPath() string       { return filepath.Join(s.dir, logFileName(s.base)) }
func (s *segment) indexPath() string     { return filepath.Join(s.dir, indexFileName(s.base)) }
func (s *segment) timeIndexPath() string { return filepath.Join(s.dir, timeIndexFileName(s.base)) }

// maxTimestamp returns the segment's max batch timestamp and the relative
// base offset of the first batch that reached it. Call under Log.mu.
func (s *segment) maxTimestamp() (int64, uint32) {
	if s.build != nil {
		return s.build.maxTs, s.build.maxTsRel
	}
	return s.maxTs, s.maxTsRel
}

// acquire takes a reference on an open segment; it fails once closed.
func (s *segment) acquire() bool {
	s.refMu.RLock()
	if s.closed {
		s.refMu.RUnlock()
		return false
	}
	return true
}

func (s *segment) release() { s.refMu.RUnlock() }

// close waits for readers, then unmaps the indexes and closes the file.
func (s *segment) close() error {
	s.refMu.Lock()
	defer s.refMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if li := s.loaded.Swap(nil); li != nil && li.release != nil {
		errs = append(errs, li.release())
	}
	if s.file != nil {
		errs = append(errs, s.file.Close())
		s.file = nil
	}
	files.remove(s)
	return errors.Join(errs...)
}

// remove closes the segment and deletes its files. The indexes go first, so
// a crash in between leaves a .log whose indexes Open rebuilds and which
// retention deletes again; index files without a .log are removed by Open.
// The caller fsyncs the directory.
func (s *segment) remove() error {
	errs := []error{s.close()}
	for _, p := range []string{s.indexPath(), s.timeIndexPath(), s.logPath()} {
		if err := fsx.Remove(s.fs, p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// writeIndexes persists the indexes (truncating any older files) and fsyncs
// them; the caller fsyncs the directory if the files are new.
func (s *segment) writeIndexes(v indexView) error {
	if err := fsx.WriteFileSync(s.fs, s.indexPath(), v.offsets); err != nil {
		return err
	}
	return fsx.WriteFileSync(s.fs, s.timeIndexPath(), v.times)
}

// loadIndex returns a closed segment's indexes, mapping the files on first
// use and checking every entry. If they are inconsistent they are rebuilt
// from the .log and rewritten. The caller holds a reference (acquire).
func (s *segment) loadIndex(size, next int64, interval int, logger *slog.Logger) (indexView, error) {
	if li := s.loaded.Load(); li != nil {
		return li.view, nil
	}
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	if li := s.loaded.Load(); li != nil {
		return li.view, nil
	}
	li, err := s.mapIndexes()
	if err == nil {
		if err = li.view.check(size, next-s.base, true); err != nil {
			li.release()
		}
	}
	if err != nil {
		logger.Warn("segment index unusable, rebuilding it from the log", "segment", s.logPath(), "reason", err)
		res, serr := scanSegment(s.readAt, s.base, size, interval, true)
		if serr != nil {
			return indexView{}, serr
		}
		res.build.seal()
		v := res.build.view()
		if werr := s.writeIndexes(v); werr != nil {
			logger.Warn("writing rebuilt segment index failed", "segment", s.logPath(), "err", werr)
		}
		li = &loadedIndex{view: v}
	}
	s.loaded.Store(li)
	return li.view, nil
}

func (s *segment) mapIndexes() (*loadedIndex, error) {
	offsets, releaseOffsets, err := fsx.MapFile(s.fs, s.indexPath())
	if err != nil {
		return nil, err
	}
	times, releaseTimes, err := fsx.MapFile(s.fs, s.timeIndexPath())
	if err != nil {
		releaseOffsets()
		return nil, err
	}
	return &loadedIndex{
		view:    indexView{offsets: offsets, times: times},
		release: func() error { return errors.Join(releaseOffsets(), releaseTimes()) },
	}, nil
}

// segSnap is what a reader copies out of a segment under Log.mu.RLock while
// it holds a reference on it: the bytes below size are complete batches.
type segSnap struct {
	seg     *segment
	size    int64
	next    int64
	view    indexView
	hasView bool // view is the active segment's in-memory index
}

type readAtFunc func(p []byte, off int64) (int, error)

// chunkReader reads a byte range of a segment in large chunks, so that
// walking batch headers costs one pread per chunk rather than one per batch.
// Slices it returns are valid until the next call.
type chunkReader struct {
	readAt readAtFunc
	limit  int64 // bytes past limit are never read
	chunk  int
	buf    []byte
	start  int64  // file position of data[0]
	data   []byte // buf[:n], the bytes read last
}

func newChunkReader(readAt readAtFunc, limit int64, chunk int) *chunkReader {
	return &chunkReader{readAt: readAt, limit: limit, chunk: chunk}
}

// window returns the file bytes [pos, pos+n); pos+n must not exceed limit.
func (r *chunkReader) window(pos int64, n int) ([]byte, error) {
	if pos >= r.start && pos+int64(n) <= r.start+int64(len(r.data)) {
		off := pos - r.start
		return r.data[off : off+int64(n) : off+int64(n)], nil
	}
	want := int64(max(r.chunk, n))
	want = min(want, r.limit-pos)
	if want < int64(n) {
		return nil, io.ErrUnexpectedEOF
	}
	if int64(cap(r.buf)) < want {
		r.buf = make([]byte, want)
	}
	got, err := r.readAt(r.buf[:want], pos)
	if int64(got) < want {
		r.data = nil
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	r.start, r.data = pos, r.buf[:want]
	return r.data[:n:n], nil
}

// header parses the batch header at pos and checks that the whole batch lies
// below limit. Malformed bytes are reported as ErrCorrupt.
func (r *chunkReader) header(pos int64) (batch.Header, error) {
	if r.limit-pos < batch.HeaderSize {
		return batch.Header{}, fmt.Errorf("%w: %d bytes left, a batch header needs %d", ErrCorrupt, r.limit-pos, batch.HeaderSize)
	}
	b, err := r.window(pos, batch.HeaderSize)
	if err != nil {
		return batch.Header{}, err
	}
	h, err := batch.Parse(b)
	if err != nil {
		return h, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if int64(h.Size()) > r.limit-pos {
		return h, fmt.Errorf("%w: batch of %d bytes runs past the end (%d bytes left)", ErrCorrupt, h.Size(), r.limit-pos)
	}
	return h, nil
}

// scanResult describes the valid prefix of a segment file.
type scanResult struct {
	validSize  int64
	next       int64 // offset after the last valid batch
	build      *indexBuilder
	firstMaxTs int64 // MaxTimestamp of the first batch, -1 if none
	bad        error // why the scan stopped before fileSize; nil if every byte is valid
}

const scanChunk = 1 << 20

// scanSegment validates a segment batch by batch and rebuilds its indexes:
// each batch must have a sane header (magic 2, length that fits the file),
// the expected base offset (contiguous from the segment base), a
// non-negative offset delta, offsets and positions the index can express,
// and a correct CRC-32C. It stops at the first byte that fails; everything
// before it is a sequence of complete, intact batches. Only I/O failures are
// returned as errors. With gaps (closed segments, which the log cleaner may
// have compacted) a batch may start past the expected offset, never before.
func scanSegment(readAt readAtFunc, base, fileSize int64, interval int, gaps bool) (scanResult, error) {
	return scanSegmentFrom(readAt, base, 0, base, fileSize, newIndexBuilder(interval), gaps)
}

// scanSegmentFrom is scanSegment continuing at byte from, where the batch
// with offset next starts, with build standing as it did there (a recovery
// point). validSize is at least from.
func scanSegmentFrom(readAt readAtFunc, base, from, next, fileSize int64, build *indexBuilder, gaps bool) (scanResult, error) {
	res := scanResult{validSize: from, next: next, build: build, firstMaxTs: -1}
	r := newChunkReader(readAt, fileSize, scanChunk)
	for pos := from; pos < fileSize; {
		h, err := checkBatch(r, pos, base, res.next, gaps)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				return res, err
			}
			res.bad = fmt.Errorf("at byte %d: %w", pos, err)
			break
		}
		size := h.Size()
		if pos == 0 {
			res.firstMaxTs = h.MaxTimestamp
		}
		res.build.add(uint32(h.BaseOffset-base), uint32(pos), size, h.MaxTimestamp)
		pos += int64(size)
		res.validSize, res.next = pos, h.LastOffset()+1
	}
	return res, nil
}

func checkBatch(r *chunkReader, pos, base, expected int64, gaps bool) (batch.Header, error) {
	h, err := r.header(pos)
	if err != nil {
		return h, err
	}
	size := int64(h.Size())
	switch {
	case h.BaseOffset != expected && !(gaps && h.BaseOffset > expected):
		return h, fmt.Errorf("%w: base offset %d, expected %d", ErrCorrupt, h.BaseOffset, expected)
	case h.LastOffsetDelta < 0:
		return h, fmt.Errorf("%w: negative last offset delta %d", ErrCorrupt, h.LastOffsetDelta)
	case h.LastOffset()-base > maxRelative || pos+size > maxRelative:
		return h, fmt.Errorf("%w: batch beyond what a segment index can address", ErrCorrupt)
	}
	var crc uint32
	if size <= int64(r.chunk) {
		b, err := r.window(pos, int(size))
		if err != nil {
			return h, err
		}
		crc = batch.ComputeCRC(b)
	} else {
		// Stream the CRC of a batch bigger than a chunk rather than
		// trusting a (possibly garbage) length to size an allocation.
		for p, end := pos+crcCoveredFrom, pos+size; p < end; {
			n := int(min(int64(r.chunk), end-p))
			b, err := r.window(p, n)
			if err != nil {
				return h, err
			}
			crc = crc32.Update(crc, castagnoli, b)
			p += int64(n)
		}
	}
	if crc != h.CRC {
		return h, fmt.Errorf("%w: CRC-32C mismatch (stored %08x, computed %08x)", ErrCorrupt, h.CRC, crc)
	}
	return h, nil
}

// peekIndexTail reads only the sizes and last entries of a segment's index
// files: enough for Open's cheap consistency check without touching the rest.
func (s *segment) peekIndexTail() (indexView, error) {
	offsets, err := readLastEntry(s.fs, s.indexPath(), offsetEntrySize)
	if err != nil {
		return indexView{}, err
	}
	times, err := readLastEntry(s.fs, s.timeIndexPath(), timeEntrySize)
	if err != nil {
		return indexView{}, err
	}
	return indexView{offsets: offsets, times: times}, nil
}

func readLastEntry(fs fsx.FS, path string, entrySize int64) ([]byte, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size()%entrySize != 0 {
		return nil, fmt.Errorf("%w: %s is %d bytes, not a multiple of %d", errBadIndex, filepath.Base(path), st.Size(), entrySize)
	}
	if st.Size() == 0 {
		return nil, nil
	}
	b := make([]byte, entrySize)
	if _, err := f.ReadAt(b, st.Size()-entrySize); err != nil {
		return nil, err
	}
	return b, nil
}

// readHeaderAt reads and parses the batch header at pos of a file of size
// bytes.
func readHeaderAt(f fsx.File, pos, size int64) (batch.Header, error) {
	if size-pos < batch.HeaderSize {
		return batch.Header{}, fmt.Errorf("%w: no batch header at byte %d", ErrCorrupt, pos)
	}
	var b [batch.HeaderSize]byte
	if _, err := f.ReadAt(b[:], pos); err != nil {
		return batch.Header{}, err
	}
	h, err := batch.Parse(b[:])
	if err != nil {
		return h, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return h, nil
}

// findRecord decodes the records of an uncompressed batch and returns the
// first one at or after minOffset whose timestamp is >= ts. Records are
// varint-framed: length, attributes int8, timestampDelta varlong,
// offsetDelta varint, then key, value and headers, which are skipped.
func findRecord(b []byte, h batch.Header, ts, minOffset int64) (offset, timestamp int64, ok bool) {
	recs := b[batch.HeaderSize:]
	for i := int32(0); i < h.NumRecords && len(recs) > 0; i++ {
		length, n := binary.Varint(recs)
		if n <= 0 || length < 1 || length > int64(len(recs)-n) {
			return 0, 0, false
		}
		body := recs[n+1 : n+int(length)] // skip the attributes byte
		recs = recs[n+int(length):]
		tsDelta, n1 := binary.Varint(body)
		if n1 <= 0 {
			return 0, 0, false
		}
		offDelta, n2 := binary.Varint(body[n1:])
		if n2 <= 0 {
			return 0, 0, false
		}
		recTs, recOffset := h.BaseTimestamp+tsDelta, h.BaseOffset+offDelta
		if recOffset >= minOffset && recTs >= ts {
			return recOffset, recTs, true
		}
	}
	return 0, 0, false
}
