package cli

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/internal/fsx/fsxtest"
)

// A signal while recovery hangs (a broken disk) ends serve instead of being
// swallowed until recovery returns.
func TestSignalDuringRecoveryStopsServe(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	entered := make(chan struct{})
	ffs := fsxtest.New(vfs.NewMem())
	ffs.Inject(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpMkdirAll || op.Kind == errorfs.OpStat {
			once.Do(func() { close(entered) })
			<-release // the disk does not answer
		}
		return nil
	})
	defer close(release)
	cfg := broker.DefaultConfig()
	cfg.DataDir = "/data"
	cfg.FS = ffs
	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() {
		_, err := openBroker(ctx, cfg, slog.New(slog.DiscardHandler))
		result <- err
	}()
	<-entered
	cancel() // SIGTERM
	if err := <-result; err == nil {
		t.Fatal("openBroker returned a broker although recovery never finished")
	}
}
