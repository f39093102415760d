package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/oncelog/oncelog/internal/fsx/fsxtest"
	"github.com/oncelog/oncelog/internal/pebblestore"
	"github.com/twmb/franz-go/pkg/kerr"
)

func openBrokerOn(t *testing.T, fs *fsxtest.FS) (*Broker, error) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = "/data"
	cfg.FS = fs
	return Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// A full disk takes the partition offline (KAFKA_STORAGE_ERROR, listed by
// OfflinePartitions for /readyz) and it comes back by itself once space is
// freed; no acknowledged record is lost, and a failed metadata write stops
// the broker (StoreFailed) instead of crashing it.
func TestDiskFullPartitionComesBack(t *testing.T) {
	mem := vfs.NewCrashableMem()
	ffs := fsxtest.New(mem)
	b, err := openBrokerOn(t, ffs)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, terr := b.CreateTopic("t", 1, 1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	p := b.Partition("t", 0)
	ctx := context.Background()
	acked := 0
	produce := func() int16 {
		res := p.Append(batchtest.Plain(2), time.Now())
		if res.ErrorCode != 0 {
			return res.ErrorCode
		}
		if err := p.WaitDurable(ctx, res.DurableAt); err != nil {
			return kerr.KafkaStorageError.Code
		}
		acked += 2
		return 0
	}
	for range 10 {
		if code := produce(); code != 0 {
			t.Fatalf("produce: %d", code)
		}
	}
	if off := b.OfflinePartitions(); len(off) != 0 {
		t.Fatalf("offline before any fault: %v", off)
	}

	ffs.Inject(fsxtest.OnWrites(syscall.ENOSPC))
	if code := produce(); code != kerr.KafkaStorageError.Code {
		t.Fatalf("produce on a full disk answered %d, want KAFKA_STORAGE_ERROR", code)
	}
	if off := b.OfflinePartitions(); len(off) != 1 || !strings.Contains(off[0], "no space left") {
		t.Fatalf("OfflinePartitions on a full disk: %v", off)
	}
	if code := produce(); code != kerr.KafkaStorageError.Code {
		t.Fatalf("second produce on a full disk answered %d", code)
	}

	ffs.Inject(nil) // space freed
	deadline := time.Now().Add(60 * time.Second)
	for len(b.OfflinePartitions()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("partition did not come back: %v", b.OfflinePartitions())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 5 {
		if code := produce(); code != 0 {
			t.Fatalf("produce after space was freed: %d", code)
		}
	}

	// A metadata write on a full disk: an error code, then the broker
	// asks to be stopped. (A CreateTopic fails earlier, opening its
	// partitions, without touching the store: it persists last.)
	ffs.Inject(fsxtest.OnWrites(syscall.ENOSPC))
	if terr := b.SetTopicConfigs("t", map[string]string{"retention.ms": "3600000"}, false); terr == nil || terr.Code != kerr.KafkaStorageError.Code {
		t.Fatalf("AlterConfigs on a full disk: %v, want KAFKA_STORAGE_ERROR", terr)
	}
	select {
	case <-b.StoreFailed():
	default:
		t.Fatal("metadata store failure not reported")
	}
	if !errors.As(b.StoreErr(), new(*pebblestore.FatalError)) {
		t.Fatalf("StoreErr: %v", b.StoreErr())
	}

	// Power loss now: every acknowledged record is there.
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	b2, err := openBrokerOn(t, fsxtest.New(crashed))
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if b2.Partition("t", 0) == nil {
		var names []string
		for _, t := range b2.Topics() {
			names = append(names, t.Name)
		}
		t.Fatalf("topic t missing after restart; topics %v", names)
	}
	records := 0
	if err := b2.Partition("t", 0).Log().ScanBatches(0, func(h batch.Header, _ []byte) error {
		records += int(h.NumRecords)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if records != acked {
		t.Fatalf("%d records after restart, %d acknowledged", records, acked)
	}
}

// Restarting on a disk too full for the metadata stores to recover fails
// with a clear error instead of hanging.
func TestRestartOnFullDiskFailsClearly(t *testing.T) {
	mem := vfs.NewCrashableMem()
	b, err := openBrokerOn(t, fsxtest.New(mem))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, terr := b.CreateTopic("t"+strings.Repeat("x", i), 1, 1, nil, false); terr != nil {
			t.Fatal(terr)
		}
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{}) // kill -9: the stores' logs are not flushed
	b.Close()
	full := fsxtest.New(crashed)
	full.Inject(func(op errorfs.Op) error {
		if strings.HasSuffix(op.Path, ".sst") && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return syscall.ENOSPC
		}
		return nil
	})
	_, err = openBrokerOn(t, full)
	if !errors.Is(err, pebblestore.ErrNoSpaceAtOpen) {
		t.Fatalf("restart on a full disk: %v, want ErrNoSpaceAtOpen", err)
	}
}
