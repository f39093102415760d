package txn

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/oncelog/oncelog/internal/fsx/fsxtest"
	"github.com/twmb/franz-go/pkg/kerr"
)

// InitProducerId on a full disk is answered COORDINATOR_NOT_AVAILABLE
// instead of panicking, and the broker is told the store failed.
func TestInitProducerIDOnFullDisk(t *testing.T) {
	ffs := fsxtest.New(vfs.NewMem())
	var fatal atomic.Int32
	f := &fixture{markers: &fakeMarkers{}, groups: &fakeGroups{}}
	f.nowMs.Store(1_000_000)
	var err error
	f.c, err = Open(Config{Dir: "/txn", FS: ffs, Now: func() time.Time { return time.UnixMilli(f.nowMs.Load()) }, SweepEvery: time.Hour,
		OnStoreFatal: func(error) { fatal.Add(1) }},
		func() (int64, error) { f.nextPID++; return f.nextPID, nil },
		f.markers, f.groups, func(TopicPartition) bool { return true }, Stats{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.c.Close()
	ctx := context.Background()
	if _, _, code := f.c.InitProducerID(ctx, "a", 60000, -1, -1, 4); code != 0 {
		t.Fatalf("init: %d", code)
	}
	ffs.Inject(fsxtest.OnWrites(syscall.ENOSPC))
	if _, _, code := f.c.InitProducerID(ctx, "b", 60000, -1, -1, 4); code != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("init on a full disk answered %d, want COORDINATOR_NOT_AVAILABLE", code)
	}
	if fatal.Load() == 0 {
		t.Fatal("store failure not reported")
	}
}
