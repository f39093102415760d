package broker

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/oncelog/oncelog/internal/fsx/fsxtest"
	"github.com/twmb/franz-go/pkg/kerr"
)

func openBrokerWith(t *testing.T, cfg Config) *Broker {
	t.Helper()
	b, err := Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCreateRunningOutOfFilesLeavesNoTopic: file descriptors run out half
// way through opening a new topic's partitions (EMFILE from the 6th file
// on). The create fails with KAFKA_STORAGE_ERROR, leaves no directory
// behind, and the broker restarts, without the topic; once files can be
// opened again the same name is created. The topic used to be persisted
// before its partitions opened, and the restart then failed on them.
func TestCreateRunningOutOfFilesLeavesNoTopic(t *testing.T) {
	dir := t.TempDir()
	ffs := fsxtest.New(vfs.Default)
	var opened atomic.Int64
	ffs.Inject(func(op errorfs.Op) error {
		if (op.Kind == errorfs.OpCreate || op.Kind == errorfs.OpOpen) && strings.Contains(op.Path, "/topics/big-") {
			if opened.Add(1) > 5 {
				return syscall.EMFILE
			}
		}
		return nil
	})
	cfg := DefaultConfig()
	cfg.DataDir, cfg.FS = dir, ffs
	b := openBrokerWith(t, cfg)
	_, terr := b.CreateTopic("big", 20, 1, nil, false)
	if terr == nil || terr.Code != kerr.KafkaStorageError.Code {
		t.Fatalf("create with files running out: %v, want KAFKA_STORAGE_ERROR", terr)
	}
	if b.Topic("big") != nil {
		t.Fatal("the failed topic is served")
	}
	if names, _ := os.ReadDir(filepath.Join(dir, "topics")); len(names) != 0 {
		t.Fatalf("the failed create left %d directories", len(names))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ffs.Inject(nil)
	b = openBrokerWith(t, cfg)
	defer b.Close()
	if b.Topic("big") != nil {
		t.Fatal("the failed topic came back after a restart")
	}
	if _, terr := b.CreateTopic("big", 20, 1, nil, false); terr != nil {
		t.Fatalf("create once files can be opened: %v", terr)
	}
	if n := len(b.Topic("big").Partitions); n != 20 {
		t.Fatalf("%d partitions", n)
	}
}

// TestMaxPartitions: --max-partitions bounds the partitions of all topics
// together, for creates, grows and auto-creates (POLICY_VIOLATION); a
// deletion frees its share; validate-only checks the same.
func TestMaxPartitions(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir, cfg.MaxPartitions = t.TempDir(), 10
	b := openBrokerWith(t, cfg)
	defer b.Close()
	if _, terr := b.CreateTopic("a", 6, 1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	for _, tc := range []struct {
		what string
		terr *TopicError
	}{
		{"create", func() *TopicError { _, e := b.CreateTopic("b", 5, 1, nil, false); return e }()},
		{"validate-only create", func() *TopicError { _, e := b.CreateTopic("b", 5, 1, nil, true); return e }()},
		{"grow", b.CreatePartitions("a", 11, false)},
	} {
		if tc.terr == nil || tc.terr.Code != kerr.PolicyViolation.Code || !strings.Contains(tc.terr.Message, "--max-partitions 10") {
			t.Fatalf("%s past --max-partitions: %v, want POLICY_VIOLATION", tc.what, tc.terr)
		}
	}
	if terr := b.CreatePartitions("a", 10, false); terr != nil {
		t.Fatal(terr)
	}
	if _, terr := b.AutoCreate("c"); terr == nil || terr.Code != kerr.PolicyViolation.Code {
		t.Fatalf("auto-create at the limit: %v", terr)
	}
	if terr := b.DeleteTopic("a"); terr != nil {
		t.Fatal(terr)
	}
	if _, terr := b.CreateTopic("b", 10, 1, nil, false); terr != nil {
		t.Fatalf("create after a deletion freed the partitions: %v", terr)
	}
}

// TestConcurrentCreatesOfOneName: creates and auto-creates of one name at
// once; exactly one create wins, the others get TOPIC_ALREADY_EXISTS, every
// auto-create returns that same topic, and its partitions are opened once.
func TestConcurrentCreatesOfOneName(t *testing.T) {
	b := openBrokerAt(t, t.TempDir())
	defer b.Close()
	var wg sync.WaitGroup
	var won, exists atomic.Int32
	var mu sync.Mutex
	var seen []*Topic
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				_, terr := b.CreateTopic("same", 8, 1, nil, false)
				switch {
				case terr == nil:
					won.Add(1)
				case terr.Code == kerr.TopicAlreadyExists.Code:
					exists.Add(1)
				default:
					t.Errorf("create: %v", terr)
				}
				return
			}
			tp, terr := b.AutoCreate("same")
			if terr != nil || tp == nil {
				t.Errorf("auto-create: %v", terr)
				return
			}
			mu.Lock()
			seen = append(seen, tp)
			mu.Unlock()
		}()
	}
	wg.Wait()
	final := b.Topic("same")
	if final == nil {
		t.Fatal("no topic")
	}
	if won.Load()+exists.Load() != 8 || won.Load() > 1 {
		t.Fatalf("%d creates won, %d got TOPIC_ALREADY_EXISTS", won.Load(), exists.Load())
	}
	for _, tp := range seen {
		if tp.ID != final.ID {
			t.Fatal("an auto-create returned another incarnation")
		}
	}
	if b.partitionCount != len(final.Partitions) {
		t.Fatalf("partition count %d, topic has %d", b.partitionCount, len(final.Partitions))
	}
}
