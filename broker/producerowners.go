package broker

import (
	"errors"
	"sync"

	"github.com/oncelog/oncelog/meta"
)

// ProducerOwners binds each producer id to the principal that obtained it
// (InitProducerId), when an authorizer is configured. Kafka authorizes a
// produce, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn or TxnOffsetCommit
// only by topic and transactional id, so anyone allowed to write a topic
// can write under a producer id that DescribeProducers or
// DescribeTransactions shows: take over an idempotent producer's
// sequence, or inject a record into another application's open
// transaction. oncelog refuses a producer id that is not the caller's.
// The bindings are durable in the metadata store (a restart keeps them),
// and bounded by --max-producers: at the bound, bindings older than
// producer.id.expiration.ms whose producer id no partition or transaction
// still holds are dropped; if none can be, InitProducerId is refused.
type ProducerOwners struct {
	b     *Broker
	store *meta.Store
	max   int

	mu sync.Mutex
	m  map[int64]meta.ProducerOwner
}

// ErrTooManyProducerIDs is returned by Bind at the bound.
var ErrTooManyProducerIDs = errors.New("too many producer ids bound to principals (--max-producers)")

func (b *Broker) openProducerOwners() (*ProducerOwners, error) {
	m, err := b.meta.ProducerOwners()
	if err != nil {
		return nil, err
	}
	return &ProducerOwners{b: b, store: b.meta, max: b.cfg.MaxProducers, m: m}, nil
}

// Owner returns the principal pid was issued to, if any.
func (o *ProducerOwners) Owner(pid int64) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e, ok := o.m[pid]
	return e.Principal, ok
}

// Bind records, durably, that pid belongs to principal (replacing an
// earlier owner: InitProducerId of a transactional id hands its producer
// id to whoever may write the id now).
func (o *ProducerOwners) Bind(pid int64, principal string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cur, ok := o.m[pid]; ok && cur.Principal == principal {
		return nil
	}
	if _, ok := o.m[pid]; !ok && o.max > 0 && len(o.m) >= o.max {
		o.pruneLocked()
		if len(o.m) >= o.max {
			return ErrTooManyProducerIDs
		}
	}
	e := meta.ProducerOwner{Principal: principal, BoundMs: o.b.Now().UnixMilli()}
	if err := o.store.PutProducerOwner(pid, e); err != nil {
		return err
	}
	o.m[pid] = e
	return nil
}

// pruneLocked drops bindings past producer.id.expiration.ms whose producer
// id no partition's producer state and no transactional id holds.
func (o *ProducerOwners) pruneLocked() {
	live := map[int64]bool{}
	for _, p := range o.b.allPartitions() {
		producers, err := p.AllProducers()
		if err != nil {
			return // a spilled id may be live: prune nothing
		}
		for _, e := range producers {
			live[e.ProducerID] = true
		}
	}
	if o.b.Txns != nil {
		for _, t := range o.b.Txns.List() {
			live[t.ProducerID] = true
		}
	}
	cutoff := o.b.Now().UnixMilli() - o.b.cfg.ProducerIDExpirationMs
	var gone []int64
	for pid, e := range o.m {
		if e.BoundMs < cutoff && !live[pid] {
			gone = append(gone, pid)
		}
	}
	if len(gone) == 0 || o.store.DeleteProducerOwners(gone) != nil {
		return
	}
	for _, pid := range gone {
		delete(o.m, pid)
	}
}

// Len is the number of bindings.
func (o *ProducerOwners) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.m)
}
