package broker

import (
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/franz-go/pkg/kerr"
)

// blockCreateFS blocks the first file creation in a directory named dir
// until release is closed, reporting it on held.
type blockCreateFS struct {
	vfs.FS
	dir           string
	once          sync.Once
	held, release chan struct{}
}

func (f *blockCreateFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	if filepath.Base(filepath.Dir(name)) == f.dir {
		f.once.Do(func() {
			close(f.held)
			<-f.release
		})
	}
	return f.FS.Create(name, category)
}

// TestCloseWaitsForCreateInFlight: a CreateTopics still opening its files
// when the broker is told to stop (SIGTERM) opens them without the broker
// lock, so Close must wait for it: otherwise it persists the topic into a
// closed metadata store and publishes partitions nobody closes. Admin
// operations that arrive after Close began are refused.
func TestCloseWaitsForCreateInFlight(t *testing.T) {
	dir := t.TempDir()
	fs := &blockCreateFS{FS: vfs.Default, dir: "slow-0", held: make(chan struct{}), release: make(chan struct{})}
	cfg := DefaultConfig()
	cfg.DataDir, cfg.FS = dir, fs
	b, err := Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, terr := b.CreateTopic("other", 1, -1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	created := make(chan *TopicError, 1)
	go func() { _, terr := b.CreateTopic("slow", 1, -1, nil, false); created <- terr }()
	<-fs.held // the create is opening slow-0's files
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	for { // until Close refuses new operations and waits for this one
		b.mu.Lock()
		stopping := b.shutdown
		b.mu.Unlock()
		if stopping {
			break
		}
		runtime.Gosched()
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a create was still opening its files", err)
	default:
	}
	close(fs.release)
	if terr := <-created; terr != nil {
		t.Fatal(terr)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	for what, terr := range map[string]*TopicError{
		"CreateTopic":      second(b.CreateTopic("late", 1, -1, nil, false)),
		"CreatePartitions": b.CreatePartitions("other", 2, false),
		"DeleteTopic":      b.DeleteTopic("other"),
		"SetTopicConfigs":  b.SetTopicConfigs("other", map[string]string{"retention.ms": "1000"}, false),
	} {
		if terr == nil || terr.Code != kerr.KafkaStorageError.Code {
			t.Errorf("%s after Close: %v, want KAFKA_STORAGE_ERROR", what, terr)
		}
	}
	b = openBrokerAt(t, dir)
	defer b.Close()
	if b.Topic("slow") == nil {
		t.Fatal("topic acknowledged while Close waited is gone after a restart")
	}
	if p := b.Topic("other"); p == nil || len(p.Partitions) != 1 {
		t.Fatalf("topic changed by operations refused after Close: %+v", p)
	}
	if b.Topic("late") != nil {
		t.Fatal("topic refused after Close exists")
	}
}

func second[T, U any](_ T, u U) U { return u }
