// Package faultproxy is a test helper: a TCP proxy between Kafka clients and
// a broker that understands Kafka framing well enough to inject faults per
// API key: lose a response (the client sees its connection die without an
// answer, which is what a lost ack looks like), cut the connection right
// after a request reached the broker, or delay responses.
//
// Frames are streamed, not buffered whole: the proxy reads only the 4-byte
// size prefix and the request header (api key, api version, correlation id)
// or the response's correlation id, then copies the rest of the frame as is.
//
// Responses are matched to requests by correlation id. Kafka answers in
// request order on a connection, but some requests are never answered
// (Produce with acks=0), so each connection keeps a FIFO of requests in
// flight; a response pops the FIFO up to and including its correlation id,
// and the requests it skips over were unanswered ones.
package faultproxy

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// unknownAPIKey marks a response whose request the proxy could not identify
// (a malformed request, or one evicted from a full in-flight FIFO). No fault
// rule applies to it.
const unknownAPIKey int16 = -1

// maxInFlight bounds the per-connection FIFO of requests awaiting a response,
// so a connection that only sends acks=0 produce requests does not grow it
// forever. Kafka clients keep far fewer requests in flight than this.
const maxInFlight = 4096

// dialTimeout bounds how long a new client connection waits for the broker.
const dialTimeout = 5 * time.Second

// copyBufferSize is the size of the buffered reader and writer on each side.
const copyBufferSize = 64 << 10

// Rules are the faults to inject. Maps are keyed by Kafka API key (0 =
// Produce, 1 = Fetch, 3 = Metadata, ...). A probability <= 0 never fires and
// >= 1 always fires; only probabilities strictly between 0 and 1 draw from the
// seeded random source, so a run is reproducible given the seed and the order
// of requests.
type Rules struct {
	// Seed seeds the random source; SetRules reseeds it.
	Seed int64
	// DropResponseProb swallows a response of that API and closes the client
	// connection (and its broker connection): the client never sees the
	// answer and retries on a new connection, as it would after a lost ack.
	// Swallowing without closing would only stall the client until its
	// request timeout.
	DropResponseProb map[int16]float64
	// CutAfterRequestProb forwards a request of that API to the broker, then
	// immediately closes both connections: the broker has the request's
	// bytes, the client gets no answer.
	CutAfterRequestProb map[int16]float64
	// DelayResponse holds back each response of that API for the duration.
	// Responses on a connection stay in order, so later responses on the
	// same connection wait behind a delayed one.
	DelayResponse map[int16]time.Duration
}

// clone copies the maps so a caller mutating its Rules afterwards cannot race
// with the proxy.
func (r Rules) clone() *Rules {
	return &Rules{
		Seed:                r.Seed,
		DropResponseProb:    maps.Clone(r.DropResponseProb),
		CutAfterRequestProb: maps.Clone(r.CutAfterRequestProb),
		DelayResponse:       maps.Clone(r.DelayResponse),
	}
}

// Stats counts what the proxy saw and did since Start. Maps are keyed by API
// key; responses whose request could not be identified count under -1.
type Stats struct {
	Connections      int64           // client connections accepted
	OpenConnections  int64           // client connections currently proxied
	DialFailures     int64           // client connections closed because the target was unreachable
	Requests         map[int16]int64 // requests forwarded to the broker
	Responses        map[int16]int64 // responses forwarded (or being forwarded) to the client
	DroppedResponses map[int16]int64 // responses swallowed by DropResponseProb
	CutsAfterRequest map[int16]int64 // connections cut by CutAfterRequestProb
	DelayedResponses map[int16]int64 // responses held back by DelayResponse
	CutAlls          int64           // calls to CutAll
}

// Proxy forwards Kafka connections from Addr to the target, injecting the
// faults of its current Rules.
type Proxy struct {
	listener net.Listener
	rules    atomic.Pointer[Rules]
	wg       sync.WaitGroup // accept loop and every connection goroutine

	// rngMu guards rng; draws from all connections share one source so that
	// the seed alone decides the outcome of a given sequence of requests.
	rngMu sync.Mutex
	rng   *rand.Rand

	mu       sync.Mutex
	target   string
	closed   bool
	sessions map[*session]struct{}
	stats    Stats

	closeOnce sync.Once
	closeErr  error
}

// Start listens on a free loopback port and forwards every accepted
// connection to target. It starts with no fault rules.
func Start(target string) (*Proxy, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		listener: listener,
		target:   target,
		sessions: make(map[*session]struct{}),
		stats: Stats{
			Requests:         make(map[int16]int64),
			Responses:        make(map[int16]int64),
			DroppedResponses: make(map[int16]int64),
			CutsAfterRequest: make(map[int16]int64),
			DelayedResponses: make(map[int16]int64),
		},
	}
	p.SetRules(Rules{})
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address clients should connect to.
func (p *Proxy) Addr() string { return p.listener.Addr().String() }

// SetTarget changes where new connections are forwarded (for instance to a
// broker restarted on another port). Open connections keep their broker.
func (p *Proxy) SetTarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

// SetRules atomically replaces the fault rules and reseeds the random source.
// It is safe to call while traffic flows; a frame already being handled may
// still see the previous rules.
func (p *Proxy) SetRules(r Rules) {
	p.rngMu.Lock()
	p.rng = rand.New(rand.NewPCG(uint64(r.Seed), 0))
	p.rules.Store(r.clone())
	p.rngMu.Unlock()
}

// CutAll closes every open connection, on both sides, now. The proxy keeps
// accepting new connections.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	p.stats.CutAlls++
	sessions := make([]*session, 0, len(p.sessions))
	for s := range p.sessions {
		sessions = append(sessions, s)
	}
	p.mu.Unlock()
	for _, s := range sessions {
		s.close()
	}
}

// Stats returns a copy of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.OpenConnections = int64(len(p.sessions))
	s.Requests = maps.Clone(p.stats.Requests)
	s.Responses = maps.Clone(p.stats.Responses)
	s.DroppedResponses = maps.Clone(p.stats.DroppedResponses)
	s.CutsAfterRequest = maps.Clone(p.stats.CutsAfterRequest)
	s.DelayedResponses = maps.Clone(p.stats.DelayedResponses)
	return s
}

// Close stops accepting, closes every connection and waits until all of the
// proxy's goroutines have returned.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		sessions := make([]*session, 0, len(p.sessions))
		for s := range p.sessions {
			sessions = append(sessions, s)
		}
		p.mu.Unlock()
		p.closeErr = p.listener.Close()
		for _, s := range sessions {
			s.close()
		}
		p.wg.Wait()
	})
	return p.closeErr
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		client, err := p.listener.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				slog.Warn("faultproxy: accept failed, proxy stops accepting", "err", err)
			}
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		s := &session{proxy: p, client: client, ctx: ctx, cancel: cancel}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			client.Close()
			return
		}
		p.sessions[s] = struct{}{}
		p.stats.Connections++
		target := p.target
		// Add while holding the accept loop's own count, so Close's Wait
		// cannot have returned yet.
		p.wg.Add(1)
		p.mu.Unlock()
		go s.run(target)
	}
}

// roll reports whether a fault with the given probability fires.
func (p *Proxy) roll(prob float64) bool {
	switch {
	case prob <= 0:
		return false
	case prob >= 1:
		return true
	}
	p.rngMu.Lock()
	defer p.rngMu.Unlock()
	return p.rng.Float64() < prob
}

// count increments a per-API counter. The counter maps are created once in
// Start and never replaced, so reading the field outside mu is safe; the
// increment itself is guarded.
func (p *Proxy) count(counter map[int16]int64, apiKey int16) {
	p.mu.Lock()
	counter[apiKey]++
	p.mu.Unlock()
}

// session is one proxied client connection and its broker connection.
type session struct {
	proxy  *Proxy
	client net.Conn
	ctx    context.Context // done once the session is closed
	cancel context.CancelFunc

	mu       sync.Mutex
	broker   net.Conn // nil until dialed
	closed   bool
	inFlight []inFlightRequest // requests awaiting a response, oldest first

	// cutting is set before a request that CutAfterRequestProb chose is
	// forwarded, so the response pump cannot deliver its answer in the
	// moment before the connections are closed.
	cutting atomic.Bool
}

type inFlightRequest struct {
	correlationID int32
	apiKey        int16
}

// run dials the broker and pumps both directions until the connection ends.
func (s *session) run(target string) {
	p := s.proxy
	defer p.wg.Done()
	defer func() {
		s.close()
		p.mu.Lock()
		delete(p.sessions, s)
		p.mu.Unlock()
	}()

	dialCtx, cancelDial := context.WithTimeout(s.ctx, dialTimeout)
	var dialer net.Dialer
	broker, err := dialer.DialContext(dialCtx, "tcp", target)
	cancelDial()
	if err != nil {
		p.mu.Lock()
		p.stats.DialFailures++
		p.mu.Unlock()
		slog.Debug("faultproxy: dial target failed", "target", target, "err", err)
		return
	}
	if !s.setBroker(broker) {
		return // cut (CutAll or Close) while dialing
	}

	responsesDone := make(chan struct{})
	go func() {
		defer close(responsesDone)
		s.pumpResponses(broker)
	}()
	s.pumpRequests(broker)
	<-responsesDone
}

func (s *session) setBroker(broker net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		broker.Close()
		return false
	}
	s.broker = broker
	return true
}

// close closes both connections; both pumps then fail their next read or
// write and return. Safe to call more than once and from any goroutine.
func (s *session) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.cancel()
	s.client.Close()
	if s.broker != nil {
		s.broker.Close()
	}
}

func (s *session) pushInFlight(r inFlightRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.inFlight) >= maxInFlight {
		// The oldest entry is almost certainly an unanswered acks=0
		// produce; forget it. Shift in place to reuse the backing array.
		n := copy(s.inFlight, s.inFlight[1:])
		s.inFlight = s.inFlight[:n]
	}
	s.inFlight = append(s.inFlight, r)
}

// popInFlight returns the API key of the request a response with this
// correlation id answers, discarding older requests that were never
// answered. It returns unknownAPIKey if no such request is in flight, leaving
// the FIFO as it was.
func (s *session) popInFlight(correlationID int32) int16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.inFlight {
		if r.correlationID == correlationID {
			n := copy(s.inFlight, s.inFlight[i+1:])
			s.inFlight = s.inFlight[:n]
			return r.apiKey
		}
	}
	return unknownAPIKey
}

// pumpRequests copies request frames from the client to the broker.
func (s *session) pumpRequests(broker net.Conn) {
	p := s.proxy
	in := bufio.NewReaderSize(s.client, copyBufferSize)
	out := bufio.NewWriterSize(broker, copyBufferSize)
	var head [4 + 8]byte // size, api key, api version, correlation id
	for {
		size, err := readFrameSize(in, head[:4])
		if err != nil {
			if errors.Is(err, io.EOF) {
				// The client finished sending at a frame boundary. Pass
				// the half-close on and let the response pump deliver
				// whatever the broker still answers.
				if tcp, ok := broker.(*net.TCPConn); ok && tcp.CloseWrite() == nil {
					return
				}
			}
			s.close()
			return
		}
		headerLen := min(size, 8)
		if _, err := io.ReadFull(in, head[4:4+headerLen]); err != nil {
			s.close()
			return
		}
		apiKey := unknownAPIKey
		if headerLen == 8 {
			apiKey = int16(binary.BigEndian.Uint16(head[4:6]))
			s.pushInFlight(inFlightRequest{
				correlationID: int32(binary.BigEndian.Uint32(head[8:12])),
				apiKey:        apiKey,
			})
		}
		p.count(p.stats.Requests, apiKey)

		cut := apiKey != unknownAPIKey && p.roll(p.rules.Load().CutAfterRequestProb[apiKey])
		if cut {
			s.cutting.Store(true)
		}
		if err := copyFrame(out, in, head[:4+headerLen], int64(size-headerLen)); err != nil {
			s.close()
			return
		}
		if cut {
			p.count(p.stats.CutsAfterRequest, apiKey)
			s.close()
			return
		}
	}
}

// pumpResponses copies response frames from the broker to the client,
// dropping or delaying them as the rules say.
func (s *session) pumpResponses(broker net.Conn) {
	p := s.proxy
	// Whatever ends this pump (the broker closing, a dropped response, a
	// write error), the connection is over for the client too.
	defer s.close()
	in := bufio.NewReaderSize(broker, copyBufferSize)
	out := bufio.NewWriterSize(s.client, copyBufferSize)
	var head [4 + 4]byte // size, correlation id
	for {
		size, err := readFrameSize(in, head[:4])
		if err != nil {
			return
		}
		headerLen := min(size, 4)
		if _, err := io.ReadFull(in, head[4:4+headerLen]); err != nil {
			return
		}
		if s.cutting.Load() {
			return // the connection is being cut: nothing more reaches the client
		}
		apiKey := unknownAPIKey
		if headerLen == 4 {
			apiKey = s.popInFlight(int32(binary.BigEndian.Uint32(head[4:8])))
		}
		if apiKey != unknownAPIKey {
			rules := p.rules.Load()
			if p.roll(rules.DropResponseProb[apiKey]) {
				p.count(p.stats.DroppedResponses, apiKey)
				return
			}
			if delay := rules.DelayResponse[apiKey]; delay > 0 {
				p.count(p.stats.DelayedResponses, apiKey)
				if !s.wait(delay) {
					return
				}
			}
		}
		// Counted before the write so a client that has read the response
		// already sees it in Stats.
		p.count(p.stats.Responses, apiKey)
		if err := copyFrame(out, in, head[:4+headerLen], int64(size-headerLen)); err != nil {
			return
		}
	}
}

// wait sleeps for d, returning false early if the session is closed.
func (s *session) wait(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// readFrameSize reads a frame's 4-byte size prefix into buf. It returns
// io.EOF only if the stream ended cleanly before the frame began.
func readFrameSize(in io.Reader, buf []byte) (int32, error) {
	if _, err := io.ReadFull(in, buf); err != nil {
		return 0, err // io.EOF if nothing was read, io.ErrUnexpectedEOF otherwise
	}
	size := int32(binary.BigEndian.Uint32(buf))
	if size < 0 {
		return 0, errors.New("faultproxy: negative frame size")
	}
	return size, nil
}

// copyFrame writes the already-read head of a frame, streams the remaining
// rest bytes from in, and flushes so the frame leaves the proxy whole.
func copyFrame(out *bufio.Writer, in io.Reader, head []byte, rest int64) error {
	if _, err := out.Write(head); err != nil {
		return err
	}
	if _, err := io.CopyN(out, in, rest); err != nil {
		return err
	}
	return out.Flush()
}
