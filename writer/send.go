package writer

import (
	"errors"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	readChunk   = 1000
	backoffMin  = 100 * time.Millisecond
	backoffMax  = 5 * time.Second
	ackBatchMax = 4096
)

func (w *Writer) clientOpts(extra ...kgo.Opt) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(w.cfg.Brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// The outbox is the retry buffer: the client retries forever
		// (its default) and the outbox bounds what is outstanding.
		kgo.ProducerBatchMaxBytes(int32(max(w.cfg.MaxEventBytes+1024, 1_000_012))),
	}
	opts = append(opts, w.cfg.ClientOpts...)
	return append(opts, extra...)
}

func (e *entry) record() *kgo.Record {
	hs := make([]kgo.RecordHeader, 0, len(e.headers)+1)
	for _, h := range e.headers {
		hs = append(hs, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	hs = append(hs, kgo.RecordHeader{Key: HeaderIdempotencyKey, Value: []byte(e.idemKey)})
	return &kgo.Record{Topic: e.topic, Key: e.key, Value: e.value, Headers: hs, Timestamp: time.UnixMilli(e.timestamp)}
}

// rejected says the broker refused the record itself: sending it again
// cannot succeed, so the event fails instead of blocking the outbox.
func rejected(err error) bool {
	for _, code := range []*kerr.Error{
		kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord,
		kerr.CorruptMessage, kerr.InvalidTopicException, kerr.TopicAuthorizationFailed,
		kerr.InvalidRequiredAcks, kerr.InvalidTimestamp,
	} {
		if errors.Is(err, code) {
			return true
		}
	}
	return false
}

// runKeyWindow is the ModeKeyWindow sender: entries stream into one
// idempotent producer as they become durable (the client pipelines them);
// acknowledgements are removed from the outbox in groups by a committer.
// A failed send is retried by producing the entry again: within one
// producer session the idempotent producer already suppresses retries, and
// across sessions (and across crashes) the broker's key window does.
func (w *Writer) runKeyWindow() {
	cl, err := kgo.NewClient(w.clientOpts()...)
	if err != nil {
		w.mu.Lock()
		w.failed = err
		w.mu.Unlock()
		w.cfg.Logger.Error("writer: cannot create client", "err", err)
		return
	}
	acks := make(chan delivered, ackBatchMax)
	var committer sync.WaitGroup
	committer.Add(1)
	go func() {
		defer committer.Done()
		for d := range acks {
			ds := []delivered{d}
		drain:
			for len(ds) < ackBatchMax {
				select {
				case d, ok := <-acks:
					if !ok {
						break drain
					}
					ds = append(ds, d)
				default:
					break drain
				}
			}
			if err := w.commitDelivered(ds); err != nil {
				w.cfg.Logger.Error("writer: outbox commit failed", "err", err)
			}
		}
	}()

	var (
		inflight sync.WaitGroup
		retryMu  sync.Mutex
		retry    []*entry
		failures int
	)
	produce := func(e *entry) {
		inflight.Add(1)
		cl.Produce(w.ctx, e.record(), func(r *kgo.Record, err error) {
			defer inflight.Done()
			switch {
			case err == nil:
				acks <- delivered{e: e, partition: r.Partition, offset: r.Offset}
			case w.ctx.Err() != nil:
				// Closing: the entry stays in the outbox.
			case rejected(err):
				w.failEntries([]*entry{e}, err)
			default:
				w.hookSendError(err)
				retryMu.Lock()
				retry = append(retry, e)
				retryMu.Unlock()
				w.notify()
			}
		})
	}

	// produceStored produces the entries in [lo, hi] read back from the
	// store; it returns the next seq to produce (hi+1 unless a read
	// failed).
	produceStored := func(lo, hi uint64) uint64 {
		for lo <= hi && w.ctx.Err() == nil {
			es, err := w.readEntries(lo, hi, readChunk)
			if err != nil {
				w.cfg.Logger.Error("writer: read outbox", "err", err)
				w.sleep(backoffMax)
				return lo
			}
			for _, e := range es {
				produce(e)
			}
			if len(es) < readChunk {
				return hi + 1
			}
			lo = es[len(es)-1].seq + 1
		}
		return lo
	}
	var next uint64 = 1 // entries below next were handed to the client
	for w.ctx.Err() == nil {
		// Committed entries come from memory (sendQ); what it lacks (at
		// Open, or when the sender fell behind) is read from the store.
		hi, q := w.takeSendQ()
		if len(q) > 0 && q[0].seq > next {
			next = produceStored(next, q[0].seq-1)
		}
		if len(q) == 0 || q[0].seq <= next {
			for _, e := range q {
				if e.seq >= next {
					produce(e)
					next = e.seq + 1
				}
			}
			next = produceStored(next, hi)
		}
		retryMu.Lock()
		again := retry
		retry = nil
		retryMu.Unlock()
		if len(again) > 0 {
			failures++
			if !w.sleep(backoff(failures)) {
				break
			}
			for _, e := range again {
				produce(e)
			}
		} else {
			failures = 0
		}
		t := time.NewTimer(backoffMax)
		select {
		case <-w.wake:
		case <-t.C: // picks up retries queued meanwhile
		case <-w.ctx.Done():
		}
		t.Stop()
	}
	// Close fails what is still buffered (the callbacks see the closed
	// context and leave the entries in the outbox).
	cl.Close()
	inflight.Wait()
	close(acks)
	committer.Wait()
}

// backoff returns the pause before retry n (1, 2, ...).
func backoff(n int) time.Duration {
	return min(backoffMin<<min(n, 6), backoffMax)
}
