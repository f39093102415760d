// Package txnscan finds the transactions partitions hold open and, among
// them, the hanging ones: open on a partition while no transaction
// coordinator will ever complete them. It is the logic of Kafka's
// `kafka-transactions.sh find-hanging` (TransactionsCommand), shared by the
// CLI (`oncelog txn find-hanging`) and the web console, and works against any
// Kafka-compatible broker through kadm.
package txnscan

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// OpenTxn is a transaction a partition holds open (DescribeProducers'
// current transaction start offset), and why it hangs when it does.
type OpenTxn struct {
	Topic            string `json:"topic"`
	Partition        int32  `json:"partition"`
	ProducerID       int64  `json:"producer_id"`
	ProducerEpoch    int16  `json:"producer_epoch"`
	CoordinatorEpoch int32  `json:"coordinator_epoch"`
	StartOffset      int64  `json:"start_offset"`
	LastTimestamp    int64  `json:"last_timestamp"` // unix ms
	DurationMs       int64  `json:"duration_ms"`    // now - last timestamp
	TransactionalID  string `json:"transactional_id,omitempty"`
	Reason           string `json:"reason"`
}

// PartitionError is a partition DescribeProducers could not describe.
type PartitionError struct {
	Topic     string
	Partition int32
	Err       error
}

func (e *PartitionError) Error() string {
	return fmt.Sprintf("describe producers of %s/%d: %v", e.Topic, e.Partition, e.Err)
}

func (e *PartitionError) Unwrap() error { return e.Err }

// Open returns the transactions the partitions of set hold open, as of now.
func Open(ctx context.Context, adm *kadm.Client, set kadm.TopicsSet, now time.Time) ([]OpenTxn, error) {
	if len(set) == 0 {
		return nil, nil
	}
	described, err := adm.DescribeProducers(ctx, set)
	if err != nil {
		// kadm stops at a partition refused (no READ on its topic) and
		// returns what it had: treating that as the whole answer would
		// report no open transaction where there may be some.
		return nil, err
	}
	var open []OpenTxn
	for _, t := range described.Sorted() {
		for _, p := range t.Partitions.Sorted() {
			if p.Err != nil {
				err := p.Err
				if p.ErrMessage != "" {
					err = fmt.Errorf("%w: %s", p.Err, p.ErrMessage)
				}
				return nil, &PartitionError{Topic: p.Topic, Partition: p.Partition, Err: err}
			}
			for _, d := range p.ActiveProducers.Sorted() {
				if d.CurrentTxnStartOffset < 0 {
					continue
				}
				open = append(open, OpenTxn{
					Topic: p.Topic, Partition: p.Partition, ProducerID: d.ProducerID, ProducerEpoch: d.ProducerEpoch,
					CoordinatorEpoch: d.CoordinatorEpoch, StartOffset: d.CurrentTxnStartOffset,
					LastTimestamp: d.LastTimestamp, DurationMs: now.UnixMilli() - d.LastTimestamp,
				})
			}
		}
	}
	return open, nil
}

// Hanging asks the coordinators about the producer ids of candidates and
// returns the candidates no coordinator will complete (see Classify).
func Hanging(ctx context.Context, adm *kadm.Client, candidates []OpenTxn) ([]OpenTxn, error) {
	if len(candidates) == 0 {
		return nil, nil
	}
	pids := make([]int64, 0, len(candidates))
	for _, c := range candidates {
		if !slices.Contains(pids, c.ProducerID) {
			pids = append(pids, c.ProducerID)
		}
	}
	listed, err := adm.ListTransactions(ctx, pids, nil)
	if err != nil {
		return nil, fmt.Errorf("list transactions: %w", err)
	}
	var ids []string
	for _, l := range listed {
		ids = append(ids, l.TxnID)
	}
	described := kadm.DescribedTransactions{}
	if len(ids) > 0 {
		if described, err = adm.DescribeTransactions(ctx, ids...); err != nil {
			return nil, fmt.Errorf("describe transactions: %w", err)
		}
	}
	return Classify(candidates, listed, described), nil
}

// Classify keeps the open transactions no coordinator will complete, by
// Kafka's rules (TransactionsCommand's find-hanging): no transactional id
// has the producer id, or the one that has it is in another epoch or its
// transaction does not include the partition.
func Classify(candidates []OpenTxn, listed kadm.ListedTransactions, described kadm.DescribedTransactions) []OpenTxn {
	idsByPid := map[int64][]string{}
	for _, l := range listed {
		idsByPid[l.ProducerID] = append(idsByPid[l.ProducerID], l.TxnID)
	}
	var hanging []OpenTxn
	for _, c := range candidates {
		ids := idsByPid[c.ProducerID]
		sort.Strings(ids)
		if len(ids) == 0 {
			c.Reason = "no transactional id uses this producer id"
			hanging = append(hanging, c)
			continue
		}
		c.TransactionalID = ids[0]
		reason := ""
		for _, id := range ids {
			d, ok := described[id]
			switch {
			case !ok || d.Err != nil:
				// Gone since the listing (completed, expired, or moved).
				reason = fmt.Sprintf("transactional id %q has no transaction for it any more", id)
			case d.ProducerID != c.ProducerID:
				reason = fmt.Sprintf("transactional id %q moved on to producer id %d", id, d.ProducerID)
			case d.ProducerEpoch != c.ProducerEpoch:
				reason = fmt.Sprintf("transactional id %q is at epoch %d, the partition holds epoch %d open", id, d.ProducerEpoch, c.ProducerEpoch)
			case !d.Topics.Lookup(c.Topic, c.Partition):
				reason = fmt.Sprintf("the transaction of %q (%s) does not include this partition", id, d.State)
			default:
				reason = "" // the coordinator tracks it: it will complete or time out
			}
			if reason == "" {
				c.TransactionalID = id
				break
			}
		}
		if reason != "" {
			c.Reason = reason
			hanging = append(hanging, c)
		}
	}
	return hanging
}
