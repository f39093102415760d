package pebblestore

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/oncelog/oncelog/internal/fsx/fsxtest"
)

// Concurrent writers' changes all become durable; changes to one key
// queued in order end as the last one; a delete removes; after Close the
// queue refuses with ErrClosed and what was queued before is on disk.
func TestCommitterAppliesInOrderAndDrainsOnClose(t *testing.T) {
	mem := vfs.NewMem()
	db, err := Open("/db", Config{Name: "test", FS: mem, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	c := NewCommitter(db, nil)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			var last <-chan error
			for i := range 50 {
				key := []byte(fmt.Sprintf("w%d", w))
				last = c.Enqueue([]Op{{Key: key, Value: []byte(fmt.Sprint(i))}, {Key: []byte(fmt.Sprintf("w%d-%d", w, i)), Value: []byte("x")}})
			}
			if err := <-last; err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := <-c.Enqueue([]Op{{Key: []byte("w0-0"), Delete: true}}); err != nil {
		t.Fatal(err)
	}
	if err := <-c.Enqueue(nil); err != nil {
		t.Fatalf("empty enqueue: %v", err)
	}
	pending := c.Enqueue([]Op{{Key: []byte("last"), Value: []byte("1")}})
	c.Close()
	if err := <-pending; err != nil {
		t.Fatalf("write queued before Close: %v", err)
	}
	if err := <-c.Enqueue([]Op{{Key: []byte("late")}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("enqueue after Close: %v, want ErrClosed", err)
	}
	for w := range 8 {
		v, closer, err := db.Get([]byte(fmt.Sprintf("w%d", w)))
		if err != nil {
			t.Fatal(err)
		}
		if string(v) != "49" {
			t.Errorf("w%d = %q, want the last change 49", w, v)
		}
		closer.Close()
	}
	if _, _, err := db.Get([]byte("w0-0")); err == nil {
		t.Error("deleted key still there")
	}
	if _, closer, err := db.Get([]byte("last")); err != nil {
		t.Errorf("the write queued before Close is missing: %v", err)
	} else {
		closer.Close()
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// A failing disk fails every waiter of the batch and tells onError; the
// failure is an error, not a crash.
func TestCommitterReportsWriteFailure(t *testing.T) {
	ffs := fsxtest.New(vfs.NewMem())
	db, err := Open("/db", Config{Name: "test", FS: ffs, Logger: quiet, OnFatal: func(error) {}})
	if err != nil {
		t.Fatal(err)
	}
	var reported atomic.Int32
	c := NewCommitter(db, func(error) { reported.Add(1) })
	if err := <-c.Enqueue([]Op{{Key: []byte("a"), Value: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	ffs.Inject(fsxtest.OnWrites(syscall.ENOSPC))
	if err := <-c.Enqueue([]Op{{Key: []byte("b"), Value: []byte("2")}}); err == nil {
		t.Fatal("write on a full disk succeeded")
	}
	if reported.Load() == 0 {
		t.Fatal("onError not called")
	}
	c.Close()
	func() {
		defer Guard(&err)
		db.Close()
	}()
}
