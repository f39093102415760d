// Package tailbuf keeps the tail of a process's output for error reports.
package tailbuf

import "sync"

// Buffer is an io.Writer that keeps at most the last limit bytes written
// (at least the last 3/4 of limit), so a chatty broker cannot exhaust the
// test's memory.
type Buffer struct {
	mu    sync.Mutex
	limit int
	buf   []byte
}

// New returns a Buffer that keeps about the last limit bytes.
func New(limit int) *Buffer { return &Buffer{limit: limit} }

func (r *Buffer) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(p)
	if len(p) >= r.limit {
		r.buf = append(r.buf[:0], p[len(p)-r.limit:]...)
		return n, nil
	}
	if overflow := len(r.buf) + len(p) - r.limit; overflow > 0 {
		// Drop at least a quarter at once so that a full buffer is not
		// shifted on every small write; keep the backing array.
		drop := min(max(overflow, r.limit/4), len(r.buf))
		r.buf = r.buf[:copy(r.buf, r.buf[drop:])]
	}
	r.buf = append(r.buf, p...)
	return n, nil
}

func (r *Buffer) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return string(r.buf)
}
