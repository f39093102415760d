package writer

import (
	"context"
	"sync"
)

// Delivery is where the broker stored an event.
type Delivery struct {
	Topic     string
	Partition int32
	// Offset is the record's offset, or -1 when the writer knows the event
	// was committed but not where: in ModeTransactional, an entry found
	// committed at restart (its transaction committed, the process died
	// before the outbox learned the offsets).
	Offset int64
	// Duplicate says the key was already in the outbox or delivered within
	// the key window: this Emit wrote nothing and this is the original
	// event's delivery.
	Duplicate bool
}

// Result is the outcome of one Emit: the broker's acknowledgement, or the
// error that made the writer give the event up.
type Result struct {
	done chan struct{}

	mu        sync.Mutex
	delivery  Delivery
	err       error
	completed bool
	followers []*Result // Emits of the same key while this one was pending
	callbacks []func(Delivery, error)
}

func newResult() *Result { return &Result{done: make(chan struct{})} }

func completedResult(d Delivery, err error) *Result {
	r := newResult()
	r.complete(d, err)
	return r
}

// Done is closed once the event is delivered or failed.
func (r *Result) Done() <-chan struct{} { return r.done }

// Wait blocks until the event is delivered (or failed) or ctx ends.
func (r *Result) Wait(ctx context.Context) (Delivery, error) {
	select {
	case <-r.done:
		return r.delivery, r.err
	case <-ctx.Done():
		return Delivery{}, ctx.Err()
	}
}

// follow returns a Result that completes with r's outcome, marked Duplicate.
func (r *Result) follow() *Result {
	f := newResult()
	r.mu.Lock()
	if r.completed {
		d, err := r.delivery, r.err
		r.mu.Unlock()
		d.Duplicate = true
		f.complete(d, err)
		return f
	}
	r.followers = append(r.followers, f)
	r.mu.Unlock()
	return f
}

func (r *Result) onDone(cb func(Delivery, error)) {
	r.mu.Lock()
	if r.completed {
		d, err := r.delivery, r.err
		r.mu.Unlock()
		cb(d, err)
		return
	}
	r.callbacks = append(r.callbacks, cb)
	r.mu.Unlock()
}

func (r *Result) complete(d Delivery, err error) {
	r.mu.Lock()
	if r.completed {
		r.mu.Unlock()
		return
	}
	r.completed = true
	r.delivery, r.err = d, err
	followers, callbacks := r.followers, r.callbacks
	r.followers, r.callbacks = nil, nil
	close(r.done)
	r.mu.Unlock()
	for _, cb := range callbacks {
		cb(d, err)
	}
	d.Duplicate = true
	for _, f := range followers {
		f.complete(d, err)
	}
}
