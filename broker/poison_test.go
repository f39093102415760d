package broker

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/partition"
)

// TestProduceKeepsNoSliceOfTheRequest is the contract the wire layer's
// pooled request buffers rely on (wire/bodypool.go): once Produce and
// WaitDurable have returned, nothing the broker does later reads the
// request's bytes. Every batch is overwritten right after its produce; the
// log must still hold the original records, and the key window's index,
// written in the background after the produce, the original keys.
func TestProduceKeepsNoSliceOfTheRequest(t *testing.T) {
	b := openKeyed(t, t.TempDir())
	defer b.Close()
	if _, terr := b.CreateTopic("kw", 1, 1, map[string]string{DedupKeyConfig: "record-key"}, false); terr != nil {
		t.Fatal(terr)
	}
	if _, terr := b.CreateTopic("plain", 1, 1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	// The index is written only after every request was overwritten,
	// as it may be when the pool hands a buffer on before the flush.
	tk := b.keys.topic("kw")
	tk.mu.Lock()
	pk := tk.partition(0)
	tk.mu.Unlock()
	pk.flushMu.Lock()
	const batches, perBatch = 20, 10
	var want []string // "key=value" in offset order, the same in both topics
	for i := range batches {
		var kv []string
		for j := range perBatch {
			k, v := fmt.Sprintf("key-%d-%d", i, j), fmt.Sprintf("value-%d-%d", i, j)
			kv = append(kv, k, v)
			want = append(want, k+"="+v)
		}
		for _, topic := range []string{"kw", "plain"} {
			req := keyedBatch(t, kv...)
			if res := produceDurable(t, b, topic, 0, req); res.ErrorCode != 0 {
				t.Fatalf("produce %s batch %d: error %d", topic, i, res.ErrorCode)
			}
			for k := range req {
				req[k] = 0xA5 // what the pool does to a returned buffer in tests
			}
		}
	}
	pk.flushMu.Unlock()
	b.keys.flushes.Wait() // every batch's keys are in the index now

	for _, topic := range []string{"kw", "plain"} {
		if got := readKeyValues(t, b.Topic(topic).Partitions[0]); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s holds %v\nwant %v", topic, got, want)
		}
	}
	// The index itself, not the pending keys in front of it: those are
	// let go of by the keys the flush wrote.
	tk.mu.Lock()
	left := tk.pending.len()
	tk.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d keys still pending after every flush", left)
	}
	window := keyWindowOf(b.Topic("kw").Configs).window
	for i, kv := range want {
		key := kv[:bytes.IndexByte([]byte(kv), '=')]
		e, found, err := b.keys.ix.Lookup("kw", []byte(key), window)
		if err != nil || !found || e.Offset != int64(i) {
			t.Fatalf("index lookup of %s: %+v found=%v err=%v, want offset %d", key, e, found, err, i)
		}
	}
	// A producer sending the same keys again is told they are duplicates.
	var kv []string
	for _, s := range want[:perBatch] {
		k, v, _ := bytes.Cut([]byte(s), []byte("="))
		kv = append(kv, string(k), string(v))
	}
	if res := produceDurable(t, b, "kw", 0, keyedBatch(t, kv...)); res.ErrorCode != 0 || len(res.Duplicates) != perBatch {
		t.Fatalf("replay: error %d, %d duplicates, want %d", res.ErrorCode, len(res.Duplicates), perBatch)
	}
}

// readKeyValues reads a whole partition as "key=value" strings.
func readKeyValues(t *testing.T, p *partition.Partition) []string {
	t.Helper()
	var out []string
	for off := int64(0); ; {
		res := p.Read(partition.ReadOptions{Offset: off, MaxBytes: 1 << 20, MinOneBatch: true})
		if res.ErrorCode != 0 {
			t.Fatalf("read at %d: error %d", off, res.ErrorCode)
		}
		if len(res.Records) == 0 {
			return out
		}
		for rest := res.Records; len(rest) > 0; {
			h, raw, next, err := batch.Next(rest)
			if err != nil {
				t.Fatal(err)
			}
			it, err := batch.Records(raw, h, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			for r, ok := it.Next(); ok; r, ok = it.Next() {
				out = append(out, string(r.Key)+"="+string(r.Value))
			}
			off = h.BaseOffset + int64(h.LastOffsetDelta) + 1
			rest = next
		}
	}
}
