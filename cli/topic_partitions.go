package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func newTopicAddPartitionsCmd(o *clientOptions) *cobra.Command {
	var add, total int
	cmd := &cobra.Command{
		Use:   "add-partitions <topic> (-p N | --total N)",
		Short: "Add partitions to a topic (partitions can never be removed)",
		Long: `Add partitions to a topic with CreatePartitions: -p N adds N (as rpk topic
add-partitions), --total N grows the topic to N partitions (as
kafka-topics.sh --alter --partitions N). Records already written stay
where they are, so a key may map to another partition from now on: consumers
relying on per-key order see the change. Partitions can never be removed.`,
		Example: `  oncelog topic add-partitions orders -p 2
  oncelog topic add-partitions orders --total 12 --output json`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			byAdd, byTotal := cmd.Flags().Changed("partitions"), cmd.Flags().Changed("total")
			switch {
			case byAdd == byTotal:
				return usageErrorf("give either -p N (partitions to add) or --total N (the new partition count)")
			case byAdd && add <= 0:
				return usageErrorf("-p must be positive, got %d", add)
			case byTotal && total <= 0:
				return usageErrorf("--total must be positive, got %d", total)
			}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				return runTopicAddPartitions(ctx, o, adm, cmd.OutOrStdout(), args[0], add, total)
			})
		},
	}
	cmd.Flags().IntVarP(&add, "partitions", "p", 0, "number of partitions to add")
	cmd.Flags().IntVar(&total, "total", 0, "grow the topic to this many partitions in all")
	return cmd
}

// grownTopic is the --output json result of `topic add-partitions`.
type grownTopic struct {
	Topic      string `json:"topic"`
	Before     int    `json:"partitions_before"`
	Partitions int    `json:"partitions"`
}

// runTopicAddPartitions adds add partitions, or grows to total when add is 0.
func runTopicAddPartitions(ctx context.Context, o *clientOptions, adm *kadm.Client, out io.Writer, topic string, add, total int) error {
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return o.explain(err, topic)
	}
	d, ok := details[topic]
	if !ok {
		return o.explain(kerr.UnknownTopicOrPartition, topic)
	}
	if d.Err != nil {
		return o.explain(d.Err, topic)
	}
	before := len(d.Partitions)
	if add == 0 {
		if total <= before {
			return usageErrorf("--total %d: topic %q already has %s, and partitions can only be added", total, topic, counted(before, "partition", "partitions"))
		}
		add = total - before
	}
	resps, err := adm.CreatePartitions(ctx, add, topic)
	if err != nil {
		return o.explain(err, topic)
	}
	r, ok := resps[topic]
	switch {
	case !ok:
		return errors.New("add partitions: missing from the broker's response")
	case errors.Is(r.Err, kerr.InvalidPartitions):
		return fmt.Errorf("add %s to %q (now %d): %w", counted(add, "partition", "partitions"), topic, before, withMessage(r.Err, r.ErrMessage))
	case r.Err != nil:
		return o.explain(fmt.Errorf("add partitions to %q: %w", topic, withMessage(r.Err, r.ErrMessage)), topic)
	}
	grown := grownTopic{Topic: topic, Before: before, Partitions: before + add}
	if o.json() {
		return writeJSON(out, grown)
	}
	_, err = fmt.Fprintf(out, "topic %q: %d -> %d partitions\n", topic, grown.Before, grown.Partitions)
	return err
}
