package chaos

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
)

// Anomaly names a class of violation. The first seven are the classes of
// the "What a chaos run looks for" section of docs/architecture.md (after
// the Jepsen analyses of Redpanda and Bufstream); the rest check the
// consume-transform-produce stage and the group offsets it commits.
type Anomaly string

const (
	// LostWrite: an acknowledged record (or a committed transaction) is
	// missing although later offsets of its partition were read.
	LostWrite Anomaly = "lost-write"
	// Duplicate: one record stored at more than one offset.
	Duplicate Anomaly = "duplicate"
	// InconsistentOffsets: two observations disagree on the record at an
	// offset (two reads, an ack and a read, or the transform's read and
	// the final read).
	InconsistentOffsets Anomaly = "inconsistent-offsets"
	// AbortedRead: read_committed returned a record of an aborted (or
	// still open) transaction.
	AbortedRead Anomaly = "aborted-read"
	// TornTransaction: a transaction only partly visible to
	// read_committed, or committed data read_committed skipped.
	TornTransaction Anomaly = "torn-transaction"
	// NonMonotonicSend: a producer's records stored out of send order
	// within a partition.
	NonMonotonicSend Anomaly = "non-monotonic-send"
	// NonMonotonicPoll: a consumer saw offsets go backwards without a
	// rebalance or reset, or the committed output of a partition is not
	// in input order.
	NonMonotonicPoll Anomaly = "non-monotonic-poll"
	// Unseen: an acknowledged record (or committed transaction) not
	// visible after the run settled, with nothing read beyond it.
	Unseen Anomaly = "unseen"
	// OutputMissing: an input record with no transformed record in the
	// committed output.
	OutputMissing Anomaly = "output-missing"
	// OutputDuplicate: an input record transformed into the committed
	// output more than once.
	OutputDuplicate Anomaly = "output-duplicate"
	// BadGroupOffset: a committed group offset above the high watermark,
	// going backwards, or not at the end once the transform caught up.
	BadGroupOffset Anomaly = "bad-group-offset"
	// Phantom: a record nobody wrote (undecodable, unknown producer or
	// sequence, or not transactional in the transactional output).
	Phantom Anomaly = "phantom"
	// NotLinearizable: acknowledged appends to a partition cannot be put
	// in an order that respects real time and gives each its offset.
	NotLinearizable Anomaly = "not-linearizable"
	// EpochNotBumped: two committed transactions of one transaction
	// version 2 member under one producer id whose records carry the
	// same (or a lower) producer epoch; KIP-890 part 2 bumps the epoch
	// at every EndTxn, so a late write of one transaction can never join
	// the next.
	EpochNotBumped Anomaly = "epoch-not-bumped"
)

// Anomalies lists every class in report order.
var Anomalies = []Anomaly{
	LostWrite, Duplicate, InconsistentOffsets, AbortedRead, TornTransaction,
	NonMonotonicSend, NonMonotonicPoll, Unseen, OutputMissing, OutputDuplicate,
	BadGroupOffset, Phantom, NotLinearizable, EpochNotBumped,
}

// maxExamples bounds the examples kept per anomaly class.
const maxExamples = 5

// Findings is the checker's verdict.
type Findings struct {
	Counts   map[Anomaly]int
	Examples map[Anomaly][]string

	Sent, Acked, Failed, Pending   int // input records by producer outcome
	InputRead                      int // input records in the reference read
	OutputCommitted, OutputAborted int // output data records by transaction fate
	TxnsCommitted, TxnsAborted     int // transactions by the member's view
	TxnsUnknown                    int
	LinearizabilityOps             int // appends checked for linearizability
	PorcupineInconclusive          int // partitions porcupine gave up on (timeout)
	// Consecutive committed transactions of a member under one producer
	// id, by transaction version: with a new epoch (EpochBumps) or the
	// same one (EpochKept).
	EpochBumps, EpochKept [2]int // index 0: TV1 members, 1: TV2 members
}

// OK reports whether no anomaly was found.
func (f *Findings) OK() bool {
	for _, n := range f.Counts {
		if n > 0 {
			return false
		}
	}
	return true
}

// Total is the number of anomalies of all classes.
func (f *Findings) Total() int {
	total := 0
	for _, n := range f.Counts {
		total += n
	}
	return total
}

func (f *Findings) add(a Anomaly, format string, args ...any) {
	if f.Counts == nil {
		f.Counts = make(map[Anomaly]int)
		f.Examples = make(map[Anomaly][]string)
	}
	f.Counts[a]++
	if len(f.Examples[a]) < maxExamples {
		f.Examples[a] = append(f.Examples[a], fmt.Sprintf(format, args...))
	}
}

// location is where a record sits.
type location struct {
	Partition int32
	Offset    int64
}

func (l location) String() string { return fmt.Sprintf("%d@%d", l.Partition, l.Offset) }

// Check judges a history. Counts are per observation: one bad record may be
// counted by more than one check (an acknowledged record read at another
// offset is both an inconsistent offset and, if the reads also disagree,
// another one). withPorcupine adds porcupine's linearizability check of the
// appends to the exact real-time order check that always runs.
func Check(h *History, withPorcupine bool) *Findings {
	f := &Findings{Counts: make(map[Anomaly]int), Examples: make(map[Anomaly][]string)}
	c := checker{h: h, f: f}
	c.checkInput()
	c.checkLinearizability(withPorcupine)
	c.checkOutput()
	c.checkGroupOffsets()
	c.checkEpochs()
	for _, s := range h.PollAnomalies {
		f.add(NonMonotonicPoll, "%s", s)
	}
	return f
}

type checker struct {
	h *History
	f *Findings

	// input is the reference read of the input topic, by location.
	input map[location]RecordID
	// inputLocations is where each record of the reference read sits.
	inputLocations map[RecordID][]location
	// inputHasAfter[p] is the highest offset the input reads returned.
	inputLast map[int32]int64
}

func (c *checker) checkInput() {
	h, f := c.h, c.f
	c.input = make(map[location]RecordID)
	c.inputLocations = make(map[RecordID][]location)
	c.inputLast = make(map[int32]int64)
	if len(h.InputReads) == 0 {
		return
	}

	// Every read on its own: offsets strictly increase, values decode
	// to records somebody sent.
	for _, read := range h.InputReads {
		for _, p := range sortedKeys(read.Records) {
			last := int64(-1)
			for _, r := range read.Records[p] {
				if r.Offset <= last {
					f.add(NonMonotonicPoll, "%s: input %d@%d returned after offset %d", read.Name, p, r.Offset, last)
				}
				last = max(last, r.Offset)
				switch {
				case r.Bad:
					f.add(Phantom, "%s: input %d@%d is not a chaos record", read.Name, p, r.Offset)
				case !c.sent(r.ID):
					f.add(Phantom, "%s: input %d@%d holds %v, which was never sent", read.Name, p, r.Offset, r.ID)
				}
			}
			c.inputLast[p] = max(c.inputLast[p], last)
		}
	}

	reference := h.InputReads[0]
	for p, records := range reference.Records {
		for _, r := range records {
			if r.Bad {
				continue
			}
			loc := location{p, r.Offset}
			c.input[loc] = r.ID
			c.inputLocations[r.ID] = append(c.inputLocations[r.ID], loc)
		}
		f.InputRead += len(records)
	}

	// Reads taken after the run settled must agree record for record.
	for _, other := range h.InputReads[1:] {
		c.compareInputReads(reference, other)
	}

	// A record at more than one offset.
	for _, id := range sortedRecordIDs(c.inputLocations) {
		if locs := c.inputLocations[id]; len(locs) > 1 {
			for range locs[1:] {
				f.add(Duplicate, "input %v stored at %v", id, locs)
			}
		}
	}

	// Each producer's records in send order within each partition. Later
	// copies of a duplicate are skipped: they are counted as duplicates.
	for _, p := range sortedKeys(reference.Records) {
		lastSeq := make(map[uint16]uint64)
		seen := make(map[RecordID]bool)
		for _, r := range reference.Records[p] {
			if r.Bad || seen[r.ID] {
				continue
			}
			seen[r.ID] = true
			if last, ok := lastSeq[r.ID.Producer]; ok && r.ID.Seq < last {
				f.add(NonMonotonicSend, "input partition %d: %v at offset %d after p%d#%d", p, r.ID, r.Offset, r.ID.Producer, last)
			}
			lastSeq[r.ID.Producer] = max(lastSeq[r.ID.Producer], r.ID.Seq)
		}
	}

	// Every acknowledged record is where its ack said.
	for producer, sends := range h.Sends {
		for seq, s := range sends {
			f.Sent++
			switch s.Status {
			case SendFailed:
				f.Failed++
				continue
			case SendPending:
				f.Pending++
				continue
			}
			f.Acked++
			id := RecordID{Producer: uint16(producer), Seq: uint64(seq)}
			acked := location{s.Partition, s.Offset}
			locs := c.inputLocations[id]
			switch {
			case slices.Contains(locs, acked):
			case len(locs) > 0:
				f.add(InconsistentOffsets, "input %v acknowledged at %v but read at %v", id, acked, locs)
			case s.Offset <= c.inputLast[s.Partition] || s.Offset < h.InputEnd[s.Partition]:
				f.add(LostWrite, "input %v acknowledged at %v, never read%s", id, acked, c.tornNote(s.Partition, s.Offset))
			default:
				f.add(Unseen, "input %v acknowledged at %v, not visible (high watermark %d)", id, acked, h.InputEnd[s.Partition])
			}
		}
	}
}

// compareInputReads reports every offset at which two reads of the input
// topic disagree, including offsets only one of them returned.
func (c *checker) compareInputReads(a, b InputRead) {
	for _, p := range sortedKeys(mergeKeys(a.Records, b.Records)) {
		ra, rb := a.Records[p], b.Records[p]
		i, j := 0, 0
		for i < len(ra) || j < len(rb) {
			switch {
			case j == len(rb) || (i < len(ra) && ra[i].Offset < rb[j].Offset):
				c.f.add(InconsistentOffsets, "input %d@%d: %s has %v, %s has nothing", p, ra[i].Offset, a.Name, ra[i].ID, b.Name)
				i++
			case i == len(ra) || rb[j].Offset < ra[i].Offset:
				c.f.add(InconsistentOffsets, "input %d@%d: %s has nothing, %s has %v", p, rb[j].Offset, a.Name, b.Name, rb[j].ID)
				j++
			default:
				if ra[i].ID != rb[j].ID || ra[i].Bad != rb[j].Bad {
					c.f.add(InconsistentOffsets, "input %d@%d: %s has %v, %s has %v", p, ra[i].Offset, a.Name, ra[i].ID, b.Name, rb[j].ID)
				}
				i++
				j++
			}
		}
	}
}

func (c *checker) sent(id RecordID) bool {
	return int(id.Producer) < len(c.h.Sends) && id.Seq < uint64(len(c.h.Sends[id.Producer]))
}

// tornNote says whether a lost offset lies in a tail the harness cut, which
// would mean the broker acknowledged a record beyond its own high watermark.
func (c *checker) tornNote(p int32, offset int64) string {
	for _, t := range c.h.Torn {
		if t.Topic == inputTopic && t.Partition == p && offset >= t.FirstOffset {
			return fmt.Sprintf(" (in a tail cut at offset %d, beyond the high watermark %d reported before the crash)", t.FirstOffset, t.HighWater)
		}
	}
	return ""
}

// fate is what became of a transactional data record, from the markers in
// the log.
type fate uint8

const (
	fateOpen fate = iota // no marker for its producer after it
	fateCommitted
	fateAborted
)

func (c *checker) checkOutput() {
	h, f := c.h, c.f
	for _, txns := range h.Txns {
		for _, t := range txns {
			switch t.Outcome {
			case TxnCommitted:
				f.TxnsCommitted++
			case TxnAborted:
				f.TxnsAborted++
			default:
				f.TxnsUnknown++
			}
		}
	}
	if len(h.OutputReads) == 0 {
		return
	}
	reference := h.OutputReads[0]
	for _, other := range h.OutputReads[1:] {
		c.compareOutputReads(reference, other)
	}

	// The fate of every data record, from the markers that follow it.
	fates := make(map[location]fate)
	for _, p := range sortedKeys(reference.Records) {
		pending := make(map[int64][]int64) // producer id -> offsets awaiting a marker
		last := int64(-1)
		for _, r := range reference.Records[p] {
			if r.Offset <= last {
				f.add(NonMonotonicPoll, "%s: output %d@%d returned after offset %d", reference.Name, p, r.Offset, last)
			}
			last = max(last, r.Offset)
			switch {
			case r.Control:
				verdict := fateAborted
				if r.Commit {
					verdict = fateCommitted
				}
				for _, o := range pending[r.ProducerID] {
					fates[location{p, o}] = verdict
				}
				delete(pending, r.ProducerID)
			case r.Bad:
				f.add(Phantom, "%s: output %d@%d is not a chaos record", reference.Name, p, r.Offset)
			case !r.Transactional:
				f.add(Phantom, "%s: output %d@%d (%v) is not transactional", reference.Name, p, r.Offset, r.Value.Txn)
			default:
				pending[r.ProducerID] = append(pending[r.ProducerID], r.Offset)
				fates[location{p, r.Offset}] = fateOpen
			}
		}
	}
	for _, v := range fates {
		switch v {
		case fateCommitted:
			f.OutputCommitted++
		case fateAborted:
			f.OutputAborted++
		}
	}

	// read_committed returns committed records only, and all of them.
	committed := h.OutputCommitted
	refByLoc := make(map[location]OutputRecord)
	for p, records := range reference.Records {
		for _, r := range records {
			refByLoc[location{p, r.Offset}] = r
		}
	}
	visible := make(map[location]bool)
	visibleInTxn := make(map[TxnID]int)
	for _, p := range sortedKeys(committed.Records) {
		last := int64(-1)
		for _, r := range committed.Records[p] {
			if r.Offset <= last {
				f.add(NonMonotonicPoll, "%s: output %d@%d returned after offset %d", committed.Name, p, r.Offset, last)
			}
			last = max(last, r.Offset)
			if r.Control {
				continue
			}
			loc := location{p, r.Offset}
			ref, ok := refByLoc[loc]
			if !ok || ref.Control || ref.Value != r.Value || ref.Bad != r.Bad {
				f.add(InconsistentOffsets, "output %v: %s has %v, %s has %s", loc, committed.Name, r.Value.Txn, reference.Name, describeOutput(ref, ok))
				continue
			}
			visible[loc] = true
			visibleInTxn[r.Value.Txn]++
			switch fates[loc] {
			case fateAborted:
				f.add(AbortedRead, "output %v from %v read by read_committed, but its transaction was aborted", loc, r.Value.Txn)
			case fateOpen:
				f.add(AbortedRead, "output %v from %v read by read_committed, but its transaction never ended", loc, r.Value.Txn)
			}
		}
	}
	committedEnd := make(map[int32]int64) // last offset read_committed returned
	for p := range h.Partitions {
		committedEnd[p] = -1
	}
	for p, records := range committed.Records {
		if len(records) > 0 {
			committedEnd[p] = records[len(records)-1].Offset
		}
	}
	openReported := make(map[location]bool) // partition, producer id
	for _, loc := range sortedLocations(fates) {
		switch {
		case fates[loc] == fateOpen:
			if key := (location{loc.Partition, refByLoc[loc].ProducerID}); !openReported[key] {
				openReported[key] = true
				f.add(Unseen, "output partition %d: transaction of producer id %d from offset %d still open after the run settled", loc.Partition, key.Offset, loc.Offset)
			}
		case fates[loc] == fateCommitted && !visible[loc] && loc.Offset > committedEnd[loc.Partition]:
			f.add(Unseen, "output %v (%v) committed by a marker but beyond what read_committed returned", loc, refByLoc[loc].Value.Txn)
		case fates[loc] == fateCommitted && !visible[loc]:
			f.add(TornTransaction, "output %v (%v) committed by a marker but skipped by read_committed", loc, refByLoc[loc].Value.Txn)
		}
	}

	// Each transaction all or nothing, as its member was told.
	for member, txns := range h.Txns {
		for i, t := range txns {
			id := TxnID{Member: uint16(member), Seq: uint64(i + 1)}
			seen := visibleInTxn[id]
			delete(visibleInTxn, id)
			switch {
			case seen > t.Records:
				f.add(Duplicate, "transaction %v produced %d records, read_committed returned %d", id, t.Records, seen)
			case t.Outcome == TxnCommitted && seen == 0 && t.Records > 0:
				f.add(LostWrite, "transaction %v committed %d records, none visible", id, t.Records)
			case t.Outcome == TxnCommitted && seen < t.Records:
				f.add(TornTransaction, "transaction %v committed %d records, %d visible", id, t.Records, seen)
			case t.Outcome == TxnAborted && seen > 0:
				f.add(AbortedRead, "transaction %v was aborted, %d of its %d records visible", id, seen, t.Records)
			case t.Outcome == TxnUnknown && seen > 0 && seen < t.Records:
				f.add(TornTransaction, "transaction %v (outcome unknown) has %d of %d records visible", id, seen, t.Records)
			}
		}
	}
	for _, id := range slices.SortedFunc(maps.Keys(visibleInTxn), compareTxnIDs) {
		f.add(Phantom, "read_committed returned %d records of %v, which never ran", visibleInTxn[id], id)
	}

	c.checkPipeline(committed)
}

// checkPipeline checks the consume-transform-produce stage end to end: the
// committed output of partition p is the input of partition p, each record
// once, in offset order, and each transformed record names the input record
// the final read found at the offset the transform read it from.
func (c *checker) checkPipeline(committed OutputRead) {
	f := c.f
	transformed := make(map[location]int)
	for _, p := range sortedKeys(committed.Records) {
		lastInput := int64(-1)
		for _, r := range committed.Records[p] {
			if r.Control || r.Bad {
				continue
			}
			v := r.Value
			in := location{v.InputPartition, v.InputOffset}
			if v.InputPartition != p {
				f.add(Phantom, "output %d@%d carries input %v from another partition", p, r.Offset, in)
				continue
			}
			if id, ok := c.input[in]; !ok || id != v.Input {
				f.add(InconsistentOffsets, "output %d@%d: the transform read %v at input %v, the final read has %s", p, r.Offset, v.Input, in, describeInput(id, ok))
			}
			if v.InputOffset <= lastInput {
				f.add(NonMonotonicPoll, "output %d@%d: input offset %d committed after input offset %d", p, r.Offset, v.InputOffset, lastInput)
			}
			lastInput = max(lastInput, v.InputOffset)
			transformed[in]++
		}
	}
	for _, loc := range sortedLocations(c.input) {
		switch n := transformed[loc]; {
		case n == 0:
			f.add(OutputMissing, "input %v (%v) has no committed output", loc, c.input[loc])
		case n > 1:
			for range n - 1 {
				f.add(OutputDuplicate, "input %v (%v) transformed %d times", loc, c.input[loc], n)
			}
		}
	}
}

// compareOutputReads reports offsets where two read_uncommitted reads of the
// output disagree.
func (c *checker) compareOutputReads(a, b OutputRead) {
	for _, p := range sortedKeys(mergeKeys(a.Records, b.Records)) {
		ra, rb := a.Records[p], b.Records[p]
		i, j := 0, 0
		for i < len(ra) || j < len(rb) {
			switch {
			case j == len(rb) || (i < len(ra) && ra[i].Offset < rb[j].Offset):
				c.f.add(InconsistentOffsets, "output %d@%d: %s has %s, %s has nothing", p, ra[i].Offset, a.Name, describeOutput(ra[i], true), b.Name)
				i++
			case i == len(ra) || rb[j].Offset < ra[i].Offset:
				c.f.add(InconsistentOffsets, "output %d@%d: %s has nothing, %s has %s", p, rb[j].Offset, a.Name, b.Name, describeOutput(rb[j], true))
				j++
			default:
				if ra[i] != rb[j] {
					c.f.add(InconsistentOffsets, "output %d@%d: %s has %s, %s has %s", p, ra[i].Offset, a.Name, describeOutput(ra[i], true), b.Name, describeOutput(rb[j], true))
				}
				i++
				j++
			}
		}
	}
}

// checkGroupOffsets checks the transform group's committed offsets: never
// above the high watermark, never backwards, and at the end once the
// transform caught up.
func (c *checker) checkGroupOffsets() {
	h, f := c.h, c.f
	last := make(map[int32]int64)
	for _, s := range h.GroupSamples {
		if s.Committed < 0 {
			continue
		}
		if s.Committed > s.HighWatermark {
			f.add(BadGroupOffset, "input partition %d: committed offset %d above high watermark %d", s.Partition, s.Committed, s.HighWatermark)
		}
		if prev, ok := last[s.Partition]; ok && s.Committed < prev {
			f.add(BadGroupOffset, "input partition %d: committed offset went back from %d to %d", s.Partition, prev, s.Committed)
		}
		last[s.Partition] = max(last[s.Partition], s.Committed)
	}
	if h.FinalGroupOffsets == nil {
		return
	}
	for p := range h.Partitions {
		end := h.InputEnd[p]
		got, ok := h.FinalGroupOffsets[p]
		if !ok {
			got = -1
		}
		if got != end && !(end == 0 && got < 0) {
			f.add(BadGroupOffset, "input partition %d: final committed offset %d, high watermark %d", p, got, end)
		}
	}
}

func describeOutput(r OutputRecord, ok bool) string {
	switch {
	case !ok:
		return "nothing"
	case r.Control && r.Commit:
		return fmt.Sprintf("a COMMIT marker of producer %d", r.ProducerID)
	case r.Control:
		return fmt.Sprintf("an ABORT marker of producer %d", r.ProducerID)
	case r.Bad:
		return "an undecodable record"
	}
	return fmt.Sprintf("%v (input %v at %d@%d)", r.Value.Txn, r.Value.Input, r.Value.InputPartition, r.Value.InputOffset)
}

func describeInput(id RecordID, ok bool) string {
	if !ok {
		return "nothing"
	}
	return id.String()
}

func sortedKeys[V any](m map[int32]V) []int32 { return slices.Sorted(maps.Keys(m)) }

func mergeKeys[V any](a, b map[int32]V) map[int32]struct{} {
	keys := make(map[int32]struct{}, len(a))
	for k := range a {
		keys[k] = struct{}{}
	}
	for k := range b {
		keys[k] = struct{}{}
	}
	return keys
}

func compareLocations(a, b location) int {
	return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
}

func sortedLocations[V any](m map[location]V) []location {
	return slices.SortedFunc(maps.Keys(m), compareLocations)
}

func compareTxnIDs(a, b TxnID) int {
	return cmp.Or(cmp.Compare(a.Member, b.Member), cmp.Compare(a.Seq, b.Seq))
}

func sortedRecordIDs(m map[RecordID][]location) []RecordID {
	return slices.SortedFunc(maps.Keys(m), func(a, b RecordID) int {
		return cmp.Or(cmp.Compare(a.Producer, b.Producer), cmp.Compare(a.Seq, b.Seq))
	})
}

// checkEpochs compares the producer epochs of each member's consecutive
// committed transactions in the committed output read: a TV2 member must
// have a new epoch for every transaction under the same producer id (a new
// session may get a new id), a TV1 member keeps one per session.
func (c *checker) checkEpochs() {
	type producerEpoch struct {
		id    int64
		epoch int16
	}
	seen := make(map[TxnID]producerEpoch)
	for _, p := range slices.Sorted(maps.Keys(c.h.OutputCommitted.Records)) {
		for _, r := range c.h.OutputCommitted.Records[p] {
			if r.Control || r.Bad {
				continue
			}
			if _, ok := seen[r.Value.Txn]; !ok {
				seen[r.Value.Txn] = producerEpoch{r.ProducerID, r.ProducerEpoch}
			}
		}
	}
	txns := slices.SortedFunc(maps.Keys(seen), func(a, b TxnID) int {
		if a.Member != b.Member {
			return int(a.Member) - int(b.Member)
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	for i := 1; i < len(txns); i++ {
		prev, cur := txns[i-1], txns[i]
		if prev.Member != cur.Member || seen[prev].id != seen[cur].id {
			continue
		}
		tv2 := int(cur.Member) < len(c.h.MemberTV2) && c.h.MemberTV2[cur.Member]
		kind := 0
		if tv2 {
			kind = 1
		}
		if seen[cur].epoch > seen[prev].epoch {
			c.f.EpochBumps[kind]++
			continue
		}
		c.f.EpochKept[kind]++
		if tv2 {
			c.f.add(EpochNotBumped, "member %d: transaction %v has producer %d epoch %d, its previous committed one %v epoch %d",
				cur.Member, cur, seen[cur].id, seen[cur].epoch, prev, seen[prev].epoch)
		}
	}
}
