package chaos

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/oncelog/oncelog/batch"
)

// writeSegment writes n one-record batches at offsets 0..n-1 as the last
// segment of topic-0 and returns its path and the batches' end positions.
func writeSegment(t *testing.T, dataDir string, n int) (string, []int) {
	t.Helper()
	dir := filepath.Join(dataDir, "topics", inputTopic+"-0")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// An older segment that must never be touched.
	if err := os.WriteFile(filepath.Join(dir, "00000000000000000000.log"), []byte("older"), 0o644); err != nil {
		t.Fatal(err)
	}
	var data []byte
	var ends []int
	for i := range n {
		data = append(data, batch.ControlBatch(7, 0, true, 0, int64(i), 0)...)
		ends = append(ends, len(data))
	}
	path := filepath.Join(dir, "00000000000000000010.log")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, ends
}

func TestTearTailCutsOnlyBeyondHighWatermark(t *testing.T) {
	for _, tc := range []struct {
		name      string
		highWater int64
		fraction  float64
		wantSize  func(ends []int) int
		wantCut   int
	}{
		{"from the first batch at the high watermark", 3, 0, func(ends []int) int { return ends[2] }, 2},
		{"inside the last batch", 3, 0.999, func(ends []int) int { return ends[4] - 1 }, 1},
		{"half of what is beyond", 1, 0.5, func(ends []int) int { return ends[0] + (ends[4]-ends[0])/2 }, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := t.TempDir()
			path, ends := writeSegment(t, dataDir, 5)
			before, _ := os.ReadFile(path)
			torn, ok, err := tearTail(dataDir, inputTopic, 0, tc.highWater, tc.fraction)
			if err != nil || !ok {
				t.Fatalf("tearTail: ok %v err %v", ok, err)
			}
			after, _ := os.ReadFile(path)
			if want := tc.wantSize(ends); len(after) != want {
				t.Fatalf("size after tear %d, want %d", len(after), want)
			}
			if !bytes.Equal(after, before[:len(after)]) {
				t.Fatal("tear changed bytes it kept")
			}
			if keep := ends[tc.highWater-1]; len(after) < keep {
				t.Fatalf("cut below the high watermark: %d bytes left, batches below it end at %d", len(after), keep)
			}
			if torn.FirstOffset != tc.highWater || torn.Batches != tc.wantCut || torn.Bytes != int64(len(before)-len(after)) {
				t.Fatalf("torn = %+v", torn)
			}
			if older, _ := os.ReadFile(filepath.Join(filepath.Dir(path), "00000000000000000000.log")); string(older) != "older" {
				t.Fatal("older segment touched")
			}
		})
	}
}

func TestTearTailNothingBeyondHighWatermark(t *testing.T) {
	dataDir := t.TempDir()
	path, _ := writeSegment(t, dataDir, 5)
	before, _ := os.ReadFile(path)
	if _, ok, err := tearTail(dataDir, inputTopic, 0, 5, 0.5); err != nil || ok {
		t.Fatalf("tearTail at the end: ok %v err %v", ok, err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("segment changed")
	}
}

func TestTearTailIncompleteBatch(t *testing.T) {
	// A batch the kill interrupted: its bytes may go even below the high
	// watermark, since no client can have seen it.
	dataDir := t.TempDir()
	path, ends := writeSegment(t, dataDir, 3)
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path, data[:len(data)-5], 0o644); err != nil {
		t.Fatal(err)
	}
	torn, ok, err := tearTail(dataDir, inputTopic, 0, 10, 0)
	if err != nil || !ok {
		t.Fatalf("ok %v err %v", ok, err)
	}
	if after, _ := os.ReadFile(path); len(after) != ends[1] || torn.Batches != 1 {
		t.Fatalf("size %d (want %d), torn %+v", len(after), ends[1], torn)
	}
}
