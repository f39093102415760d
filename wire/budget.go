package wire

import (
	"context"
	"sync"
)

// requestBudget is queued.max.request.bytes: the bytes of requests being
// read or waiting to be processed, summed over all connections. A
// connection reserves the bytes of a frame as they arrive (a client that
// declares 100 MB and sends one reserves one), and gives them back when the
// request's processing starts (Kafka: when its handler returns); while
// the budget is spent, readers stop reading, so TCP flow control pushes
// back on the clients.
//
// Frames reserved piecemeal could deadlock: several large frames half read,
// the budget spent, none able to finish. So one frame at a time may overdraw
// the budget to finish (the overdraft holder), as Kafka's non-strict memory
// pool lets one allocation go past its limit. Memory for queued requests
// thus stays under the budget plus one socket.request.max.bytes frame.
type requestBudget struct {
	limit int64 // <= 0: unlimited

	mu        sync.Mutex
	used      int64
	overdraft *frameReservation // the frame allowed past limit, or nil
	changed   chan struct{}     // closed and replaced whenever bytes are freed
	onChange  func(delta int64) // keeps a gauge of used bytes
}

func newRequestBudget(limit int64, onChange func(delta int64)) *requestBudget {
	return &requestBudget{limit: limit, changed: make(chan struct{}), onChange: onChange}
}

// frameReservation is what one frame holds of the budget.
type frameReservation struct {
	b     *requestBudget
	bytes int64
}

func (b *requestBudget) newFrame() *frameReservation { return &frameReservation{b: b} }

// grow reserves n more bytes for the frame, waiting while the budget is
// spent; onWait is called when it starts waiting (a throttled read). It
// reports whether it waited.
func (f *frameReservation) grow(ctx context.Context, n int64, onWait func()) (waited bool, err error) {
	b := f.b
	for {
		b.mu.Lock()
		if b.limit <= 0 || b.used+n <= b.limit || b.overdraft == nil || b.overdraft == f {
			if b.limit > 0 && b.used+n > b.limit {
				b.overdraft = f
			}
			b.used += n
			f.bytes += n
			b.mu.Unlock()
			b.onChange(n)
			return waited, nil
		}
		ch := b.changed
		b.mu.Unlock()
		if !waited && onWait != nil {
			onWait()
		}
		waited = true
		select {
		case <-ch:
		case <-ctx.Done():
			return waited, ctx.Err()
		}
	}
}

// read marks the frame complete: it no longer needs to overdraw.
func (f *frameReservation) read() {
	b := f.b
	b.mu.Lock()
	if b.overdraft == f {
		b.overdraft = nil
		b.broadcastLocked()
	}
	b.mu.Unlock()
}

// release gives the frame's bytes back. It may be called more than once.
func (f *frameReservation) release() {
	b := f.b
	b.mu.Lock()
	if b.overdraft == f {
		b.overdraft = nil
	}
	freed := f.bytes
	b.used -= freed
	f.bytes = 0
	if freed > 0 {
		b.broadcastLocked()
	}
	b.mu.Unlock()
	b.onChange(-freed)
}

func (b *requestBudget) broadcastLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}
