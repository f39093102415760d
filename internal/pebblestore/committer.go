package pebblestore

import (
	"errors"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// Op is one key change: a set, or a delete when Delete is true.
type Op struct {
	Key, Value []byte
	Delete     bool
}

// ErrClosed is what Enqueue answers once Close has begun.
var ErrClosed = errors.New("store closed")

// Committer is the group commit of a coordinator's store (consumer groups,
// share groups). Changes are queued in the order the coordinator made them
// (under its own lock) and one writer goroutine applies everything queued
// so far as a single synced pebble batch: changes from many clients share
// one fsync, and a later change to a key is never overtaken by an earlier
// one.
type Committer struct {
	db      *pebble.DB
	onError func(error)

	mu      sync.Mutex
	queue   []*queued
	kick    chan struct{} // wakes the writer; buffered 1
	closing bool
	stopped chan struct{} // closed when the writer has drained and exited
}

type queued struct {
	ops  []Op
	done chan error // receives the outcome once; buffered
}

// NewCommitter starts the writer over db. onError, if set, is told of
// every failed batch (each waiter also receives the error).
func NewCommitter(db *pebble.DB, onError func(error)) *Committer {
	c := &Committer{db: db, onError: onError, kick: make(chan struct{}, 1), stopped: make(chan struct{})}
	go c.writer()
	return c
}

// Enqueue schedules ops to be written and synced. The returned channel
// receives nil once they are durable, or the write error.
func (c *Committer) Enqueue(ops []Op) <-chan error {
	w := &queued{ops: ops, done: make(chan error, 1)}
	if len(ops) == 0 {
		w.done <- nil
		return w.done
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		w.done <- ErrClosed
		return w.done
	}
	c.queue = append(c.queue, w)
	c.mu.Unlock()
	c.wake()
	return w.done
}

func (c *Committer) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Committer) writer() {
	defer close(c.stopped)
	for {
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		closing := c.closing
		c.mu.Unlock()

		if len(batch) > 0 {
			err := c.apply(batch)
			if err != nil && c.onError != nil {
				c.onError(err)
			}
			for _, w := range batch {
				w.done <- err
			}
			continue // look for more before sleeping
		}
		if closing {
			return
		}
		<-c.kick
	}
}

func (c *Committer) apply(writes []*queued) (err error) {
	defer Guard(&err)
	b := c.db.NewBatch()
	defer b.Close()
	for _, w := range writes {
		for _, op := range w.ops {
			if op.Delete {
				err = b.Delete(op.Key, nil)
			} else {
				err = b.Set(op.Key, op.Value, nil)
			}
			if err != nil {
				return err
			}
		}
	}
	return b.Commit(pebble.Sync)
}

// Close applies what is queued, then stops the writer; later Enqueues
// answer ErrClosed. It does not close the database.
func (c *Committer) Close() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.wake()
	<-c.stopped
}
