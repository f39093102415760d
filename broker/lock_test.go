package broker

import (
	"io"
	"log/slog"
	"strings"
	"testing"
)

// TestSecondBrokerOnSameDataDirFails: a second broker on a data dir in use
// fails at once with a clear error instead of sharing the files (two
// writers on one log corrupt it); once the first closes, the dir is free.
func TestSecondBrokerOnSameDataDirFails(t *testing.T) {
	dir := t.TempDir()
	first := openBrokerAt(t, dir)
	cfg := DefaultConfig()
	cfg.DataDir = dir
	second, err := Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		second.Close()
		first.Close()
		t.Fatal("a second broker opened a data dir in use")
	}
	if want := "data dir " + dir + " is in use by another oncelog (lock held)"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again := openBrokerAt(t, dir)
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
}
