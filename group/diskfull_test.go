package group

import (
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/oncelog/oncelog/internal/fsx/fsxtest"
	"github.com/twmb/franz-go/pkg/kerr"
)

// An OffsetCommit on a full disk is answered NOT_COORDINATOR (Kafka's
// answer to a failed __consumer_offsets write) instead of panicking, and
// the broker is told the store failed.
func TestOffsetCommitOnFullDisk(t *testing.T) {
	mem := vfs.NewCrashableMem()
	ffs := fsxtest.New(mem)
	var fatal atomic.Int32
	e := newEnv(t, func(c *Config) {
		c.FS = ffs
		c.Dir = "/groups"
		c.OnStoreFatal = func(error) { fatal.Add(1) }
	})
	commit := func(off int64) int16 {
		return commitErrors(e.c.OffsetCommit(bg, commitReq("simple", -1, "", map[string]map[int32]int64{"t": {0: off}})))["t/0"]
	}
	if code := commit(1); code != 0 {
		t.Fatalf("commit: %d", code)
	}
	ffs.Inject(fsxtest.OnWrites(syscall.ENOSPC))
	if code := commit(2); code != kerr.NotCoordinator.Code {
		t.Fatalf("commit on a full disk answered %d, want NOT_COORDINATOR", code)
	}
	if fatal.Load() == 0 {
		t.Fatal("store failure not reported")
	}
	// After a restart (the broker stops on the failure) the acknowledged
	// commit is there.
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	cfg := e.cfg
	cfg.FS, cfg.OnStoreFatal = crashed, nil
	c2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got := c2.CommittedOffsets("simple"); got["t"][0] != 1 {
		t.Fatalf("after restart: %v, want the acknowledged offset 1", got)
	}
}
