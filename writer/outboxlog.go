package writer

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// The outbox's undelivered entries live in an append-only log, not in the
// pebble store: an entry is written once (one write and one fdatasync per
// group commit) and never deleted on its own. Putting and deleting every
// entry in pebble made its memtable flushes and compactions most of the
// writer's CPU (profiled at ce2ed28: compactions 54%, flushes 14%, snappy
// 10%, 58% of the mutex wait in pebble's commit pipeline).
//
// Dir/log holds segment files named by the first seq they may hold
// (%020d.log). A record is
//
//	length u32 (BE, of what follows the crc) | crc32c u32 (BE) | seq u64 (BE) | digest [32] | entry.encode()
//
// Records are in increasing seq order across the segments. Which entries
// are still undelivered is decided by the delivered watermark W (m/sent in
// the pebble store): every seq <= W was delivered (its key is in the key
// index) or given up, and every entry above it in the log is undelivered.
// Acks arrive out of order, so W is the seq below the lowest undelivered
// one; it is checkpointed with a synced pebble write (which also makes the
// key-index writes before it durable: pebble's WAL is sequential), and only
// then are segments whose seqs are all <= W removed. After a crash the
// entries above the last checkpoint come back as undelivered: in key-window
// mode they are sent again and the broker's key window drops them; in
// transactional mode the committed position says which were committed.
//
// Durability rules (as the broker's partition log, segment/log.go):
//   - Only the last segment is written. A group's records go out in one
//     write and the Emits of the group are answered after its fdatasync.
//   - A roll creates the next segment after the previous one was
//     fdatasynced, and fsyncs the directory before writing into it, so a
//     torn record can only be at the end of the last segment.
//   - Open reads every segment; in the last one it truncates at the first
//     record that is short, fails its crc or goes backwards in seq, and
//     fdatasyncs the truncation. No Emit of a torn record had returned (its
//     fdatasync had not completed). A bad record in an earlier segment is
//     corruption of synced data: Open fails rather than drop it silently.
const (
	logDirName     = "log"
	segMaxBytes    = 16 << 20
	recHeaderBytes = 8
	recFixedBytes  = 8 + 32 // seq, digest
	// recMaxBytes bounds a record's length field at Open, so a torn
	// length cannot make it allocate gigabytes.
	recMaxBytes = 1 << 30
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type logSegment struct {
	first uint64 // its name: no seq in it is below first
	path  string
	size  int64 // bytes of complete, synced records (readers read up to it)
}

// outboxLog is the entry log. The committer goroutine appends (append is
// not safe for concurrent use); read and removeThrough may run alongside.
type outboxLog struct {
	dir string
	f   *os.File // the last segment, open for appending
	buf []byte   // the committer's encoding buffer

	mu   sync.Mutex
	segs []*logSegment

	// The readers' cursor: where the last read stopped, so that a sender
	// reading the log forward does not scan each segment from its start.
	curMu    sync.Mutex
	curPath  string
	curOff   int64
	curNext  uint64 // the seq of the record at curOff is >= curNext
	curValid bool
}

func segName(first uint64) string { return fmt.Sprintf("%020d.log", first) }

// openLog opens Dir/log, repairs a torn tail, and calls fn for every record
// with seq > through (the entries not yet delivered), in seq order. It
// returns the highest seq in the log (0 if none).
func openLog(dir string, through uint64, warn func(msg string, args ...any), fn func(*entry) error) (*outboxLog, uint64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, 0, fmt.Errorf("create outbox log dir: %w", err)
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, err
	}
	l := &outboxLog{dir: dir}
	for _, de := range names {
		name, ok := strings.CutSuffix(de.Name(), ".log")
		if !ok {
			continue
		}
		first, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		l.segs = append(l.segs, &logSegment{first: first, path: filepath.Join(dir, de.Name())})
	}
	slices.SortFunc(l.segs, func(a, b *logSegment) int { return cmp.Compare(a.first, b.first) })
	var last uint64
	for i, s := range l.segs {
		data, err := os.ReadFile(s.path)
		if err != nil {
			return nil, 0, err
		}
		good, segLast, bad := scanRecords(data, max(last, s.first-min(s.first, 1)), func(seq uint64, digest [32]byte, body []byte) error {
			if seq <= through {
				return nil
			}
			e, err := decodeEntry(seq, body, &digest)
			if err != nil {
				return fmt.Errorf("outbox log %s: entry %d: %w", s.path, seq, err)
			}
			return fn(e)
		})
		if bad != nil && !errors.Is(bad, errTorn) {
			return nil, 0, bad
		}
		if bad != nil {
			if i != len(l.segs)-1 {
				return nil, 0, fmt.Errorf("writer: outbox log %s: bad record at byte %d of %d in a segment before the last (synced data): %w", s.path, good, len(data), errCorrupt)
			}
			warn("writer: outbox log: torn tail truncated", "segment", s.path, "kept", good, "dropped", int64(len(data))-good)
			if err := truncateSync(s.path, good); err != nil {
				return nil, 0, err
			}
		}
		s.size = good
		if segLast > 0 {
			last = segLast
		}
	}
	return l, last, nil
}

var errTorn = errors.New("torn record")

// scanRecords calls fn for each complete record of data with a seq above
// after and increasing; it stops at the first bad one (errTorn) or at fn's
// error. good is the end of the last good record.
func scanRecords(data []byte, after uint64, fn func(seq uint64, digest [32]byte, body []byte) error) (good int64, last uint64, err error) {
	off := 0
	for off < len(data) {
		if len(data)-off < recHeaderBytes {
			return int64(off), last, errTorn
		}
		n := int(binary.BigEndian.Uint32(data[off:]))
		sum := binary.BigEndian.Uint32(data[off+4:])
		if n < recFixedBytes+1 || n > recMaxBytes || n > len(data)-off-recHeaderBytes {
			return int64(off), last, errTorn
		}
		rec := data[off+recHeaderBytes : off+recHeaderBytes+n]
		if crc32.Checksum(rec, crcTable) != sum {
			return int64(off), last, errTorn
		}
		seq := binary.BigEndian.Uint64(rec)
		if seq <= after || seq <= last {
			return int64(off), last, errTorn
		}
		var digest [32]byte
		copy(digest[:], rec[8:40])
		if err := fn(seq, digest, rec[40:]); err != nil {
			return int64(off), last, err
		}
		last = seq
		off += recHeaderBytes + n
	}
	return int64(off), last, nil
}

func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	return unix.Fdatasync(int(f.Fd()))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// startAppending opens the last segment for appends, or creates the first
// one (named next) if there is none.
func (l *outboxLog) startAppending(next uint64) error {
	if len(l.segs) == 0 {
		return l.createSegment(next)
	}
	s := l.segs[len(l.segs)-1]
	f, err := os.OpenFile(s.path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.Seek(s.size, io.SeekStart); err != nil {
		f.Close()
		return err
	}
	l.f = f
	return nil
}

// createSegment starts segment first; the caller fdatasynced the previous
// one. The directory is fsynced before any record goes into the new file.
func (l *outboxLog) createSegment(first uint64) error {
	path := filepath.Join(l.dir, segName(first))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if err := syncDir(l.dir); err != nil {
		f.Close()
		return err
	}
	if l.f != nil {
		l.f.Close()
	}
	l.f = f
	l.mu.Lock()
	if n := len(l.segs); n > 0 && l.segs[n-1].first == first {
		// An empty last segment of the same name (reopened after a
		// crash right after its creation): it was just truncated.
		l.segs[n-1].size = 0
	} else {
		l.segs = append(l.segs, &logSegment{first: first, path: path})
	}
	l.mu.Unlock()
	return nil
}

// append writes es (in seq order, above everything appended before) as one
// write and fdatasyncs it: when it returns nil they are durable.
func (l *outboxLog) append(es []*entry) error {
	buf := l.buf[:0]
	for _, e := range es {
		start := len(buf)
		buf = append(buf, make([]byte, recHeaderBytes)...)
		buf = binary.BigEndian.AppendUint64(buf, e.seq)
		buf = append(buf, e.contentDigest[:]...)
		buf = e.appendEncoded(buf)
		rec := buf[start+recHeaderBytes:]
		binary.BigEndian.PutUint32(buf[start:], uint32(len(rec)))
		binary.BigEndian.PutUint32(buf[start+4:], crc32.Checksum(rec, crcTable))
	}
	if cap(buf) <= 4<<20 {
		l.buf = buf
	}
	if _, err := l.f.Write(buf); err != nil {
		return err
	}
	if err := unix.Fdatasync(int(l.f.Fd())); err != nil {
		return err
	}
	l.mu.Lock()
	s := l.segs[len(l.segs)-1]
	s.size += int64(len(buf))
	size := s.size
	l.mu.Unlock()
	if size >= segMaxBytes {
		return l.createSegment(es[len(es)-1].seq + 1)
	}
	return nil
}

// removeThrough deletes the segments whose seqs are all <= w (never the
// last one). Not fsyncing the directory is safe: a removed segment that
// comes back after a crash holds only seqs <= w, which Open skips.
func (l *outboxLog) removeThrough(w uint64) error {
	l.mu.Lock()
	var gone []string
	for len(l.segs) > 1 && l.segs[1].first-1 <= w {
		gone = append(gone, l.segs[0].path)
		l.segs = l.segs[1:]
	}
	l.mu.Unlock()
	var first error
	for _, p := range gone {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) && first == nil {
			first = err
		}
	}
	return first
}

// read returns up to limit entries with seq in [from, to] for which keep
// is true, in seq order, from the synced part of the segments.
func (l *outboxLog) read(from, to uint64, limit int, keep func(seq uint64) bool) ([]*entry, error) {
	if from > to || limit <= 0 {
		return nil, nil
	}
	l.mu.Lock()
	i := max(0, sortSearchSegs(l.segs, from)-1)
	type seg struct {
		path string
		size int64
	}
	var segs []seg
	for _, s := range l.segs[i:] {
		if s.first > to {
			break
		}
		segs = append(segs, seg{s.path, s.size})
	}
	l.mu.Unlock()

	l.curMu.Lock()
	defer l.curMu.Unlock()
	var es []*entry
	for si, s := range segs {
		var off int64
		if si == 0 && l.curValid && l.curPath == s.path && l.curNext <= from && l.curOff <= s.size {
			off = l.curOff
		}
		f, err := os.Open(s.path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // removed meanwhile: all its seqs were delivered
			}
			return nil, err
		}
		br := bufio.NewReaderSize(io.NewSectionReader(f, off, s.size-off), 256<<10)
		var hdr [recHeaderBytes]byte
		for off < s.size {
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				f.Close()
				return nil, fmt.Errorf("outbox log %s at %d: %w", s.path, off, err)
			}
			n := int64(binary.BigEndian.Uint32(hdr[:]))
			if n < recFixedBytes+1 || off+recHeaderBytes+n > s.size {
				f.Close()
				return nil, fmt.Errorf("outbox log %s at %d: %w", s.path, off, errCorrupt)
			}
			// Peek the seq before copying the record.
			head, err := br.Peek(8)
			if err != nil {
				f.Close()
				return nil, err
			}
			seq := binary.BigEndian.Uint64(head)
			if seq > to || len(es) >= limit {
				l.curPath, l.curOff, l.curNext, l.curValid = s.path, off, seq, true
				f.Close()
				return es, nil
			}
			if seq < from || !keep(seq) {
				if _, err := br.Discard(int(n)); err != nil {
					f.Close()
					return nil, err
				}
				off += recHeaderBytes + n
				continue
			}
			rec := make([]byte, n)
			if _, err := io.ReadFull(br, rec); err != nil {
				f.Close()
				return nil, err
			}
			if crc32.Checksum(rec, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
				f.Close()
				return nil, fmt.Errorf("outbox log %s at %d: crc: %w", s.path, off, errCorrupt)
			}
			var digest [32]byte
			copy(digest[:], rec[8:40])
			e, err := decodeEntry(seq, rec[40:], &digest)
			if err != nil {
				f.Close()
				return nil, err
			}
			es = append(es, e)
			off += recHeaderBytes + n
		}
		// Every record before off is below from, not kept, or
		// returned (below the last returned seq + 1).
		next := from
		if len(es) > 0 {
			next = max(next, es[len(es)-1].seq+1)
		}
		l.curPath, l.curOff, l.curNext, l.curValid = s.path, off, next, true
		f.Close()
	}
	return es, nil
}

// sortSearchSegs is the index of the first segment whose first seq is
// above seq.
func sortSearchSegs(segs []*logSegment, seq uint64) int {
	i, _ := slices.BinarySearchFunc(segs, seq+1, func(s *logSegment, t uint64) int { return cmp.Compare(s.first, t) })
	return i
}

func (l *outboxLog) close() error {
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
