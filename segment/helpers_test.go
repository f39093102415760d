package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var discard = slog.New(slog.DiscardHandler)

// batchOpts describes a test batch; records get the given timestamps.
type batchOpts struct {
	timestamps    []int64
	valueSize     int
	compressed    bool // codec bits set, records left opaque (never decoded here)
	logAppendTime int64
}

// makeBatch builds a RecordBatch v2 with kmsg and seals it with
// batch.ComputeCRC, the way the partition layer would store it.
func makeBatch(base int64, o batchOpts) []byte {
	n := len(o.timestamps)
	first, maxTs := o.timestamps[0], o.timestamps[0]
	for _, ts := range o.timestamps {
		maxTs = max(maxTs, ts)
	}
	var records []byte
	for i, ts := range o.timestamps {
		value := bytes.Repeat([]byte{byte(base + int64(i))}, o.valueSize)
		r := kmsg.Record{TimestampDelta64: ts - first, OffsetDelta: int32(i), Key: []byte(fmt.Sprintf("%08d", base+int64(i))), Value: value}
		body := r.AppendTo(nil)
		r.Length = int32(len(body) - 1) // the zero Length varint took one byte
		records = r.AppendTo(records)
	}
	rb := kmsg.RecordBatch{
		FirstOffset:     base,
		Magic:           2,
		LastOffsetDelta: int32(n - 1),
		FirstTimestamp:  first,
		MaxTimestamp:    maxTs,
		ProducerID:      -1,
		ProducerEpoch:   -1,
		FirstSequence:   -1,
		NumRecords:      int32(n),
		Records:         records,
	}
	if o.compressed {
		rb.Attributes |= 1 // gzip; the log never looks inside
		rb.Records = bytes.Repeat([]byte{0xAB}, max(o.valueSize, 1))
	}
	if o.logAppendTime > 0 {
		rb.Attributes |= batch.AttrLogAppendTime
		rb.MaxTimestamp = o.logAppendTime
	}
	rb.Length = int32(batch.HeaderSize - batch.LengthFieldEnd + len(rb.Records))
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[17:], batch.ComputeCRC(b))
	return b
}

// simpleBatch has n records stamped ts, ts+1, ...
func simpleBatch(base int64, n int, ts int64, valueSize int) []byte {
	tss := make([]int64, n)
	for i := range tss {
		tss[i] = ts + int64(i)
	}
	return makeBatch(base, batchOpts{timestamps: tss, valueSize: valueSize})
}

// model is what the log should contain.
type model struct {
	batches [][]byte
	headers []batch.Header
}

func (m *model) add(b []byte) {
	h, err := batch.Parse(b)
	if err != nil {
		panic(err)
	}
	m.batches = append(m.batches, b)
	m.headers = append(m.headers, h)
}

func (m *model) next() int64 {
	if len(m.headers) == 0 {
		return 0
	}
	return m.headers[len(m.headers)-1].LastOffset() + 1
}

// indexOf returns the index of the batch holding offset.
func (m *model) indexOf(offset int64) int {
	i, _ := slices.BinarySearchFunc(m.headers, offset, func(h batch.Header, off int64) int {
		if h.LastOffset() < off {
			return -1
		}
		if h.BaseOffset > off {
			return 1
		}
		return 0
	})
	return i
}

// appendRandom appends n batches (sometimes several per call) with 1-5
// records, random value sizes and timestamps growing from ts.
func appendRandom(t testing.TB, l *Log, m *model, rng *rand.Rand, n int, ts int64) {
	t.Helper()
	for n > 0 {
		k := min(n, 1+rng.IntN(3))
		var buf []byte
		for range k {
			b := simpleBatch(m.next(), 1+rng.IntN(5), ts+int64(len(m.batches)), rng.IntN(200))
			m.add(b)
			buf = append(buf, b...)
		}
		if err := l.Append(buf); err != nil {
			t.Fatalf("append: %v", err)
		}
		n -= k
	}
}

func openLog(t testing.TB, dir string, cfg Config) (*Log, RecoveryInfo) {
	t.Helper()
	l, info, err := Open(nil, dir, cfg, discard)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return l, info
}

// crash simulates kill -9: file descriptors go away, nothing is flushed,
// written or removed.
func (l *Log) crash() {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.closeSegments()
}

// checkContents reads the whole log through Read in small steps and compares
// it with the model from the start offset on.
func checkContents(t testing.TB, l *Log, m *model) {
	t.Helper()
	if got, want := l.NextOffset(), m.next(); got != want {
		t.Fatalf("NextOffset = %d, want %d", got, want)
	}
	start := l.StartOffset()
	i := m.indexOf(start)
	var got, want []byte
	for _, b := range m.batches[i:] {
		want = append(want, b...)
	}
	for off := start; off < l.NextOffset(); {
		data, err := l.Read(off, 1500, l.NextOffset())
		if err != nil {
			t.Fatalf("read %d: %v", off, err)
		}
		if len(data) == 0 {
			t.Fatalf("read %d returned nothing", off)
		}
		last := checkBatches(t, data)
		got = append(got, data...)
		off = last + 1
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("log contents differ from what was appended (%d vs %d bytes)", len(got), len(want))
	}
}

// checkBatches verifies data is whole, valid, contiguous batches and returns
// the last offset.
func checkBatches(t testing.TB, data []byte) int64 {
	t.Helper()
	last := int64(-1)
	for rest := data; len(rest) > 0; {
		h, b, r, err := batch.Next(rest)
		if err != nil {
			t.Fatalf("bad batch in read: %v", err)
		}
		if _, err := batch.Validate(b); err != nil {
			t.Fatalf("invalid batch at offset %d: %v", h.BaseOffset, err)
		}
		if last >= 0 && h.BaseOffset != last+1 {
			t.Fatalf("batches not contiguous: %d after %d", h.BaseOffset, last)
		}
		last = h.LastOffset()
		rest = r
	}
	return last
}

func segmentPath(dir string, base int64, ext string) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", base, ext))
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func mustNotExist(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s should not exist (err %v)", path, err)
	}
}

// fakeClock is a manually advanced broker clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }
