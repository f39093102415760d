package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func newGroupCmd() *cobra.Command {
	o := &clientOptions{}
	cmd := newParentCmd("group", "List, describe, reset and delete consumer groups",
		`Inspect consumer groups and move their committed offsets, on any
Kafka-compatible broker.

Every subcommand takes --brokers (default `+defaultBrokers+`, or $`+brokersEnv+`)
and --output json for scripts.`)
	o.addClientFlags(cmd.PersistentFlags())
	cmd.AddCommand(
		newGroupListCmd(o),
		newGroupDescribeCmd(o),
		newGroupResetOffsetsCmd(o),
		newGroupDeleteCmd(o),
	)
	return cmd
}

func newGroupListCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List consumer groups",
		Example: `  oncelog group list
  oncelog group list --output json | jq -r '.[] | select(.state == "Empty") | .group'`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				return runGroupList(ctx, o, adm, cmd.OutOrStdout())
			})
		},
	}
}

// listedGroup is one element of the --output json result of `group list`.
type listedGroup struct {
	Group        string `json:"group"`
	State        string `json:"state"`
	ProtocolType string `json:"protocol_type"`
	Coordinator  int32  `json:"coordinator"`
}

func runGroupList(ctx context.Context, o *clientOptions, adm *kadm.Client, out io.Writer) error {
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		return o.explain(err, "")
	}
	groups := make([]listedGroup, 0, len(listed))
	for _, g := range listed.Sorted() {
		groups = append(groups, listedGroup{Group: g.Group, State: g.State, ProtocolType: g.ProtocolType, Coordinator: g.Coordinator})
	}
	if o.json() {
		return writeJSON(out, groups)
	}
	tw := newTable(out)
	fmt.Fprintln(tw, "GROUP\tSTATE\tPROTOCOL-TYPE\tCOORDINATOR")
	for _, g := range groups {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", g.Group, g.State, g.ProtocolType, g.Coordinator)
	}
	return tw.Flush()
}

func newGroupDescribeCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "describe <group>",
		Short: "Show a group's members, assignments, committed offsets and lag",
		Long: `Show a consumer group's state and members with their assigned partitions, and
for every partition the group consumes or has committed: the committed offset,
the partition's start and end offsets and the lag (end offset minus committed
offset; from the start offset when nothing is committed).`,
		Example: `  oncelog group describe billing
  oncelog group describe billing --output json | jq .total_lag`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				return runGroupDescribe(ctx, o, adm, cmd.OutOrStdout(), args[0])
			})
		},
	}
}

// describedGroup is the --output json result of `group describe`.
type describedGroup struct {
	Group        string        `json:"group"`
	State        string        `json:"state"`
	ProtocolType string        `json:"protocol_type"`
	Protocol     string        `json:"protocol"`
	Coordinator  int32         `json:"coordinator"`
	Members      []groupMember `json:"members"`
	Offsets      []groupOffset `json:"offsets"`
	TotalLag     int64         `json:"total_lag"`
}

type groupMember struct {
	MemberID    string             `json:"member_id"`
	InstanceID  *string            `json:"instance_id"`
	ClientID    string             `json:"client_id"`
	ClientHost  string             `json:"client_host"`
	Assignments []memberAssignment `json:"assignments"`
}

type memberAssignment struct {
	Topic      string  `json:"topic"`
	Partitions []int32 `json:"partitions"`
}

type groupOffset struct {
	Topic           string `json:"topic"`
	Partition       int32  `json:"partition"`
	CommittedOffset int64  `json:"committed_offset"` // -1: none
	StartOffset     int64  `json:"start_offset"`
	EndOffset       int64  `json:"end_offset"`
	Lag             int64  `json:"lag"` // -1: unknown, see error
	MemberID        string `json:"member_id,omitempty"`
	ClientID        string `json:"client_id,omitempty"`
	Error           string `json:"error,omitempty"`
}

// errNoSuchGroup explains a group the broker does not know.
func errNoSuchGroup(group string) error {
	return fmt.Errorf("consumer group %q does not exist: a group appears when a consumer joins it or commits, e.g. `oncelog consume <topic> --group %s`", group, group)
}

func runGroupDescribe(ctx context.Context, o *clientOptions, adm *kadm.Client, out io.Writer, group string) error {
	lags, err := adm.Lag(ctx, group)
	if err != nil {
		return o.explain(err, "")
	}
	lag, ok := lags[group]
	if !ok {
		return errNoSuchGroup(group)
	}
	if err := lag.Error(); err != nil {
		if errors.Is(err, kerr.GroupIDNotFound) {
			// Not a classic group: maybe a KIP-848 consumer group.
			desc, found, err := describeConsumerGroup(ctx, o, adm, group)
			if err != nil {
				return err
			}
			if !found {
				return errNoSuchGroup(group)
			}
			return printDescribedGroup(o, out, desc)
		}
		return o.explain(fmt.Errorf("describe group %q: %w", group, err), "")
	}
	desc := describedGroup{
		Group:        lag.Group,
		State:        lag.State,
		ProtocolType: lag.ProtocolType,
		Protocol:     lag.Protocol,
		Coordinator:  lag.Coordinator.NodeID,
		Members:      make([]groupMember, 0, len(lag.Members)),
		Offsets:      []groupOffset{},
	}
	for _, m := range lag.Members {
		gm := groupMember{MemberID: m.MemberID, InstanceID: m.InstanceID, ClientID: m.ClientID, ClientHost: m.ClientHost, Assignments: []memberAssignment{}}
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range a.Topics {
				ps := slices.Clone(t.Partitions)
				slices.Sort(ps)
				gm.Assignments = append(gm.Assignments, memberAssignment{Topic: t.Topic, Partitions: nonNil(ps)})
			}
			sort.Slice(gm.Assignments, func(i, j int) bool { return gm.Assignments[i].Topic < gm.Assignments[j].Topic })
		}
		desc.Members = append(desc.Members, gm)
	}
	for _, l := range lag.Lag.Sorted() {
		gof := groupOffset{
			Topic:           l.Topic,
			Partition:       l.Partition,
			CommittedOffset: l.Commit.At,
			StartOffset:     -1,
			EndOffset:       -1,
			Lag:             l.Lag,
			Error:           errorString(l.Err),
		}
		if l.Start.Err == nil {
			gof.StartOffset = l.Start.Offset
		}
		if l.End.Err == nil {
			gof.EndOffset = l.End.Offset
		}
		if l.Member != nil {
			gof.MemberID, gof.ClientID = l.Member.MemberID, l.Member.ClientID
		}
		if gof.Lag > 0 {
			desc.TotalLag += gof.Lag
		}
		desc.Offsets = append(desc.Offsets, gof)
	}
	if desc.State == "Dead" && len(desc.Members) == 0 && len(desc.Offsets) == 0 {
		return errNoSuchGroup(group)
	}
	return printDescribedGroup(o, out, desc)
}

func printDescribedGroup(o *clientOptions, out io.Writer, desc describedGroup) error {
	if o.json() {
		return writeJSON(out, desc)
	}
	fmt.Fprintf(out, "GROUP        %s\n", desc.Group)
	fmt.Fprintf(out, "STATE        %s\n", desc.State)
	if desc.Protocol != "" {
		fmt.Fprintf(out, "PROTOCOL     %s (%s)\n", desc.ProtocolType, desc.Protocol)
	} else if desc.ProtocolType != "" {
		fmt.Fprintf(out, "PROTOCOL     %s\n", desc.ProtocolType)
	}
	fmt.Fprintf(out, "COORDINATOR  %d\n", desc.Coordinator)
	fmt.Fprintf(out, "MEMBERS      %d\n", len(desc.Members))
	fmt.Fprintf(out, "TOTAL-LAG    %d\n", desc.TotalLag)
	if len(desc.Members) > 0 {
		fmt.Fprintln(out)
		tw := newTable(out)
		fmt.Fprintln(tw, "MEMBER-ID\tCLIENT-ID\tHOST\tASSIGNMENTS")
		for _, m := range desc.Members {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.MemberID, m.ClientID, m.ClientHost, formatAssignments(m.Assignments))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(desc.Offsets) > 0 {
		fmt.Fprintln(out)
		tw := newTable(out)
		fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tSTART\tEND\tLAG\tMEMBER-ID\tERROR")
		for _, g := range desc.Offsets {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", g.Topic, g.Partition,
				offsetOrDash(g.CommittedOffset), offsetOrDash(g.StartOffset), offsetOrDash(g.EndOffset), offsetOrDash(g.Lag), g.MemberID, g.Error)
		}
		return tw.Flush()
	}
	return nil
}

// formatAssignments renders "orders:0,1 audit:3".
func formatAssignments(as []memberAssignment) string {
	parts := make([]string, 0, len(as))
	for _, a := range as {
		ps := make([]string, len(a.Partitions))
		for i, p := range a.Partitions {
			ps[i] = strconv.Itoa(int(p))
		}
		parts = append(parts, a.Topic+":"+strings.Join(ps, ","))
	}
	return strings.Join(parts, " ")
}

// offsetOrDash shows -1 (none, unknown) as "-".
func offsetOrDash(n int64) string {
	if n < 0 {
		return "-"
	}
	return strconv.FormatInt(n, 10)
}

// resetKind says how `group reset-offsets` picks each partition's new offset.
type resetKind int

const (
	resetToEarliest resetKind = iota
	resetToLatest
	resetToOffset   // n: the offset
	resetShiftBy    // n: added to the committed offset
	resetToDatetime // n: unix ms; the first record at or after it
)

// resetTarget is where `group reset-offsets` moves offsets.
type resetTarget struct {
	kind resetKind
	n    int64
}

// partitionPosition is what a reset needs to know about one partition.
type partitionPosition struct {
	logStart, logEnd int64 // the records span [logStart, logEnd)
	committed        int64 // the group's committed offset, -1 for none
	atTime           int64 // for --to-datetime: the listed offset (the end when no record is that late)
}

// newOffset returns the offset to commit for a partition; offsets outside
// it are clamped into it, as Kafka's tool does.
func (t resetTarget) newOffset(p partitionPosition) (int64, error) {
	var at int64
	switch t.kind {
	case resetToEarliest:
		return p.logStart, nil
	case resetToLatest:
		return p.logEnd, nil
	case resetToOffset:
		at = t.n
	case resetShiftBy:
		if p.committed < 0 {
			// As kafka-consumer-groups.sh: a shift needs a starting point.
			return 0, errors.New("nothing committed to shift from: use --to-earliest, --to-latest, --to-offset or --to-datetime")
		}
		at = p.committed + t.n
	case resetToDatetime:
		at = p.atTime
		if at < 0 {
			at = p.logEnd
		}
	}
	return max(p.logStart, min(at, p.logEnd)), nil
}

// resetFlags are the mutually exclusive targets of `group reset-offsets`.
type resetFlags struct {
	earliest, latest bool
	toOffset         int64
	toOffsetSet      bool
	shiftBy          int64
	shiftBySet       bool
	datetime         string // --to-datetime, "" when not given
}

// parseResetTarget picks exactly one of the reset targets.
func parseResetTarget(f resetFlags) (resetTarget, error) {
	n := 0
	var t resetTarget
	if f.earliest {
		n, t = n+1, resetTarget{kind: resetToEarliest}
	}
	if f.latest {
		n, t = n+1, resetTarget{kind: resetToLatest}
	}
	if f.toOffsetSet {
		if f.toOffset < 0 {
			return resetTarget{}, fmt.Errorf("--to-offset must not be negative, got %d", f.toOffset)
		}
		n, t = n+1, resetTarget{kind: resetToOffset, n: f.toOffset}
	}
	if f.shiftBySet {
		n, t = n+1, resetTarget{kind: resetShiftBy, n: f.shiftBy}
	}
	if f.datetime != "" {
		ms, err := parseDatetime(f.datetime, time.Local)
		if err != nil {
			return resetTarget{}, err
		}
		n, t = n+1, resetTarget{kind: resetToDatetime, n: ms}
	}
	if n != 1 {
		return resetTarget{}, errors.New("give exactly one of --to-earliest, --to-latest, --to-offset N, --shift-by N or --to-datetime TIME")
	}
	return t, nil
}

// parseDatetime parses --to-datetime: Kafka's YYYY-MM-DDTHH:mm:SS[.sss]
// with an optional zone (Z, +01:00), in loc (local time, as Kafka's tool)
// when it has none; or @<unix-ms> like consume --from.
func parseDatetime(s string, loc *time.Location) (int64, error) {
	s = strings.TrimSpace(s)
	if ms, ok := strings.CutPrefix(s, "@"); ok {
		n, err := strconv.ParseInt(ms, 10, 64)
		if err == nil && n >= 0 {
			return n, nil
		}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999Z0700"} {
		if ts, err := time.Parse(layout, s); err == nil {
			return ts.UnixMilli(), nil
		}
	}
	if ts, err := time.ParseInLocation("2006-01-02T15:04:05.999999999", s, loc); err == nil {
		return ts.UnixMilli(), nil
	}
	return 0, fmt.Errorf("--to-datetime %q: use YYYY-MM-DDTHH:mm:SS[.sss] with an optional zone (Z, +01:00; local time without one), or @<unix-ms>", s)
}

// parseTopicPartitions parses a --topic value: "orders" (all partitions) or
// "orders:0,2" (those partitions).
func parseTopicPartitions(s string) (topic string, partitions []int32, err error) {
	topic, list, hasList := strings.Cut(s, ":")
	topic = strings.TrimSpace(topic)
	if topic == "" {
		return "", nil, fmt.Errorf("%q: give a topic name, optionally with partitions as topic:0,1", s)
	}
	if !hasList {
		return topic, nil, nil
	}
	for _, field := range strings.Split(list, ",") {
		p, err := strconv.ParseInt(strings.TrimSpace(field), 10, 32)
		if err != nil || p < 0 {
			return "", nil, fmt.Errorf("%q: %q is not a partition number", s, field)
		}
		if !slices.Contains(partitions, int32(p)) {
			partitions = append(partitions, int32(p))
		}
	}
	slices.Sort(partitions)
	return topic, partitions, nil
}

func newGroupResetOffsetsCmd(o *clientOptions) *cobra.Command {
	var (
		topics  []string
		rf      resetFlags
		execute bool
	)
	cmd := &cobra.Command{
		Use:   "reset-offsets <group> --topic <topic>[:<partitions>] (--to-earliest | --to-latest | --to-offset N | --shift-by N | --to-datetime TIME) [--execute]",
		Short: "Move a group's committed offsets (dry run unless --execute)",
		Long: `Move a consumer group's committed offsets, like Kafka's
kafka-consumer-groups.sh --reset-offsets. Without --execute it only prints
the plan: current and new offset per partition. The new offset is chosen per
partition:

  --to-earliest       the partition's start offset
  --to-latest         its end offset (skip everything)
  --to-offset N       offset N
  --shift-by N        the committed offset plus N (negative: back); a
                      partition with nothing committed is an error
  --to-datetime TIME  the first record with a timestamp at or after TIME
                      (YYYY-MM-DDTHH:mm:SS[.sss], zone optional, local time
                      without one; or @<unix-ms>); the end offset when none

Offsets past either end of a partition are clamped to it.

The group must have no active members (state Empty, or not yet existing):
stop its consumers first.`,
		Example: `  oncelog group reset-offsets billing --topic orders --to-earliest
  oncelog group reset-offsets billing --topic orders --to-earliest --execute
  oncelog group reset-offsets billing --topic orders:0,1 --to-offset 1200 --execute
  oncelog group reset-offsets billing --topic orders --shift-by -100 --execute
  oncelog group reset-offsets billing --topic orders --to-datetime 2026-12-01T09:00:00Z --execute`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			rf.toOffsetSet = cmd.Flags().Changed("to-offset")
			rf.shiftBySet = cmd.Flags().Changed("shift-by")
			if cmd.Flags().Changed("to-datetime") && rf.datetime == "" {
				return usageErrorf("--to-datetime is empty")
			}
			target, err := parseResetTarget(rf)
			if err != nil {
				return usageErrorf("%v", err)
			}
			if len(topics) == 0 {
				return usageErrorf("give --topic (repeatable)")
			}
			selection := map[string][]int32{}
			for _, t := range topics {
				topic, ps, err := parseTopicPartitions(t)
				if err != nil {
					return usageErrorf("--topic: %v", err)
				}
				selection[topic] = ps
			}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				return runGroupResetOffsets(ctx, o, adm, cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], selection, target, execute)
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&topics, "topic", nil, "topic to reset, all partitions or topic:0,1 (repeatable)")
	f.BoolVar(&rf.earliest, "to-earliest", false, "reset to each partition's start offset")
	f.BoolVar(&rf.latest, "to-latest", false, "reset to each partition's end offset (skip everything)")
	f.Int64Var(&rf.toOffset, "to-offset", 0, "reset to this offset")
	f.Int64Var(&rf.shiftBy, "shift-by", 0, "move each committed offset by N (negative: back)")
	f.StringVar(&rf.datetime, "to-datetime", "", "reset to the first record at or after this time: YYYY-MM-DDTHH:mm:SS[.sss][zone] or @<unix-ms>")
	f.BoolVar(&execute, "execute", false, "commit the new offsets (default: only show them)")
	return cmd
}

// offsetReset is the --output json result of `group reset-offsets`.
type offsetReset struct {
	Group    string        `json:"group"`
	Executed bool          `json:"executed"`
	Offsets  []resetOffset `json:"offsets"`
}

type resetOffset struct {
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	CurrentOffset int64  `json:"current_offset"` // -1: none committed
	NewOffset     int64  `json:"new_offset"`
	Error         string `json:"error,omitempty"`
}

func runGroupResetOffsets(ctx context.Context, o *clientOptions, adm *kadm.Client, out, errOut io.Writer, group string, selection map[string][]int32, target resetTarget, execute bool) error {
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return o.explain(err, "")
	}
	if d, ok := described[group]; ok {
		if d.Err != nil && !errors.Is(d.Err, kerr.GroupIDNotFound) {
			return o.explain(fmt.Errorf("describe group %q: %w", group, d.Err), "")
		}
		if d.Err == nil && d.State != "Empty" && d.State != "Dead" && d.State != "" {
			return fmt.Errorf("group %q is %s with %s: stop its consumers first, offsets can only be reset while the group is empty", group, d.State, counted(len(d.Members), "member", "members"))
		}
	}
	if d, ok := described[group]; ok && errors.Is(d.Err, kerr.GroupIDNotFound) {
		// A KIP-848 consumer group is not a classic group.
		if cd, found, err := describeConsumerGroup(ctx, o, adm, group); err != nil {
			return err
		} else if found && cd.State != "Empty" && cd.State != "Dead" {
			return fmt.Errorf("group %q is %s with %s: stop its consumers first, offsets can only be reset while the group is empty", group, cd.State, counted(len(cd.Members), "member", "members"))
		}
	}

	topics := sortedKeys(selection)
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return o.explain(err, "")
	}
	for _, t := range topics {
		d, ok := details[t]
		if !ok {
			return o.explain(kerr.UnknownTopicOrPartition, t)
		}
		if d.Err != nil {
			return o.explain(d.Err, t)
		}
		for _, p := range selection[t] {
			if _, ok := d.Partitions[p]; !ok {
				return usageErrorf("--topic %s:%d: topic %q has partitions 0 to %d", t, p, t, len(d.Partitions)-1)
			}
		}
		if len(selection[t]) == 0 {
			selection[t] = d.Partitions.Numbers()
		}
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return o.explain(err, "")
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return o.explain(err, "")
	}
	current, err := adm.FetchOffsetsForTopics(ctx, group, topics...)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return o.explain(fmt.Errorf("fetch committed offsets of group %q: %w", group, err), "")
	}

	var atTime kadm.ListedOffsets
	if target.kind == resetToDatetime {
		if atTime, err = adm.ListOffsetsAfterMilli(ctx, target.n, topics...); err != nil {
			return o.explain(err, "")
		}
	}

	result := offsetReset{Group: group, Offsets: []resetOffset{}}
	commit := kadm.Offsets{}
	// Partitions without a new offset: nothing is committed then, like
	// kafka-consumer-groups.sh, which refuses the whole reset.
	var unplanned []error
	for _, t := range topics {
		for _, p := range selection[t] {
			logStart, err := listedOffset(starts, t, p, nil)
			if err != nil {
				return o.explain(fmt.Errorf("start offset of %s/%d: %w", t, p, err), t)
			}
			logEnd, err := listedOffset(ends, t, p, nil)
			if err != nil {
				return o.explain(fmt.Errorf("end offset of %s/%d: %w", t, p, err), t)
			}
			pos := partitionPosition{logStart: logStart, logEnd: logEnd, committed: -1, atTime: -1}
			if c, ok := current.Lookup(t, p); ok && c.Err == nil {
				pos.committed = c.At
			}
			if target.kind == resetToDatetime {
				if pos.atTime, err = listedOffset(atTime, t, p, nil); err != nil {
					return o.explain(fmt.Errorf("offset of %s/%d at %s: %w", t, p, formatMillis(target.n), err), t)
				}
			}
			ro := resetOffset{Topic: t, Partition: p, CurrentOffset: pos.committed}
			if ro.NewOffset, err = target.newOffset(pos); err != nil {
				ro.NewOffset = -1
				ro.Error = err.Error()
				unplanned = append(unplanned, fmt.Errorf("%s/%d: %w", t, p, err))
			} else {
				commit.AddOffset(t, p, ro.NewOffset, -1)
			}
			result.Offsets = append(result.Offsets, ro)
		}
	}

	var failed []error
	if len(unplanned) > 0 {
		execute = false
		failed = append(failed, fmt.Errorf("no new offset for %d partition(s), nothing was committed: %w", len(unplanned), errors.Join(unplanned...)))
	}
	if execute {
		resps, err := adm.CommitOffsets(ctx, group, commit)
		if err != nil {
			return o.explain(fmt.Errorf("commit offsets of group %q: %w", group, err), "")
		}
		result.Executed = true
		for i, ro := range result.Offsets {
			r, ok := resps.Lookup(ro.Topic, ro.Partition)
			var perr error
			switch {
			case !ok:
				perr = errors.New("missing from the broker's response")
			case r.Err != nil:
				perr = r.Err
			}
			if perr != nil {
				result.Offsets[i].Error = perr.Error()
				failed = append(failed, fmt.Errorf("commit %s/%d: %w", ro.Topic, ro.Partition, perr))
			}
		}
		if joined := errors.Join(failed...); errors.Is(joined, kerr.UnknownMemberID) || errors.Is(joined, kerr.RebalanceInProgress) {
			failed = append(failed, fmt.Errorf("group %q has active members: stop its consumers first", group))
		}
	}

	if o.json() {
		if err := writeJSON(out, result); err != nil {
			return err
		}
	} else {
		tw := newTable(out)
		fmt.Fprintln(tw, "TOPIC\tPARTITION\tCURRENT-OFFSET\tNEW-OFFSET\tERROR")
		for _, ro := range result.Offsets {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", ro.Topic, ro.Partition, offsetOrDash(ro.CurrentOffset), offsetOrDash(ro.NewOffset), ro.Error)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if !execute && len(unplanned) == 0 {
		fmt.Fprintln(errOut, "dry run: nothing was changed; add --execute to commit these offsets")
	}
	return errors.Join(failed...)
}

// describeConsumerGroup describes a KIP-848 consumer group (which the
// classic DescribeGroups answers GROUP_ID_NOT_FOUND for) the same way:
// members with their current assignments, and per partition assigned or
// committed the committed offset, start, end and lag. The protocol shown is
// the group's server-side assignor.
func describeConsumerGroup(ctx context.Context, o *clientOptions, adm *kadm.Client, group string) (describedGroup, bool, error) {
	described, err := adm.DescribeConsumerGroups(ctx, group)
	if err != nil {
		var d describedGroup
		if errors.Is(err, kerr.GroupIDNotFound) || errors.Is(err, kerr.UnsupportedVersion) {
			return d, false, nil
		}
		return d, false, o.explain(fmt.Errorf("describe consumer group %q: %w", group, err), "")
	}
	d, ok := described[group]
	if !ok || errors.Is(d.Err, kerr.GroupIDNotFound) {
		return describedGroup{}, false, nil
	}
	if d.Err != nil {
		return describedGroup{}, false, o.explain(fmt.Errorf("describe consumer group %q: %w", group, d.Err), "")
	}
	desc := describedGroup{
		Group:        d.Group,
		State:        d.State,
		ProtocolType: "consumer",
		Protocol:     d.AssignorName,
		Coordinator:  d.Coordinator.NodeID,
		Members:      make([]groupMember, 0, len(d.Members)),
		Offsets:      []groupOffset{},
	}
	owner := map[string]map[int32]kadm.ConsumerGroupMember{}
	parts := map[string]map[int32]bool{}
	addPart := func(t string, p int32) {
		if parts[t] == nil {
			parts[t] = map[int32]bool{}
		}
		parts[t][p] = true
	}
	for _, m := range d.Members {
		gm := groupMember{MemberID: m.MemberID, InstanceID: m.InstanceID, ClientID: m.ClientID, ClientHost: m.ClientHost, Assignments: []memberAssignment{}}
		for _, t := range sortedKeys(m.Assignment) {
			ps := sortedKeys(m.Assignment[t])
			gm.Assignments = append(gm.Assignments, memberAssignment{Topic: t, Partitions: nonNil(ps)})
			for _, p := range ps {
				if owner[t] == nil {
					owner[t] = map[int32]kadm.ConsumerGroupMember{}
				}
				owner[t][p] = m
				addPart(t, p)
			}
		}
		desc.Members = append(desc.Members, gm)
	}
	commits, err := adm.FetchOffsets(ctx, group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return desc, true, o.explain(fmt.Errorf("fetch committed offsets of group %q: %w", group, err), "")
	}
	for t, ps := range commits {
		for p := range ps {
			addPart(t, p)
		}
	}
	topics := sortedKeys(parts)
	var starts, ends kadm.ListedOffsets
	if len(topics) > 0 {
		if starts, err = adm.ListStartOffsets(ctx, topics...); err != nil {
			return desc, true, o.explain(err, "")
		}
		if ends, err = adm.ListEndOffsets(ctx, topics...); err != nil {
			return desc, true, o.explain(err, "")
		}
	}
	for _, t := range topics {
		for _, p := range sortedKeys(parts[t]) {
			gof := groupOffset{Topic: t, Partition: p, CommittedOffset: -1, StartOffset: -1, EndOffset: -1, Lag: -1}
			if c, ok := commits.Lookup(t, p); ok {
				if c.Err != nil {
					gof.Error = c.Err.Error()
				} else {
					gof.CommittedOffset = c.At
				}
			}
			if s, ok := starts.Lookup(t, p); ok && s.Err == nil {
				gof.StartOffset = s.Offset
			}
			e, ok := ends.Lookup(t, p)
			switch {
			case !ok:
			case e.Err != nil:
				gof.Error = e.Err.Error()
			default:
				gof.EndOffset = e.Offset
			}
			if gof.Error == "" && gof.EndOffset >= 0 {
				from := gof.CommittedOffset
				if from < 0 {
					from = max(gof.StartOffset, 0)
				}
				gof.Lag = max(gof.EndOffset-from, 0)
				desc.TotalLag += gof.Lag
			}
			if m, ok := owner[t][p]; ok {
				gof.MemberID, gof.ClientID = m.MemberID, m.ClientID
			}
			desc.Offsets = append(desc.Offsets, gof)
		}
	}
	return desc, true, nil
}
