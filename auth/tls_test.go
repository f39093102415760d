package auth

import (
	"crypto/tls"
	"io"
	"log/slog"
	"testing"

	"github.com/oncelog/oncelog/internal/testcerts"
)

// SelfClientConfig (the web console dialing the broker's own SASL_SSL
// listener) trusts exactly the certificate this server serves: a server
// with another certificate, even from the same CA, is refused.
func TestSelfClientConfig(t *testing.T) {
	ca := testcerts.New(t, t.TempDir())
	serve := func(pair testcerts.Pair) (*TLSReloader, string) {
		r, err := NewTLSReloader(TLSFiles{CertFile: pair.CertFile, KeyFile: pair.KeyFile}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		ln, err := tls.Listen("tcp", "127.0.0.1:0", r.Config())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { c.(*tls.Conn).Handshake(); c.Close() }()
			}
		}()
		return r, ln.Addr().String()
	}
	handshake := func(addr string, cfg *tls.Config) error {
		c, err := tls.Dial("tcp", addr, cfg)
		if err == nil {
			c.Close()
		}
		return err
	}
	self, selfAddr := serve(ca.Server("broker"))
	_, otherAddr := serve(ca.Server("other"))
	if err := handshake(selfAddr, self.SelfClientConfig()); err != nil {
		t.Fatalf("dialing its own listener: %v", err)
	}
	if err := handshake(otherAddr, self.SelfClientConfig()); err == nil {
		t.Fatal("a server with another certificate of the same CA was trusted")
	}
}
