package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Login makes the console ask every browser for a username and password
// and act, for that browser, through a Kafka client authenticated (SASL)
// as that user: the broker's ACLs then decide what each user sees and
// does in the console, as they would for any other client of that user.
type Login struct {
	// Brokers is the bootstrap list of the sessions' clients: a SASL
	// listener of the broker.
	Brokers []string
	// Mechanisms are tried in order at login until the broker accepts
	// one (a user may hold a SCRAM credential for one mechanism only):
	// SCRAM-SHA-512, SCRAM-SHA-256, PLAIN.
	Mechanisms []string
	// ClientOpts are added to each session's client (TLS of a SASL_SSL
	// listener).
	ClientOpts []kgo.Opt
	// MaxSessions bounds the sessions held at once (each holds a client
	// and its connections); a login beyond it is refused with 503, unless
	// the user already holds a session: that one's least recently used
	// session then ends instead. Default DefaultMaxSessions.
	MaxSessions int
	// MaxSessionsPerUser bounds one user's sessions, so that one user
	// logging in again and again cannot fill MaxSessions and lock the
	// others out: a login beyond it ends that user's least recently used
	// session (and closes its client). Default DefaultMaxSessionsPerUser.
	MaxSessionsPerUser int
	// IdleTimeout ends a session not used for that long; MaxAge ends any
	// session that long after its login. Defaults DefaultIdleTimeout and
	// DefaultMaxAge.
	IdleTimeout time.Duration
	MaxAge      time.Duration
	// SecureCookie marks the session cookie Secure even on plain HTTP
	// (a TLS-terminating proxy in front); a request that came over TLS
	// gets a Secure cookie anyway.
	SecureCookie bool
}

// Defaults of Login.
const (
	DefaultMaxSessions        = 64
	DefaultMaxSessionsPerUser = 8
	DefaultIdleTimeout        = 30 * time.Minute
	DefaultMaxAge             = 12 * time.Hour
)

const (
	// sessionCookie holds the session id: random, HttpOnly (scripts
	// cannot read it), SameSite=Strict (other sites' pages do not send
	// it).
	sessionCookie = "oncelog_console_session"
	// csrfHeader must carry the session's CSRF token on every request
	// that changes something; the page gets the token from /api/session.
	// Without Login it must be present (any value): a cross-site form
	// cannot set a header, and a cross-site fetch that does needs a CORS
	// preflight the console never grants.
	csrfHeader = "X-CSRF-Token"
	// maxLoginsInFlight bounds the logins being checked with the broker
	// at once (each opens a client); more get 429.
	maxLoginsInFlight = 4
	maxLoginBody      = 4 << 10
)

// session is one logged-in browser.
type session struct {
	id, csrf string
	view     *view
	created  time.Time
	lastUsed time.Time // under sessionStore.mu
}

type sessionStore struct {
	c     *Console
	login Login
	now   func() time.Time

	mu       sync.Mutex
	byID     map[string]*session
	checking int // logins being checked with the broker
	closed   bool
	stop     chan struct{}
}

func newSessionStore(c *Console, l Login) (*sessionStore, error) {
	if len(l.Brokers) == 0 {
		return nil, errors.New("console: login needs the address of a SASL listener")
	}
	if len(l.Mechanisms) == 0 {
		return nil, errors.New("console: login needs a SASL mechanism")
	}
	for _, m := range l.Mechanisms {
		if _, err := mechanism(m, "", ""); err != nil {
			return nil, err
		}
	}
	if l.MaxSessions <= 0 {
		l.MaxSessions = DefaultMaxSessions
	}
	if l.MaxSessionsPerUser <= 0 {
		l.MaxSessionsPerUser = DefaultMaxSessionsPerUser
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.MaxAge <= 0 {
		l.MaxAge = DefaultMaxAge
	}
	s := &sessionStore{c: c, login: l, now: time.Now, byID: map[string]*session{}, stop: make(chan struct{})}
	go s.sweepLoop()
	return s, nil
}

func mechanism(name, user, pass string) (sasl.Mechanism, error) {
	switch name {
	case "SCRAM-SHA-512":
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	case "PLAIN":
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	}
	return nil, fmt.Errorf("console: SASL mechanism %q: use SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN", name)
}

// userSessionsLocked are user's sessions, least recently used first.
func (s *sessionStore) userSessionsLocked(user string) []*session {
	var mine []*session
	for _, ss := range s.byID {
		if ss.view.user == user {
			mine = append(mine, ss)
		}
	}
	slices.SortFunc(mine, func(a, b *session) int { return a.lastUsed.Compare(b.lastUsed) })
	return mine
}

// addLocked keeps the new session ss. Its user's least recently used
// sessions end first, as many as needed to keep the user within
// MaxSessionsPerUser and (if the store is full) to make room; false when
// the store is full of other users' sessions.
func (s *sessionStore) addLocked(ss *session) bool {
	mine := s.userSessionsLocked(ss.view.user)
	for len(mine) > 0 && (len(mine) >= s.login.MaxSessionsPerUser || len(s.byID) >= s.login.MaxSessions) {
		old := mine[0]
		mine = mine[1:]
		delete(s.byID, old.id)
		go old.view.adm.Close()
		s.c.cfg.Logger.Info("console session ended by a newer login of its user", "user", old.view.user,
			"max_sessions_per_user", s.login.MaxSessionsPerUser, "max_sessions", s.login.MaxSessions)
	}
	if len(s.byID) >= s.login.MaxSessions {
		return false
	}
	s.byID[ss.id] = ss
	return true
}

// sweepLoop closes the clients of expired sessions, so an abandoned
// browser does not hold connections until its next request.
func (s *sessionStore) sweepLoop() {
	t := time.NewTicker(min(s.login.IdleTimeout/4, 30*time.Second))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.mu.Lock()
			s.sweepLocked()
			s.mu.Unlock()
		}
	}
}

func (s *sessionStore) expired(ss *session, now time.Time) bool {
	return now.Sub(ss.lastUsed) >= s.login.IdleTimeout || now.Sub(ss.created) >= s.login.MaxAge
}

func (s *sessionStore) sweepLocked() {
	now := s.now()
	for id, ss := range s.byID {
		if s.expired(ss, now) {
			delete(s.byID, id)
			go ss.view.adm.Close()
			s.c.cfg.Logger.Info("console session expired", "user", ss.view.user)
		}
	}
}

func (s *sessionStore) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	close(s.stop)
	for id, ss := range s.byID {
		delete(s.byID, id)
		ss.view.adm.Close()
	}
}

// get is the session of r's cookie; nil when there is none, it expired
// or it was logged out. A session found is marked used.
func (s *sessionStore) get(r *http.Request) *session {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.byID[ck.Value]
	if ss == nil {
		return nil
	}
	now := s.now()
	if s.expired(ss, now) {
		delete(s.byID, ss.id)
		go ss.view.adm.Close()
		return nil
	}
	ss.lastUsed = now
	return ss
}

func randomToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// sameOrigin reports whether a state-changing request comes from the
// console's own page: a browser names the page's origin in Origin (and
// says cross-site in Sec-Fetch-Site); a request without either comes
// from no browser page (curl, a test).
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
}

func unsafeMethod(r *http.Request) bool {
	return r.Method != http.MethodGet && r.Method != http.MethodHead
}

// with resolves the view a request acts through and refuses what must not
// run: a request without a session when login is on (401), a
// state-changing request from another site or without the CSRF token
// (403).
func (c *Console) with(h func(*view, http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if unsafeMethod(r) && !sameOrigin(r) {
			writeError(w, http.StatusForbidden, "cross-site request refused: state-changing console requests must come from the console's own page")
			return
		}
		if c.sessions == nil {
			if unsafeMethod(r) && r.Header.Get(csrfHeader) == "" {
				writeError(w, http.StatusForbidden, "state-changing console requests need the %s header (the console's page sends it)", csrfHeader)
				return
			}
			h(c.open, w, r)
			return
		}
		ss := c.sessions.get(r)
		if ss == nil {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "log in first: this broker authenticates its clients (SASL), and the console acts as the user logged in", "login_required": true})
			return
		}
		if unsafeMethod(r) && subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(ss.csrf)) != 1 {
			writeError(w, http.StatusForbidden, "missing or wrong %s header: reload the console's page", csrfHeader)
			return
		}
		h(ss.view, w, r)
	}
}

// sessionInfo is GET /api/session and the answer to a login.
type sessionInfo struct {
	LoginRequired bool   `json:"login_required"`
	User          string `json:"user,omitempty"`
	Mechanism     string `json:"mechanism,omitempty"`
	CSRFToken     string `json:"csrf_token,omitempty"`
	IdleTimeoutS  int64  `json:"idle_timeout_s,omitempty"`
	ExpiresAtMs   int64  `json:"expires_at_ms,omitempty"`
}

func (s *sessionStore) info(ss *session, mech string) sessionInfo {
	return sessionInfo{LoginRequired: true, User: ss.view.user, Mechanism: mech, CSRFToken: ss.csrf,
		IdleTimeoutS: int64(s.login.IdleTimeout / time.Second), ExpiresAtMs: ss.created.Add(s.login.MaxAge).UnixMilli()}
}

// sessionState answers GET /api/session: whether a login is needed, and
// who is logged in (with the CSRF token the page sends back).
func (c *Console) sessionState(w http.ResponseWriter, r *http.Request) {
	if c.sessions == nil {
		// The open console has no session: any token value passes.
		writeJSON(w, http.StatusOK, sessionInfo{CSRFToken: "open"})
		return
	}
	ss := c.sessions.get(r)
	if ss == nil {
		writeJSON(w, http.StatusOK, sessionInfo{LoginRequired: true})
		return
	}
	writeJSON(w, http.StatusOK, c.sessions.info(ss, ""))
}

type loginBody struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// login answers POST /api/login {"username", "password"}: it opens a
// client authenticated as the user, and keeps it for the new session if
// the broker accepts the password.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	s := c.sessions
	if s == nil {
		writeError(w, http.StatusNotFound, "this console has no login: the broker has no SASL listener, so the console is open to whoever reaches the admin listener (docs/console.md)")
		return
	}
	// A login from another site's page (login CSRF) is refused; a
	// cross-site form cannot send JSON without a CORS preflight.
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if !sameOrigin(r) || mt != "application/json" {
		writeError(w, http.StatusForbidden, "a login must come from the console's page, as JSON")
		return
	}
	var body loginBody
	if err := json.NewDecoder(io.LimitReader(r.Body, maxLoginBody)).Decode(&body); err != nil || body.Username == "" {
		writeError(w, http.StatusBadRequest, "body must be JSON {\"username\", \"password\"}")
		return
	}
	s.mu.Lock()
	s.sweepLocked()
	switch {
	case s.closed:
		s.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "the console is shutting down")
		return
	case len(s.byID)+s.checking >= s.login.MaxSessions && len(s.userSessionsLocked(body.Username)) == 0:
		s.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "the console holds its maximum of %d sessions (--admin-console-max-sessions): log out of another one, or wait until one is idle for %v", s.login.MaxSessions, s.login.IdleTimeout)
		return
	case s.checking >= maxLoginsInFlight:
		s.mu.Unlock()
		writeError(w, http.StatusTooManyRequests, "%d logins are being checked; try again", maxLoginsInFlight)
		return
	}
	s.checking++
	s.mu.Unlock()
	release := func() {
		s.mu.Lock()
		s.checking--
		s.mu.Unlock()
	}

	ctx, cancel := context.WithTimeout(r.Context(), c.cfg.RequestTimeout)
	defer cancel()
	var lastErr error
	for _, mech := range s.login.Mechanisms {
		m, _ := mechanism(mech, body.Username, body.Password)
		opts := append([]kgo.Opt{kgo.SeedBrokers(s.login.Brokers...), kgo.ClientID("oncelog-console"), kgo.SASL(m)}, s.login.ClientOpts...)
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			release()
			writeError(w, http.StatusInternalServerError, "client: %v", err)
			return
		}
		// Ping's Metadata request needs the connection authenticated.
		if err := cl.Ping(ctx); err != nil {
			cl.Close()
			lastErr = err
			if errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.UnsupportedSaslMechanism) {
				continue
			}
			release()
			writeError(w, http.StatusBadGateway, "broker: %v", err)
			return
		}
		ss := &session{id: randomToken(), csrf: randomToken(), created: s.now(),
			view: &view{Console: c, cl: cl, adm: kadm.NewClient(cl), opts: opts, user: body.Username}}
		ss.lastUsed = ss.created
		s.mu.Lock()
		s.checking--
		if s.closed {
			s.mu.Unlock()
			cl.Close()
			writeError(w, http.StatusServiceUnavailable, "the console is shutting down")
			return
		}
		if !s.addLocked(ss) {
			s.mu.Unlock()
			cl.Close()
			writeError(w, http.StatusServiceUnavailable, "the console holds its maximum of %d sessions (--admin-console-max-sessions): log out of another one, or wait until one is idle for %v", s.login.MaxSessions, s.login.IdleTimeout)
			return
		}
		s.mu.Unlock()
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: ss.id, Path: "/", HttpOnly: true,
			SameSite: http.SameSiteStrictMode, Secure: s.login.SecureCookie || r.TLS != nil,
			MaxAge: int(s.login.MaxAge / time.Second)})
		c.cfg.Logger.Info("console login", "user", body.Username, "mechanism", mech, "remote", r.RemoteAddr)
		writeJSON(w, http.StatusOK, s.info(ss, mech))
		return
	}
	release()
	c.cfg.Logger.Info("console login refused", "user", body.Username, "remote", r.RemoteAddr, "err", lastErr)
	writeJSON(w, http.StatusUnauthorized, map[string]any{"login_required": true,
		"error": fmt.Sprintf("login failed: the broker refused username %q with this password (tried %s): %v",
			body.Username, strings.Join(s.login.Mechanisms, ", "), lastErr)})
}

// logout answers POST /api/logout: the session ends and its client is
// closed.
func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	expire := func() {
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true,
			SameSite: http.SameSiteStrictMode, MaxAge: -1})
	}
	if c.sessions == nil {
		writeError(w, http.StatusNotFound, "this console has no login")
		return
	}
	if !sameOrigin(r) {
		writeError(w, http.StatusForbidden, "cross-site request refused")
		return
	}
	ss := c.sessions.get(r)
	if ss == nil {
		expire()
		writeJSON(w, http.StatusOK, map[string]any{"logged_out": false})
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(ss.csrf)) != 1 {
		writeError(w, http.StatusForbidden, "missing or wrong %s header: reload the console's page", csrfHeader)
		return
	}
	c.sessions.mu.Lock()
	delete(c.sessions.byID, ss.id)
	c.sessions.mu.Unlock()
	ss.view.adm.Close()
	expire()
	c.cfg.Logger.Info("console logout", "user", ss.view.user)
	writeJSON(w, http.StatusOK, map[string]any{"logged_out": true})
}

// count is the number of sessions held (for tests and the overview).
func (s *sessionStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}
