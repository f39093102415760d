package broker

import (
	"os"
	"path/filepath"
	"testing"
)

// TestStartRemovesOrphanPartitionDirs: a crash after a create or grow
// opened its partitions but before it persisted them leaves directories no
// stored topic owns. The next start moves them aside and removes them,
// leaving every stored partition alone.
func TestStartRemovesOrphanPartitionDirs(t *testing.T) {
	dir := t.TempDir()
	b := openBrokerAt(t, dir)
	for _, name := range []string{"ghost", "kept", "grow-1"} {
		if _, terr := b.CreateTopic(name, 1, -1, nil, false); terr != nil {
			t.Fatal(terr)
		}
	}
	appendDurable(t, b, "ghost", 0, recordBatch(-1, -1, 0, 4))
	appendDurable(t, b, "kept", 0, recordBatch(-1, -1, 0, 2))
	appendDurable(t, b, "grow-1", 0, recordBatch(-1, -1, 0, 3))
	// What a crash mid-create leaves: the topic's files, not its metadata.
	if err := b.meta.DeleteTopic("ghost"); err != nil {
		t.Fatal(err)
	}
	b.Close()
	// And mid-grow: a partition directory beyond the stored count.
	extra := filepath.Join(dir, "topics", "grow-1-1")
	if err := os.MkdirAll(extra, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(extra, "00000000000000000000.log"), []byte("never acknowledged"), 0o644); err != nil {
		t.Fatal(err)
	}

	b = openBrokerAt(t, dir)
	if got := b.Partition("kept", 0).HighWatermark(); got != 2 {
		t.Fatalf("kept-0 ends at %d, want 2", got)
	}
	if got := b.Partition("grow-1", 0).HighWatermark(); got != 3 {
		t.Fatalf("grow-1-0 ends at %d, want 3", got)
	}
	b.Close() // waits for the background removals
	entries, err := os.ReadDir(filepath.Join(dir, "topics"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 2 || names[0] != "grow-1-0" || names[1] != "kept-0" {
		t.Fatalf("topics dir after a start holds %v, want [grow-1-0 kept-0]", names)
	}
}
