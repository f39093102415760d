package partition

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/twmb/franz-go/pkg/kerr"
)

// A batch whose header claims a max timestamp its records don't have (here
// far in the future, which would pin the segment against retention) is
// stored with the max of its records, as Kafka rewrites it, CRC intact.
func TestAppendCorrectsMaxTimestamp(t *testing.T) {
	p := openPartition(t, t.TempDir())
	defer p.Close()
	now := time.Now()
	b := batchtest.Frame(batchtest.Records(3), batch.CodecNone, 3, now.UnixMilli())
	binary.BigEndian.PutUint64(b[35:], uint64(now.Add(100*24*time.Hour).UnixMilli())) // max timestamp
	binary.BigEndian.PutUint32(b[17:], batch.ComputeCRC(b))
	res := p.Append(b, now)
	if res.ErrorCode != 0 {
		t.Fatalf("append: %+v", res)
	}
	waitDurable(t, p, res.DurableAt)
	if _, ts := p.Log().MaxTimestamp(); ts != now.UnixMilli()+2 {
		t.Fatalf("stored max timestamp %d, want %d", ts, now.UnixMilli()+2)
	}
	stored, err := p.Log().Read(0, 1<<20, res.DurableAt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := batch.Validate(stored); err != nil {
		t.Fatalf("stored batch: %v", err)
	}
}

// Refused timestamps come back as INVALID_TIMESTAMP with one record error
// per bad record, and nothing is appended.
func TestAppendRefusesOutOfRangeTimestamps(t *testing.T) {
	p := openPartition(t, t.TempDir())
	defer p.Close()
	now := time.Now()
	b := batchtest.Frame(batchtest.Records(3), batch.CodecNone, 3, now.Add(time.Hour).UnixMilli()) // record 0 exactly at the bound
	res := p.Append(b, now)
	if res.ErrorCode != kerr.InvalidTimestamp.Code || len(res.RecordErrors) != 2 || res.RecordErrors[0].Index != 1 {
		t.Fatalf("append: %+v, want INVALID_TIMESTAMP for records 1 and 2", res)
	}
	if p.LogEndOffset() != 0 {
		t.Fatalf("log end %d after a refused batch", p.LogEndOffset())
	}
}
