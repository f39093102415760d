package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/oncelog/oncelog/internal/txnscan"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func newTxnCmd() *cobra.Command {
	o := &clientOptions{}
	cmd := newParentCmd("txn", "List, describe, find hanging and abort transactions",
		`Inspect transactions, like Kafka's kafka-transactions.sh, on any
Kafka-compatible broker: list and describe what the transaction coordinator
knows, find transactions that partitions hold open but no coordinator
tracks ("hanging": they block read_committed consumers at the last stable
offset forever), and abort such a transaction.

Every subcommand takes --brokers (default `+defaultBrokers+`, or $`+brokersEnv+`)
and --output json for scripts.`)
	o.addClientFlags(cmd.PersistentFlags())
	cmd.AddCommand(
		newTxnListCmd(o),
		newTxnDescribeCmd(o),
		newTxnFindHangingCmd(o),
		newTxnAbortCmd(o),
	)
	return cmd
}

// listedTxn is one element of the --output json result of `txn list`.
type listedTxn struct {
	TransactionalID string `json:"transactional_id"`
	Coordinator     int32  `json:"coordinator"`
	ProducerID      int64  `json:"producer_id"`
	State           string `json:"state"`
}

func newTxnListCmd(o *clientOptions) *cobra.Command {
	var (
		states []string
		pids   []int64
	)
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the transactional ids the coordinators know, with producer id and state",
		Example: `  oncelog txn list
  oncelog txn list --state Ongoing
  oncelog txn list --output json | jq -r '.[].transactional_id'`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				listed, err := adm.ListTransactions(ctx, pids, states)
				if err != nil {
					return o.explain(err, "")
				}
				txns := []listedTxn{}
				for _, l := range listed.Sorted() {
					txns = append(txns, listedTxn{TransactionalID: l.TxnID, Coordinator: l.Coordinator, ProducerID: l.ProducerID, State: l.State})
				}
				out := cmd.OutOrStdout()
				if o.json() {
					return writeJSON(out, txns)
				}
				tw := newTable(out)
				fmt.Fprintln(tw, "TRANSACTIONAL-ID\tCOORDINATOR\tPRODUCER-ID\tSTATE")
				for _, t := range txns {
					fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", t.TransactionalID, t.Coordinator, t.ProducerID, t.State)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringArrayVar(&states, "state", nil, "only transactions in this state: Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort (repeatable)")
	cmd.Flags().Int64SliceVar(&pids, "producer-id", nil, "only transactions of this producer id (repeatable)")
	return cmd
}

// describedTxn is one element of the --output json result of `txn describe`.
type describedTxn struct {
	TransactionalID string            `json:"transactional_id"`
	Coordinator     int32             `json:"coordinator"`
	State           string            `json:"state"`
	ProducerID      int64             `json:"producer_id"`
	ProducerEpoch   int16             `json:"producer_epoch"`
	TimeoutMs       int32             `json:"timeout_ms"`
	StartTimestamp  int64             `json:"start_timestamp"` // unix ms, -1: no transaction open
	Partitions      []txnTopicPartset `json:"partitions"`
	Error           string            `json:"error,omitempty"`
}

type txnTopicPartset struct {
	Topic      string  `json:"topic"`
	Partitions []int32 `json:"partitions"`
}

func topicsSetList(s kadm.TopicsSet) []txnTopicPartset {
	out := []txnTopicPartset{}
	for _, t := range s.Sorted() {
		ps := slices.Clone(t.Partitions)
		slices.Sort(ps)
		out = append(out, txnTopicPartset{Topic: t.Topic, Partitions: nonNil(ps)})
	}
	return out
}

func newTxnDescribeCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "describe <transactional-id>...",
		Short: "Show a transactional id's state, producer id and epoch, timeout and partitions",
		Example: `  oncelog txn describe payments-1
  oncelog txn describe payments-1 payments-2 --output json`,
		Args: usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				return runTxnDescribe(ctx, o, adm, cmd.OutOrStdout(), args)
			})
		},
	}
}

func runTxnDescribe(ctx context.Context, o *clientOptions, adm *kadm.Client, out io.Writer, ids []string) error {
	described, err := adm.DescribeTransactions(ctx, ids...)
	if err != nil && len(described) == 0 {
		return o.explain(err, "")
	}
	var failed []error
	result := []describedTxn{}
	for _, id := range ids {
		d, ok := described[id]
		dt := describedTxn{TransactionalID: id, Partitions: []txnTopicPartset{}, StartTimestamp: -1}
		switch {
		case !ok:
			dt.Error = "no answer from its coordinator"
		case errors.Is(d.Err, kerr.TransactionalIDNotFound):
			dt.Error = fmt.Sprintf("transactional id %q not found: a producer with this transactional.id has not initialized it (or it expired)", id)
		case d.Err != nil:
			dt.Error = d.Err.Error()
		default:
			dt = describedTxn{
				TransactionalID: id, Coordinator: d.Coordinator, State: d.State,
				ProducerID: d.ProducerID, ProducerEpoch: d.ProducerEpoch, TimeoutMs: d.TimeoutMillis,
				StartTimestamp: d.StartTimestamp, Partitions: topicsSetList(d.Topics),
			}
		}
		if dt.Error != "" {
			failed = append(failed, errors.New(dt.Error))
		}
		result = append(result, dt)
	}
	if o.json() {
		if err := writeJSON(out, result); err != nil {
			return err
		}
		return errors.Join(failed...)
	}
	tw := newTable(out)
	fmt.Fprintln(tw, "TRANSACTIONAL-ID\tCOORDINATOR\tSTATE\tPRODUCER-ID\tEPOCH\tTIMEOUT\tSTARTED\tPARTITIONS\tERROR")
	for _, d := range result {
		if d.Error != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t%s\n", d.TransactionalID, d.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%s\t%s\t\n", d.TransactionalID, d.Coordinator, d.State, d.ProducerID, d.ProducerEpoch,
			time.Duration(d.TimeoutMs)*time.Millisecond, formatMillis(d.StartTimestamp), formatTxnPartitions(d.Partitions))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return errors.Join(failed...)
}

// formatTxnPartitions renders "orders:0,1 audit:3", "-" when empty.
func formatTxnPartitions(ps []txnTopicPartset) string {
	if len(ps) == 0 {
		return "-"
	}
	as := make([]memberAssignment, len(ps))
	for i, p := range ps {
		as[i] = memberAssignment(p)
	}
	return formatAssignments(as)
}

// openTxn is a transaction a partition holds open (DescribeProducers shows
// a current transaction start offset): one element of `txn find-hanging`.
// openTxn is a transaction a partition holds open (see package txnscan).
type openTxn = txnscan.OpenTxn

func newTxnFindHangingCmd(o *clientOptions) *cobra.Command {
	var (
		topics     []string
		brokerID   int32
		maxTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "find-hanging [--topic <topic>[:<partitions>]]... [--broker-id N]",
		Short: "Find transactions that partitions hold open but no coordinator is completing",
		Long: `Find hanging transactions, as kafka-transactions.sh find-hanging does: every
open transaction a partition reports (DescribeProducers) that has been open
longer than --max-transaction-timeout is checked against the transaction
coordinators (ListTransactions, DescribeTransactions). It hangs when no
coordinator knows its producer id, or the coordinator's transaction for that
producer has another epoch or does not include the partition: then nobody
will ever write its marker, and read_committed consumers of the partition
stay stuck at its start offset. Close it with ` + "`oncelog txn abort`" + `.

Without --topic or --broker-id every partition of every topic is checked.`,
		Example: `  oncelog txn find-hanging
  oncelog txn find-hanging --topic orders --max-transaction-timeout 1m
  oncelog txn find-hanging --broker-id 1 --output json`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			if maxTimeout < 0 {
				return usageErrorf("--max-transaction-timeout must not be negative, got %s", maxTimeout)
			}
			selection := map[string][]int32{}
			for _, t := range topics {
				topic, ps, err := parseTopicPartitions(t)
				if err != nil {
					return usageErrorf("--topic: %v", err)
				}
				selection[topic] = ps
			}
			byBroker := cmd.Flags().Changed("broker-id")
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				return runTxnFindHanging(ctx, o, adm, cmd.OutOrStdout(), selection, byBroker, brokerID, maxTimeout, time.Now())
			})
		},
	}
	cmd.Flags().StringArrayVar(&topics, "topic", nil, "check only this topic, all partitions or topic:0,1 (repeatable)")
	cmd.Flags().Int32Var(&brokerID, "broker-id", 0, "check only the partitions this broker leads")
	// Kafka's transaction.max.timeout.ms default: no healthy transaction is open longer.
	cmd.Flags().DurationVar(&maxTimeout, "max-transaction-timeout", 15*time.Minute, "only transactions open at least this long are candidates (the brokers' transaction.max.timeout.ms; 0 checks all)")
	return cmd
}

func runTxnFindHanging(ctx context.Context, o *clientOptions, adm *kadm.Client, out io.Writer, selection map[string][]int32, byBroker bool, brokerID int32, maxTimeout time.Duration, now time.Time) error {
	details, err := adm.ListTopics(ctx, sortedKeys(selection)...)
	if err != nil {
		return o.explain(err, "")
	}
	set := make(kadm.TopicsSet)
	for _, name := range details.Names() {
		d := details[name]
		if d.Err != nil {
			return o.explain(d.Err, name)
		}
		want := selection[name]
		for _, p := range d.Partitions.Sorted() {
			if len(want) > 0 && !slices.Contains(want, p.Partition) || byBroker && p.Leader != brokerID {
				continue
			}
			set.Add(name, p.Partition)
		}
	}
	for t := range selection {
		if _, ok := details[t]; !ok {
			return o.explain(kerr.UnknownTopicOrPartition, t)
		}
	}
	open, err := txnscan.Open(ctx, adm, set, now)
	if err != nil {
		var pe *txnscan.PartitionError
		if errors.As(err, &pe) {
			return o.explain(err, pe.Topic)
		}
		return o.explain(err, "")
	}
	var candidates []openTxn
	for _, c := range open {
		if time.Duration(c.DurationMs)*time.Millisecond >= maxTimeout { // 0 checks every open transaction
			candidates = append(candidates, c)
		}
	}
	hanging, err := txnscan.Hanging(ctx, adm, candidates)
	if err != nil {
		return o.explain(err, "")
	}
	if hanging == nil {
		hanging = []openTxn{}
	}
	if o.json() {
		return writeJSON(out, hanging)
	}
	tw := newTable(out)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tPRODUCER-ID\tEPOCH\tCOORDINATOR-EPOCH\tSTART-OFFSET\tLAST-TIMESTAMP\tOPEN-FOR\tREASON")
	for _, h := range hanging {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", h.Topic, h.Partition, h.ProducerID, h.ProducerEpoch, h.CoordinatorEpoch,
			h.StartOffset, formatMillis(h.LastTimestamp), (time.Duration(h.DurationMs) * time.Millisecond).Round(time.Second), h.Reason)
	}
	return tw.Flush()
}

// classifyHanging is txnscan.Classify (the CLI's tests call it by this name).
var classifyHanging = txnscan.Classify

// writeTxnMarkersKey is WriteTxnMarkers' API key: how brokers write
// transaction markers for a coordinator, and how an admin closes a hanging
// transaction (KIP-664).
const writeTxnMarkersKey = 27

// abortedTxn is the --output json result of `txn abort`.
type abortedTxn struct {
	Topic            string `json:"topic"`
	Partition        int32  `json:"partition"`
	ProducerID       int64  `json:"producer_id"`
	ProducerEpoch    int16  `json:"producer_epoch"`
	CoordinatorEpoch int32  `json:"coordinator_epoch"`
	Leader           int32  `json:"leader"`
}

func newTxnAbortCmd(o *clientOptions) *cobra.Command {
	var (
		topic            string
		partition        int32
		startOffset      int64
		producerID       int64
		producerEpoch    int16
		coordinatorEpoch int32
	)
	cmd := &cobra.Command{
		Use:   "abort --topic <topic> --partition N (--start-offset N | --producer-id N --producer-epoch N --coordinator-epoch N)",
		Short: "Abort a hanging transaction on one partition (writes an ABORT marker)",
		Long: `Abort a transaction a partition holds open, as kafka-transactions.sh abort
does: write an ABORT marker for its producer to the partition's leader with
WriteTxnMarkers. Use it only for a hanging transaction (see
` + "`oncelog txn find-hanging`" + `): a transaction its coordinator tracks completes or
times out by itself, and aborting it behind the producer's back loses its
records for read_committed consumers.

Name the transaction by the offset where it starts in the partition
(--start-offset, the producer's current transaction start offset shown by
` + "`oncelog producers <topic>`" + ` and find-hanging), or by its producer id, epoch
and coordinator epoch.

The broker must serve WriteTxnMarkers (API 27), as Kafka brokers do.`,
		Example: `  oncelog txn find-hanging --topic orders
  oncelog txn abort --topic orders --partition 0 --start-offset 1200
  oncelog txn abort --topic orders --partition 0 --producer-id 4001 --producer-epoch 0 --coordinator-epoch 0`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			f := cmd.Flags()
			if topic == "" || !f.Changed("partition") {
				return usageErrorf("give --topic and --partition of the partition that holds the transaction open")
			}
			byOffset := f.Changed("start-offset")
			byProducer := f.Changed("producer-id") || f.Changed("producer-epoch") || f.Changed("coordinator-epoch")
			switch {
			case byOffset && byProducer:
				return usageErrorf("give either --start-offset or --producer-id/--producer-epoch/--coordinator-epoch, not both")
			case byProducer && !(f.Changed("producer-id") && f.Changed("producer-epoch") && f.Changed("coordinator-epoch")):
				return usageErrorf("--producer-id needs --producer-epoch and --coordinator-epoch too (see `oncelog producers %s`)", topic)
			case !byOffset && !byProducer:
				return usageErrorf("give --start-offset N (see `oncelog txn find-hanging`) or --producer-id, --producer-epoch and --coordinator-epoch")
			}
			target := abortedTxn{Topic: topic, Partition: partition, ProducerID: producerID, ProducerEpoch: producerEpoch, CoordinatorEpoch: coordinatorEpoch}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				return runTxnAbort(ctx, o, adm, cmd.OutOrStdout(), target, byOffset, startOffset)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&topic, "topic", "", "topic of the partition holding the transaction open")
	f.Int32Var(&partition, "partition", 0, "partition holding the transaction open")
	f.Int64Var(&startOffset, "start-offset", 0, "the transaction's first offset in the partition")
	f.Int64Var(&producerID, "producer-id", 0, "the transaction's producer id")
	f.Int16Var(&producerEpoch, "producer-epoch", 0, "the transaction's producer epoch")
	f.Int32Var(&coordinatorEpoch, "coordinator-epoch", 0, "the coordinator epoch the partition recorded for the producer")
	return cmd
}

func runTxnAbort(ctx context.Context, o *clientOptions, adm *kadm.Client, out io.Writer, target abortedTxn, byOffset bool, startOffset int64) error {
	set := make(kadm.TopicsSet)
	set.Add(target.Topic, target.Partition)
	described, err := adm.DescribeProducers(ctx, set)
	if err != nil && len(described) == 0 {
		return o.explain(err, target.Topic)
	}
	p, ok := described[target.Topic].Partitions[target.Partition]
	if !ok {
		return o.explain(fmt.Errorf("partition %s/%d: %w", target.Topic, target.Partition, kerr.UnknownTopicOrPartition), target.Topic)
	}
	if p.Err != nil {
		return o.explain(fmt.Errorf("describe producers of %s/%d: %w", target.Topic, target.Partition, withMessage(p.Err, p.ErrMessage)), target.Topic)
	}
	target.Leader = p.Leader
	if byOffset {
		found := false
		for _, d := range p.ActiveProducers {
			if d.CurrentTxnStartOffset == startOffset {
				target.ProducerID, target.ProducerEpoch, target.CoordinatorEpoch, found = d.ProducerID, d.ProducerEpoch, d.CoordinatorEpoch, true
			}
		}
		if !found {
			return fmt.Errorf("no open transaction starts at offset %d in %s/%d: see `oncelog producers %s` for the open ones", startOffset, target.Topic, target.Partition, target.Topic)
		}
	}

	// Without API 27 kgo would fail with a bare "broker too old": say what
	// it means for this command instead.
	versions, err := adm.ApiVersions(ctx)
	if err != nil {
		return o.explain(err, "")
	}
	if v, ok := versions[target.Leader]; ok && v.Err == nil {
		if _, _, served := v.KeyVersions(writeTxnMarkersKey); !served {
			return fmt.Errorf("broker %d, the leader of %s/%d, does not serve WriteTxnMarkers (API 27), which aborting a transaction from outside needs; nothing was changed. A transaction its coordinator tracks is aborted when its transaction.timeout.ms passes; restarting the producer with the same transactional.id aborts it sooner", target.Leader, target.Topic, target.Partition)
		}
	}

	markers := make(kadm.TopicsSet)
	markers.Add(target.Topic, target.Partition)
	resps, err := adm.WriteTxnMarkers(ctx, kadm.TxnMarkers{
		ProducerID: target.ProducerID, ProducerEpoch: target.ProducerEpoch,
		CoordinatorEpoch: target.CoordinatorEpoch, Commit: false, Topics: markers,
	})
	if err != nil {
		return o.explain(fmt.Errorf("write ABORT marker: %w", err), target.Topic)
	}
	r, ok := resps[target.ProducerID].Topics[target.Topic].Partitions[target.Partition]
	if !ok {
		return fmt.Errorf("write ABORT marker to %s/%d: missing from the broker's response", target.Topic, target.Partition)
	}
	if r.Err != nil {
		return o.explain(fmt.Errorf("write ABORT marker for producer %d epoch %d to %s/%d: %w", target.ProducerID, target.ProducerEpoch, target.Topic, target.Partition, r.Err), target.Topic)
	}
	if o.json() {
		return writeJSON(out, target)
	}
	_, err = fmt.Fprintf(out, "aborted the transaction of producer %d (epoch %d) on %s/%d\n", target.ProducerID, target.ProducerEpoch, target.Topic, target.Partition)
	return err
}
