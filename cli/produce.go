package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type produceOptions struct {
	clientOptions
	file               string
	key                string
	keyDelimiter       string
	headers            []string
	partition          int32
	transactionalID    string
	transactionTimeout time.Duration
	maxMessageBytes    int32
}

// defaultMaxMessageBytes is the client's limit on one record batch, as the
// Java producer's max.request.size and franz-go's ProducerBatchMaxBytes
// default to (1 MiB): a record needs a larger limit here AND on the topic.
const defaultMaxMessageBytes = 1 << 20

func newProduceCmd() *cobra.Command {
	o := &produceOptions{}
	cmd := &cobra.Command{
		Use:   "produce <topic>",
		Short: "Write records from stdin or a file, one per line",
		Long: `Write one record per input line (the trailing newline, or CRLF, is not part of
the record) to a topic, from stdin or --file.

Records are written with acks=all by an idempotent producer, so the client's
retries never store a record twice. With --transactional-id all records go
into one transaction that is committed at the end of the input, or aborted on
any error or Ctrl-C: read_committed consumers see all of them or none.

Keys: --key gives every record the same key; --key-delimiter splits each line
at the first delimiter into key and value (kcat -K); a line without the
delimiter becomes a record without a key. Records with the same key go to the
same partition unless --partition picks one.

When stderr is a terminal a progress line is shown. At the end a summary
(records, bytes, elapsed time) goes to stderr, or to stdout as JSON with
--output json. Exit codes: 0 all records acknowledged, 1 error, 2 bad usage,
130 interrupted.`,
		Example: `  echo hello | oncelog produce greetings
  oncelog produce orders --file orders.txt --key-delimiter ':'
  printf 'k1\tv1\nk2\tv2\n' | oncelog produce orders -K $'\t' -H source=import
  seq 1000 | oncelog produce numbers --transactional-id import-2024-06 --output json`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			builder, err := o.recordBuilder(args[0], cmd.Flags().Changed("key"))
			if err != nil {
				return err
			}
			in := cmd.InOrStdin()
			if o.file != "" && o.file != "-" {
				f, err := os.Open(o.file)
				if err != nil {
					return fmt.Errorf("open --file: %w", err)
				}
				defer f.Close()
				in = f
			} else if isTerminal(in) {
				fmt.Fprintln(cmd.ErrOrStderr(), "reading records from stdin, one per line; end with Ctrl-D")
			}

			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cl, err := o.connect(ctx, o.producerOpts()...)
			if err != nil {
				return err
			}
			defer cl.Close()
			run := produceRun{
				client:          cl,
				builder:         builder,
				transactionalID: o.transactionalID,
				progress:        isTerminal(cmd.ErrOrStderr()),
				json:            o.json(),
			}
			err = run.run(ctx, in, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if errors.Is(err, errInterrupted) {
				return &exitError{code: 130, err: err}
			}
			if errors.Is(err, kerr.MessageTooLarge) {
				return fmt.Errorf("a record is too large for --max-message-bytes (%d bytes) or for the topic's max.message.bytes: raise --max-message-bytes, and the topic's limit with `oncelog topic alter-config %s -c max.message.bytes=N` if the broker refused it (%w)",
					o.maxMessageBytes, args[0], err)
			}
			return o.explain(err, args[0])
		},
	}
	f := cmd.Flags()
	o.addClientFlags(f)
	f.StringVar(&o.file, "file", "", "read records from this file instead of stdin (- for stdin)")
	f.StringVarP(&o.key, "key", "k", "", "key for every record")
	f.StringVarP(&o.keyDelimiter, "key-delimiter", "K", "", "split each line at the first occurrence into key and value")
	f.StringArrayVarP(&o.headers, "header", "H", nil, "record header key=value (repeatable)")
	f.Int32VarP(&o.partition, "partition", "p", -1, "write every record to this partition (-1: by key, or spread)")
	f.StringVar(&o.transactionalID, "transactional-id", "", "write all records in one transaction with this id")
	f.DurationVar(&o.transactionTimeout, "transaction-timeout", time.Minute, "abort the transaction if the input takes longer than this (with --transactional-id)")
	f.Int32Var(&o.maxMessageBytes, "max-message-bytes", defaultMaxMessageBytes, "largest record batch the client sends, in bytes (max.request.size); the topic's max.message.bytes must allow it too")
	return cmd
}

// producerOpts are the franz-go options for the producing client.
func (o *produceOptions) producerOpts() []kgo.Opt {
	opts := []kgo.Opt{
		// franz-go's defaults already are idempotent with acks=all; say so
		// explicitly because this command promises it.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(o.timeout),
		// Like Kafka's console producer: a broker that auto-creates
		// topics creates the topic on first write.
		kgo.AllowAutoTopicCreation(),
		kgo.ProducerBatchMaxBytes(o.maxMessageBytes),
	}
	if o.partition >= 0 {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	if o.transactionalID != "" {
		opts = append(opts, kgo.TransactionalID(o.transactionalID), kgo.TransactionTimeout(o.transactionTimeout))
	}
	return opts
}

// recordBuilder checks the record-shaping flags and returns what turns lines
// into records.
func (o *produceOptions) recordBuilder(topic string, keySet bool) (*recordBuilder, error) {
	if keySet && o.keyDelimiter != "" {
		return nil, usageErrorf("--key and --key-delimiter exclude each other: one fixed key, or a key per line")
	}
	if o.partition < -1 {
		return nil, usageErrorf("--partition must be a partition number (or -1), got %d", o.partition)
	}
	if o.transactionTimeout <= 0 {
		return nil, usageErrorf("--transaction-timeout must be positive, got %s", o.transactionTimeout)
	}
	if o.maxMessageBytes < 1024 {
		return nil, usageErrorf("--max-message-bytes must be at least 1024, got %d", o.maxMessageBytes)
	}
	headers, err := parseHeaders(o.headers)
	if err != nil {
		return nil, usageErrorf("--header: %v", err)
	}
	b := &recordBuilder{topic: topic, headers: headers, partition: o.partition, keyDelimiter: []byte(o.keyDelimiter)}
	if keySet {
		b.key = []byte(o.key)
	}
	return b, nil
}

// parseHeaders parses repeated key=value record headers, keeping their order
// and allowing a key to repeat (Kafka headers are a list, not a map).
func parseHeaders(pairs []string) ([]kgo.RecordHeader, error) {
	headers := make([]kgo.RecordHeader, 0, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", p)
		}
		headers = append(headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	return headers, nil
}

// recordBuilder turns input lines into records.
type recordBuilder struct {
	topic        string
	key          []byte // fixed key for every record; nil: none
	keyDelimiter []byte // split lines into key and value; empty: don't
	headers      []kgo.RecordHeader
	partition    int32 // -1: let the partitioner choose
}

// build makes the record for one line, which must not include its newline.
// The record keeps line (no copy): give each call its own slice.
func (b *recordBuilder) build(line []byte) *kgo.Record {
	r := &kgo.Record{Topic: b.topic, Key: b.key, Value: line, Headers: b.headers}
	if len(b.keyDelimiter) > 0 {
		if k, v, ok := bytes.Cut(line, b.keyDelimiter); ok {
			r.Key, r.Value = k, v
		}
	}
	if b.partition >= 0 {
		r.Partition = b.partition
	}
	return r
}

// recordBytes is a record's payload size: key, value and headers.
func recordBytes(r *kgo.Record) int64 {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return int64(n)
}

// readLines sends each line of in, without its "\n" or "\r\n", to lines
// until in ends or stop closes, then closes lines and reports a read error
// (not io.EOF) on errc. Lines of any length are allowed.
func readLines(in io.Reader, lines chan<- []byte, stop <-chan struct{}, errc chan<- error) {
	defer close(lines)
	r := bufio.NewReaderSize(in, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && (err == nil || err == io.EOF) {
			line = bytes.TrimSuffix(line, []byte("\n"))
			line = bytes.TrimSuffix(line, []byte("\r"))
			select {
			case lines <- line:
			case <-stop:
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				errc <- err
			}
			return
		}
	}
}

// produceRun writes the records of one `produce` invocation.
type produceRun struct {
	client          *kgo.Client
	builder         *recordBuilder
	transactionalID string // non-empty: the client is transactional
	progress        bool   // show a progress line on stderr
	json            bool   // summary as JSON on stdout
}

// produceSummary is the --output json result of `produce`.
type produceSummary struct {
	Topic            string              `json:"topic"`
	Records          int64               `json:"records"`
	Bytes            int64               `json:"bytes"`
	ElapsedMs        int64               `json:"elapsed_ms"`
	RecordsPerSecond float64             `json:"records_per_second"`
	TransactionalID  string              `json:"transactional_id,omitempty"`
	Partitions       []producedPartition `json:"partitions"`
}

// producedPartition says where a partition's acknowledged records landed.
type producedPartition struct {
	Partition   int32 `json:"partition"`
	Records     int64 `json:"records"`
	FirstOffset int64 `json:"first_offset"`
	LastOffset  int64 `json:"last_offset"`
}

// produceTally counts acknowledgements; promises run on franz-go's goroutines.
type produceTally struct {
	mu         sync.Mutex
	records    int64
	bytes      int64
	partitions map[int32]*producedPartition
	firstErr   error
}

func (t *produceTally) ack(r *kgo.Record, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		if t.firstErr == nil {
			t.firstErr = err
		}
		return
	}
	t.records++
	t.bytes += recordBytes(r)
	p := t.partitions[r.Partition]
	if p == nil {
		p = &producedPartition{Partition: r.Partition, FirstOffset: r.Offset, LastOffset: r.Offset}
		t.partitions[r.Partition] = p
	}
	p.Records++
	p.FirstOffset = min(p.FirstOffset, r.Offset)
	p.LastOffset = max(p.LastOffset, r.Offset)
}

func (t *produceTally) err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.firstErr
}

func (t *produceTally) counts() (records, bytes int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.records, t.bytes
}

func (t *produceTally) summary(topic, txnID string, elapsed time.Duration) produceSummary {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := produceSummary{
		Topic:           topic,
		Records:         t.records,
		Bytes:           t.bytes,
		ElapsedMs:       elapsed.Milliseconds(),
		TransactionalID: txnID,
		Partitions:      make([]producedPartition, 0, len(t.partitions)),
	}
	if secs := elapsed.Seconds(); secs > 0 {
		s.RecordsPerSecond = float64(t.records) / secs
	}
	for _, p := range t.partitions {
		s.Partitions = append(s.Partitions, *p)
	}
	sort.Slice(s.Partitions, func(i, j int) bool { return s.Partitions[i].Partition < s.Partitions[j].Partition })
	return s
}

// errInterrupted marks a produce stopped by Ctrl-C or SIGTERM.
var errInterrupted = errors.New("interrupted")

func (p *produceRun) run(ctx context.Context, in io.Reader, out, errOut io.Writer) error {
	start := time.Now()
	tally := &produceTally{partitions: map[int32]*producedPartition{}}
	stopProgress := func() {}
	if p.progress {
		stopProgress = p.showProgress(errOut, tally, start)
		defer stopProgress()
	}
	if p.transactionalID != "" {
		if err := p.client.BeginTransaction(); err != nil {
			return fmt.Errorf("begin transaction: %w", err)
		}
	}

	missing := p.topicMissing(ctx)
	sendErr := p.send(ctx, in, tally)
	// Flush even after an interrupt so that the summary counts every
	// record that was handed to the client; a short grace period bounds it.
	flushCtx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		flushCtx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
	}
	if err := p.client.Flush(flushCtx); err != nil && sendErr == nil {
		sendErr = err
	}
	if sendErr == nil {
		sendErr = tally.err()
	}

	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if p.transactionalID != "" {
		if sendErr != nil {
			abortErr := p.abort(endCtx)
			return errors.Join(fmt.Errorf("transaction %q aborted, no record of it is visible to read_committed consumers: %w", p.transactionalID, sendErr), abortErr)
		}
		if err := p.client.EndTransaction(endCtx, kgo.TryCommit); err != nil {
			abortErr := p.abort(endCtx)
			return errors.Join(fmt.Errorf("commit transaction %q: %w", p.transactionalID, err), abortErr)
		}
	}

	elapsed := time.Since(start)
	summary := tally.summary(p.builder.topic, p.transactionalID, elapsed)
	if p.progress {
		stopProgress()
		fmt.Fprint(errOut, "\r\033[K")
	}
	if sendErr != nil {
		if p.transactionalID == "" {
			fmt.Fprintf(errOut, "%s written before the error\n", counted(summary.Records, "record was", "records were"))
		}
		if strings.Contains(sendErr.Error(), "invalid record partitioning choice") {
			return fmt.Errorf("--partition %d is not a partition of topic %q (%w)", p.builder.partition, p.builder.topic, sendErr)
		}
		return sendErr
	}
	if missing && summary.Records > 0 {
		// A misspelt topic name silently becomes a new topic on brokers
		// with auto.create.topics.enable; say so where the user looks.
		fmt.Fprintf(errOut, "created topic %q: it did not exist and the broker auto-created it (auto.create.topics.enable) with its default settings\n", summary.Topic)
	}
	if p.json {
		return writeJSON(out, summary)
	}
	txn := ""
	if p.transactionalID != "" {
		txn = fmt.Sprintf(" in committed transaction %q", p.transactionalID)
	}
	fmt.Fprintf(errOut, "produced %s (%s) to %q%s in %s (%.0f records/s, %s/s)\n",
		counted(summary.Records, "record", "records"), formatBytes(summary.Bytes), summary.Topic, txn, elapsed.Round(time.Millisecond),
		summary.RecordsPerSecond, formatBytes(int64(float64(summary.Bytes)/max(elapsed.Seconds(), 1e-9))))
	return nil
}

// send hands every input line to the client until the input ends, a record
// fails or ctx is cancelled.
// topicMissing asks, without creating it, whether the topic exists yet. An
// error answers false: the note it feeds is a courtesy, not a check.
func (p *produceRun) topicMissing(ctx context.Context) bool {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(p.builder.topic)
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = false
	resp, err := req.RequestWith(ctx, p.client)
	if err != nil || len(resp.Topics) != 1 {
		return false
	}
	return resp.Topics[0].ErrorCode == kerr.UnknownTopicOrPartition.Code
}

func (p *produceRun) send(ctx context.Context, in io.Reader, tally *produceTally) error {
	lines := make(chan []byte, 1024)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go readLines(in, lines, stop, readErr)
	for {
		select {
		case <-ctx.Done():
			return errInterrupted
		case line, ok := <-lines:
			if !ok {
				select {
				case err := <-readErr:
					return fmt.Errorf("read input: %w", err)
				default:
					return nil
				}
			}
			// Stop at the first failure: later records would only
			// pile up behind it (and a transaction is aborted anyway).
			if err := tally.err(); err != nil {
				return err
			}
			p.client.Produce(ctx, p.builder.build(line), tally.ack)
		}
	}
}

// abort drops unsent records and aborts the open transaction.
func (p *produceRun) abort(ctx context.Context) error {
	if err := p.client.AbortBufferedRecords(ctx); err != nil {
		return fmt.Errorf("drop unsent records: %w", err)
	}
	if err := p.client.EndTransaction(ctx, kgo.TryAbort); err != nil {
		return fmt.Errorf("abort transaction: %w", err)
	}
	return nil
}

// showProgress redraws a progress line on errOut until the returned func is called.
func (p *produceRun) showProgress(errOut io.Writer, tally *produceTally, start time.Time) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		ticker := time.NewTicker(250 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
				records, bytes := tally.counts()
				secs := max(time.Since(start).Seconds(), 1e-9)
				fmt.Fprintf(errOut, "\r\033[K%s, %s, %.0f records/s, %s/s",
					counted(records, "record", "records"), formatBytes(bytes), float64(records)/secs, formatBytes(int64(float64(bytes)/secs)))
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			<-finished
		})
	}
}

// formatBytes renders a byte count with a binary unit: 512 B, 1.5 KiB, 3.0 MiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
