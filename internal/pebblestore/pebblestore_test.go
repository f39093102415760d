package pebblestore

import (
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/oncelog/oncelog/internal/fsx/fsxtest"
)

var quiet = slog.New(slog.DiscardHandler)

// A write-ahead-log failure (ENOSPC) is an error from the write and a call
// of OnFatal, not a crashed process.
func TestFatalCommitErrorIsAnError(t *testing.T) {
	ffs := fsxtest.New(vfs.NewMem())
	var fatal atomic.Int32
	db, err := Open("/db", Config{Name: "test", FS: ffs, Logger: quiet, OnFatal: func(error) { fatal.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("a"), []byte("1"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	ffs.Inject(fsxtest.OnWrites(syscall.ENOSPC))
	err = func() (err error) {
		defer Guard(&err)
		return db.Set([]byte("b"), []byte("2"), pebble.Sync)
	}()
	var fe *FatalError
	if !errors.As(err, &fe) {
		t.Fatalf("write on a full disk: %v, want a *FatalError", err)
	}
	if fatal.Load() == 0 {
		t.Fatal("OnFatal not called")
	}
	func() {
		defer Guard(&err)
		db.Close()
	}()
}

// Restarting on a full disk fails with ErrNoSpaceAtOpen instead of hanging
// in pebble's flush retries.
func TestOpenOnFullDiskFails(t *testing.T) {
	mem := vfs.NewMem()
	db, err := Open("/db", Config{Name: "test", FS: mem, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if err := db.Set([]byte{byte(i), byte(i >> 8)}, make([]byte, 100), pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// The disk has room for the new log's first bytes but not for the
	// table the recovered log is flushed into: pebble's Open alone retries
	// that flush forever.
	ffs := fsxtest.New(mem)
	ffs.Inject(func(op errorfs.Op) error {
		if strings.HasSuffix(op.Path, ".sst") && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return syscall.ENOSPC
		}
		return nil
	})
	_, err = Open("/db", Config{Name: "test", FS: ffs, Logger: quiet})
	if !errors.Is(err, ErrNoSpaceAtOpen) {
		t.Fatalf("open on a full disk: %v, want ErrNoSpaceAtOpen", err)
	}
	if ffs.Injected() == 0 {
		t.Fatal("no fault was injected: the test did not exercise the flush at open")
	}
}
