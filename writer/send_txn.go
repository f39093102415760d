package writer

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// PositionGroup is the consumer group whose committed offsets hold the
// outbox position of a transactional id.
func PositionGroup(transactionalID string) string { return "oncelog-outbox-" + transactionalID }

// runTransactional is the ModeTransactional sender. Each round writes the
// oldest undelivered entries (up to TxnMaxEntries) in one transaction
// together with the outbox position (the seq after the last of them,
// committed with TxnOffsetCommit for PositionGroup, metadata = outbox id).
// Any error closes the client: the next client's InitProducerId with the
// same transactional.id fences the old epoch and aborts whatever it left
// open, and the sender reads the committed position again (resync) before
// writing anything, so an entry is never in two committed transactions.
func (w *Writer) runTransactional() {
	var (
		cl       *kgo.Client
		failures int
	)
	fail := func(err error) bool {
		w.hookSendError(err)
		if cl != nil {
			cl.Close()
			cl = nil
		}
		failures++
		return w.sleep(backoff(failures))
	}
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	for w.ctx.Err() == nil {
		if cl == nil {
			var err error
			cl, err = kgo.NewClient(w.clientOpts(kgo.TransactionalID(w.txnID))...)
			if err != nil {
				w.cfg.Logger.Error("writer: cannot create client", "err", err)
				cl = nil
				if !w.sleep(backoffMax) {
					return
				}
				continue
			}
			if err := w.resync(cl); err != nil {
				if !fail(fmt.Errorf("resync outbox position: %w", err)) {
					return
				}
				continue
			}
		}
		// From txnFrom: reading from 0 walked every deleted entry's
		// tombstone, once per transaction.
		es, err := w.readEntries(w.txnFrom, w.durable(), w.cfg.TxnMaxEntries)
		if err != nil {
			if !fail(err) {
				return
			}
			continue
		}
		if len(es) == 0 {
			select {
			case <-w.wake:
			case <-w.ctx.Done():
			}
			continue
		}
		ds, err := w.transact(cl, es)
		if err != nil {
			if w.ctx.Err() != nil {
				return
			}
			if !fail(err) {
				return
			}
			continue
		}
		failures = 0
		if err := w.commitDelivered(ds); err != nil {
			w.cfg.Logger.Error("writer: outbox commit failed", "err", err)
			return
		}
		// Delivered, or given up by transact (a rejected entry).
		w.txnFrom = es[len(es)-1].seq + 1
	}
}

// transact writes es and the position after them in one transaction.
func (w *Writer) transact(cl *kgo.Client, es []*entry) ([]delivered, error) {
	ctx := w.ctx
	if err := cl.BeginTransaction(); err != nil {
		return nil, err
	}
	ds := make([]delivered, len(es))
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	for i, e := range es {
		ds[i].e = e
		wg.Add(1)
		cl.Produce(ctx, e.record(), func(r *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
				return
			}
			ds[i].partition, ds[i].offset = r.Partition, r.Offset
		})
	}
	ferr := cl.Flush(ctx)
	wg.Wait()
	if ferr == nil {
		ferr = firstErr
	}
	if ferr == nil {
		ferr = w.commitPosition(ctx, cl, es)
	}
	if ferr != nil {
		if rejected(ferr) && len(es) == 1 {
			// Only this entry is refused for good; give it up and go on.
			_ = cl.EndTransaction(ctx, kgo.TryAbort)
			w.failEntries(es, ferr)
			return nil, nil
		}
		if rejected(ferr) && len(es) > 1 {
			// Find the offender on its own: one entry per transaction
			// until it is found is slow but only happens on a bad event.
			w.cfg.TxnMaxEntries = 1
		}
		return nil, ferr
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return nil, err
	}
	return ds, nil
}

// commitPosition adds the outbox position to the open transaction: the
// group PositionGroup(txnID) gets offset lastSeq+1 on partition 0 of every
// topic of the batch (the offset must name an existing partition; any of
// them will do, resync takes the highest).
func (w *Writer) commitPosition(ctx context.Context, cl *kgo.Client, es []*entry) error {
	id, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		return err
	}
	group := PositionGroup(w.txnID)
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = w.txnID, id, epoch, group
	addResp, err := add.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("AddOffsetsToTxn: %w", err)
	}
	if err := kerr.ErrorForCode(addResp.ErrorCode); err != nil {
		return fmt.Errorf("AddOffsetsToTxn: %w", err)
	}
	topics := map[string]bool{}
	for _, e := range es {
		topics[e.topic] = true
	}
	// TxnOffsetCommit v6 names topics by id only: fill both.
	meta := kmsg.NewPtrMetadataRequest()
	for t := range topics {
		mt := kmsg.NewMetadataRequestTopic()
		mt.Topic = kmsg.StringPtr(t)
		meta.Topics = append(meta.Topics, mt)
	}
	metaResp, err := meta.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	ids := map[string][16]byte{}
	for _, t := range metaResp.Topics {
		if t.Topic != nil {
			ids[*t.Topic] = t.TopicID
		}
	}
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = w.txnID, group, id, epoch
	req.Generation, req.MemberID = -1, ""
	next := int64(es[len(es)-1].seq + 1)
	metadata := w.outboxID
	for t := range topics {
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic, rt.TopicID = t, ids[t]
		p := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		p.Partition, p.Offset, p.LeaderEpoch, p.Metadata = 0, next, -1, &metadata
		rt.Partitions = append(rt.Partitions, p)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("TxnOffsetCommit: %w", err)
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fmt.Errorf("TxnOffsetCommit %s: %w", t.Topic, err)
			}
		}
	}
	return nil
}

// resync makes the outbox agree with the position the broker holds. It
// first initializes the producer id (InitProducerId with our transactional
// id aborts a transaction a previous process left open), then reads the
// committed position with require_stable (waiting out a transaction still
// completing), and removes the entries below it: their transaction
// committed before the outbox learned of it.
func (w *Writer) resync(cl *kgo.Client) error {
	ctx := w.ctx
	if _, _, err := cl.ProducerID(ctx); err != nil {
		return fmt.Errorf("init producer id: %w", err)
	}
	pos, err := w.committedPosition(ctx, cl)
	if err != nil {
		return err
	}
	for pos > w.txnFrom {
		es, err := w.readEntries(w.txnFrom, pos-1, readChunk)
		if err != nil {
			return err
		}
		if len(es) == 0 {
			w.txnFrom = pos
			return nil
		}
		ds := make([]delivered, len(es))
		for i, e := range es {
			ds[i] = delivered{e: e, partition: -1, offset: -1}
		}
		w.cfg.Logger.Info("writer: entries committed before the restart", "entries", len(es), "position", pos)
		if err := w.commitDelivered(ds); err != nil {
			return err
		}
		w.txnFrom = es[len(es)-1].seq + 1
	}
	return nil
}

// committedPosition is the highest offset committed for PositionGroup by
// this outbox (metadata = its id); 0 if none. A position written by
// another outbox under the same transactional id (the directory was
// replaced) is ignored: its seqs mean nothing here.
func (w *Writer) committedPosition(ctx context.Context, cl *kgo.Client) (uint64, error) {
	adm := kadm.NewClient(cl)
	for {
		resp, err := adm.FetchOffsets(kadm.RequireStable(ctx), PositionGroup(w.txnID))
		if err == nil {
			err = resp.Error()
		}
		if errors.Is(err, kerr.UnstableOffsetCommit) || errors.Is(err, kerr.CoordinatorLoadInProgress) {
			if !w.sleep(backoffMin) {
				return 0, ctx.Err()
			}
			continue
		}
		if errors.Is(err, kerr.GroupIDNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("fetch outbox position: %w", err)
		}
		var pos uint64
		resp.Each(func(o kadm.OffsetResponse) {
			if o.Metadata == w.outboxID && o.At > 0 {
				pos = max(pos, uint64(o.At))
			}
		})
		return pos, nil
	}
}
