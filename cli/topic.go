package cli

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func newTopicCmd() *cobra.Command {
	o := &clientOptions{}
	cmd := newParentCmd("topic", "Create, list, describe, configure and delete topics",
		`Manage topics on any Kafka-compatible broker (oncelog, Kafka, Redpanda).

Every subcommand takes --brokers (default `+defaultBrokers+`, or $`+brokersEnv+`)
and --output json for scripts.`)
	o.addClientFlags(cmd.PersistentFlags())
	cmd.AddCommand(
		newTopicCreateCmd(o),
		newTopicListCmd(o),
		newTopicDescribeCmd(o),
		newTopicDeleteCmd(o),
		newTopicAlterConfigCmd(o),
		newTopicAddPartitionsCmd(o),
	)
	return cmd
}

func newTopicCreateCmd(o *clientOptions) *cobra.Command {
	var (
		partitions  int32
		replicas    int16
		configs     []string
		ifNotExists bool
	)
	cmd := &cobra.Command{
		Use:   "create <name>",
		Short: "Create a topic",
		Long: `Create a topic. Without -p the broker's default partition count applies
(oncelog: serve --default-partitions). Topic settings use Kafka's names
(retention.ms, segment.bytes, cleanup.policy, ...).`,
		Example: `  oncelog topic create orders -p 6
  oncelog topic create audit -c retention.ms=-1 -c segment.bytes=1073741824
  oncelog topic create orders --if-not-exists --output json`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			topicConfigs, err := parseConfigPairs(configs)
			if err != nil {
				return usageErrorf("--config: %v", err)
			}
			if partitions == 0 || partitions < -1 {
				return usageErrorf("--partitions must be positive (or -1 for the broker default), got %d", partitions)
			}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				return runTopicCreate(ctx, o, adm, cmd.OutOrStdout(), args[0], partitions, replicas, topicConfigs, ifNotExists)
			})
		},
	}
	f := cmd.Flags()
	f.Int32VarP(&partitions, "partitions", "p", -1, "number of partitions (-1: broker default)")
	f.Int16VarP(&replicas, "replicas", "r", -1, "replication factor (-1: broker default; oncelog has one replica)")
	f.StringArrayVarP(&configs, "config", "c", nil, "topic setting key=value (repeatable)")
	f.BoolVar(&ifNotExists, "if-not-exists", false, "succeed if the topic already exists")
	return cmd
}

// createdTopic is the --output json result of `topic create`.
type createdTopic struct {
	Topic             string `json:"topic"`
	ID                string `json:"id,omitempty"`
	Partitions        int32  `json:"partitions"`
	ReplicationFactor int16  `json:"replication_factor"`
	AlreadyExisted    bool   `json:"already_existed"`
}

func runTopicCreate(ctx context.Context, o *clientOptions, adm *kadm.Client, out io.Writer, topic string, partitions int32, replicas int16, configs map[string]*string, ifNotExists bool) error {
	resp, err := adm.CreateTopic(ctx, partitions, replicas, configs, topic)
	result := createdTopic{Topic: topic, ID: topicIDString(resp.ID), Partitions: resp.NumPartitions, ReplicationFactor: resp.ReplicationFactor}
	if errors.Is(err, kerr.TopicAlreadyExists) && ifNotExists {
		result.AlreadyExisted = true
		// Report the existing topic's shape rather than the request's.
		if details, lerr := adm.ListTopics(ctx, topic); lerr == nil {
			if d, ok := details[topic]; ok && d.Err == nil {
				result.ID = topicIDString(d.ID)
				result.Partitions = int32(len(d.Partitions))
				result.ReplicationFactor = int16(replicationFactor(d))
			}
		}
	} else if err != nil {
		return o.explain(withMessage(err, resp.ErrMessage), topic)
	}
	if o.json() {
		return writeJSON(out, result)
	}
	if result.AlreadyExisted {
		_, err = fmt.Fprintf(out, "topic %q already exists (%s)\n", topic, counted(result.Partitions, "partition", "partitions"))
		return err
	}
	_, err = fmt.Fprintf(out, "created topic %q (%s, replication factor %d)\n", topic, counted(result.Partitions, "partition", "partitions"), result.ReplicationFactor)
	return err
}

func newTopicListCmd(o *clientOptions) *cobra.Command {
	var internal bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List topics",
		Example: `  oncelog topic list
  oncelog topic list --internal --output json | jq -r '.[].name'`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				return runTopicList(ctx, o, adm, cmd.OutOrStdout(), internal)
			})
		},
	}
	cmd.Flags().BoolVar(&internal, "internal", false, "include internal topics such as __consumer_offsets")
	return cmd
}

// listedTopic is one element of the --output json result of `topic list`.
type listedTopic struct {
	Name              string `json:"name"`
	ID                string `json:"id,omitempty"`
	Partitions        int    `json:"partitions"`
	ReplicationFactor int    `json:"replication_factor"`
	Internal          bool   `json:"internal"`
	Error             string `json:"error,omitempty"`
}

func runTopicList(ctx context.Context, o *clientOptions, adm *kadm.Client, out io.Writer, internal bool) error {
	var details kadm.TopicDetails
	var err error
	if internal {
		details, err = adm.ListTopicsWithInternal(ctx)
	} else {
		details, err = adm.ListTopics(ctx)
	}
	if err != nil {
		return o.explain(err, "")
	}
	topics := make([]listedTopic, 0, len(details))
	for _, d := range details.Sorted() {
		topics = append(topics, listedTopic{
			Name:              d.Topic,
			ID:                topicIDString(d.ID),
			Partitions:        len(d.Partitions),
			ReplicationFactor: replicationFactor(d),
			Internal:          d.IsInternal,
			Error:             errorString(d.Err),
		})
	}
	if o.json() {
		return writeJSON(out, topics)
	}
	tw := newTable(out)
	fmt.Fprintln(tw, "NAME\tPARTITIONS\tREPLICAS\tERROR")
	for _, t := range topics {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", t.Name, t.Partitions, t.ReplicationFactor, t.Error)
	}
	return tw.Flush()
}

func newTopicDescribeCmd(o *clientOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "describe <name>",
		Short: "Show a topic's partitions, offsets and settings",
		Long: `Show a topic's partitions with their leader, start offset (oldest record),
end offset (high watermark: the next offset to be written) and last stable
offset (where read_committed consumers stop while a transaction is open), and
every topic setting with where its value comes from.`,
		Example: `  oncelog topic describe orders
  oncelog topic describe orders --output json | jq '.partitions[] | .end_offset - .start_offset'`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				return runTopicDescribe(ctx, o, adm, cmd.OutOrStdout(), args[0])
			})
		},
	}
	return cmd
}

// describedTopic is the --output json result of `topic describe`.
type describedTopic struct {
	Name       string               `json:"name"`
	ID         string               `json:"id,omitempty"`
	Internal   bool                 `json:"internal"`
	Partitions []describedPartition `json:"partitions"`
	Configs    []describedConfig    `json:"configs"`
	// ConfigsError says why Configs is empty when the settings could not be read.
	ConfigsError string `json:"configs_error,omitempty"`
}

type describedPartition struct {
	Partition        int32   `json:"partition"`
	Leader           int32   `json:"leader"`
	LeaderEpoch      int32   `json:"leader_epoch"`
	Replicas         []int32 `json:"replicas"`
	ISR              []int32 `json:"isr"`
	StartOffset      int64   `json:"start_offset"`
	EndOffset        int64   `json:"end_offset"`
	LastStableOffset int64   `json:"last_stable_offset"`
	Error            string  `json:"error,omitempty"`
}

type describedConfig struct {
	Name      string  `json:"name"`
	Value     *string `json:"value"`
	Source    string  `json:"source"`
	Sensitive bool    `json:"sensitive"`
}

func runTopicDescribe(ctx context.Context, o *clientOptions, adm *kadm.Client, out io.Writer, topic string) error {
	details, err := adm.ListTopicsWithInternal(ctx, topic)
	if err != nil {
		return o.explain(err, topic)
	}
	detail, ok := details[topic]
	if !ok {
		return o.explain(kerr.UnknownTopicOrPartition, topic)
	}
	if detail.Err != nil {
		return o.explain(detail.Err, topic)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return o.explain(err, topic)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return o.explain(err, topic)
	}
	stables, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return o.explain(err, topic)
	}
	// Settings are extra: a broker without DescribeConfigs still gets
	// its partitions described.
	configs, configsErr := adm.DescribeTopicConfigs(ctx, topic)

	desc := describedTopic{
		Name:       topic,
		ID:         topicIDString(detail.ID),
		Internal:   detail.IsInternal,
		Partitions: []describedPartition{},
		Configs:    []describedConfig{},
	}
	for _, p := range detail.Partitions.Sorted() {
		dp := describedPartition{
			Partition:   p.Partition,
			Leader:      p.Leader,
			LeaderEpoch: p.LeaderEpoch,
			Replicas:    nonNil(p.Replicas),
			ISR:         nonNil(p.ISR),
			Error:       errorString(p.Err),
		}
		var offsetErr error
		dp.StartOffset, offsetErr = listedOffset(starts, topic, p.Partition, offsetErr)
		dp.EndOffset, offsetErr = listedOffset(ends, topic, p.Partition, offsetErr)
		dp.LastStableOffset, offsetErr = listedOffset(stables, topic, p.Partition, offsetErr)
		if dp.Error == "" && offsetErr != nil {
			dp.Error = offsetErr.Error()
		}
		desc.Partitions = append(desc.Partitions, dp)
	}
	rc, err := configs.On(topic, nil)
	switch {
	case configsErr != nil:
		desc.ConfigsError = configsErr.Error()
	case err != nil:
		desc.ConfigsError = "missing from the broker's response"
	case rc.Err != nil:
		desc.ConfigsError = withMessage(rc.Err, rc.ErrMessage).Error()
	default:
		for _, c := range rc.Configs {
			desc.Configs = append(desc.Configs, describedConfig{Name: c.Key, Value: c.Value, Source: configSourceName(c.Source.String()), Sensitive: c.Sensitive})
		}
		sort.Slice(desc.Configs, func(i, j int) bool { return desc.Configs[i].Name < desc.Configs[j].Name })
	}

	if o.json() {
		return writeJSON(out, desc)
	}
	fmt.Fprintf(out, "NAME        %s\n", desc.Name)
	if desc.ID != "" {
		fmt.Fprintf(out, "ID          %s\n", desc.ID)
	}
	if desc.Internal {
		fmt.Fprintln(out, "INTERNAL    true")
	}
	fmt.Fprintf(out, "PARTITIONS  %d\n\n", len(desc.Partitions))
	tw := newTable(out)
	fmt.Fprintln(tw, "PARTITION\tLEADER\tEPOCH\tREPLICAS\tSTART-OFFSET\tEND-OFFSET\tLAST-STABLE\tERROR")
	for _, p := range desc.Partitions {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%v\t%d\t%d\t%d\t%s\n", p.Partition, p.Leader, p.LeaderEpoch, p.Replicas, p.StartOffset, p.EndOffset, p.LastStableOffset, p.Error)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if desc.ConfigsError != "" {
		_, err := fmt.Fprintf(out, "\nsettings unavailable: %s\n", desc.ConfigsError)
		return err
	}
	if len(desc.Configs) == 0 {
		return nil
	}
	fmt.Fprintln(out)
	tw = newTable(out)
	fmt.Fprintln(tw, "CONFIG\tVALUE\tSOURCE")
	for _, c := range desc.Configs {
		value := "-"
		if c.Value != nil {
			value = *c.Value
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, value, c.Source)
	}
	return tw.Flush()
}

// listedOffset looks up a partition's listed offset, returning -1 and the
// first error seen (prevErr wins) when it could not be listed.
func listedOffset(offsets kadm.ListedOffsets, topic string, partition int32, prevErr error) (int64, error) {
	lo, ok := offsets.Lookup(topic, partition)
	switch {
	case !ok:
		return -1, cmpErr(prevErr, fmt.Errorf("partition %d missing from the offset listing", partition))
	case lo.Err != nil:
		return -1, cmpErr(prevErr, lo.Err)
	}
	return lo.Offset, prevErr
}

func cmpErr(prev, next error) error {
	if prev != nil {
		return prev
	}
	return next
}

// configSourceName shortens kmsg's "DYNAMIC_TOPIC_CONFIG" style names to the
// lower-case words rpk and kafka-configs show ("dynamic-topic-config").
func configSourceName(s string) string {
	return strings.ReplaceAll(strings.ToLower(s), "_", "-")
}

func newTopicDeleteCmd(o *clientOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete <name>...",
		Short: "Delete topics and all their records",
		Long: `Delete one or more topics with all their records. There is no undo.
Exits 1 if any topic could not be deleted; the others are still deleted.`,
		Example: `  oncelog topic delete orders
  oncelog topic delete scratch-1 scratch-2 --output json`,
		Args: usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				return runTopicDelete(ctx, o, adm, cmd.OutOrStdout(), args)
			})
		},
	}
	return cmd
}

// deletedTopic is one element of the --output json result of `topic delete`.
type deletedTopic struct {
	Topic string `json:"topic"`
	Error string `json:"error,omitempty"`
}

func runTopicDelete(ctx context.Context, o *clientOptions, adm *kadm.Client, out io.Writer, topics []string) error {
	resps, err := adm.DeleteTopics(ctx, topics...)
	if err != nil {
		return o.explain(err, "")
	}
	return reportDeletions(o, out, "topic", topics, func(topic string) error {
		r, ok := resps[topic]
		switch {
		case !ok:
			return errors.New("missing from the broker's response")
		case errors.Is(r.Err, kerr.UnknownTopicOrPartition):
			return errors.New("topic does not exist")
		case r.Err != nil:
			return o.explain(withMessage(r.Err, r.ErrMessage), "")
		}
		return nil
	}, func(topic, errText string) deletedTopic { return deletedTopic{Topic: topic, Error: errText} })
}

func newTopicAlterConfigCmd(o *clientOptions) *cobra.Command {
	var sets, deletes []string
	cmd := &cobra.Command{
		Use:   "alter-config <name> [--set key=value]... [--delete key]...",
		Short: "Change or reset topic settings",
		Long: `Change topic settings incrementally (IncrementalAlterConfigs): --set gives a
setting a value, --delete returns it to the broker default. Settings not named
are left as they are.`,
		Example: `  oncelog topic alter-config orders --set retention.ms=604800000
  oncelog topic alter-config orders --set cleanup.policy=delete --delete segment.bytes`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			alters, err := buildAlterConfigs(sets, deletes)
			if err != nil {
				return usageErrorf("%v", err)
			}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				return runTopicAlterConfig(ctx, o, adm, cmd.OutOrStdout(), args[0], alters)
			})
		},
	}
	cmd.Flags().StringArrayVar(&sets, "set", nil, "set key=value (repeatable)")
	cmd.Flags().StringArrayVar(&deletes, "delete", nil, "reset key to its default (repeatable)")
	return cmd
}

// buildAlterConfigs turns --set and --delete values into incremental
// alterations, refusing empty or contradictory requests.
func buildAlterConfigs(sets, deletes []string) ([]kadm.AlterConfig, error) {
	if len(sets) == 0 && len(deletes) == 0 {
		return nil, errors.New("nothing to change: give --set key=value or --delete key")
	}
	seen := map[string]bool{}
	var alters []kadm.AlterConfig
	for _, s := range sets {
		k, v, err := parseKeyValue(s)
		if err != nil {
			return nil, fmt.Errorf("--set: %w", err)
		}
		if seen[k] {
			return nil, fmt.Errorf("%q is named twice", k)
		}
		seen[k] = true
		alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: &v})
	}
	for _, k := range deletes {
		k = strings.TrimSpace(k)
		if k == "" {
			return nil, errors.New("--delete needs a setting name")
		}
		if seen[k] {
			return nil, fmt.Errorf("%q is named twice", k)
		}
		seen[k] = true
		alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
	}
	return alters, nil
}

// alteredTopic is the --output json result of `topic alter-config`.
type alteredTopic struct {
	Topic   string            `json:"topic"`
	Set     map[string]string `json:"set"`
	Deleted []string          `json:"deleted"`
}

func runTopicAlterConfig(ctx context.Context, o *clientOptions, adm *kadm.Client, out io.Writer, topic string, alters []kadm.AlterConfig) error {
	resps, err := adm.AlterTopicConfigs(ctx, alters, topic)
	if err != nil {
		return o.explain(err, topic)
	}
	r, err := resps.On(topic, nil)
	if err != nil {
		return fmt.Errorf("alter topic %q: missing from the broker's response", topic)
	}
	if r.Err != nil {
		return o.explain(withMessage(r.Err, r.ErrMessage), topic)
	}
	result := alteredTopic{Topic: topic, Set: map[string]string{}, Deleted: []string{}}
	for _, a := range alters {
		if a.Op == kadm.SetConfig {
			result.Set[a.Name] = *a.Value
		} else {
			result.Deleted = append(result.Deleted, a.Name)
		}
	}
	if o.json() {
		return writeJSON(out, result)
	}
	for _, a := range alters {
		if a.Op == kadm.SetConfig {
			fmt.Fprintf(out, "set %s=%s on topic %q\n", a.Name, *a.Value, topic)
		} else {
			fmt.Fprintf(out, "reset %s to its default on topic %q\n", a.Name, topic)
		}
	}
	return nil
}

// parseKeyValue splits "key=value" at the first '='; the value may be empty
// or contain more '='.
func parseKeyValue(s string) (key, value string, err error) {
	key, value, ok := strings.Cut(s, "=")
	key = strings.TrimSpace(key)
	if !ok || key == "" {
		return "", "", fmt.Errorf("%q is not key=value", s)
	}
	return key, value, nil
}

// parseConfigPairs parses repeated key=value topic settings.
func parseConfigPairs(pairs []string) (map[string]*string, error) {
	configs := make(map[string]*string, len(pairs))
	for _, p := range pairs {
		k, v, err := parseKeyValue(p)
		if err != nil {
			return nil, err
		}
		if _, dup := configs[k]; dup {
			return nil, fmt.Errorf("%q is given twice", k)
		}
		configs[k] = &v
	}
	return configs, nil
}

// replicationFactor is the replica count of a topic's partitions (the
// largest, should they differ).
func replicationFactor(d kadm.TopicDetail) int {
	rf := 0
	for _, p := range d.Partitions {
		rf = max(rf, len(p.Replicas))
	}
	return rf
}

// topicIDString renders a topic ID as Kafka's tools print it (Uuid.toString:
// URL-safe base64 without padding, 22 characters), or "" for brokers that
// have none. kadm's String is standard base64 with padding, which matches
// nothing kafka-topics.sh shows.
func topicIDString(id kadm.TopicID) string {
	if id == (kadm.TopicID{}) {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(id[:])
}

// nonNil keeps JSON arrays as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
