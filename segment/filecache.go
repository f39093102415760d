package segment

import (
	"container/list"
	"errors"
	"sync"

	"github.com/oncelog/oncelog/internal/fsx"
)

// DefaultMaxOpenFiles is the default bound on the open files of closed
// segments, process-wide (--max-open-segment-files).
const DefaultMaxOpenFiles = 10000

// fileCache bounds how many closed segments keep their .log file open (and
// their index files mapped), process-wide: partitions × segments would
// otherwise need a file descriptor each (and two memory maps), and a topic
// with a tiny segment.ms or many small segments could run the broker out
// of them. The active segment of every log stays open and is not counted.
//
// A cold segment's file is reopened on demand by a reader that holds a
// reference (segment.refMu read lock). Eviction only closes a segment whose
// refMu it gets with TryLock, so it never closes a file under a reader and
// never waits for one; a segment in use is passed over. Recently used
// segments get a second chance (CLOCK), so a hot closed segment stays open.
type fileCache struct {
	mu  sync.Mutex
	max int
	lru list.List // *segment, least recently added first
}

var files = &fileCache{max: DefaultMaxOpenFiles}

// SetMaxOpenFiles sets the process-wide bound on closed segments' open
// files (at least 1); the broker calls it once at start.
func SetMaxOpenFiles(n int) {
	files.mu.Lock()
	files.max = max(n, 1)
	files.mu.Unlock()
}

// OpenClosedSegmentFiles is how many closed segments hold an open file now.
func OpenClosedSegmentFiles() int {
	files.mu.Lock()
	defer files.mu.Unlock()
	return files.lru.Len()
}

// add registers s, a closed segment whose file is open, and evicts the
// coldest segments beyond the bound.
func (c *fileCache) add(s *segment) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.elem == nil {
		s.elem = c.lru.PushBack(s)
	}
	for tries := 2 * c.lru.Len(); c.lru.Len() > c.max && tries > 0; tries-- {
		e := c.lru.Front()
		v := e.Value.(*segment)
		if v.used.Swap(false) || !v.refMu.TryLock() {
			c.lru.MoveToBack(e)
			continue
		}
		c.lru.Remove(e)
		v.elem = nil
		v.coolLocked()
		v.refMu.Unlock()
	}
}

// remove forgets s (closed for good).
func (c *fileCache) remove(s *segment) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.elem != nil {
		c.lru.Remove(s.elem)
		s.elem = nil
	}
}

// coolLocked closes a closed segment's file and unmaps its index files; a
// reader reopens them. Call with refMu write-locked.
func (s *segment) coolLocked() {
	var errs []error
	if li := s.loaded.Load(); li != nil && li.release != nil {
		s.loaded.Store(nil)
		errs = append(errs, li.release())
	}
	if s.file != nil {
		errs = append(errs, s.file.Close())
		s.file = nil
	}
	_ = errors.Join(errs...) // read-only descriptors and maps: nothing to lose
}

// readFile returns the segment's file, reopening a cold closed segment's.
// The caller holds a reference (acquire).
func (s *segment) readFile() (fsx.File, error) {
	s.used.Store(true)
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	if s.file != nil {
		return s.file, nil
	}
	f, err := s.fs.Open(s.logPath())
	if err != nil {
		return nil, err
	}
	s.file = f
	files.add(s)
	return f, nil
}

// readAt is a readAtFunc over the segment's file, reopening it if cold. The
// caller holds a reference.
func (s *segment) readAt(p []byte, off int64) (int, error) {
	f, err := s.readFile()
	if err != nil {
		return 0, err
	}
	return f.ReadAt(p, off)
}
