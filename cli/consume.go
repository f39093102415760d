package cli

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

type consumeOptions struct {
	clientOptions
	from          string
	group         string
	readCommitted bool
	format        string
	count         int
	follow        bool
	partitions    []int32
}

func newConsumeCmd() *cobra.Command {
	o := &consumeOptions{}
	cmd := &cobra.Command{
		Use:   "consume <topic>",
		Short: "Print a topic's records",
		Long: `Print a topic's records to stdout.

By default consume reads every partition from the beginning and exits once it
has printed everything that was in the topic when it started (each partition's
end offset at start, or its last stable offset with --read-committed). With
--follow it keeps waiting for new records until -n is reached or Ctrl-C.

--from picks the start: beginning, end, an offset (the same in every
partition), -N (the last N offsets of each partition; a transaction's commit
marker takes an offset too), or @<unix-ms> (the first record at or after that
time). With --group the group's committed
offsets take precedence and --from applies only to partitions without one
(Kafka's auto.offset.reset); the offsets of printed records are committed.

--read-committed hides records of aborted and still-open transactions.

--format:
  text     the value, one record per line (the default)
  json     one JSON object per line: topic, partition, offset, timestamp
           (unix ms), key, value, headers [{key, value}]; null for a missing
           key or value; a key or value that is not UTF-8 is base64 with
           key_encoding/value_encoding "base64"
  a Go template over .Topic .Partition .Offset .Timestamp (time.Time) .Key
           .Value .Headers [{.Key .Value}], with (.Header "name") and the
           functions base64, hex and json; a newline is added unless the
           template ends with one
--output json is the same as --format json.`,
		Example: `  oncelog consume orders
  oncelog consume orders --from end --follow
  oncelog consume orders --from @1717171717000 -n 10 --format json
  oncelog consume orders --group billing --read-committed -f
  oncelog consume orders --format '{{.Partition}}/{{.Offset}} {{.Key}}={{.Value}} trace={{.Header "trace-id"}}'`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			run, err := o.prepare(args[0], cmd.Flags().Changed("format"))
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cl, adm, err := o.admin(ctx)
			if err != nil {
				return err
			}
			defer cl.Close()
			run.stdout, run.stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			return o.explain(run.run(ctx, adm), args[0])
		},
	}
	f := cmd.Flags()
	o.addClientFlags(f)
	f.StringVar(&o.from, "from", "beginning", "start at beginning, end, <offset>, -<N> (last N) or @<unix-ms>")
	f.StringVarP(&o.group, "group", "g", "", "consume as this consumer group and commit offsets")
	f.BoolVar(&o.readCommitted, "read-committed", false, "skip records of aborted and open transactions")
	f.StringVar(&o.format, "format", "text", "text, json or a Go template (see above)")
	f.IntVarP(&o.count, "count", "n", 0, "stop after this many records (0: no limit)")
	f.BoolVarP(&o.follow, "follow", "f", false, "keep waiting for new records instead of exiting at the end")
	f.Int32SliceVarP(&o.partitions, "partition", "p", nil, "only these partitions (comma-separated; not with --group)")
	return cmd
}

// prepare checks the consume flags and builds the run.
func (o *consumeOptions) prepare(topic string, formatSet bool) (*consumeRun, error) {
	start, err := parseStartPosition(o.from)
	if err != nil {
		return nil, usageErrorf("--from: %v", err)
	}
	format := o.format
	if o.json() {
		if formatSet && format != "json" {
			return nil, usageErrorf("--output json prints records as JSON; it cannot be combined with --format %q", format)
		}
		format = "json"
	}
	formatter, err := newRecordFormatter(format)
	if err != nil {
		return nil, usageErrorf("--format: %v", err)
	}
	if o.count < 0 {
		return nil, usageErrorf("-n must not be negative, got %d", o.count)
	}
	if o.group != "" && len(o.partitions) > 0 {
		return nil, usageErrorf("--partition cannot be used with --group: the group assigns partitions")
	}
	for _, p := range o.partitions {
		if p < 0 {
			return nil, usageErrorf("--partition %d: partitions are numbered from 0", p)
		}
	}
	return &consumeRun{
		opts:          &o.clientOptions,
		topic:         topic,
		start:         start,
		group:         o.group,
		readCommitted: o.readCommitted,
		limit:         o.count,
		follow:        o.follow,
		partitions:    o.partitions,
		formatter:     formatter,
	}, nil
}

// startKind says how --from picks the first offset of a partition.
type startKind int

const (
	startBeginning startKind = iota
	startEnd
	startOffset    // an absolute offset
	startTail      // n records before the end
	startTimestamp // the first record at or after n unix ms
)

// startPosition is a parsed --from.
type startPosition struct {
	kind startKind
	n    int64
}

// parseStartPosition parses --from: beginning|end|<offset>|-<N>|@<unix-ms>,
// with Kafka's and rpk's synonyms for the ends.
func parseStartPosition(s string) (startPosition, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "beginning", "start", "earliest", "oldest":
		return startPosition{kind: startBeginning}, nil
	case "end", "latest", "newest":
		return startPosition{kind: startEnd}, nil
	}
	if ts, ok := strings.CutPrefix(s, "@"); ok {
		ms, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || ms < 0 {
			return startPosition{}, fmt.Errorf("%q: after @ give a unix timestamp in milliseconds, e.g. @%d", s, time.Now().UnixMilli())
		}
		return startPosition{kind: startTimestamp, n: ms}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return startPosition{}, fmt.Errorf("%q: use beginning, end, an offset, -N for the last N records, or @<unix-ms>", s)
	}
	if n < 0 {
		return startPosition{kind: startTail, n: -n}, nil
	}
	return startPosition{kind: startOffset, n: n}, nil
}

// resolve returns the first offset to read in a partition whose records span
// [logStart, logEnd); atTime is the listed offset for a timestamp start (-1
// if none). Offsets outside the partition are clamped into it.
func (s startPosition) resolve(logStart, logEnd, atTime int64) int64 {
	var at int64
	switch s.kind {
	case startBeginning:
		at = logStart
	case startEnd:
		at = logEnd
	case startOffset:
		at = s.n
	case startTail:
		at = logEnd - s.n
	case startTimestamp:
		at = atTime
		if at < 0 {
			at = logEnd
		}
	}
	return max(logStart, min(at, logEnd))
}

// resetOffset is the franz-go equivalent, used where a consumer group has no
// committed offset.
func (s startPosition) resetOffset() kgo.Offset {
	switch s.kind {
	case startEnd:
		return kgo.NewOffset().AtEnd()
	case startOffset:
		return kgo.NewOffset().At(s.n)
	case startTail:
		return kgo.NewOffset().AtEnd().Relative(-s.n)
	case startTimestamp:
		return kgo.NewOffset().AfterMilli(s.n)
	}
	return kgo.NewOffset().AtStart()
}

// recordFormatter writes one record.
type recordFormatter func(w io.Writer, r *kgo.Record) error

// newRecordFormatter returns the formatter for --format.
func newRecordFormatter(format string) (recordFormatter, error) {
	switch format {
	case "text":
		return func(w io.Writer, r *kgo.Record) error {
			if _, err := w.Write(r.Value); err != nil {
				return err
			}
			_, err := io.WriteString(w, "\n")
			return err
		}, nil
	case "json":
		return func(w io.Writer, r *kgo.Record) error {
			line, err := json.Marshal(newJSONRecord(r))
			if err != nil {
				return err
			}
			_, err = w.Write(append(line, '\n'))
			return err
		}, nil
	}
	if !strings.Contains(format, "{{") {
		return nil, fmt.Errorf("%q: use text, json or a Go template such as '{{.Key}}={{.Value}}'", format)
	}
	if !strings.HasSuffix(format, "\n") {
		format += "\n"
	}
	tmpl, err := template.New("record").Funcs(templateFuncs).Option("missingkey=error").Parse(format)
	if err != nil {
		return nil, err
	}
	return func(w io.Writer, r *kgo.Record) error {
		return tmpl.Execute(w, newTemplateRecord(r))
	}, nil
}

// templateFuncs are the helpers --format templates may call.
var templateFuncs = template.FuncMap{
	"base64": func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
	"hex":    func(s string) string { return hex.EncodeToString([]byte(s)) },
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}

// jsonRecord is one line of --format json. Field names are a stable interface.
type jsonRecord struct {
	Topic         string       `json:"topic"`
	Partition     int32        `json:"partition"`
	Offset        int64        `json:"offset"`
	Timestamp     int64        `json:"timestamp"`
	Key           *string      `json:"key"`
	KeyEncoding   string       `json:"key_encoding,omitempty"`
	Value         *string      `json:"value"`
	ValueEncoding string       `json:"value_encoding,omitempty"`
	Headers       []jsonHeader `json:"headers"`
}

type jsonHeader struct {
	Key           string  `json:"key"`
	Value         *string `json:"value"`
	ValueEncoding string  `json:"value_encoding,omitempty"`
}

func newJSONRecord(r *kgo.Record) jsonRecord {
	jr := jsonRecord{
		Topic:     r.Topic,
		Partition: r.Partition,
		Offset:    r.Offset,
		Timestamp: r.Timestamp.UnixMilli(),
		Headers:   make([]jsonHeader, 0, len(r.Headers)),
	}
	jr.Key, jr.KeyEncoding = jsonBytes(r.Key)
	jr.Value, jr.ValueEncoding = jsonBytes(r.Value)
	for _, h := range r.Headers {
		jh := jsonHeader{Key: h.Key}
		jh.Value, jh.ValueEncoding = jsonBytes(h.Value)
		jr.Headers = append(jr.Headers, jh)
	}
	return jr
}

// jsonBytes renders bytes as a JSON string without loss: as-is if UTF-8,
// otherwise base64 with the encoding named. nil stays null.
func jsonBytes(b []byte) (*string, string) {
	if b == nil {
		return nil, ""
	}
	if utf8.Valid(b) {
		s := string(b)
		return &s, ""
	}
	s := base64.StdEncoding.EncodeToString(b)
	return &s, "base64"
}

// templateRecord is what a --format template sees.
type templateRecord struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
	Key       string
	Value     string
	Headers   []templateHeader
}

type templateHeader struct {
	Key   string
	Value string
}

func newTemplateRecord(r *kgo.Record) templateRecord {
	tr := templateRecord{
		Topic:     r.Topic,
		Partition: r.Partition,
		Offset:    r.Offset,
		Timestamp: r.Timestamp,
		Key:       string(r.Key),
		Value:     string(r.Value),
		Headers:   make([]templateHeader, 0, len(r.Headers)),
	}
	for _, h := range r.Headers {
		tr.Headers = append(tr.Headers, templateHeader{Key: h.Key, Value: string(h.Value)})
	}
	return tr
}

// Header returns the value of the first header named key, or "".
func (r templateRecord) Header(key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return ""
}

// consumeRun is one `consume` invocation.
type consumeRun struct {
	opts          *clientOptions
	topic         string
	start         startPosition
	group         string
	readCommitted bool
	limit         int  // 0: no limit
	follow        bool // false: stop at the end offsets as of start
	partitions    []int32
	formatter     recordFormatter

	stdout, stderr io.Writer
}

// endTracker knows, per partition, the offset to stop at and how far the
// consumer got, and so when a non-following consume is finished.
type endTracker struct {
	mu        sync.Mutex
	ends      map[int32]int64 // stop offset: end offset (or LSO) at start
	positions map[int32]int64 // next offset the consumer will see
	// assigned holds the group's assignment to this consumer; nil when
	// consuming partitions directly (all partitions in positions).
	assigned map[int32]bool
	onDone   func() // called once when done turns true outside the poll loop
}

// past reports whether offset lies at or beyond the partition's end.
func (t *endTracker) past(partition int32, offset int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	end, ok := t.ends[partition]
	return !ok || offset >= end
}

// advance records that the consumer has seen offset in partition.
func (t *endTracker) advance(partition int32, offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.positions[partition] = max(t.positions[partition], offset+1)
}

// done reports whether every partition the consumer reads has reached its end.
func (t *endTracker) done() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.doneLocked()
}

func (t *endTracker) doneLocked() bool {
	if t.assigned == nil {
		for p, pos := range t.positions {
			if pos < t.ends[p] {
				return false
			}
		}
		return true
	}
	if len(t.assigned) == 0 {
		return false // not yet part of the group
	}
	for p := range t.assigned {
		if end, ok := t.ends[p]; ok && t.positions[p] < end {
			return false
		}
	}
	return true
}

// assign updates the group assignment.
func (t *endTracker) assign(partitions []int32, add bool) {
	t.mu.Lock()
	for _, p := range partitions {
		if add {
			t.assigned[p] = true
		} else {
			delete(t.assigned, p)
		}
	}
	done := t.doneLocked()
	t.mu.Unlock()
	if done && t.onDone != nil {
		t.onDone()
	}
}

func (c *consumeRun) run(ctx context.Context, adm *kadm.Client) error {
	details, err := adm.ListTopics(ctx, c.topic)
	if err != nil {
		return err
	}
	detail, ok := details[c.topic]
	if !ok {
		return kerr.UnknownTopicOrPartition
	}
	if detail.Err != nil {
		return detail.Err
	}
	partitions := detail.Partitions.Numbers()
	if len(c.partitions) > 0 {
		for _, p := range c.partitions {
			if !slices.Contains(partitions, p) {
				return usageErrorf("--partition %d: topic %q has partitions 0 to %d", p, c.topic, len(partitions)-1)
			}
		}
		partitions = c.partitions
	}

	tracker, err := c.startState(ctx, adm, partitions)
	if err != nil {
		return err
	}
	pollCtx, cancelPoll := context.WithCancel(ctx)
	defer cancelPoll()
	if !c.follow {
		// A group assignment can finish the consume while PollRecords
		// waits: wake it.
		tracker.onDone = cancelPoll
	}

	opts := []kgo.Opt{
		// Control records (transaction markers) are not printed but
		// move the position past them, so a partition whose last
		// offsets are markers still reaches its end offset.
		kgo.KeepControlRecords(),
	}
	if c.readCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	if c.group != "" {
		onAssigned := func(_ context.Context, _ *kgo.Client, m map[string][]int32) { tracker.assign(m[c.topic], true) }
		onRevoked := func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
			// A custom callback replaces franz-go's commit on revoke:
			// commit what was printed before another member takes over.
			if err := cl.CommitMarkedOffsets(ctx); err != nil {
				fmt.Fprintf(c.stderr, "warning: commit offsets of group %q on rebalance: %v\n", c.group, err)
			}
			tracker.assign(m[c.topic], false)
		}
		onLost := func(_ context.Context, _ *kgo.Client, m map[string][]int32) { tracker.assign(m[c.topic], false) }
		opts = append(opts,
			kgo.ConsumerGroup(c.group),
			kgo.ConsumeTopics(c.topic),
			kgo.ConsumeResetOffset(c.start.resetOffset()),
			// Commit only what was printed, not everything polled.
			kgo.AutoCommitMarks(),
			kgo.OnPartitionsAssigned(onAssigned),
			kgo.OnPartitionsRevoked(onRevoked),
			kgo.OnPartitionsLost(onLost),
		)
	} else {
		consume := map[int32]kgo.Offset{}
		for p, pos := range tracker.positions {
			if c.follow || pos < tracker.ends[p] {
				consume[p] = kgo.NewOffset().At(pos)
			}
		}
		if len(consume) == 0 {
			c.summary(0)
			return nil // nothing to read
		}
		opts = append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{c.topic: consume}))
	}
	if !c.follow && tracker.done() {
		c.summary(0)
		return nil
	}

	cl, err := c.opts.connect(ctx, opts...)
	if err != nil {
		return err
	}
	printed, consumeErr := c.poll(ctx, pollCtx, cl, tracker)
	if c.group != "" {
		// Commit even after Ctrl-C; the records were printed.
		commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.timeout)
		if err := cl.CommitMarkedOffsets(commitCtx); err != nil && consumeErr == nil {
			consumeErr = fmt.Errorf("commit offsets of group %q: %w", c.group, err)
		}
		cancel()
	}
	cl.Close()
	if consumeErr != nil {
		return consumeErr
	}
	c.summary(printed)
	return nil
}

// startState lists the partitions' offsets and works out where reading starts
// and ends.
func (c *consumeRun) startState(ctx context.Context, adm *kadm.Client, partitions []int32) (*endTracker, error) {
	starts, err := adm.ListStartOffsets(ctx, c.topic)
	if err != nil {
		return nil, err
	}
	// read_committed consumers cannot read past the last stable offset.
	var ends kadm.ListedOffsets
	if c.readCommitted {
		ends, err = adm.ListCommittedOffsets(ctx, c.topic)
	} else {
		ends, err = adm.ListEndOffsets(ctx, c.topic)
	}
	if err != nil {
		return nil, err
	}
	var atTimes kadm.ListedOffsets
	if c.start.kind == startTimestamp {
		if atTimes, err = adm.ListOffsetsAfterMilli(ctx, c.start.n, c.topic); err != nil {
			return nil, err
		}
	}
	var committed kadm.OffsetResponses
	if c.group != "" {
		// A group that does not exist yet has no commits; some brokers
		// say so with GROUP_ID_NOT_FOUND.
		committed, err = adm.FetchOffsetsForTopics(ctx, c.group, c.topic)
		if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
			return nil, fmt.Errorf("fetch committed offsets of group %q: %w", c.group, err)
		}
	}

	t := &endTracker{ends: map[int32]int64{}, positions: map[int32]int64{}}
	if c.group != "" {
		t.assigned = map[int32]bool{}
	}
	for _, p := range partitions {
		logStart, err := listedOffset(starts, c.topic, p, nil)
		if err != nil {
			return nil, fmt.Errorf("start offset of partition %d: %w", p, err)
		}
		logEnd, err := listedOffset(ends, c.topic, p, nil)
		if err != nil {
			return nil, fmt.Errorf("end offset of partition %d: %w", p, err)
		}
		atTime := int64(-1)
		if lo, ok := atTimes.Lookup(c.topic, p); ok && lo.Err == nil {
			atTime = lo.Offset
		}
		t.ends[p] = logEnd
		t.positions[p] = c.start.resolve(logStart, logEnd, atTime)
		if o, ok := committed.Lookup(c.topic, p); ok && o.Err == nil && o.At >= 0 {
			t.positions[p] = o.At
		}
	}
	return t, nil
}

// poll prints records until the limit, the end (unless following) or ctx ends.
func (c *consumeRun) poll(ctx, pollCtx context.Context, cl *kgo.Client, tracker *endTracker) (printed int, err error) {
	// Buffer output (a write per record is a syscall per record) and
	// flush after every poll, so that --follow shows records promptly.
	out := bufio.NewWriterSize(c.stdout, 64<<10)
	defer func() {
		if ferr := out.Flush(); ferr != nil && err == nil {
			err = fmt.Errorf("write output: %w", ferr)
		}
	}()
	for c.follow || !tracker.done() {
		if err := out.Flush(); err != nil {
			return printed, fmt.Errorf("write output: %w", err)
		}
		want := 0
		if c.limit > 0 {
			want = c.limit - printed
		}
		fetches := cl.PollRecords(pollCtx, want)
		if ctx.Err() != nil {
			return printed, nil // Ctrl-C: a normal way to stop
		}
		for _, fe := range fetches.Errors() {
			var lost *kgo.ErrDataLoss
			switch {
			case errors.Is(fe.Err, context.Canceled) && pollCtx.Err() != nil:
				// The assignment made us done while polling.
			case errors.As(fe.Err, &lost):
				fmt.Fprintf(c.stderr, "warning: %v\n", fe.Err)
			default:
				return printed, fmt.Errorf("partition %d: %w", fe.Partition, fe.Err)
			}
		}
		for r := range fetches.RecordsAll() {
			if !c.follow && tracker.past(r.Partition, r.Offset) {
				continue // written after we started
			}
			tracker.advance(r.Partition, r.Offset)
			if c.group != "" {
				cl.MarkCommitRecords(r)
			}
			if r.Attrs.IsControl() {
				continue
			}
			if err := c.formatter(out, r); err != nil {
				return printed, fmt.Errorf("print record %d/%d: %w", r.Partition, r.Offset, err)
			}
			printed++
			if c.limit > 0 && printed >= c.limit {
				return printed, nil
			}
		}
		if pollCtx.Err() != nil && ctx.Err() == nil && !c.follow {
			return printed, nil
		}
	}
	return printed, nil
}

// summary tells a person at a terminal how much was read.
func (c *consumeRun) summary(printed int) {
	if isTerminal(c.stderr) {
		fmt.Fprintf(c.stderr, "consumed %s from %q\n", counted(printed, "record", "records"), c.topic)
	}
}

// sortedKeys returns a map's keys in order.
func sortedKeys[K interface{ ~int32 | ~string }, V any](m map[K]V) []K {
	return slices.Sorted(maps.Keys(m))
}
