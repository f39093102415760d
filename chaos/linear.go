package chaos

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"
)

// Linearizability of appends. Each input record is an append whose
// invocation is the Produce call and whose response is the ack with the
// offset; records never acknowledged but found by the final read take the
// offset they were read at and a response at the end of time. A partition's
// appends are linearizable against a log that hands out increasing offsets
// exactly when no append acknowledged before another was invoked got the
// larger offset.
//
// checkRealTimeOrder decides that directly in O(n log n) for every append.
// With Config.Porcupine, github.com/anishathalye/porcupine checks the same
// histories as a second, independent opinion; its search keeps a bitset per
// step, so the histories are split into chunks of consecutive offsets. A
// chunk that is not linearizable proves the whole history is not (restricting
// a linearization to a subset of operations keeps it one); order between
// chunks is left to checkRealTimeOrder.

// porcupineChunk is the number of appends per porcupine sub-history.
const porcupineChunk = 2000

// porcupineTimeout bounds porcupine's search per partition.
const porcupineTimeout = 2 * time.Minute

// appendOp is one append: the record, when it was invoked and answered, and
// the offset it got.
type appendOp struct {
	ID     RecordID
	Offset int64
	Call   int64
	Return int64 // math.MaxInt64: never answered
}

// appendHistories builds each input partition's appends from the sends and
// the reference read.
func appendHistories(h *History, inputLocations map[RecordID][]location) map[int32][]appendOp {
	ops := make(map[int32][]appendOp)
	for producer, sends := range h.Sends {
		for seq, s := range sends {
			id := RecordID{Producer: uint16(producer), Seq: uint64(seq)}
			switch {
			case s.Status == SendAcked:
				ops[s.Partition] = append(ops[s.Partition], appendOp{ID: id, Offset: s.Offset, Call: s.Call, Return: s.Return})
			case len(inputLocations[id]) > 0:
				// Written although the producer never heard: it
				// took effect at some point after the call.
				loc := inputLocations[id][0]
				ops[loc.Partition] = append(ops[loc.Partition], appendOp{ID: id, Offset: loc.Offset, Call: s.Call, Return: math.MaxInt64})
			}
		}
	}
	for _, partitionOps := range ops {
		slices.SortFunc(partitionOps, func(a, b appendOp) int { return cmp.Compare(a.Offset, b.Offset) })
	}
	return ops
}

// checkRealTimeOrder reports appends that got a larger offset than an append
// invoked after they were acknowledged, and offsets handed to two appends.
func checkRealTimeOrder(f *Findings, partition int32, ops []appendOp) {
	// ops are sorted by offset. Walking down from the largest offset,
	// earliestReturn is the earliest response among appends with a larger
	// offset; if it precedes this append's call, that append finished
	// before this one started yet got the larger offset.
	earliestReturn := int64(math.MaxInt64)
	var earliest appendOp
	for i := len(ops) - 1; i >= 0; i-- {
		op := ops[i]
		if i > 0 && ops[i-1].Offset == op.Offset {
			f.add(NotLinearizable, "input partition %d: offset %d given to both %v and %v", partition, op.Offset, ops[i-1].ID, op.ID)
		}
		if earliestReturn < op.Call {
			f.add(NotLinearizable, "input partition %d: %v acknowledged at offset %d before %v was sent, which got the smaller offset %d",
				partition, earliest.ID, earliest.Offset, op.ID, op.Offset)
		}
		if op.Return < earliestReturn {
			earliestReturn, earliest = op.Return, op
		}
	}
}

// rankedAppend is porcupine's input for one append: the record, and the
// rank of its offset among the offsets of its chunk (0, 1, 2, ...).
type rankedAppend struct {
	ID   RecordID
	Rank int
}

// appendLogModel is a log whose appends take the next position: an append
// can be linearized only if its offset is the next one of its chunk.
// Ranking the offsets squeezes out gaps (whether every offset holds a record
// is the other checks' business) and makes the search deterministic: in any
// state exactly one pending append can go next, so porcupine never guesses.
var appendLogModel = porcupine.Model{
	Init: func() any { return -1 },
	Step: func(state, input, _ any) (bool, any) {
		next := state.(int) + 1
		return input.(rankedAppend).Rank == next, next
	},
	// Partition splits a history built by checkPorcupine back into its
	// chunks, whose ranks were computed separately.
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		var chunks [][]porcupine.Operation
		for len(history) > 0 {
			n := min(porcupineChunk, len(history))
			chunks = append(chunks, history[:n])
			history = history[n:]
		}
		return chunks
	},
	DescribeOperation: func(input, output any) string {
		return fmt.Sprintf("append(%v) -> %d", input.(rankedAppend).ID, output)
	},
}

// checkPorcupine runs porcupine on one partition's appends (sorted by
// offset), in chunks of porcupineChunk consecutive offsets checked in
// parallel.
func checkPorcupine(f *Findings, partition int32, ops []appendOp) {
	history := make([]porcupine.Operation, 0, len(ops))
	for start := 0; start < len(ops); start += porcupineChunk {
		chunkOps := ops[start:min(start+porcupineChunk, len(ops))]
		rank := -1
		for i, op := range chunkOps {
			if i == 0 || op.Offset != chunkOps[i-1].Offset {
				rank++
			}
			history = append(history, porcupine.Operation{
				ClientId: int(op.ID.Producer),
				Input:    rankedAppend{ID: op.ID, Rank: rank},
				Call:     op.Call,
				Output:   op.Offset,
				Return:   op.Return,
			})
		}
	}
	switch porcupine.CheckOperationsTimeout(appendLogModel, history, porcupineTimeout) {
	case porcupine.Illegal:
		f.add(NotLinearizable, "input partition %d: porcupine found no linearization of %d appends", partition, len(ops))
	case porcupine.Unknown:
		f.PorcupineInconclusive++
	}
}

// checkLinearizability checks every input partition's appends.
func (c *checker) checkLinearizability(withPorcupine bool) {
	ops := appendHistories(c.h, c.inputLocations)
	for _, p := range sortedKeys(ops) {
		c.f.LinearizabilityOps += len(ops[p])
		checkRealTimeOrder(c.f, p, ops[p])
		if withPorcupine {
			checkPorcupine(c.f, p, ops[p])
		}
	}
}
