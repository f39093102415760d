package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
)

// BearerTokens are the tokens an HTTP listener (admin, HTTP ingest)
// accepts in "Authorization: Bearer <token>", read from a file of one
// token per line (blank lines and # comments ignored), so a token can be
// rotated by adding the new one, switching clients, then removing the old
// one and calling Reload (SIGHUP).
type BearerTokens struct {
	file  string
	state atomic.Pointer[bearerState]
}

// bearerState is one reading of the file.
type bearerState struct {
	hashes [][32]byte
	// first is the file's first token: the one the broker's own clients
	// of the listener send (Token).
	first string
}

// LoadBearerTokens reads file; it must hold at least one token.
func LoadBearerTokens(file string) (*BearerTokens, error) {
	t := &BearerTokens{file: file}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Reload reads the file again; on error the tokens in use stay.
func (t *BearerTokens) Reload() error {
	raw, err := os.ReadFile(t.file)
	if err != nil {
		return fmt.Errorf("read token file: %w", err)
	}
	var st bearerState
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) < 16 {
			return fmt.Errorf("token file %s: a token is shorter than 16 characters (guessable)", t.file)
		}
		if st.first == "" {
			st.first = line
		}
		// Kept hashed: compared in constant time whatever their lengths.
		st.hashes = append(st.hashes, sha256.Sum256([]byte(line)))
	}
	if len(st.hashes) == 0 {
		return errors.New("token file " + t.file + " holds no token")
	}
	t.state.Store(&st)
	return nil
}

// Token is a token the listener accepts now, for the broker's own
// requests to it (the web console's key lookup on the HTTP ingest
// listener): the file's first token, as of its last Reload.
func (t *BearerTokens) Token() string {
	return t.state.Load().first
}

// Valid reports whether the request carries one of the tokens.
func (t *BearerTokens) Valid(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	match := 0
	for _, h := range t.state.Load().hashes {
		match |= subtle.ConstantTimeCompare(got[:], h[:])
	}
	return match == 1
}

// Require wraps next so that requests without a valid token get 401 with
// a WWW-Authenticate challenge (RFC 6750). A nil t lets everything through,
// so callers can wrap unconditionally.
func (t *BearerTokens) Require(next http.Handler) http.Handler {
	if t == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !t.Valid(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="oncelog"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error": "unauthorized: send Authorization: Bearer <token>, a token of the listener's token file"}` + "\n"))
			return
		}
		next.ServeHTTP(w, r)
	})
}
