package broker

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestDeleteRecreateRaceKeepsNewTopic: DeleteTopic looping while a producer
// keeps auto-creating and writing the same name. The old partition's
// deletion must never remove files of the topic created after it: every
// record acknowledged (fsynced) to the final incarnation is still there
// after a clean restart. Before deletion renamed the directory away under
// the broker lock, the old partition's delayed RemoveAll took the new
// partition's files with it (acknowledged, readable through the open fds,
// gone after the restart).
func TestDeleteRecreateRaceKeepsNewTopic(t *testing.T) {
	dir := t.TempDir()
	b := openBrokerAt(t, dir)
	const name = "race"
	var wg sync.WaitGroup
	stop := make(chan struct{})
	deletes := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if b.DeleteTopic(name) == nil {
				deletes++
			}
		}
	}()
	// Writers keep the old partition's syncer busy, so its deletion waits
	// for an fsync while the name is free for auto-creation.
	deadline := time.Now().Add(3 * time.Second)
	var writers sync.WaitGroup
	for w := 0; w < 4; w++ {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for time.Now().Before(deadline) {
				if _, terr := b.AutoCreate(name); terr != nil {
					continue
				}
				if p := b.Partition(name, 0); p != nil {
					res := p.Append(recordBatch(-1, -1, 0, 1), time.Now())
					if res.ErrorCode == 0 && w == 0 {
						_ = p.WaitDurable(context.Background(), res.DurableAt)
					}
				}
			}
		}()
	}
	writers.Wait()
	close(stop)
	wg.Wait()
	t.Logf("%d deletions", deletes)

	// The final incarnation: acknowledged writes after the deleter stopped.
	if _, terr := b.AutoCreate(name); terr != nil {
		t.Fatal(terr)
	}
	for i := 0; i < 100; i++ {
		appendDurable(t, b, name, 0, recordBatch(-1, -1, 0, 1))
	}
	want := b.Partition(name, 0).HighWatermark()
	if want < 100 {
		t.Fatalf("high watermark %d after 100 acknowledged records", want)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openBrokerAt(t, dir)
	defer b.Close()
	p := b.Partition(name, 0)
	if p == nil {
		t.Fatal("topic gone after restart")
	}
	if got := p.HighWatermark(); got != want {
		t.Fatalf("after restart the log ends at %d, want %d: acknowledged records lost", got, want)
	}
	// No deletion tombstone is left behind once the broker has restarted.
	entries, err := os.ReadDir(filepath.Join(dir, "topics"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), "-delete") {
			t.Errorf("tombstone %s left after restart", e.Name())
		}
	}
}

// holdRemoveFS, once armed, blocks the next RemoveAll of a path under dir/topics whose
// name starts with prefix until release is closed, and reports it on held.
type holdRemoveFS struct {
	vfs.FS
	topics, prefix string
	armed          atomic.Bool
	held, release  chan struct{}
}

func (f *holdRemoveFS) RemoveAll(name string) error {
	if filepath.Dir(name) == f.topics && strings.HasPrefix(filepath.Base(name), f.prefix) {
		if f.armed.CompareAndSwap(true, false) {
			close(f.held)
			<-f.release
		}
	}
	return f.FS.RemoveAll(name)
}

// TestDeletedPartitionCannotRemoveItsSuccessor orders the race of
// TestDeleteRecreateRaceKeepsNewTopic deterministically: the deleted
// partition's file removal is held back until a topic of the same name has
// been created and acknowledged records; letting it go must not touch them.
func TestDeletedPartitionCannotRemoveItsSuccessor(t *testing.T) {
	dir := t.TempDir()
	fs := &holdRemoveFS{FS: vfs.Default, topics: filepath.Join(dir, "topics"), prefix: "doomed-0",
		held: make(chan struct{}), release: make(chan struct{})}
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.FS = fs
	b, err := Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, terr := b.CreateTopic("doomed", 1, -1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	appendDurable(t, b, "doomed", 0, recordBatch(-1, -1, 0, 5))
	fs.armed.Store(true)
	deleted := make(chan *TopicError, 1)
	go func() { deleted <- b.DeleteTopic("doomed") }()
	<-fs.held // the old partition's files are about to be removed
	if _, terr := b.CreateTopic("doomed", 1, -1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	for i := 0; i < 100; i++ {
		appendDurable(t, b, "doomed", 0, recordBatch(-1, -1, 0, 1))
	}
	close(fs.release)
	if terr := <-deleted; terr != nil {
		t.Fatal(terr)
	}
	b.Close()
	b = openBrokerAt(t, dir)
	defer b.Close()
	if got := b.Partition("doomed", 0).HighWatermark(); got != 100 {
		t.Fatalf("recreated topic holds %d records after restart, want the 100 acknowledged", got)
	}
}

// TestStartRemovesLeftoverTombstones: a stop or crash before a deleted
// partition's files were removed leaves its tombstone; the next start
// removes it and leaves live partitions alone.
func TestStartRemovesLeftoverTombstones(t *testing.T) {
	dir := t.TempDir()
	b := openBrokerAt(t, dir)
	if _, terr := b.CreateTopic("kept", 1, -1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	appendDurable(t, b, "kept", 0, recordBatch(-1, -1, 0, 3))
	b.Close()
	tomb := filepath.Join(dir, "topics", "gone-0.0123456789abcdef0123456789abcdef-delete")
	if err := os.MkdirAll(tomb, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tomb, "00000000000000000000.log"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	b = openBrokerAt(t, dir)
	if got := b.Partition("kept", 0).HighWatermark(); got != 3 {
		t.Fatalf("kept-0 ends at %d, want 3", got)
	}
	b.Close() // waits for background removals
	if _, err := os.Stat(tomb); !os.IsNotExist(err) {
		t.Fatalf("leftover tombstone still there after a start: %v", err)
	}
}
