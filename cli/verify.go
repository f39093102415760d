package cli

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// verify reads with raw Fetch requests (kmsg) rather than a kgo consumer
// because kgo.Record does not carry a batch's base sequence, and the
// producer-sequence audit needs it. kgo.ProcessFetchPartition still does the
// record work on each raw response (CRC checks, decompression, dropping
// aborted transactions and control records), so only the 61-byte batch
// header is read here.

const (
	// verifyExamples bounds how many duplicated keys, and sequence
	// anomalies per producer, the report lists (all are counted).
	verifyExamples = 5
	// verifyExampleCopies bounds the copies listed per duplicated key.
	verifyExampleCopies = 10
	// verifyFetchBytes is the per-partition fetch size.
	verifyFetchBytes = 4 << 20
)

type verifyOptions struct {
	clientOptions
	key string

	// parsed --key
	keyMode   string // "header", "record-key" or "value"
	keyHeader string
}

func newVerifyCmd() *cobra.Command {
	o := &verifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify <topic>",
		Short: "Audit a topic for duplicate records (exactly-once proof)",
		Long: `Read the whole topic, read_committed, from each partition's start offset to
its last stable offset taken when the command starts, and report:

  - records read and distinct keys;
  - duplicate copies: records whose key was already seen in the topic, in any
    partition, with a few examples and the partition/offset of every copy;
  - per producer id, from the record batch headers, any sequence gap (a
    batch whose first sequence is past the one expected) or repeat (a batch
    re-using sequence numbers already in the log for the same producer,
    epoch and partition: a retried write stored twice).

--key chooses what identifies a record:
  record-key     the record key (the default); records without one are not
                 counted as keyed
  header:NAME    the value of the first header NAME, e.g. header:Idempotency-Key
  value          the whole record value

Works against any Kafka-compatible broker. Exit status: 0 when there are no
duplicates, 1 when there are (duplicate keys or sequence repeats), 2 on usage
or connection errors. Sequence gaps are reported but do not fail the audit:
retention, compaction and the deletion of records make them legitimately.
Memory grows with the number of distinct keys (about 60 bytes each).`,
		Example: `  oncelog verify orders
  oncelog verify payments --key header:Idempotency-Key --output json | jq .duplicate_copies`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return runVerify(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0])
		},
	}
	o.addClientFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.key, "key", "record-key", "what identifies a record: record-key, header:NAME or value")
	return cmd
}

func (o *verifyOptions) validate() error {
	if err := o.clientOptions.validate(); err != nil {
		return err
	}
	switch {
	case o.key == "record-key" || o.key == "value":
		o.keyMode = o.key
	case strings.HasPrefix(o.key, "header:") && len(o.key) > len("header:"):
		o.keyMode, o.keyHeader = "header", strings.TrimPrefix(o.key, "header:")
	default:
		return usageErrorf("--key %q: use record-key, value or header:NAME", o.key)
	}
	return nil
}

// verifyReport is the result of `verify`, also its --output json form.
type verifyReport struct {
	Topic      string `json:"topic"`
	Key        string `json:"key"`
	Partitions int    `json:"partitions"`
	Records    int64  `json:"records"`
	// Unkeyed counts records that carry no key under --key.
	Unkeyed      int64 `json:"unkeyed_records"`
	DistinctKeys int64 `json:"distinct_keys"`
	// DuplicateCopies counts records beyond the first with the same key;
	// DuplicatedKeys counts the keys that have more than one copy.
	DuplicateCopies int64            `json:"duplicate_copies"`
	DuplicatedKeys  int64            `json:"duplicated_keys"`
	Duplicates      []verifyDup      `json:"duplicates"`
	Producers       []verifyProducer `json:"producers"`
	SequenceGaps    int64            `json:"sequence_gaps"`
	SequenceRepeats int64            `json:"sequence_repeats"`
	OK              bool             `json:"ok"`
}

type verifyDup struct {
	Key string `json:"key"`
	// KeyEncoding is "base64" when Key is not UTF-8.
	KeyEncoding string          `json:"key_encoding,omitempty"`
	Copies      int64           `json:"copies"`
	Locations   []verifyLocator `json:"locations"`
}

type verifyLocator struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

type verifyProducer struct {
	ProducerID int64           `json:"producer_id"`
	Batches    int64           `json:"batches"`
	Records    int64           `json:"records"`
	Gaps       int64           `json:"gaps"`
	Repeats    int64           `json:"repeats"`
	Anomalies  []verifyAnomaly `json:"anomalies"`
}

// verifyAnomaly is one sequence gap or repeat in a partition's batches.
type verifyAnomaly struct {
	Kind      string `json:"kind"` // "gap" or "repeat"
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"` // the batch's base offset
	Epoch     int16  `json:"epoch"`
	Expected  int32  `json:"expected_sequence"`
	Got       int32  `json:"first_sequence"`
	Count     int32  `json:"records"`
}

// verifier accumulates what verify has read so far.
type verifier struct {
	o      *verifyOptions
	report verifyReport
	// first maps a key's digest to its first copy; keys are hashed so
	// memory does not grow with key size.
	first map[[16]byte]firstCopy
	// dups holds the listed examples, keyed like first.
	dups map[[16]byte]*verifyDup
	// seqs is the last batch seen per partition and producer id.
	seqs      map[seqKey]seqState
	producers map[int64]*verifyProducer
}

// firstCopy is where a key was first seen and how many copies it has.
type firstCopy struct {
	loc    verifyLocator
	copies uint32
}

type seqKey struct {
	partition int32
	producer  int64
}

type seqState struct {
	epoch   int16
	lastSeq int32
}

func runVerify(ctx context.Context, o *verifyOptions, out, errOut io.Writer, topic string) error {
	cl, adm, err := o.admin(ctx)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer cl.Close()

	// The admin requests (metadata, offsets) share --timeout; the read
	// itself may take as long as the topic needs.
	actx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	details, err := adm.ListTopics(actx, topic)
	if err != nil {
		return &exitError{code: 2, err: o.explain(err, topic)}
	}
	d, ok := details[topic]
	if !ok {
		return &exitError{code: 2, err: o.explain(kerr.UnknownTopicOrPartition, topic)}
	} else if d.Err != nil {
		return &exitError{code: 2, err: o.explain(d.Err, topic)}
	}
	starts, err := adm.ListStartOffsets(actx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return &exitError{code: 2, err: o.explain(err, topic)}
	}
	// read_committed: the end is the last stable offset, so records of a
	// transaction still open at start are neither read nor waited for.
	ends, err := adm.ListCommittedOffsets(actx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return &exitError{code: 2, err: o.explain(err, topic)}
	}
	cancel()

	v := &verifier{
		o:         o,
		report:    verifyReport{Topic: topic, Key: o.key, Partitions: len(d.Partitions), Duplicates: []verifyDup{}, Producers: []verifyProducer{}},
		first:     map[[16]byte]firstCopy{},
		dups:      map[[16]byte]*verifyDup{},
		seqs:      map[seqKey]seqState{},
		producers: map[int64]*verifyProducer{},
	}
	var total int64
	for _, p := range d.Partitions.Numbers() {
		s, _ := starts.Lookup(topic, p)
		e, _ := ends.Lookup(topic, p)
		total += max(0, e.Offset-s.Offset)
	}
	prog := newVerifyProgress(errOut, total)
	for _, p := range d.Partitions.Sorted() {
		s, _ := starts.Lookup(topic, p.Partition)
		e, _ := ends.Lookup(topic, p.Partition)
		if err := v.readPartition(ctx, cl, adm, d, p.Partition, s.Offset, e.Offset, prog); err != nil {
			prog.done()
			return &exitError{code: 2, err: o.explain(err, topic)}
		}
	}
	prog.done()
	v.finish()

	if o.json() {
		if err := writeJSON(out, v.report); err != nil {
			return err
		}
	} else if err := v.writeText(out); err != nil {
		return err
	}
	if !v.report.OK {
		return &exitError{code: 1, err: fmt.Errorf("topic %q is not exactly-once: %s of %s, %s",
			topic, counted(v.report.DuplicateCopies, "duplicate copy", "duplicate copies"), counted(v.report.DuplicatedKeys, "key", "keys"),
			counted(v.report.SequenceRepeats, "sequence repeat", "sequence repeats"))}
	}
	return nil
}

// readPartition fetches [start, end) of one partition from its leader.
func (v *verifier) readPartition(ctx context.Context, cl *kgo.Client, adm *kadm.Client, d kadm.TopicDetail, partition int32, start, end int64, prog *verifyProgress) error {
	leader := d.Partitions[partition].Leader
	offset := start
	retries, empty := 0, 0
	for offset < end {
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxWaitMillis = 500
		req.MinBytes = 1
		req.MaxBytes = verifyFetchBytes
		req.IsolationLevel = 1 // read_committed
		req.SessionEpoch = -1  // no fetch session
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = d.Topic
		rt.TopicID = d.ID // Fetch v13+ names topics by id
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = partition
		rp.CurrentLeaderEpoch = -1
		rp.FetchOffset = offset
		rp.LogStartOffset = -1
		rp.PartitionMaxBytes = verifyFetchBytes
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)

		fctx, cancel := context.WithTimeout(ctx, v.o.timeout)
		resp, err := req.RequestWith(fctx, cl.Broker(int(leader)))
		cancel()
		if err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		var part *kmsg.FetchResponseTopicPartition
		if err == nil {
			if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
				return fmt.Errorf("partition %d: fetch answered %d topics instead of the one asked for", partition, len(resp.Topics))
			}
			part = &resp.Topics[0].Partitions[0]
			err = kerr.ErrorForCode(part.ErrorCode)
		}
		if err != nil {
			// Leadership moved or the broker is briefly busy: look
			// the leader up again, a few times.
			if retries < 5 && (kerr.IsRetriable(err) || errors.Is(err, kerr.NotLeaderForPartition) || errors.Is(err, kerr.FencedLeaderEpoch)) && ctx.Err() == nil {
				retries++
				time.Sleep(time.Duration(retries) * 200 * time.Millisecond)
				if md, merr := adm.ListTopics(ctx, d.Topic); merr == nil {
					if pd, ok := md[d.Topic].Partitions[partition]; ok {
						leader = pd.Leader
					}
				}
				continue
			}
			return fmt.Errorf("fetching partition %d at offset %d: %w", partition, offset, err)
		}
		retries = 0

		v.auditBatches(partition, part.RecordBatches, offset, end)
		fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
			Offset:         offset,
			IsolationLevel: kgo.ReadCommitted(),
			Topic:          d.Topic,
			Partition:      partition,
		}, part, kgo.DefaultDecompressor(), nil)
		if fp.Err != nil {
			return fmt.Errorf("partition %d at offset %d: %w", partition, offset, fp.Err)
		}
		for _, r := range fp.Records {
			if r.Offset >= end {
				break
			}
			v.record(r)
		}
		next := nextOffset(part.RecordBatches, offset)
		if next <= offset {
			if len(part.RecordBatches) == 0 && empty < 10 {
				// Nothing below the last stable offset came back:
				// the fetch waited MaxWaitMillis; ask again.
				empty++
				continue
			}
			return fmt.Errorf("partition %d: fetch at offset %d made no progress (a record batch larger than %d bytes?)", partition, offset, verifyFetchBytes)
		}
		empty = 0
		prog.add(min(next, end) - offset)
		offset = next
	}
	return nil
}

// nextOffset returns the offset after the last complete batch in a fetch
// response's record bytes, or from when there is none. Aborted batches and
// control batches advance it too, which the records alone would not show.
func nextOffset(in []byte, from int64) int64 {
	next := from
	walkBatchHeaders(in, func(b *kmsg.RecordBatch, magic int8, base, last int64) {
		next = max(next, last+1)
	})
	return next
}

// walkBatchHeaders calls fn for each complete batch (v0/v1 message sets
// included, with b nil) in a fetch response's record bytes.
func walkBatchHeaders(in []byte, fn func(b *kmsg.RecordBatch, magic int8, base, last int64)) {
	for len(in) >= 17 {
		base := int64(binary.BigEndian.Uint64(in))
		length := int32(binary.BigEndian.Uint32(in[8:]))
		if length < 0 || int64(len(in)) < 12+int64(length) {
			return // a partial batch ends every fetch that is cut short
		}
		batch := in[:12+length]
		in = in[12+length:]
		magic := int8(batch[16])
		if magic != 2 {
			// Message sets before v2 carry no producer id; a
			// wrapper message's offset is its last inner offset.
			fn(nil, magic, base, base)
			continue
		}
		var b kmsg.RecordBatch
		if err := b.ReadFrom(batch); err != nil {
			return
		}
		fn(&b, magic, base, base+int64(b.LastOffsetDelta))
	}
}

// auditBatches checks the producer sequences of the batches at or past
// from and below end. Aborted batches count: their sequences were used.
func (v *verifier) auditBatches(partition int32, in []byte, from, end int64) {
	walkBatchHeaders(in, func(b *kmsg.RecordBatch, magic int8, base, last int64) {
		if b == nil || last < from || base >= end {
			return
		}
		const controlBit = 0x20
		if b.ProducerID < 0 || b.FirstSequence < 0 || b.Attributes&controlBit != 0 {
			return // not idempotent, or a transaction marker
		}
		p := v.producers[b.ProducerID]
		if p == nil {
			p = &verifyProducer{ProducerID: b.ProducerID, Anomalies: []verifyAnomaly{}}
			v.producers[b.ProducerID] = p
		}
		p.Batches++
		p.Records += int64(b.NumRecords)
		k := seqKey{partition, b.ProducerID}
		lastSeq := addSeq(b.FirstSequence, b.NumRecords-1)
		prev, seen := v.seqs[k]
		v.seqs[k] = seqState{epoch: b.ProducerEpoch, lastSeq: lastSeq}
		if !seen {
			return // the log may start anywhere: retention, compaction
		}
		a := verifyAnomaly{Partition: partition, Offset: base, Epoch: b.ProducerEpoch, Got: b.FirstSequence, Count: b.NumRecords}
		switch {
		case b.ProducerEpoch != prev.epoch:
			// A new epoch (a bumped or a re-initialised producer)
			// starts again at sequence 0.
			if b.FirstSequence == 0 {
				return
			}
			a.Kind, a.Expected = "gap", 0
			p.Gaps++
		case b.FirstSequence == addSeq(prev.lastSeq, 1):
			return
		case seqBefore(b.FirstSequence, prev.lastSeq):
			a.Kind, a.Expected = "repeat", addSeq(prev.lastSeq, 1)
			p.Repeats++
		default:
			a.Kind, a.Expected = "gap", addSeq(prev.lastSeq, 1)
			p.Gaps++
		}
		if len(p.Anomalies) < verifyExamples {
			p.Anomalies = append(p.Anomalies, a)
		}
	})
}

// addSeq adds n to a producer sequence, which wraps from MaxInt32 to 0.
func addSeq(seq, n int32) int32 {
	return int32((int64(seq) + int64(n)) % (int64(math.MaxInt32) + 1))
}

// seqBefore reports whether a is at or before b, a wrapped sequence
// comparison over half the sequence space.
func seqBefore(a, b int32) bool {
	d := (int64(b) - int64(a) + int64(math.MaxInt32) + 1) % (int64(math.MaxInt32) + 1)
	return d < (int64(math.MaxInt32)+1)/2
}

// keyOf returns the record's identity under --key.
func (v *verifier) keyOf(r *kgo.Record) ([]byte, bool) {
	switch v.o.keyMode {
	case "record-key":
		return r.Key, r.Key != nil
	case "value":
		return r.Value, r.Value != nil
	default:
		for _, h := range r.Headers {
			if h.Key == v.o.keyHeader {
				return h.Value, true
			}
		}
		return nil, false
	}
}

func (v *verifier) record(r *kgo.Record) {
	v.report.Records++
	key, ok := v.keyOf(r)
	if !ok {
		v.report.Unkeyed++
		return
	}
	sum := sha256.Sum256(key)
	var digest [16]byte
	copy(digest[:], sum[:])
	loc := verifyLocator{Partition: r.Partition, Offset: r.Offset}
	first, seen := v.first[digest]
	if !seen {
		v.first[digest] = firstCopy{loc: loc, copies: 1}
		v.report.DistinctKeys++
		return
	}
	first.copies++
	v.first[digest] = first
	v.report.DuplicateCopies++
	if first.copies == 2 {
		v.report.DuplicatedKeys++
	}
	dup := v.dups[digest]
	if dup == nil {
		if len(v.dups) >= verifyExamples || first.copies != 2 {
			return
		}
		dup = &verifyDup{Copies: 1, Locations: []verifyLocator{first.loc}}
		if utf8.Valid(key) {
			dup.Key = string(key)
		} else {
			dup.Key, dup.KeyEncoding = base64.StdEncoding.EncodeToString(key), "base64"
		}
		v.dups[digest] = dup
	}
	dup.Copies++
	if len(dup.Locations) < verifyExampleCopies {
		dup.Locations = append(dup.Locations, loc)
	}
}

// finish fills in the report's lists in a stable order.
func (v *verifier) finish() {
	for _, d := range v.dups {
		v.report.Duplicates = append(v.report.Duplicates, *d)
	}
	slices.SortFunc(v.report.Duplicates, func(a, b verifyDup) int {
		return compareLoc(a.Locations[0], b.Locations[0])
	})
	for _, p := range v.producers {
		v.report.Producers = append(v.report.Producers, *p)
		v.report.SequenceGaps += p.Gaps
		v.report.SequenceRepeats += p.Repeats
	}
	slices.SortFunc(v.report.Producers, func(a, b verifyProducer) int { return int(min(max(a.ProducerID-b.ProducerID, -1), 1)) })
	v.report.OK = v.report.DuplicateCopies == 0 && v.report.SequenceRepeats == 0
}

func compareLoc(a, b verifyLocator) int {
	if a.Partition != b.Partition {
		return int(a.Partition - b.Partition)
	}
	return int(min(max(a.Offset-b.Offset, -1), 1))
}

func (v *verifier) writeText(out io.Writer) error {
	r := &v.report
	verdict := "OK: no duplicates"
	if !r.OK {
		verdict = "DUPLICATES FOUND"
	}
	fmt.Fprintf(out, "topic %s (%s), key %s: %s\n", r.Topic, counted(r.Partitions, "partition", "partitions"), r.Key, verdict)
	fmt.Fprintf(out, "records %d, distinct keys %d, unkeyed records %d\n", r.Records, r.DistinctKeys, r.Unkeyed)
	fmt.Fprintf(out, "duplicate copies %d of %d keys\n", r.DuplicateCopies, r.DuplicatedKeys)
	for _, d := range r.Duplicates {
		locs := make([]string, len(d.Locations))
		for i, l := range d.Locations {
			locs[i] = fmt.Sprintf("%d/%d", l.Partition, l.Offset)
		}
		key := d.Key
		if d.KeyEncoding != "" {
			key = d.KeyEncoding + ":" + key
		}
		fmt.Fprintf(out, "  key %q: %d copies at partition/offset %s\n", key, d.Copies, strings.Join(locs, " "))
	}
	fmt.Fprintf(out, "producers %d, sequence gaps %d, sequence repeats %d\n", len(r.Producers), r.SequenceGaps, r.SequenceRepeats)
	if r.SequenceGaps+r.SequenceRepeats == 0 {
		return nil
	}
	tw := newTable(out)
	fmt.Fprintln(tw, "  PRODUCER-ID\tKIND\tPARTITION\tBATCH-OFFSET\tEPOCH\tEXPECTED-SEQ\tFIRST-SEQ\tRECORDS")
	for _, p := range r.Producers {
		for _, a := range p.Anomalies {
			fmt.Fprintf(tw, "  %d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", p.ProducerID, a.Kind, a.Partition, a.Offset, a.Epoch, a.Expected, a.Got, a.Count)
		}
	}
	return tw.Flush()
}

// verifyProgress draws a progress line on stderr when it is a terminal.
type verifyProgress struct {
	w     io.Writer
	on    bool
	total int64
	read  int64
	drawn time.Time
}

func newVerifyProgress(w io.Writer, total int64) *verifyProgress {
	return &verifyProgress{w: w, on: isTerminal(w), total: total}
}

func (p *verifyProgress) add(n int64) {
	p.read += n
	if !p.on || time.Since(p.drawn) < 200*time.Millisecond {
		return
	}
	p.drawn = time.Now()
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(p.read) / float64(p.total)
	}
	fmt.Fprintf(p.w, "\rverify: %d/%d offsets (%.0f%%)", p.read, p.total, pct)
}

func (p *verifyProgress) done() {
	if p.on && !p.drawn.IsZero() {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
