package chaos

import (
	"math"
	"slices"
	"strings"
	"testing"
)

// historyBuilder makes small consistent histories: every input acked and
// read back, transactions transformed into the output with markers, two
// identical reads of each topic.
type historyBuilder struct {
	h          *History
	clock      int64
	inputNext  map[int32]int64
	outputNext map[int32]int64
	committed  OutputRead // read_committed as it should be
	epoch      int16      // the producer epoch of the next transaction's records
}

func newHistoryBuilder(producers int, partitions int32) *historyBuilder {
	b := &historyBuilder{
		h: &History{
			Partitions:        partitions,
			Sends:             make([][]Send, producers),
			InputEnd:          make(map[int32]int64),
			FinalGroupOffsets: make(map[int32]int64),
		},
		inputNext:  make(map[int32]int64),
		outputNext: make(map[int32]int64),
		committed:  OutputRead{Name: "committed", Records: make(map[int32][]OutputRecord)},
	}
	b.h.InputReads = []InputRead{{Name: "in-a", Records: map[int32][]InputRecord{}}, {Name: "in-b", Records: map[int32][]InputRecord{}}}
	b.h.OutputReads = []OutputRead{{Name: "out-a", Records: map[int32][]OutputRecord{}}, {Name: "out-b", Records: map[int32][]OutputRecord{}}}
	b.h.Txns = make([][]Txn, 2)
	return b
}

func (b *historyBuilder) tick() int64 { b.clock += 10; return b.clock }

// send appends one acked input record of producer to partition.
func (b *historyBuilder) send(producer uint16, partition int32) location {
	seq := uint64(len(b.h.Sends[producer]))
	offset := b.inputNext[partition]
	b.inputNext[partition]++
	b.h.InputEnd[partition] = b.inputNext[partition]
	call := b.tick()
	b.h.Sends[producer] = append(b.h.Sends[producer], Send{Partition: partition, Status: SendAcked, Offset: offset, Call: call, Return: call + 5})
	for i := range b.h.InputReads {
		r := &b.h.InputReads[i]
		r.Records[partition] = append(r.Records[partition], InputRecord{Offset: offset, ID: RecordID{producer, seq}})
	}
	return location{partition, offset}
}

func (b *historyBuilder) inputAt(loc location) RecordID {
	for _, r := range b.h.InputReads[0].Records[loc.Partition] {
		if r.Offset == loc.Offset {
			return r.ID
		}
	}
	panic("no input at " + loc.String())
}

// txn transforms inputs in one transaction of member with the outcome,
// writing markers unless the transaction is left open.
func (b *historyBuilder) txn(member uint16, outcome TxnOutcome, inputs ...location) TxnID {
	b.h.Txns[member] = append(b.h.Txns[member], Txn{Outcome: outcome, Records: len(inputs)})
	id := TxnID{Member: member, Seq: uint64(len(b.h.Txns[member]))}
	pid := int64(100 + member)
	touched := map[int32]bool{}
	var written []OutputRecord
	var partitions []int32
	for _, in := range inputs {
		rec := OutputRecord{
			Offset: b.outputNext[in.Partition], ProducerID: pid, ProducerEpoch: b.epoch, Transactional: true,
			Value: OutputValue{Txn: id, InputPartition: in.Partition, InputOffset: in.Offset, Input: b.inputAt(in)},
		}
		b.outputNext[in.Partition]++
		b.appendOutput(in.Partition, rec)
		written = append(written, rec)
		partitions = append(partitions, in.Partition)
		touched[in.Partition] = true
	}
	if outcome == TxnCommitted {
		for i, rec := range written {
			b.committed.Records[partitions[i]] = append(b.committed.Records[partitions[i]], rec)
		}
	}
	if outcome == TxnUnknown {
		return id // left open: no markers
	}
	for p := range b.h.Partitions {
		if !touched[p] {
			continue
		}
		marker := OutputRecord{Offset: b.outputNext[p], ProducerID: pid, ProducerEpoch: b.epoch, Transactional: true, Control: true, Commit: outcome == TxnCommitted}
		b.outputNext[p]++
		b.appendOutput(p, marker)
		b.committed.Records[p] = append(b.committed.Records[p], marker)
	}
	return id
}

func (b *historyBuilder) appendOutput(p int32, rec OutputRecord) {
	for i := range b.h.OutputReads {
		r := &b.h.OutputReads[i]
		r.Records[p] = append(r.Records[p], rec)
	}
}

func (b *historyBuilder) build() *History {
	for p := range b.h.Partitions {
		b.h.FinalGroupOffsets[p] = b.inputNext[p]
		b.h.GroupSamples = append(b.h.GroupSamples, GroupSample{Partition: p, Committed: b.inputNext[p], HighWatermark: b.inputNext[p]})
	}
	b.h.OutputCommitted = b.committed
	return b.h
}

// standardHistory: two producers, two partitions, four records each; member
// 0 commits the first half, member 1 aborts a transaction and then commits
// the rest.
func standardHistory() *History {
	b := newHistoryBuilder(2, 2)
	var locs []location
	for i := range 8 {
		locs = append(locs, b.send(uint16(i%2), int32(i/2%2)))
	}
	// locs: p0: 0,1 (0@0,1@0) ... partition 0 gets i=0,1,4,5; partition 1 gets 2,3,6,7.
	p0 := []location{locs[0], locs[1], locs[4], locs[5]}
	p1 := []location{locs[2], locs[3], locs[6], locs[7]}
	b.txn(0, TxnCommitted, p0[0], p0[1], p1[0], p1[1])
	b.txn(1, TxnAborted, p0[2], p0[3])
	b.txn(1, TxnCommitted, p0[2], p0[3], p1[2], p1[3])
	return b.build()
}

func TestCheckCleanHistory(t *testing.T) {
	h := standardHistory()
	f := Check(h, true)
	if !f.OK() {
		t.Fatalf("clean history has anomalies: %v %v", f.Counts, f.Examples)
	}
	if f.Acked != 8 || f.InputRead != 8 || f.OutputCommitted != 8 || f.OutputAborted != 2 || f.TxnsCommitted != 2 || f.TxnsAborted != 1 {
		t.Fatalf("figures: %+v", f)
	}
	if f.LinearizabilityOps != 8 {
		t.Fatalf("linearizability ops %d, want 8", f.LinearizabilityOps)
	}
}

// removeInput deletes the record at loc from every input read.
func removeInput(h *History, loc location) {
	for i := range h.InputReads {
		recs := h.InputReads[i].Records[loc.Partition]
		h.InputReads[i].Records[loc.Partition] = slices.DeleteFunc(slices.Clone(recs), func(r InputRecord) bool { return r.Offset == loc.Offset })
	}
}

func TestCheckDetectsEachAnomaly(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(h *History)
		want   Anomaly
	}{
		{"acked record missing below the end", func(h *History) {
			// A record never transformed, so only its loss shows.
			h.Sends[0] = append(h.Sends[0], Send{Partition: 0, Status: SendAcked, Offset: 4, Call: 1000, Return: 1001})
			h.InputEnd[0] = 6
			for i := range h.InputReads {
				h.InputReads[i].Records[0] = append(h.InputReads[i].Records[0], InputRecord{Offset: 5, ID: RecordID{1, 4}})
			}
			h.Sends[1] = append(h.Sends[1], Send{Partition: 0, Status: SendAcked, Offset: 5, Call: 1002, Return: 1003})
			h.FinalGroupOffsets[0] = 6
		}, LostWrite},
		{"acked record beyond the end", func(h *History) {
			h.Sends[0] = append(h.Sends[0], Send{Partition: 1, Status: SendAcked, Offset: 4, Call: 1000, Return: 1001})
		}, Unseen},
		{"record at two offsets", func(h *History) {
			for i := range h.InputReads {
				h.InputReads[i].Records[1] = append(h.InputReads[i].Records[1], InputRecord{Offset: 4, ID: RecordID{0, 1}})
			}
		}, Duplicate},
		{"reads disagree", func(h *History) {
			h.InputReads[1].Records[0][1].ID = RecordID{1, 3}
		}, InconsistentOffsets},
		{"acked at another offset", func(h *History) {
			h.Sends[0][0].Offset = 3
		}, InconsistentOffsets},
		{"output reads disagree", func(h *History) {
			h.OutputReads[1].Records[1] = h.OutputReads[1].Records[1][:2]
		}, InconsistentOffsets},
		{"read_committed returns aborted data", func(h *History) {
			aborted := h.OutputReads[0].Records[0][3] // member 1's aborted txn
			h.OutputCommitted.Records[0] = append(h.OutputCommitted.Records[0], aborted)
			slices.SortFunc(h.OutputCommitted.Records[0], func(a, b OutputRecord) int { return int(a.Offset - b.Offset) })
		}, AbortedRead},
		{"committed transaction partly visible", func(h *History) {
			h.OutputCommitted.Records[1] = slices.Delete(slices.Clone(h.OutputCommitted.Records[1]), 0, 1)
		}, TornTransaction},
		{"producer's records out of order", func(h *History) {
			// Producer 0's seq 0 and 2 are both in partition 0.
			for i := range h.InputReads {
				r := h.InputReads[i].Records[0]
				r[0].ID, r[2].ID = r[2].ID, r[0].ID
			}
		}, NonMonotonicSend},
		{"poll went backwards", func(h *History) {
			h.PollAnomalies = append(h.PollAnomalies, "member 0 polled 0@3 after 0@5")
		}, NonMonotonicPoll},
		{"output out of input order", func(h *History) {
			r := h.OutputCommitted.Records[1]
			r[0].Value, r[1].Value = r[1].Value, r[0].Value
			for i := range h.OutputReads {
				o := h.OutputReads[i].Records[1]
				o[0].Value, o[1].Value = o[1].Value, o[0].Value
			}
		}, NonMonotonicPoll},
		{"input never transformed", func(h *History) {
			// The whole of member 1's committed transaction vanishes,
			// as if it never ran.
			h.Txns[1] = h.Txns[1][:1]
			for _, read := range append(slices.Clone(h.OutputReads), h.OutputCommitted) {
				for p, recs := range read.Records {
					read.Records[p] = slices.DeleteFunc(recs, func(r OutputRecord) bool {
						return r.ProducerID == 101 && (r.Value.Txn.Seq == 2 || (r.Control && r.Commit))
					})
				}
			}
		}, OutputMissing},
		{"input transformed twice", func(h *History) {
			dup := h.OutputCommitted.Records[0][0]
			dup.Offset = 100
			dup.Value.Txn = TxnID{Member: 0, Seq: 1}
			h.OutputCommitted.Records[0] = append(h.OutputCommitted.Records[0], dup)
			h.OutputReads[0].Records[0] = append(h.OutputReads[0].Records[0], dup)
			h.OutputReads[1].Records[0] = append(h.OutputReads[1].Records[0], dup)
		}, OutputDuplicate},
		{"group offset above the high watermark", func(h *History) {
			h.GroupSamples = append(h.GroupSamples, GroupSample{Partition: 0, Committed: 9, HighWatermark: 4})
		}, BadGroupOffset},
		{"group offset going back", func(h *History) {
			h.GroupSamples = append(h.GroupSamples, GroupSample{Partition: 1, Committed: 1, HighWatermark: 4})
		}, BadGroupOffset},
		{"group offset short of the end", func(h *History) {
			h.FinalGroupOffsets[1] = 2
		}, BadGroupOffset},
		{"undecodable input", func(h *History) {
			for i := range h.InputReads {
				h.InputReads[i].Records[0][0].Bad = true
			}
		}, Phantom},
		{"record never sent", func(h *History) {
			for i := range h.InputReads {
				h.InputReads[i].Records[1] = append(h.InputReads[i].Records[1], InputRecord{Offset: 4, ID: RecordID{7, 0}})
			}
		}, Phantom},
		{"ack order contradicts offsets", func(h *History) {
			// 0@1 acknowledged before 0@0 was even sent.
			s0 := &h.Sends[0][0] // 0@0
			s1 := &h.Sends[1][0] // 0@1
			s0.Call, s0.Return = 50, 60
			s1.Call, s1.Return = 10, 20
		}, NotLinearizable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := standardHistory()
			tc.mutate(h)
			f := Check(h, true)
			if f.Counts[tc.want] == 0 {
				t.Fatalf("%s not detected; counts %v, examples %v", tc.want, f.Counts, f.Examples)
			}
		})
	}
}

func TestCheckLostVersusTornNote(t *testing.T) {
	h := standardHistory()
	removeInput(h, location{0, 0})
	h.Torn = []TornTail{{Topic: inputTopic, Partition: 0, FirstOffset: 0, HighWater: 0}}
	f := Check(h, false)
	if f.Counts[LostWrite] != 1 {
		t.Fatalf("lost writes %d, want 1: %v", f.Counts[LostWrite], f.Examples)
	}
	if ex := f.Examples[LostWrite][0]; !strings.Contains(ex, "tail cut") {
		t.Fatalf("lost write in a torn tail not annotated: %q", ex)
	}
}

func TestRealTimeOrder(t *testing.T) {
	ops := []appendOp{
		{ID: RecordID{0, 0}, Offset: 0, Call: 0, Return: 10},
		{ID: RecordID{1, 0}, Offset: 1, Call: 5, Return: 8}, // concurrent with the first: fine
		{ID: RecordID{0, 1}, Offset: 2, Call: 11, Return: math.MaxInt64},
	}
	f := &Findings{}
	checkRealTimeOrder(f, 0, ops)
	checkPorcupine(f, 0, ops)
	if !f.OK() {
		t.Fatalf("legal history flagged: %v", f.Examples)
	}

	// The append at offset 2 answered before the one at offset 1 began.
	ops[2].Call, ops[2].Return = 1, 3
	ops[1].Call, ops[1].Return = 4, 8
	f = &Findings{}
	checkRealTimeOrder(f, 0, ops)
	if f.Counts[NotLinearizable] != 1 {
		t.Fatalf("real-time check: %v", f.Examples)
	}
	f = &Findings{}
	checkPorcupine(f, 0, ops)
	if f.Counts[NotLinearizable] != 1 {
		t.Fatalf("porcupine: %v", f.Counts)
	}

	// Two appends given one offset.
	f = &Findings{}
	dup := []appendOp{{ID: RecordID{0, 0}, Offset: 0, Call: 0, Return: 1}, {ID: RecordID{0, 1}, Offset: 0, Call: 0, Return: 1}}
	checkRealTimeOrder(f, 0, dup)
	checkPorcupine(f, 0, dup)
	if f.Counts[NotLinearizable] != 2 {
		t.Fatalf("duplicate offset: %v", f.Examples)
	}
}

func TestPorcupineChunksLargeHistory(t *testing.T) {
	// Ten producers, each with many appends in flight, acknowledged out of
	// call order but consistent with offsets.
	var ops []appendOp
	for i := range 3 * porcupineChunk {
		call := int64(i * 10)
		ops = append(ops, appendOp{ID: RecordID{uint16(i % 10), uint64(i / 10)}, Offset: int64(i), Call: call - int64(i%7)*3, Return: call + 200 + int64(i%5)*40})
	}
	f := &Findings{}
	checkPorcupine(f, 0, ops)
	if !f.OK() || f.PorcupineInconclusive != 0 {
		t.Fatalf("legal history: %v inconclusive %d", f.Examples, f.PorcupineInconclusive)
	}
	// Make the last append of the middle chunk answer before the first one
	// of that chunk was sent.
	first, last := porcupineChunk, 2*porcupineChunk-1
	ops[last].Call, ops[last].Return = ops[first].Call-50, ops[first].Call-40
	f = &Findings{}
	checkPorcupine(f, 0, ops)
	if f.Counts[NotLinearizable] != 1 {
		t.Fatalf("illegal chunk not found: %v", f.Counts)
	}
}

// TestCheckEpochs: a TV2 member's consecutive committed transactions under
// one producer id must carry increasing epochs; a TV1 member's may not.
func TestCheckEpochs(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tv2       bool
		bump      bool
		anomalies int
		bumps     [2]int
		kept      [2]int
	}{
		{name: "TV2 bumped", tv2: true, bump: true, bumps: [2]int{0, 1}},
		{name: "TV2 kept", tv2: true, bump: false, anomalies: 1, kept: [2]int{0, 1}},
		{name: "TV1 kept", tv2: false, bump: false, kept: [2]int{1, 0}},
		{name: "TV1 bumped (a timed-out abort bumps it)", tv2: false, bump: true, bumps: [2]int{1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newHistoryBuilder(1, 1)
			first, second := b.send(0, 0), b.send(0, 0)
			b.epoch = 3
			b.txn(0, TxnCommitted, first)
			if tc.bump {
				b.epoch = 4
			}
			b.txn(0, TxnCommitted, second)
			h := b.build()
			h.MemberTV2 = []bool{tc.tv2, false}
			f := Check(h, false)
			if got := f.Counts[EpochNotBumped]; got != tc.anomalies {
				t.Errorf("%d %s anomalies, want %d: %v", got, EpochNotBumped, tc.anomalies, f.Examples)
			}
			if f.Total() != tc.anomalies {
				t.Errorf("other anomalies: %v", f.Examples)
			}
			if f.EpochBumps != tc.bumps || f.EpochKept != tc.kept {
				t.Errorf("bumps %v kept %v, want %v and %v", f.EpochBumps, f.EpochKept, tc.bumps, tc.kept)
			}
		})
	}
}
