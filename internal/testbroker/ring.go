package testbroker

import "sync"

// ringBuffer is an io.Writer that keeps at most the last limit bytes written
// (at least the last 3/4 of limit), so a chatty broker cannot exhaust the
// test's memory.
type ringBuffer struct {
	mu    sync.Mutex
	limit int
	buf   []byte
}

func newRingBuffer(limit int) *ringBuffer { return &ringBuffer{limit: limit} }

func (r *ringBuffer) Write(p []byte) (int, error) {
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

func (r *ringBuffer) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return string(r.buf)
}
