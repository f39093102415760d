// Package wire is oncelog's Kafka protocol front end: the TCP listener,
// request framing and size limits, decoding with kmsg, dispatch by API key
// and per-connection in-order responses. Each API has its own file whose
// init registers the versions it serves, so the ApiVersions answer is derived
// from the handlers and cannot drift from them.
package wire

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/oncelog/oncelog/auth"
	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sync/semaphore"
)

// Config holds the listener's limits, with Kafka's names. Zero or negative
// values mean "no limit" except where noted.
type Config struct {
	// MaxRequestBytes is socket.request.max.bytes: a larger frame closes
	// the connection. <= 0 means DefaultMaxRequestBytes.
	MaxRequestBytes int32
	// QueuedMaxRequestBytes is queued.max.request.bytes: bytes of
	// requests being read or waiting to be processed, over all
	// connections. While it is spent, no connection reads more (see
	// requestBudget).
	QueuedMaxRequestBytes int64
	// MaxConnections is max.connections; connections over it are closed
	// as soon as they are accepted.
	MaxConnections int
	// MaxConnectionsPerIP is max.connections.per.ip, likewise.
	MaxConnectionsPerIP int
	// ConnectionsMaxIdle is connections.max.idle.ms: a connection with no
	// request in flight that neither sends nor receives for this long is
	// closed.
	ConnectionsMaxIdle time.Duration
	// RequestReadTimeout bounds reading one request once its first byte
	// has arrived (not counting waits for QueuedMaxRequestBytes): a client
	// that declares a frame and trickles it (slowloris) is cut off.
	RequestReadTimeout time.Duration

	// SASLMechanisms are sasl.enabled.mechanisms of the SASL listeners.
	SASLMechanisms []string
	// SASLPlainAllowUnencrypted lets PLAIN, which sends the password
	// itself, be used on SASL_PLAINTEXT listeners (off: SASL_SSL only).
	SASLPlainAllowUnencrypted bool
	// SASLServerMaxReceiveSize is sasl.server.max.receive.size: the
	// largest frame before authentication. <= 0 means the default.
	SASLServerMaxReceiveSize int32
	// ConnectionsMaxReauth is connections.max.reauth.ms (KIP-368): a SASL
	// session lasts this long; the client must re-authenticate before, or
	// its connection is closed. 0: sessions do not expire.
	ConnectionsMaxReauth time.Duration
	// FailedAuthenticationDelay is
	// connection.failed.authentication.delay.ms.
	FailedAuthenticationDelay time.Duration
}

// Defaults. Kafka's where they are bounded; where Kafka's default is
// unlimited, a bound that a single broker can afford.
const (
	// DefaultMaxRequestBytes is Kafka's socket.request.max.bytes default.
	DefaultMaxRequestBytes = 100 * 1024 * 1024
	// DefaultQueuedMaxRequestBytes: Kafka's default is -1 (unlimited),
	// which let 30 slow clients hold 3 GB. 100 MiB is the smallest value
	// Kafka accepts (it must be at least socket.request.max.bytes); with
	// the one-frame overdraft of requestBudget, queued requests hold at
	// most 200 MiB, and ordinary produce traffic (1 MB batches) never
	// waits for it.
	DefaultQueuedMaxRequestBytes = 100 * 1024 * 1024
	// DefaultMaxConnections: Kafka's default is Int.MaxValue, which lets
	// clients exhaust file descriptors; 10,000 stays under the 65,536
	// descriptors the systemd unit in docs/operations.md grants, with
	// room for segment files.
	DefaultMaxConnections = 10000
	// DefaultConnectionsMaxIdle is Kafka's connections.max.idle.ms default.
	DefaultConnectionsMaxIdle = 10 * time.Minute
	// DefaultRequestReadTimeout: Kafka has no such setting (its selector
	// times out only idle connections). 30 s is a client's default
	// request.timeout.ms: a client still sending a request after that long
	// has given up on it.
	DefaultRequestReadTimeout = 30 * time.Second
)

// DefaultConfig returns the default limits.
func DefaultConfig() Config {
	return Config{
		MaxRequestBytes:       DefaultMaxRequestBytes,
		QueuedMaxRequestBytes: DefaultQueuedMaxRequestBytes,
		MaxConnections:        DefaultMaxConnections,
		ConnectionsMaxIdle:    DefaultConnectionsMaxIdle,
		RequestReadTimeout:    DefaultRequestReadTimeout,

		SASLMechanisms:            []string{auth.MechanismSCRAM256, auth.MechanismSCRAM512},
		SASLServerMaxReceiveSize:  DefaultSASLServerMaxReceiveSize,
		FailedAuthenticationDelay: DefaultFailedAuthenticationDelay,
	}
}

// Server accepts Kafka client connections.
type Server struct {
	b      *broker.Broker
	logger *slog.Logger
	cfg    Config
	budget *requestBudget
	warn   logLimiter

	// principalOf, set only by tests before Serve, names the principal
	// of a connection by its client IP: ACL tests get several principals
	// on a PLAINTEXT loopback listener without a SASL exchange.
	principalOf func(host string) string

	mu  sync.Mutex
	lns []net.Listener
	// served are the listeners' descriptions with their bound addresses,
	// for DescribeConfigs (listeners, advertised.listeners).
	served []servedListener
	conns  map[*conn]struct{}
	perIP  map[string]int
	closed bool
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup
}

// NewServer returns a server for b with the limits of cfg.
func NewServer(b *broker.Broker, cfg Config, logger *slog.Logger) *Server {
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.SASLServerMaxReceiveSize <= 0 {
		cfg.SASLServerMaxReceiveSize = DefaultSASLServerMaxReceiveSize
	}
	s := &Server{b: b, logger: logger, cfg: cfg, conns: map[*conn]struct{}{}, perIP: map[string]int{}, done: make(chan struct{})}
	s.budget = newRequestBudget(cfg.QueuedMaxRequestBytes, func(delta int64) { b.Stats.QueuedRequestBytes.Add(float64(delta)) })
	return s
}

// Accept backoff after a temporary error, as net/http's Server does.
const (
	acceptMinBackoff = 5 * time.Millisecond
	acceptMaxBackoff = time.Second
)

// temporaryAcceptError reports errors after which accepting can succeed
// later: out of file descriptors (EMFILE, ENFILE) or kernel memory, or a
// connection that was reset before we took it.
func temporaryAcceptError(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Serve accepts PLAINTEXT connections on ln until Close.
func (s *Server) Serve(ln net.Listener) error { return s.ServeListener(ln, PlaintextListener) }

// ServeListener accepts connections on ln, secured as l says, until Close.
// A server may serve several listeners at once.
func (s *Server) ServeListener(ln net.Listener, l Listener) error {
	if l.Protocol.TLS() && l.TLS == nil {
		return fmt.Errorf("listener %s: %s needs a TLS configuration", l.Name, l.Protocol)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.lns = append(s.lns, ln)
	s.served = append(s.served, servedListener{Listener: l, addr: ln.Addr().String()})
	s.mu.Unlock()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			if !temporaryAcceptError(err) {
				return err
			}
			// Out of file descriptors, typically: retry as connections
			// close instead of shutting the broker down.
			backoff = min(max(2*backoff, acceptMinBackoff), acceptMaxBackoff)
			s.b.Stats.AcceptErrors.Inc()
			if ok, suppressed := s.warn.allow("accept"); ok {
				s.logger.Warn("accepting a connection failed; retrying", "err", err, "retry_in", backoff, "suppressed", suppressed)
			}
			select {
			case <-time.After(backoff):
			case <-s.done:
				return nil
			}
			continue
		}
		backoff = 0
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		if l.TLS != nil {
			// The handshake runs on the connection's goroutine
			// (handshakeTLS), not here: a slow client must not hold up
			// accepting.
			nc = tls.Server(nc, l.TLS)
		}
		c := newConn(s, nc, &l)
		if reject := s.admit(c); reject != "" {
			nc.Close()
			if reject == errServerClosed {
				return nil
			}
			continue
		}
		s.b.Stats.Connections.Inc()
		go c.serve()
	}
}

const errServerClosed = "closed"

// admit registers c unless a connection limit says no; it returns why not.
func (s *Server) admit(c *conn) string {
	ip := c.remoteIP()
	s.mu.Lock()
	var reason, setting string
	var limit int
	switch {
	case s.closed:
		s.mu.Unlock()
		return errServerClosed
	case s.cfg.MaxConnections > 0 && len(s.conns) >= s.cfg.MaxConnections:
		reason, setting, limit = "max_connections", "max.connections", s.cfg.MaxConnections
	case s.cfg.MaxConnectionsPerIP > 0 && s.perIP[ip] >= s.cfg.MaxConnectionsPerIP:
		reason, setting, limit = "max_connections_per_ip", "max.connections.per.ip", s.cfg.MaxConnectionsPerIP
	default:
		s.conns[c] = struct{}{}
		s.perIP[ip]++
		s.wg.Add(1)
		s.mu.Unlock()
		return ""
	}
	s.mu.Unlock()
	s.b.Stats.ConnectionsRejected.WithLabelValues(reason).Inc()
	if ok, suppressed := s.warn.allow(reason); ok {
		s.logger.Warn("closing a new connection: over the connection limit", "remote", c.remote, "limit", setting, "value", limit, "suppressed", suppressed)
	}
	return reason
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops accepting, closes every connection and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	for _, ln := range s.lns {
		ln.Close()
	}
	for c := range s.conns {
		c.close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) forget(c *conn) {
	ip := c.remoteIP()
	s.mu.Lock()
	delete(s.conns, c)
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
	s.mu.Unlock()
	s.b.Stats.Connections.Dec()
	s.wg.Done()
}

// logLimiter lets a repeated warning through at most once per interval
// (a flood of rejected connections must not flood the log), counting what
// it held back.
type logLimiter struct {
	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

const logInterval = 10 * time.Second

func (l *logLimiter) allow(key string) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last, l.suppressed = map[string]time.Time{}, map[string]int{}
	}
	now := time.Now()
	if last, seen := l.last[key]; seen && now.Sub(last) < logInterval {
		l.suppressed[key]++
		return false, 0
	}
	l.last[key] = now
	suppressed = l.suppressed[key]
	l.suppressed[key] = 0
	return true, suppressed
}

// request is one decoded client request.
type request struct {
	key      int16
	version  int16
	corr     int32
	clientID string
	kreq     kmsg.Request
	received time.Time
}

// respond produces a request's response once its deferred work is done; it
// runs on the connection's writer goroutine, in request order. A nil
// response means none is sent (acks=0 produce).
type respond func(ctx context.Context) kmsg.Response

// conn is one client connection: a reader goroutine decodes requests and
// runs each handler's synchronous part in arrival order (so the appends of
// pipelined produce requests happen in order); a writer goroutine finishes
// the deferred parts and writes responses in the same order, as Kafka
// requires.
type conn struct {
	s      *Server
	nc     net.Conn
	remote string
	ctx    context.Context
	cancel context.CancelFunc
	// readerDone is closed when the client stops sending (it closed or
	// broke the connection): a long-polling fetch answers with what it
	// has instead of waiting out its MaxWait for a reader likely gone
	// (the answer is still written, for a client that only half-closed).
	readerDone chan struct{}
	queue      chan pending
	once       sync.Once
	// pipelined bounds the bytes of this connection's requests read but
	// not yet answered to one socket.request.max.bytes frame: Kafka mutes
	// a connection while one request is processed; we let small requests
	// pipeline (up to maxPipelined), but never buffer a second large one.
	pipelined *semaphore.Weighted
	// inFlight counts requests read and not yet answered; lastActive is
	// when the connection last read a request or wrote a response (unix
	// nanoseconds). Together they say whether it is idle.
	inFlight   atomic.Int32
	lastActive atomic.Int64

	listener   *Listener
	clientHost string
	// principal is the Kafka principal, set once authenticated (nil:
	// auth.Anonymous); read from any goroutine.
	principal atomic.Pointer[string]
	sasl      saslState
	// readAny: the reader has read the first bytes of the connection (a
	// TLS ClientHello there is recognised as such).
	readAny bool
}

// Principal is the connection's Kafka principal: "User:ANONYMOUS" until
// it authenticates (always, on a PLAINTEXT listener), then "User:<name>".
// The authorizer checks it.
func (c *conn) Principal() string {
	if p := c.principal.Load(); p != nil {
		return *p
	}
	return auth.Anonymous
}

func (c *conn) setPrincipal(p string) { c.principal.Store(&p) }

// ClientHost is the client's IP address (no port), what Kafka ACLs match
// their host against.
func (c *conn) ClientHost() string { return c.clientHost }

// ListenerName is the name of the listener the client connected to.
func (c *conn) ListenerName() string { return c.listener.Name }

// advertised is the broker address this connection's client is told:
// its listener's advertised address, or the broker config's.
func (c *conn) advertised() (string, int32) {
	if c.listener.AdvertisedHost != "" {
		return c.listener.AdvertisedHost, c.listener.AdvertisedPort
	}
	cfg := c.s.b.Config()
	return cfg.AdvertisedHost, cfg.AdvertisedPort
}

type pending struct {
	req     *request
	respond respond
	// Held until the response is ready: released by the writer.
	reserved  *frameReservation
	pipelined int64
	// rawToken: the answer is a bare SASL token (after a v0 handshake),
	// written with only its size prefix.
	rawToken bool
	raw      []byte
	// body goes back to the pool once the response is written (only a
	// Produce's: bodypool.go).
	body []byte
}

// maxPipelined bounds the requests a connection may have in flight; the
// reader stops reading while the writer catches up (back pressure).
const maxPipelined = 32

func newConn(s *Server, nc net.Conn, l *Listener) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{s: s, nc: nc, remote: nc.RemoteAddr().String(), ctx: ctx, cancel: cancel, listener: l,
		readerDone: make(chan struct{}), queue: make(chan pending, maxPipelined),
		pipelined: semaphore.NewWeighted(int64(s.cfg.MaxRequestBytes))}
	c.clientHost = c.remoteIP()
	if s.principalOf != nil {
		c.setPrincipal(s.principalOf(c.clientHost))
	}
	c.touch()
	return c
}

func (c *conn) touch() { c.lastActive.Store(time.Now().UnixNano()) }

func (c *conn) remoteIP() string {
	if host, _, err := net.SplitHostPort(c.remote); err == nil {
		return host
	}
	return c.remote
}

func (c *conn) close() {
	c.once.Do(func() {
		c.cancel()
		c.nc.Close()
	})
}

// Why the broker closed a connection, for metrics and logs.
var (
	errIdle               = errors.New("idle for longer than connections.max.idle.ms")
	errRequestReadTimeout = errors.New("request not received within the request read timeout")
)

func (c *conn) serve() {
	defer c.s.forget(c)
	if tc, ok := c.nc.(*tls.Conn); ok && !c.handshakeTLS(tc) {
		c.close()
		return
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	err := c.readLoop()
	close(c.readerDone)
	close(c.queue)
	switch {
	case errors.Is(err, errIdle):
		c.s.b.Stats.ConnectionsTimedOut.WithLabelValues("idle").Inc()
		c.s.logger.Debug("closing idle client connection", "remote", c.remote, "idle", c.s.cfg.ConnectionsMaxIdle)
	case errors.Is(err, errRequestReadTimeout):
		c.s.b.Stats.ConnectionsTimedOut.WithLabelValues("request_read").Inc()
		if ok, suppressed := c.s.warn.allow("request_read"); ok {
			c.s.logger.Warn("closing client connection: request not received in time", "remote", c.remote,
				"timeout", c.s.cfg.RequestReadTimeout, "suppressed", suppressed)
		}
	case errors.Is(err, errSASLFailed):
		// Counted and logged where it failed.
	case errors.Is(err, errTLSOnPlaintext), errors.Is(err, errUnexpectedBeforeAu), errors.Is(err, errSessionExpired):
		if errors.Is(err, errTLSOnPlaintext) || errors.Is(err, errUnexpectedBeforeAu) {
			c.s.b.Stats.AuthenticationFailed.WithLabelValues(c.listener.Name, "none").Inc()
		}
		if ok, suppressed := c.s.warn.allow("auth_close"); ok {
			c.s.logger.Warn("closing client connection", "remote", c.remote, "listener", c.listener.Name, "reason", err, "suppressed", suppressed)
		}
	case err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && c.ctx.Err() == nil:
		var ne net.Error
		var oe *net.OpError
		if errors.As(err, &ne) || errors.As(err, &oe) {
			// A client that died or reset: routine, not the broker's problem.
			c.s.logger.Debug("client connection lost", "remote", c.remote, "err", err)
		} else {
			c.s.logger.Warn("closing client connection after a protocol error", "remote", c.remote, "err", err)
		}
	}
	<-writerDone
	c.close()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// deadline returns now+d, or no deadline for d <= 0.
func deadline(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// readSize reads a frame's size prefix. Until its first byte arrives the
// connection may be idle (connections.max.idle.ms); from then on the frame
// must arrive within the request read timeout.
func (c *conn) readSize() (int32, error) {
	var buf [4]byte
	n := 0
	idle := c.s.cfg.ConnectionsMaxIdle
	if err := c.nc.SetReadDeadline(deadline(idle)); err != nil {
		return 0, err
	}
	for n < len(buf) {
		m, err := c.nc.Read(buf[n:])
		if n == 0 && m > 0 {
			if err := c.nc.SetReadDeadline(deadline(c.s.cfg.RequestReadTimeout)); err != nil {
				return 0, err
			}
		}
		n += m
		if err == nil {
			continue
		}
		if !isTimeout(err) || c.ctx.Err() != nil {
			if n > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		if n > 0 {
			return 0, errRequestReadTimeout
		}
		// Not idle while a response is pending (a long-polling fetch,
		// a JoinGroup waiting for the rebalance) or recently written.
		idleFor := time.Since(time.Unix(0, c.lastActive.Load()))
		if c.inFlight.Load() > 0 {
			idleFor = 0
		}
		if idleFor >= idle {
			return 0, errIdle
		}
		if err := c.nc.SetReadDeadline(time.Now().Add(idle - idleFor)); err != nil {
			return 0, err
		}
	}
	return int32(binary.BigEndian.Uint32(buf[:])), nil
}

// Frames are read in pieces of at most readChunk bytes, each reserved from
// queued.max.request.bytes before it is read, so a connection holds memory
// for what it has sent, not for what it declared.
const readChunk = 1 << 20

// readBody reads a frame of size bytes into a buffer that grows as bytes
// arrive. It reserves them from the request budget as it goes (res).
func (c *conn) readBody(size int, res *frameReservation) ([]byte, error) {
	buf := pooledBody(size) // bodypool.go
	if buf == nil {
		buf = make([]byte, 0, min(bodyCap(size), 64<<10))
	}
	reserved := 0
	for len(buf) < size {
		if len(buf) == reserved {
			n := min(readChunk, size-reserved)
			waited, err := res.grow(c.ctx, int64(n), c.s.b.Stats.ReadsThrottled.WithLabelValues("queued_max_request_bytes").Inc)
			if err != nil {
				return nil, err
			}
			if waited {
				// The wait was the broker's doing, not the client's.
				if err := c.nc.SetReadDeadline(deadline(c.s.cfg.RequestReadTimeout)); err != nil {
					return nil, err
				}
			}
			reserved += n
		}
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(2*cap(buf), bodyCap(size)))
			copy(grown, buf)
			buf = grown
		}
		m, err := c.nc.Read(buf[len(buf):min(cap(buf), reserved)])
		buf = buf[:len(buf)+m]
		if err != nil && len(buf) < size {
			if isTimeout(err) && c.ctx.Err() == nil {
				return nil, errRequestReadTimeout
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("truncated request: %w", err)
		}
	}
	return buf, nil
}

func (c *conn) readLoop() error {
	for {
		size, err := c.readSize()
		if err != nil {
			return err
		}
		first := !c.readAny
		c.readAny = true
		if limit := c.maxFrame(); size < 8 || size > limit {
			if first && !c.listener.Protocol.TLS() && looksLikeTLS(uint32(size)) {
				return errTLSOnPlaintext
			}
			if c.sasl.raw && size >= 0 && size <= limit {
				// A raw SASL token (v0 handshake) may be short.
			} else if limit < c.s.cfg.MaxRequestBytes {
				return fmt.Errorf("request size %d outside [8, %d] before SASL authentication (sasl.server.max.receive.size)", size, limit)
			} else {
				return fmt.Errorf("request size %d outside [8, %d] (socket.request.max.bytes)", size, limit)
			}
		}
		// This connection's earlier requests first: a second large
		// request waits until the first is answered.
		if !c.pipelined.TryAcquire(int64(size)) {
			c.s.b.Stats.ReadsThrottled.WithLabelValues("connection").Inc()
			if err := c.pipelined.Acquire(c.ctx, int64(size)); err != nil {
				return nil
			}
			if err := c.nc.SetReadDeadline(deadline(c.s.cfg.RequestReadTimeout)); err != nil {
				return err
			}
		}
		res := c.s.budget.newFrame()
		body, err := c.readBody(int(size), res)
		res.read()
		if err != nil {
			res.release()
			c.pipelined.Release(int64(size))
			if c.ctx.Err() != nil {
				return nil
			}
			return err
		}
		c.touch()
		c.inFlight.Add(1)
		c.s.b.Stats.BytesIn.Add(float64(size) + 4)
		p := pending{reserved: res, pipelined: int64(size)}
		if c.sasl.raw {
			// After a v0 SaslHandshake the frame is the token itself.
			p.req = &request{key: saslAuthenticateKey, received: time.Now()}
			p.raw, err = c.saslStep(body)
			if err != nil {
				// Kafka closes at once: v0 has no way to say why.
				c.finish(p)
				return errSASLFailed
			}
			p.rawToken = true
			p.respond = func(context.Context) kmsg.Response { return nil }
		} else {
			req, resp, err := c.decode(body)
			if err == nil {
				err = c.gate(req)
			}
			if err != nil {
				c.finish(p)
				return err
			}
			p.req = req
			if req.key == produceKey {
				p.body = body
			}
			if resp != nil { // answered by the decoder (ApiVersions fallback)
				p.respond = func(context.Context) kmsg.Response { return resp }
			} else {
				p.respond = c.dispatch(req)
			}
		}
		select {
		case c.queue <- p:
		case <-c.ctx.Done():
			c.finish(p)
			return nil
		}
		if c.sasl.failed {
			// The failure is answered, then the connection closes.
			return errSASLFailed
		}
	}
}

// errTLSOnPlaintext: a client started a TLS handshake on a listener
// without TLS (its ClientHello's first bytes read as a ~370 MB frame).
var errTLSOnPlaintext = errors.New("TLS handshake received on a listener without TLS: the client uses TLS (security.protocol SSL or SASL_SSL) but this listener is not an SSL or SASL_SSL one")

// looksLikeTLS reports whether a connection's first four bytes are a TLS
// record header of a handshake: content type 22, version 3.x.
func looksLikeTLS(first4 uint32) bool {
	return first4>>24 == 0x16 && first4>>16&0xff == 0x03 && first4>>8&0xff <= 0x04
}

// finish gives back what a request held once its response is ready.
func (c *conn) finish(p pending) {
	p.reserved.release()
	c.pipelined.Release(p.pipelined)
	c.inFlight.Add(-1)
}

// decode parses the request header and body. An unknown API key, an
// unsupported version (other than of ApiVersions, which gets a v0
// UNSUPPORTED_VERSION answer listing what we serve) or a malformed body is
// an error that closes the connection, as Kafka does.
func (c *conn) decode(body []byte) (*request, kmsg.Response, error) {
	rd := kbin.Reader{Src: body}
	req := &request{key: rd.Int16(), version: rd.Int16(), corr: rd.Int32(), received: time.Now()}
	if cid := rd.NullableString(); cid != nil {
		req.clientID = *cid
	}
	if rd.Complete() != nil {
		return nil, nil, errors.New("malformed request header")
	}
	h, ok := handlers[req.key]
	if !ok {
		return nil, nil, fmt.Errorf("unknown or unsupported API key %d", req.key)
	}
	if req.version < h.min || req.version > h.max {
		if req.key == apiVersionsKey {
			return req, apiVersionsFallback(), nil
		}
		return nil, nil, fmt.Errorf("unsupported %s version %d (serving %d-%d)", kmsg.NameForKey(req.key), req.version, h.min, h.max)
	}
	kreq := kmsg.RequestForKey(req.key)
	kreq.SetVersion(req.version)
	if kreq.IsFlexible() {
		kmsg.SkipTags(&rd)
		if rd.Complete() != nil {
			return nil, nil, errors.New("malformed request header tags")
		}
	}
	if err := kreq.ReadFrom(rd.Src); err != nil {
		return nil, nil, fmt.Errorf("malformed %s v%d request: %w", kmsg.NameForKey(req.key), req.version, err)
	}
	req.kreq = kreq
	return req, nil, nil
}

func (c *conn) dispatch(req *request) respond {
	h := handlers[req.key]
	if c.s.b.ACL != nil && !enforcesACLs[req.key] {
		// Fail closed: an API whose handler does not check ACLs yet
		// is not served while an authorizer is configured.
		if ok, suppressed := c.s.warn.allow("acl_unchecked_api"); ok {
			c.s.logger.Warn("closing a connection: this API does not enforce ACLs yet and is refused with --authorizer acl",
				"api", kmsg.NameForKey(req.key), "remote", c.remote, "suppressed", suppressed)
		}
		c.close()
		return func(context.Context) kmsg.Response { return nil }
	}
	return h.fn(c, req)
}

func (c *conn) writeLoop() {
	buf := make([]byte, 0, 64*1024)
	for p := range c.queue {
		// The request is no longer queued once its processing starts
		// (Kafka releases a request's pool memory when its handler
		// returns): a JoinGroup parked for the rebalance, or a long-polling
		// fetch, must not hold queued.max.request.bytes for minutes. The
		// connection's own bound (pipelined) holds until it is answered.
		p.reserved.release()
		resp := p.respond(c.ctx)
		c.finish(p)
		api := kmsg.NameForKey(p.req.key)
		c.s.b.Stats.Requests.WithLabelValues(api).Inc()
		c.s.b.Stats.RequestSeconds.WithLabelValues(api).Observe(time.Since(p.req.received).Seconds())
		buf = c.writeAnswer(p, api, resp, buf)
		if p.body != nil {
			releaseBody(p.body)
		}
	}
}

// writeAnswer writes a request's response (if any) and returns the buffer
// for the next one.
func (c *conn) writeAnswer(p pending, api string, resp kmsg.Response, buf []byte) []byte {
	if p.rawToken {
		if c.ctx.Err() == nil {
			buf = binary.BigEndian.AppendUint32(buf[:0], uint32(len(p.raw)))
			buf = append(buf, p.raw...)
			_ = c.write(buf)
		}
		return buf
	}
	if resp == nil {
		return buf
	}
	spliced, _ := resp.(*splicedFetchResponse)
	if c.ctx.Err() != nil {
		if spliced != nil {
			spliced.release()
		}
		return buf // drain: the connection is gone
	}
	// Produce and Fetch answers carry only topic names (at most
	// 249 bytes) and short messages; they are not walked.
	if p.req.key != 0 && p.req.key != 1 {
		fitStrings(resp, func(field string) {
			if ok, suppressed := c.s.warn.allow("long_string"); ok {
				c.s.logger.Warn("shortened a string an older response version cannot carry (int16 length)",
					"api", api, "version", p.req.version, "field", field, "remote", c.remote, "suppressed", suppressed)
			}
		})
	}
	buf = append(buf[:0], 0, 0, 0, 0)
	buf = binary.BigEndian.AppendUint32(buf, uint32(p.req.corr))
	// ApiVersions responses always use header v0 so that a client
	// that sent a version we don't know can still read the answer.
	if resp.IsFlexible() && p.req.key != apiVersionsKey {
		buf = append(buf, 0)
	}
	if spliced != nil {
		var err error
		if buf, err = c.writeSpliced(buf, spliced); err != nil {
			return buf
		}
	} else {
		buf = resp.AppendTo(buf)
		binary.BigEndian.PutUint32(buf[:4], uint32(len(buf)-4))
		if err := c.write(buf); err != nil {
			return buf
		}
	}
	if cap(buf) > 8<<20 {
		buf = make([]byte, 0, 64*1024)
	}
	return buf
}

// write sends one framed response; a failure closes the connection.
func (c *conn) write(buf []byte) error {
	// A client that reads nothing for connections.max.idle.ms is as
	// idle as one that sends nothing.
	if err := c.nc.SetWriteDeadline(deadline(c.s.cfg.ConnectionsMaxIdle)); err != nil {
		c.close()
		return err
	}
	if _, err := c.nc.Write(buf); err != nil {
		if isTimeout(err) {
			c.s.b.Stats.ConnectionsTimedOut.WithLabelValues("idle").Inc()
		}
		c.close()
		return err
	}
	c.touch()
	c.s.b.Stats.BytesOut.Add(float64(len(buf)))
	return nil
}
