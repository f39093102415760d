package broker

import (
	"errors"
	"log/slog"
	"testing"
)

// At --max-producers bindings, old ones whose producer id nothing holds
// make room; when none can go, Bind refuses instead of growing.
func TestProducerOwnersBounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Authorizer = AuthorizerACL
	cfg.MaxProducers = 2
	cfg.ProducerIDExpirationMs = 1
	b, err := Open(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	o := b.Owners
	for pid := int64(1); pid <= 2; pid++ {
		if err := o.Bind(pid, "User:alice"); err != nil {
			t.Fatal(err)
		}
	}
	// Rebinding an existing id needs no room.
	if err := o.Bind(1, "User:bob"); err != nil {
		t.Fatal(err)
	}
	if p, _ := o.Owner(1); p != "User:bob" {
		t.Fatalf("owner of 1: %s", p)
	}
	// Nothing holds 1 or 2 and they are older than the expiration (made
	// so by backdating them): a third binding prunes them.
	o.mu.Lock()
	for pid, e := range o.m {
		e.BoundMs = 0
		o.m[pid] = e
	}
	o.mu.Unlock()
	if err := o.Bind(3, "User:carol"); err != nil {
		t.Fatalf("binding past the bound with expired bindings: %v", err)
	}
	if o.Len() != 1 {
		t.Fatalf("%d bindings after pruning, want 1", o.Len())
	}
	// Fresh bindings cannot be pruned: the bound holds.
	o.b.cfg.ProducerIDExpirationMs = 1 << 40
	if err := o.Bind(4, "User:carol"); err != nil {
		t.Fatal(err)
	}
	if err := o.Bind(5, "User:carol"); !errors.Is(err, ErrTooManyProducerIDs) {
		t.Fatalf("binding past the bound: %v, want ErrTooManyProducerIDs", err)
	}
	// Durable: a reopened broker knows the owners.
	b.Close()
	b2, err := Open(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if p, ok := b2.Owners.Owner(4); !ok || p != "User:carol" {
		t.Fatalf("after reopening, owner of 4: %q %v", p, ok)
	}
	if _, ok := b2.Owners.Owner(1); ok {
		t.Fatal("a pruned binding came back")
	}
}
