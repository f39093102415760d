package meta

import (
	"log/slog"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/oncelog/oncelog/internal/fsx/fsxtest"
)

// A topic write on a full disk is an error (CreateTopics answers
// KAFKA_STORAGE_ERROR), not a panic; a topic acknowledged before survives.
func TestPutTopicOnFullDisk(t *testing.T) {
	mem := vfs.NewCrashableMem()
	ffs := fsxtest.New(mem)
	var fatal atomic.Int32
	s, err := Open(ffs, "/meta", slog.New(slog.DiscardHandler), func(error) { fatal.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutTopic(Topic{Name: "a", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	ffs.Inject(fsxtest.OnWrites(syscall.ENOSPC))
	if err := s.PutTopic(Topic{Name: "b", Partitions: 1}); err == nil {
		t.Fatal("PutTopic on a full disk succeeded")
	}
	if fatal.Load() == 0 {
		t.Fatal("store failure not reported")
	}
	s.Close()
	s2, err := Open(mem.CrashClone(vfs.CrashCloneCfg{}), "/meta", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	topics, err := s2.Topics()
	if err != nil || len(topics) != 1 || topics[0].Name != "a" {
		t.Fatalf("after restart: %v, %v; want topic a only", topics, err)
	}
}
