// Package wire is oncelog's Kafka protocol front end: the TCP listener,
// request framing and size limits, decoding with kmsg, dispatch by API key
// and per-connection in-order responses. Each API has its own file whose
// init registers the versions it serves, so the ApiVersions answer is derived
// from the handlers and cannot drift from them.
package wire

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DefaultMaxRequestBytes is Kafka's socket.request.max.bytes default.
const DefaultMaxRequestBytes = 100 * 1024 * 1024

// Server accepts Kafka client connections.
type Server struct {
	b               *broker.Broker
	logger          *slog.Logger
	maxRequestBytes int32

	mu     sync.Mutex
	ln     net.Listener
	conns  map[*conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// NewServer returns a server for b. maxRequestBytes <= 0 means the default.
func NewServer(b *broker.Broker, maxRequestBytes int32, logger *slog.Logger) *Server {
	if maxRequestBytes <= 0 {
		maxRequestBytes = DefaultMaxRequestBytes
	}
	return &Server{b: b, logger: logger, maxRequestBytes: maxRequestBytes, conns: map[*conn]struct{}{}}
}

// Serve accepts connections on ln until Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.ln = ln
	s.mu.Unlock()
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.b.Stats.Connections.Inc()
		go c.serve()
	}
}

// Close stops accepting, closes every connection and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	for c := range s.conns {
		c.close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.b.Stats.Connections.Dec()
	s.wg.Done()
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
}

type pending struct {
	req     *request
	respond respond
}

// maxPipelined bounds the requests a connection may have in flight; the
// reader stops reading while the writer catches up (back pressure).
const maxPipelined = 32

func newConn(s *Server, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{s: s, nc: nc, remote: nc.RemoteAddr().String(), ctx: ctx, cancel: cancel,
		readerDone: make(chan struct{}), queue: make(chan pending, maxPipelined)}
}

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

func (c *conn) serve() {
	defer c.s.forget(c)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	err := c.readLoop()
	close(c.readerDone)
	close(c.queue)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && c.ctx.Err() == nil {
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

func (c *conn) readLoop() error {
	var sizeBuf [4]byte
	for {
		if _, err := io.ReadFull(c.nc, sizeBuf[:]); err != nil {
			return err
		}
		size := int32(binary.BigEndian.Uint32(sizeBuf[:]))
		if size < 8 || size > c.s.maxRequestBytes {
			return fmt.Errorf("request size %d outside [8, %d] (socket.request.max.bytes)", size, c.s.maxRequestBytes)
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(c.nc, body); err != nil {
			return fmt.Errorf("truncated request: %w", err)
		}
		c.s.b.Stats.BytesIn.Add(float64(size) + 4)
		req, resp, err := c.decode(body)
		if err != nil {
			return err
		}
		var r respond
		if resp != nil { // answered by the decoder (ApiVersions fallback)
			r = func(context.Context) kmsg.Response { return resp }
		} else {
			r = c.dispatch(req)
		}
		select {
		case c.queue <- pending{req: req, respond: r}:
		case <-c.ctx.Done():
			return nil
		}
	}
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
	return h.fn(c, req)
}

func (c *conn) writeLoop() {
	buf := make([]byte, 0, 64*1024)
	for p := range c.queue {
		resp := p.respond(c.ctx)
		api := kmsg.NameForKey(p.req.key)
		c.s.b.Stats.Requests.WithLabelValues(api).Inc()
		c.s.b.Stats.RequestSeconds.WithLabelValues(api).Observe(time.Since(p.req.received).Seconds())
		if resp == nil {
			continue
		}
		if c.ctx.Err() != nil {
			continue // drain: the connection is gone
		}
		buf = append(buf[:0], 0, 0, 0, 0)
		buf = binary.BigEndian.AppendUint32(buf, uint32(p.req.corr))
		// ApiVersions responses always use header v0 so that a client
		// that sent a version we don't know can still read the answer.
		if resp.IsFlexible() && p.req.key != apiVersionsKey {
			buf = append(buf, 0)
		}
		buf = resp.AppendTo(buf)
		binary.BigEndian.PutUint32(buf[:4], uint32(len(buf)-4))
		if _, err := c.nc.Write(buf); err != nil {
			c.close()
			continue
		}
		c.s.b.Stats.BytesOut.Add(float64(len(buf)))
		if cap(buf) > 8<<20 {
			buf = make([]byte, 0, 64*1024)
		}
	}
}
