package console

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/brokerproc"
	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/oncelog/oncelog/internal/testcerts"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// saslBroker starts a broker whose one Kafka listener is SASL_PLAINTEXT,
// with --authorizer acl, the super user admin and the users alice and bob
// (password: the name + "-password"), and gives admin's client. extra
// are added to its serve flags.
func saslBroker(t *testing.T, extra ...string) (*testbroker.Broker, *kadm.Client) {
	t.Helper()
	dir := t.TempDir()
	bin := testbroker.BinaryPath(t)
	for _, u := range []string{"admin", "alice", "bob"} {
		cmd := exec.Command(bin, "user", "create", u, "--password-stdin", "--data-dir", dir)
		cmd.Stdin = strings.NewReader(u + "-password\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("user create %s: %v\n%s", u, err, out)
		}
	}
	b := testbroker.Start(t, testbroker.Options{DataDir: dir, Protocol: "SASL_PLAINTEXT",
		ExtraArgs: append([]string{"--authorizer", "acl", "--super-users", "User:admin"}, extra...)})
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.SASL(scram.Auth{User: "admin", Pass: "admin-password"}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return b, kadm.NewClient(cl)
}

// browser is one browser's cookie jar and CSRF token against a handler.
type browser struct {
	t      *testing.T
	h      http.Handler
	cookie *http.Cookie
	csrf   string
}

func (b *browser) do(method, path, body string, header map[string]string) (int, string) {
	b.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if b.cookie != nil {
		req.AddCookie(b.cookie)
	}
	if method == "POST" && b.csrf != "" {
		req.Header.Set(csrfHeader, b.csrf)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	b.h.ServeHTTP(w, req)
	for _, ck := range w.Result().Cookies() {
		if ck.Name == sessionCookie {
			b.cookie = ck
		}
	}
	return w.Code, w.Body.String()
}

func (b *browser) login(user, pass string) (int, string) {
	b.t.Helper()
	body, _ := json.Marshal(loginBody{Username: user, Password: pass})
	code, resp := b.do("POST", "/api/login", string(body), nil)
	if code == 200 {
		b.csrf = decode[sessionInfo](b.t, resp).CSRFToken
	}
	return code, resp
}

func (b *browser) topics() []string {
	b.t.Helper()
	code, body := b.do("GET", "/api/topics", "", nil)
	if code != 200 {
		b.t.Fatalf("topics: %d %s", code, body)
	}
	var names []string
	for _, s := range decode[[]topicSummary](b.t, body) {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	return names
}

// With SASL on the broker, the console acts as the user logged in: two
// users with different ACLs see different topics, one may edit a config
// and the other is refused with the broker's error; an abort needs READ
// on the topic; a wrong password is 401 and keeps no client; a POST
// without the session's CSRF token is refused; the sessions are bounded;
// logout closes the session's client; idle and absolute timeouts end
// sessions.
func TestLoginActsAsTheUser(t *testing.T) {
	b, admin := saslBroker(t, "--admin-console-max-sessions", "2", "--admin-console-max-sessions-per-user", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, topic := range []string{"alice-orders", "bob-events", "shared"} {
		if _, err := admin.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	acls := []*kadm.ACLBuilder{
		kadm.NewACLs().Allow("User:alice").AllowHosts().Topics("alice-").ResourcePatternType(kadm.ACLPatternPrefixed).
			Operations(kadm.OpDescribe, kadm.OpDescribeConfigs, kadm.OpAlterConfigs, kadm.OpRead),
		kadm.NewACLs().Allow("User:alice", "User:bob").AllowHosts().Topics("shared").Operations(kadm.OpDescribe, kadm.OpDescribeConfigs),
		kadm.NewACLs().Allow("User:bob").AllowHosts().Topics("bob-events").Operations(kadm.OpDescribe, kadm.OpDescribeConfigs),
	}
	for _, a := range acls {
		if res, err := admin.CreateACLs(ctx, a); err != nil || res[0].Err != nil {
			t.Fatalf("CreateAcls: %+v %v", res, err)
		}
	}

	c, advance := loginConsole(t, Login{Brokers: []string{b.Addr()}, Mechanisms: []string{"SCRAM-SHA-512", "SCRAM-SHA-256"},
		MaxSessions: 2, IdleTimeout: 10 * time.Minute, MaxAge: time.Hour})
	h := c.Handler()

	anon := &browser{t: t, h: h}
	code, body := anon.do("GET", "/api/session", "", nil)
	if s := decode[sessionInfo](t, body); code != 200 || !s.LoginRequired || s.User != "" {
		t.Fatalf("session before login: %d %s", code, body)
	}
	if code, body := anon.do("GET", "/api/topics", "", nil); code != 401 || !strings.Contains(body, `"login_required":true`) {
		t.Fatalf("topics without login: %d %s, want 401", code, body)
	}
	if code, body := anon.login("alice", "wrong"); code != 401 || !strings.Contains(body, "login failed") || !strings.Contains(body, "SASL_AUTHENTICATION_FAILED") {
		t.Fatalf("wrong password: %d %s, want 401 naming the broker's error", code, body)
	}
	if anon.cookie != nil || c.sessions.count() != 0 {
		t.Fatalf("a refused login left a cookie (%v) or a session (%d)", anon.cookie, c.sessions.count())
	}
	// A login must be JSON from the console's page.
	if code, body := anon.do("POST", "/api/login", `{"username":"alice","password":"alice-password"}`, map[string]string{"Content-Type": "text/plain"}); code != 403 {
		t.Fatalf("text/plain login: %d %s, want 403", code, body)
	}

	alice, bob := &browser{t: t, h: h}, &browser{t: t, h: h}
	if code, body := alice.login("alice", "alice-password"); code != 200 {
		t.Fatalf("alice's login: %d %s", code, body)
	}
	if !alice.cookie.HttpOnly || alice.cookie.SameSite != http.SameSiteStrictMode || alice.cookie.Secure || alice.cookie.Path != "/" {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, not Secure on plain HTTP, Path=/", alice.cookie)
	}
	if code, body := bob.login("bob", "bob-password"); code != 200 {
		t.Fatalf("bob's login: %d %s", code, body)
	}
	if got := alice.topics(); !slices.Equal(got, []string{"alice-orders", "shared"}) {
		t.Errorf("alice sees %v, want alice-orders and shared", got)
	}
	if got := bob.topics(); !slices.Equal(got, []string{"bob-events", "shared"}) {
		t.Errorf("bob sees %v, want bob-events and shared", got)
	}
	if code, body := bob.do("GET", "/api/topics/alice-orders", "", nil); code != 403 && code != 404 {
		t.Errorf("bob opens alice-orders: %d %s, want 403 or 404", code, body)
	}

	// Config edits: alice has ALTER_CONFIGS on alice-*, bob has none.
	set := `{"set":{"retention.ms":"3600000"}}`
	if code, body := alice.do("POST", "/api/topics/alice-orders/configs", set, nil); code != 200 {
		t.Errorf("alice edits alice-orders: %d %s", code, body)
	}
	if code, body := bob.do("POST", "/api/topics/shared/configs", set, nil); code != 403 || !strings.Contains(body, "TOPIC_AUTHORIZATION_FAILED") {
		t.Errorf("bob edits shared: %d %s, want 403 with the broker's TOPIC_AUTHORIZATION_FAILED", code, body)
	}
	// CSRF: no token, another session's token, another origin.
	if code, body := alice.do("POST", "/api/topics/alice-orders/configs", set, map[string]string{csrfHeader: ""}); code != 403 || !strings.Contains(body, csrfHeader) {
		t.Errorf("POST without the CSRF token: %d %s, want 403", code, body)
	}
	if code, body := alice.do("POST", "/api/topics/alice-orders/configs", set, map[string]string{csrfHeader: bob.csrf}); code != 403 {
		t.Errorf("POST with bob's CSRF token on alice's session: %d %s, want 403", code, body)
	}
	if code, body := alice.do("POST", "/api/topics/alice-orders/configs", set, map[string]string{"Origin": "https://evil.example"}); code != 403 {
		t.Errorf("POST from another origin: %d %s, want 403", code, body)
	}

	// An open transaction on shared, tracked by its coordinator: bob may
	// not even look for it (DescribeProducers needs READ), admin gets the
	// console's own refusal (409: tracked, not hanging).
	txn, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.TransactionalID("console-login"),
		kgo.SASL(scram.Auth{User: "admin", Pass: "admin-password"}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txn.ProduceSync(ctx, &kgo.Record{Topic: "shared", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	described, err := admin.DescribeProducers(ctx, kadm.TopicsSet{"shared": {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	var pid int64 = -1
	described.EachProducer(func(p kadm.DescribedProducer) { pid = p.ProducerID })
	abort := `{"topic":"shared","partition":0,"producer_id":` + strings.TrimSpace(jsonInt(pid)) + `}`
	if code, body := bob.do("POST", "/api/transactions/abort", abort, nil); code != 403 || !strings.Contains(body, "TOPIC_AUTHORIZATION_FAILED") {
		t.Errorf("bob aborts on shared: %d %s, want 403 with the broker's TOPIC_AUTHORIZATION_FAILED", code, body)
	}
	code, body = bob.do("GET", "/api/transactions", "", nil)
	if code != 200 || !strings.Contains(body, `"open_unreadable":["bob-events","shared"]`) {
		t.Errorf("bob's transactions page: %d %s, want 200 naming the topics he may not read", code, body)
	}

	// The session cap (2 here) refuses a third login, naming the flag.
	adminBrowser := &browser{t: t, h: h}
	if code, body := adminBrowser.login("admin", "admin-password"); code != 503 || !strings.Contains(body, "--admin-console-max-sessions") {
		t.Errorf("a third session: %d %s, want 503 naming --admin-console-max-sessions", code, body)
	}
	// Logout ends bob's session and closes its client.
	bobSession := c.sessions.get(httptestWithCookie(bob.cookie))
	if code, body := bob.do("POST", "/api/logout", "", map[string]string{csrfHeader: ""}); code != 403 {
		t.Errorf("logout without the CSRF token: %d %s, want 403", code, body)
	}
	if code, body := bob.do("POST", "/api/logout", "", nil); code != 200 || !strings.Contains(body, `"logged_out":true`) {
		t.Errorf("logout: %d %s", code, body)
	}
	if bob.cookie.MaxAge >= 0 {
		t.Errorf("logout left the cookie %+v, want it expired", bob.cookie)
	}
	if err := requestErr(ctx, bobSession.view.cl); !errors.Is(err, kgo.ErrClientClosed) {
		t.Errorf("bob's client after logout: %v, want it closed", err)
	}
	if code, body := bob.do("GET", "/api/topics", "", nil); code != 401 {
		t.Errorf("topics after logout: %d %s, want 401", code, body)
	}
	if code, body := adminBrowser.login("admin", "admin-password"); code != 200 {
		t.Fatalf("admin's login once bob logged out: %d %s", code, body)
	}
	if code, body := adminBrowser.do("POST", "/api/transactions/abort", abort, nil); code != 409 {
		t.Errorf("admin aborts the tracked transaction: %d %s, want 409", code, body)
	}
	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}

	// Timeouts: admin uses the console every 9 minutes (idle timeout 10),
	// alice not at all; alice's session ends at the first step past 10
	// minutes, admin's at its max age (1 hour) however used.
	aliceSession := c.sessions.get(httptestWithCookie(alice.cookie))
	for step := 1; step <= 7; step++ {
		advance(9 * time.Minute)
		code, body := adminBrowser.do("GET", "/api/session", "", nil)
		s := decode[sessionInfo](t, body)
		if alive := s.User == "admin"; code != 200 || alive != (step*9 < 60) {
			t.Errorf("after %d minutes admin's session alive=%v (%d), want %v", step*9, alive, code, step*9 < 60)
		}
		if step == 2 {
			if code, body := alice.do("GET", "/api/topics", "", nil); code != 401 {
				t.Errorf("alice after 18 idle minutes: %d %s, want 401", code, body)
			}
		}
	}
	if c.sessions.count() != 0 {
		t.Errorf("%d sessions left after every one expired", c.sessions.count())
	}
	// Closed in the background once found expired: wait for it.
	for i := 0; !errors.Is(requestErr(ctx, aliceSession.view.cl), kgo.ErrClientClosed); i++ {
		if i == 100 {
			t.Fatalf("alice's client is not closed after her session expired")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The broker's own console (cli's wiring) asks for a login too, and
	// keeps one session per user (--admin-console-max-sessions-per-user 1):
	// alice's second login ends her first session.
	first, second := &browser{t: t, h: remote(b.AdminAddr())}, &browser{t: t, h: remote(b.AdminAddr())}
	if code, body := first.do("GET", "/api/topics", "", nil); code != 401 {
		t.Errorf("the broker's console without login: %d %s, want 401", code, body)
	}
	if code, body := first.login("alice", "alice-password"); code != 200 {
		t.Fatalf("the broker's console login: %d %s", code, body)
	}
	if got := first.topics(); !slices.Equal(got, []string{"alice-orders", "shared"}) {
		t.Errorf("alice's topics on the broker's console: %v", got)
	}
	if code, body := second.login("alice", "alice-password"); code != 200 {
		t.Fatalf("alice's second login on the broker's console: %d %s", code, body)
	}
	if code, body := first.do("GET", "/api/topics", "", nil); code != 401 {
		t.Errorf("alice's first session after her second login: %d %s, want 401 (one session per user)", code, body)
	}
	if got := second.topics(); !slices.Equal(got, []string{"alice-orders", "shared"}) {
		t.Errorf("alice's topics in her second session: %v", got)
	}
}

// remote is a handler that sends each request on to the admin listener
// at its address: a browser of it drives the broker's own console.
type remote string

func (addr remote) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := r.Clone(r.Context())
	req.RequestURI, req.Host = "", ""
	req.URL.Scheme, req.URL.Host = "http", string(addr)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	maps.Copy(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// loginConsole is a console with login l whose sessions see a clock of
// their own, moved on by advance; closed when the test ends.
func loginConsole(t *testing.T, l Login) (c *Console, advance func(time.Duration)) {
	t.Helper()
	c, err := New(Config{Login: &l, RequestTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var mu sync.Mutex
	now := time.Now()
	c.sessions.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	return c, func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
}

func httptestWithCookie(ck *http.Cookie) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(ck)
	return r
}

// requestErr is the error of an ApiVersions request through cl.
func requestErr(ctx context.Context, cl *kgo.Client) error {
	_, err := cl.Request(ctx, kmsg.NewPtrApiVersionsRequest())
	return err
}

func jsonInt(v int64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// With only a SASL_SSL listener to authenticate on (beside the PLAINTEXT
// one), the broker's console logs users in over TLS, trusting the
// certificate the broker serves (auth.TLSReloader.SelfClientConfig), and
// still refuses a wrong password.
func TestBrokerConsoleLoginOverSASLSSL(t *testing.T) {
	dir := t.TempDir()
	bin := testbroker.BinaryPath(t)
	cmd := exec.Command(bin, "user", "create", "alice", "--password-stdin", "--data-dir", dir)
	cmd.Stdin = strings.NewReader("alice-password\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("user create: %v\n%s", err, out)
	}
	server := testcerts.New(t, t.TempDir()).Server("broker")
	ports, err := brokerproc.PickFreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	b := testbroker.Start(t, testbroker.Options{DataDir: dir, ExtraListeners: "SASL_SSL://127.0.0.1:" + strconv.Itoa(ports[0]),
		ExtraArgs: []string{"--tls-cert-file", server.CertFile, "--tls-key-file", server.KeyFile}})
	login := func(password string) *http.Response {
		t.Helper()
		resp, err := http.Post("http://"+b.AdminAddr()+"/api/login", "application/json",
			strings.NewReader(`{"username":"alice","password":"`+password+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := login("wrong"); resp.StatusCode != 401 {
		t.Errorf("wrong password over SASL_SSL: %d, want 401", resp.StatusCode)
	}
	resp := login("alice-password")
	if resp.StatusCode != 200 {
		t.Fatalf("login over SASL_SSL: %d\n%s", resp.StatusCode, b.Stderr())
	}
	req, _ := http.NewRequest("GET", "http://"+b.AdminAddr()+"/api/overview", nil)
	for _, ck := range resp.Cookies() {
		req.AddCookie(ck)
	}
	ov, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	ov.Body.Close()
	if ov.StatusCode != 200 {
		t.Errorf("overview as alice over SASL_SSL: %d", ov.StatusCode)
	}
}

// One user cannot fill the console's sessions: a login beyond
// MaxSessionsPerUser ends that user's least recently used session and
// closes its client; when the console is full, a user who holds a session
// gets that one's least recently used session ended, and a user who holds
// none is refused (503).
func TestSessionsPerUser(t *testing.T) {
	b, _ := saslBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, advanceBy := loginConsole(t, Login{Brokers: []string{b.Addr()}, Mechanisms: []string{"SCRAM-SHA-512"},
		MaxSessions: 3, MaxSessionsPerUser: 2, IdleTimeout: time.Hour, MaxAge: 2 * time.Hour})
	advance := func() { advanceBy(time.Minute) }
	h := c.Handler()
	login := func(user string) *browser {
		t.Helper()
		br := &browser{t: t, h: h}
		if code, body := br.login(user, user+"-password"); code != 200 {
			t.Fatalf("%s's login: %d %s", user, code, body)
		}
		advance()
		return br
	}
	alive := func(br *browser) bool {
		t.Helper()
		code, body := br.do("GET", "/api/session", "", nil)
		advance()
		return code == 200 && decode[sessionInfo](t, body).User != ""
	}
	clientOf := func(br *browser) *kgo.Client { // without marking the session used
		c.sessions.mu.Lock()
		defer c.sessions.mu.Unlock()
		return c.sessions.byID[br.cookie.Value].view.cl
	}
	closed := func(cl *kgo.Client) bool {
		for range 100 {
			if errors.Is(requestErr(ctx, cl), kgo.ErrClientClosed) {
				return true
			}
			time.Sleep(50 * time.Millisecond)
		}
		return false
	}

	a1, a2 := login("alice"), login("alice")
	a2Client := clientOf(a2)
	alive(a1) // a2 is now alice's least recently used session
	a3 := login("alice")
	if alive(a2) || !alive(a1) || !alive(a3) || c.sessions.count() != 2 {
		t.Fatalf("alice's third login (2 per user): a1 %v a2 %v a3 %v, %d sessions; want a2 (least recently used) ended",
			alive(a1), alive(a2), alive(a3), c.sessions.count())
	}
	if !closed(a2Client) {
		t.Errorf("the ended session's client is not closed")
	}
	bob := login("bob")
	admin := &browser{t: t, h: h}
	if code, body := admin.login("admin", "admin-password"); code != 503 || !strings.Contains(body, "--admin-console-max-sessions") {
		t.Errorf("admin's login with 3 of 3 sessions held by others: %d %s, want 503 naming --admin-console-max-sessions", code, body)
	}
	// Full, but bob holds a session: his new login replaces it.
	bob2 := login("bob")
	if alive(bob) || !alive(bob2) || !alive(a1) || !alive(a3) || c.sessions.count() != 3 {
		t.Errorf("bob's second login with the console full: bob %v bob2 %v a1 %v a3 %v, %d sessions; want bob's first session ended",
			alive(bob), alive(bob2), alive(a1), alive(a3), c.sessions.count())
	}
	// A wrong password ends nothing.
	if code, _ := (&browser{t: t, h: h}).login("alice", "wrong"); code != 401 || !alive(a1) || !alive(a3) {
		t.Errorf("a wrong password for alice: %d, a1 %v a3 %v; want 401 and both sessions kept", code, alive(a1), alive(a3))
	}
}
