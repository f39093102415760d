package batch

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// buildBatch encodes a valid uncompressed batch of n records with kmsg.
func buildBatch(n int, pid int64, epoch int16, seq int32) []byte {
	var records []byte
	for i := 0; i < n; i++ {
		r := kmsg.Record{OffsetDelta: int32(i), Value: []byte("v")}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		records = r.AppendTo(records)
	}
	rb := kmsg.RecordBatch{
		Magic: 2, LastOffsetDelta: int32(n - 1), ProducerID: pid, ProducerEpoch: epoch,
		FirstSequence: seq, NumRecords: int32(n), Records: records,
		FirstTimestamp: 1000, MaxTimestamp: 1000 + int64(n),
	}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[offLength:], uint32(len(b)-LengthFieldEnd))
	binary.BigEndian.PutUint32(b[offCRC:], ComputeCRC(b))
	return b
}

func TestValidateAndPatch(t *testing.T) {
	b := buildBatch(3, 7, 1, 10)
	h, err := Validate(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.NumRecords != 3 || h.ProducerID != 7 || h.ProducerEpoch != 1 || h.BaseSequence != 10 || h.LastSequence() != 12 || h.Size() != len(b) {
		t.Fatalf("header %+v", h)
	}
	SetBaseOffset(b, 42)
	SetLeaderEpoch(b, 3)
	if h, err = Validate(b); err != nil || h.BaseOffset != 42 || h.LastOffset() != 44 || h.LeaderEpoch != 3 {
		t.Fatalf("after patch: %+v %v", h, err)
	}
	SetLogAppendTime(b, 99)
	if h, err = Validate(b); err != nil || h.MaxTimestamp != 99 || h.Attributes&AttrLogAppendTime == 0 {
		t.Fatalf("log append time: %+v %v", h, err)
	}
	b[len(b)-1] ^= 1
	if _, err := Validate(b); !errors.Is(err, ErrCRC) {
		t.Fatalf("flipped byte: %v, want ErrCRC", err)
	}
	if _, err := Validate(b[:30]); !errors.Is(err, ErrShort) {
		t.Fatalf("short: %v", err)
	}
	b2 := buildBatch(1, -1, -1, -1)
	b2[offMagic] = 1
	if _, err := Validate(b2); !errors.Is(err, ErrMagic) {
		t.Fatalf("magic 1: %v", err)
	}
}

func TestIncrementSequenceWraps(t *testing.T) {
	cases := []struct{ seq, inc, want int32 }{
		{0, 1, 1},
		{math.MaxInt32, 1, 0},
		{math.MaxInt32 - 1, 3, 1},
		{math.MaxInt32 - 4, 4, math.MaxInt32},
	}
	for _, c := range cases {
		if got := IncrementSequence(c.seq, c.inc); got != c.want {
			t.Errorf("IncrementSequence(%d, %d) = %d, want %d", c.seq, c.inc, got, c.want)
		}
	}
}

func TestControlBatchRoundTrip(t *testing.T) {
	for _, commit := range []bool{true, false} {
		b := ControlBatch(5, 2, commit, 9, 100, 1234)
		h, err := Validate(b)
		if err != nil {
			t.Fatal(err)
		}
		if !h.IsControl() || !h.IsTransactional() || h.BaseOffset != 100 || h.ProducerID != 5 || h.ProducerEpoch != 2 || h.BaseSequence != -1 {
			t.Fatalf("header %+v", h)
		}
		gotCommit, epoch, ok := ParseControl(b)
		if !ok || gotCommit != commit || epoch != 9 {
			t.Fatalf("ParseControl = %v %d %v", gotCommit, epoch, ok)
		}
		// kmsg must read it as a control record too.
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(b); err != nil || rb.NumRecords != 1 {
			t.Fatalf("kmsg read: %v", err)
		}
	}
}

func FuzzBatchHeader(f *testing.F) {
	f.Add(buildBatch(2, 1, 0, 0))
	f.Add(ControlBatch(1, 0, true, 0, 0, 0))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Validate(b)
		if err == nil && (h.Size() != len(b) || h.NumRecords <= 0) {
			t.Fatalf("accepted an inconsistent batch: %+v", h)
		}
		ParseControl(b)
		rest := b
		for len(rest) > 0 {
			_, _, next, err := Next(rest)
			if err != nil {
				break
			}
			if len(next) >= len(rest) {
				t.Fatal("Next made no progress")
			}
			rest = next
		}
	})
}
