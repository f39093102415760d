package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func newProducersCmd() *cobra.Command {
	o := &clientOptions{}
	cmd := &cobra.Command{
		Use:   "producers <topic>",
		Short: "Show the idempotent and transactional producers each partition tracks",
		Long: `Show, per partition, the producer state the broker keeps for idempotent and
transactional producers (DescribeProducers, as kafka-transactions.sh
describe-producers): producer id and epoch, the last sequence number and
timestamp it wrote, the transaction coordinator's epoch and, while a
transaction is open, the offset where it started. An open transaction holds
back the partition's last stable offset: read_committed consumers stop there.`,
		Example: `  oncelog producers orders
  oncelog producers orders --output json | jq '.partitions[].producers[] | select(.current_txn_start_offset >= 0)'`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				return runProducers(ctx, o, adm, cmd.OutOrStdout(), args[0])
			})
		},
	}
	o.addClientFlags(cmd.Flags())
	return cmd
}

// topicProducers is the --output json result of `producers`.
type topicProducers struct {
	Topic      string               `json:"topic"`
	Partitions []partitionProducers `json:"partitions"`
}

type partitionProducers struct {
	Partition int32           `json:"partition"`
	Leader    int32           `json:"leader"`
	Producers []producerState `json:"producers"`
	Error     string          `json:"error,omitempty"`
}

type producerState struct {
	ProducerID            int64 `json:"producer_id"`
	ProducerEpoch         int16 `json:"producer_epoch"`
	LastSequence          int32 `json:"last_sequence"`
	LastTimestamp         int64 `json:"last_timestamp"` // unix ms
	CoordinatorEpoch      int32 `json:"coordinator_epoch"`
	CurrentTxnStartOffset int64 `json:"current_txn_start_offset"` // -1: no open transaction
}

func runProducers(ctx context.Context, o *clientOptions, adm *kadm.Client, out io.Writer, topic string) error {
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return o.explain(err, topic)
	}
	if d, ok := details[topic]; !ok {
		return o.explain(kerr.UnknownTopicOrPartition, topic)
	} else if d.Err != nil {
		return o.explain(d.Err, topic)
	}
	set := make(kadm.TopicsSet)
	set.Add(topic, details[topic].Partitions.Numbers()...)
	described, err := adm.DescribeProducers(ctx, set)
	if err != nil {
		return o.explain(err, topic)
	}
	result := topicProducers{Topic: topic, Partitions: []partitionProducers{}}
	for _, p := range described[topic].Partitions.Sorted() {
		pp := partitionProducers{
			Partition: p.Partition,
			Leader:    p.Leader,
			Producers: []producerState{},
			Error:     errorString(withMessage(p.Err, p.ErrMessage)),
		}
		for _, d := range p.ActiveProducers.Sorted() {
			pp.Producers = append(pp.Producers, producerState{
				ProducerID:            d.ProducerID,
				ProducerEpoch:         d.ProducerEpoch,
				LastSequence:          d.LastSequence,
				LastTimestamp:         d.LastTimestamp,
				CoordinatorEpoch:      d.CoordinatorEpoch,
				CurrentTxnStartOffset: d.CurrentTxnStartOffset,
			})
		}
		result.Partitions = append(result.Partitions, pp)
	}
	if o.json() {
		return writeJSON(out, result)
	}
	tw := newTable(out)
	fmt.Fprintln(tw, "PARTITION\tLEADER\tPRODUCER-ID\tEPOCH\tLAST-SEQUENCE\tLAST-TIMESTAMP\tCOORDINATOR-EPOCH\tTXN-START-OFFSET\tERROR")
	for _, p := range result.Partitions {
		if len(p.Producers) == 0 || p.Error != "" {
			fmt.Fprintf(tw, "%d\t%d\t-\t-\t-\t-\t-\t-\t%s\n", p.Partition, p.Leader, p.Error)
			continue
		}
		for _, d := range p.Producers {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%s\t%d\t%s\t\n", p.Partition, p.Leader, d.ProducerID, d.ProducerEpoch,
				d.LastSequence, formatMillis(d.LastTimestamp), d.CoordinatorEpoch, offsetOrDash(d.CurrentTxnStartOffset))
		}
	}
	return tw.Flush()
}

// formatMillis renders a unix-ms timestamp in UTC, or "-" when unset.
func formatMillis(ms int64) string {
	if ms < 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}
