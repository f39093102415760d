package auth

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// Token is the file's first token, accepted by Valid, and follows Reload:
// the console's key lookup sends it to the HTTP ingest listener.
func TestBearerTokensToken(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("# comment\n\n  old-token-0123456789  \nnew-token-0123456789\n")
	bt, err := LoadBearerTokens(file)
	if err != nil {
		t.Fatal(err)
	}
	valid := func(tok string) bool {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		return bt.Valid(r)
	}
	if got := bt.Token(); got != "old-token-0123456789" {
		t.Fatalf("Token() = %q, want the first token of the file, trimmed", got)
	}
	if !valid(bt.Token()) || !valid("new-token-0123456789") || valid("other-token-0123456789") {
		t.Fatal("Valid does not accept exactly the file's tokens")
	}
	write("new-token-0123456789\n")
	if err := bt.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := bt.Token(); got != "new-token-0123456789" || valid("old-token-0123456789") {
		t.Errorf("after the old token was removed and Reload: Token() %q, old token valid %v", got, valid("old-token-0123456789"))
	}
	write("short\n")
	if err := bt.Reload(); err == nil {
		t.Fatal("a file with a short token reloaded")
	}
	if got := bt.Token(); got != "new-token-0123456789" {
		t.Errorf("Token() after a failed Reload: %q, want the tokens in use to stay", got)
	}
}
