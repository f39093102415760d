package faultproxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

const (
	apiProduce     int16 = 0
	apiFetch       int16 = 1
	apiMetadata    int16 = 3
	apiApiVersions int16 = 18
)

// noReply in a request body tells fakeBroker not to answer it, like a broker
// receiving an acks=0 produce.
const noReply = "noreply"

// ioTimeout only keeps a broken test from hanging; no test relies on it
// expiring.
const ioTimeout = 10 * time.Second

type fakeRequest struct {
	apiKey        int16
	correlationID int32
	body          string
}

// fakeBroker speaks Kafka framing: it answers every request (except noReply
// ones) with a response carrying the request's correlation id and body, and
// closes a connection when the client half-closes it.
type fakeBroker struct {
	listener net.Listener
	requests chan fakeRequest // every request received, in arrival order
	eofs     chan struct{}    // one per connection the client closed cleanly
	wg       sync.WaitGroup
}

func startFakeBroker(t *testing.T) *fakeBroker {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBroker{
		listener: listener,
		requests: make(chan fakeRequest, 1000),
		eofs:     make(chan struct{}, 100),
	}
	var conns sync.Map
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			conns.Store(conn, struct{}{})
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer conns.Delete(conn)
				b.serve(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		listener.Close()
		conns.Range(func(c, _ any) bool { c.(net.Conn).Close(); return true })
		b.wg.Wait()
	})
	return b
}

func (b *fakeBroker) addr() string { return b.listener.Addr().String() }

func (b *fakeBroker) serve(conn net.Conn) {
	defer conn.Close()
	in := bufio.NewReader(conn)
	for {
		frame, err := readFrame(in)
		if err != nil {
			if errors.Is(err, io.EOF) {
				select {
				case b.eofs <- struct{}{}:
				default: // nobody is counting them
				}
			}
			return
		}
		req := fakeRequest{
			apiKey:        int16(binary.BigEndian.Uint16(frame[0:2])),
			correlationID: int32(binary.BigEndian.Uint32(frame[4:8])),
			body:          string(frame[8:]),
		}
		b.requests <- req
		if req.body == noReply {
			continue
		}
		resp := binary.BigEndian.AppendUint32(nil, uint32(req.correlationID))
		if _, err := conn.Write(appendFrame(nil, append(resp, req.body...))); err != nil {
			return
		}
	}
}

// nextRequest returns the next request the fake broker received.
func (b *fakeBroker) nextRequest(t *testing.T) fakeRequest {
	t.Helper()
	select {
	case r := <-b.requests:
		return r
	case <-time.After(ioTimeout):
		t.Fatal("fake broker received no request")
		return fakeRequest{}
	}
}

func readFrame(in io.Reader) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(in, size[:]); err != nil {
		return nil, err
	}
	frame := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(in, frame); err != nil {
		return nil, err
	}
	return frame, nil
}

func appendFrame(dst, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// testClient writes raw Kafka request frames and reads response frames.
type testClient struct {
	t    *testing.T
	conn net.Conn
	in   *bufio.Reader
}

func dial(t *testing.T, addr string) *testClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(ioTimeout))
	t.Cleanup(func() { conn.Close() })
	return &testClient{t: t, conn: conn, in: bufio.NewReader(conn)}
}

func (c *testClient) send(apiKey int16, correlationID int32, body string) {
	c.t.Helper()
	var header []byte
	header = binary.BigEndian.AppendUint16(header, uint16(apiKey))
	header = binary.BigEndian.AppendUint16(header, 7) // api version: unused
	header = binary.BigEndian.AppendUint32(header, uint32(correlationID))
	if _, err := c.conn.Write(appendFrame(nil, append(header, body...))); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// recv returns the next response, or the read error.
func (c *testClient) recv() (correlationID int32, body string, err error) {
	frame, err := readFrame(c.in)
	if err != nil {
		return 0, "", err
	}
	return int32(binary.BigEndian.Uint32(frame[:4])), string(frame[4:]), nil
}

func (c *testClient) expectResponse(correlationID int32, body string) {
	c.t.Helper()
	gotID, gotBody, err := c.recv()
	if err != nil {
		c.t.Fatalf("expected response %d %q, got error %v", correlationID, body, err)
	}
	if gotID != correlationID || gotBody != body {
		c.t.Fatalf("got response %d %q, want %d %q", gotID, gotBody, correlationID, body)
	}
}

// expectClosed asserts the proxy closed the connection without another
// response.
func (c *testClient) expectClosed() {
	c.t.Helper()
	id, body, err := c.recv()
	if err == nil {
		c.t.Fatalf("got response %d %q, want the connection closed", id, body)
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		c.t.Fatalf("connection still open: %v", err)
	}
}

func startProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestForwardsPipelinedRequestsInOrder(t *testing.T) {
	broker := startFakeBroker(t)
	p := startProxy(t, broker.addr())
	c := dial(t, p.Addr())

	c.send(apiProduce, 1, "a")
	c.send(apiMetadata, 2, "b")
	c.send(apiFetch, 3, "")
	for i, want := range []fakeRequest{{apiProduce, 1, "a"}, {apiMetadata, 2, "b"}, {apiFetch, 3, ""}} {
		if got := broker.nextRequest(t); got != want {
			t.Fatalf("request %d: broker got %+v, want %+v", i, got, want)
		}
	}
	c.expectResponse(1, "a")
	c.expectResponse(2, "b")
	c.expectResponse(3, "")

	s := p.Stats()
	if s.Connections != 1 || s.OpenConnections != 1 {
		t.Errorf("connections = %d, open = %d, want 1, 1", s.Connections, s.OpenConnections)
	}
	for _, api := range []int16{apiProduce, apiMetadata, apiFetch} {
		if s.Requests[api] != 1 || s.Responses[api] != 1 {
			t.Errorf("api %d: requests = %d, responses = %d, want 1, 1", api, s.Requests[api], s.Responses[api])
		}
	}
}

func TestForwardsLargeFrames(t *testing.T) {
	broker := startFakeBroker(t)
	p := startProxy(t, broker.addr())
	c := dial(t, p.Addr())

	big := make([]byte, 3*copyBufferSize+17)
	for i := range big {
		big[i] = byte(i)
	}
	c.send(apiProduce, 9, string(big))
	if got := broker.nextRequest(t); got.body != string(big) {
		t.Fatalf("broker got a %d-byte body, want the %d bytes sent", len(got.body), len(big))
	}
	c.expectResponse(9, string(big))
}

func TestDropResponseClosesClientConnection(t *testing.T) {
	broker := startFakeBroker(t)
	p := startProxy(t, broker.addr())
	p.SetRules(Rules{DropResponseProb: map[int16]float64{apiProduce: 1}})

	c := dial(t, p.Addr())
	c.send(apiMetadata, 1, "meta")
	c.expectResponse(1, "meta")
	c.send(apiProduce, 2, "record")
	c.expectClosed()
	if got := broker.nextRequest(t); got.apiKey != apiMetadata {
		t.Fatalf("first request at broker: %+v", got)
	}
	if got := broker.nextRequest(t); got.apiKey != apiProduce || got.body != "record" {
		t.Fatalf("the dropped request must still reach the broker, got %+v", got)
	}

	s := p.Stats()
	if s.DroppedResponses[apiProduce] != 1 || s.Responses[apiProduce] != 0 {
		t.Errorf("dropped = %d, forwarded = %d produce responses, want 1, 0",
			s.DroppedResponses[apiProduce], s.Responses[apiProduce])
	}

	// The client retries on a new connection; without the rule it goes through.
	p.SetRules(Rules{})
	c = dial(t, p.Addr())
	c.send(apiProduce, 3, "record")
	c.expectResponse(3, "record")
}

// An unanswered request (acks=0 produce) must not shift the matching of later
// responses: the response to correlation id 2 answers the Metadata request,
// so the Produce drop rule must not touch it.
func TestUnansweredRequestsDoNotShiftMatching(t *testing.T) {
	broker := startFakeBroker(t)
	p := startProxy(t, broker.addr())
	p.SetRules(Rules{DropResponseProb: map[int16]float64{apiProduce: 1}})

	c := dial(t, p.Addr())
	c.send(apiProduce, 1, noReply)
	c.send(apiMetadata, 2, "meta")
	c.expectResponse(2, "meta")

	s := p.Stats()
	if s.Responses[apiMetadata] != 1 || s.DroppedResponses[apiProduce] != 0 {
		t.Errorf("metadata responses = %d, dropped produce = %d, want 1, 0",
			s.Responses[apiMetadata], s.DroppedResponses[apiProduce])
	}
}

func TestCutAfterRequestDeliversRequestButNoResponse(t *testing.T) {
	broker := startFakeBroker(t)
	p := startProxy(t, broker.addr())
	p.SetRules(Rules{CutAfterRequestProb: map[int16]float64{apiProduce: 1}})

	c := dial(t, p.Addr())
	c.send(apiProduce, 5, "record")
	c.expectClosed()
	if got := broker.nextRequest(t); got != (fakeRequest{apiProduce, 5, "record"}) {
		t.Fatalf("broker got %+v, want the produce request", got)
	}
	s := p.Stats()
	if s.CutsAfterRequest[apiProduce] != 1 || s.Responses[apiProduce] != 0 {
		t.Errorf("cuts = %d, produce responses = %d, want 1, 0", s.CutsAfterRequest[apiProduce], s.Responses[apiProduce])
	}
}

func TestDelayResponseKeepsOrder(t *testing.T) {
	const delay = 50 * time.Millisecond
	broker := startFakeBroker(t)
	p := startProxy(t, broker.addr())
	p.SetRules(Rules{DelayResponse: map[int16]time.Duration{apiFetch: delay}})

	c := dial(t, p.Addr())
	start := time.Now()
	c.send(apiFetch, 1, "slow")
	c.send(apiMetadata, 2, "fast")
	c.expectResponse(1, "slow")
	if elapsed := time.Since(start); elapsed < delay {
		t.Errorf("delayed response arrived after %v, want at least %v", elapsed, delay)
	}
	c.expectResponse(2, "fast")
	if s := p.Stats(); s.DelayedResponses[apiFetch] != 1 || s.DelayedResponses[apiMetadata] != 0 {
		t.Errorf("delayed = %v, want one fetch", s.DelayedResponses)
	}
}

// dropPattern sends n requests, each on a new connection (a drop closes it),
// and records which responses were dropped.
func dropPattern(t *testing.T, seed int64, n int) string {
	broker := startFakeBroker(t)
	p := startProxy(t, broker.addr())
	p.SetRules(Rules{Seed: seed, DropResponseProb: map[int16]float64{apiProduce: 0.5}})
	pattern := make([]byte, n)
	for i := range n {
		c := dial(t, p.Addr())
		c.send(apiProduce, int32(i), "x")
		if _, _, err := c.recv(); err != nil {
			pattern[i] = 'D'
		} else {
			pattern[i] = '.'
		}
		c.conn.Close()
	}
	return string(pattern)
}

func TestSeedMakesDropsReproducible(t *testing.T) {
	first := dropPattern(t, 42, 24)
	second := dropPattern(t, 42, 24)
	if first != second {
		t.Fatalf("same seed, different drops:\n%s\n%s", first, second)
	}
	var dropped int
	for _, c := range first {
		if c == 'D' {
			dropped++
		}
	}
	if dropped == 0 || dropped == len(first) {
		t.Fatalf("probability 0.5 gave %s", first)
	}
}

func TestSetTargetAffectsNewConnections(t *testing.T) {
	oldBroker := startFakeBroker(t)
	newBroker := startFakeBroker(t)
	p := startProxy(t, oldBroker.addr())

	before := dial(t, p.Addr())
	before.send(apiMetadata, 1, "old")
	before.expectResponse(1, "old")

	p.SetTarget(newBroker.addr())
	after := dial(t, p.Addr())
	after.send(apiMetadata, 2, "new")
	after.expectResponse(2, "new")
	before.send(apiMetadata, 3, "still old")
	before.expectResponse(3, "still old")

	for _, want := range []string{"old", "still old"} {
		if got := oldBroker.nextRequest(t); got.body != want {
			t.Errorf("old broker got %q, want %q", got.body, want)
		}
	}
	if got := newBroker.nextRequest(t); got.body != "new" {
		t.Errorf("new broker got %q, want %q", got.body, "new")
	}
}

func TestUnreachableTargetClosesClient(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := listener.Addr().String()
	listener.Close()

	p := startProxy(t, deadAddr)
	c := dial(t, p.Addr())
	c.send(apiMetadata, 1, "x")
	c.expectClosed()
	if got := p.Stats().DialFailures; got != 1 {
		t.Errorf("dial failures = %d, want 1", got)
	}
}

func TestCutAllClosesOpenConnections(t *testing.T) {
	broker := startFakeBroker(t)
	p := startProxy(t, broker.addr())
	clients := []*testClient{dial(t, p.Addr()), dial(t, p.Addr())}
	for i, c := range clients {
		c.send(apiMetadata, int32(i), "x")
		c.expectResponse(int32(i), "x")
	}
	p.CutAll()
	for _, c := range clients {
		c.expectClosed()
	}
	// New connections still work.
	c := dial(t, p.Addr())
	c.send(apiMetadata, 7, "y")
	c.expectResponse(7, "y")
	if got := p.Stats().CutAlls; got != 1 {
		t.Errorf("CutAlls = %d, want 1", got)
	}
}

func TestClientHalfCloseStillGetsResponse(t *testing.T) {
	broker := startFakeBroker(t)
	p := startProxy(t, broker.addr())
	c := dial(t, p.Addr())
	c.send(apiMetadata, 1, "last")
	if err := c.conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.expectResponse(1, "last")
	select {
	case <-broker.eofs:
	case <-time.After(ioTimeout):
		t.Fatal("the broker never saw the client's half-close")
	}
	c.expectClosed() // the fake broker closes after EOF; the proxy passes it on
}

// Close must return even with a response held back for an hour and a
// half-closed connection, i.e. no proxy goroutine is left blocked.
func TestCloseReleasesEveryConnection(t *testing.T) {
	broker := startFakeBroker(t)
	p, err := Start(broker.addr())
	if err != nil {
		t.Fatal(err)
	}
	p.SetRules(Rules{DelayResponse: map[int16]time.Duration{apiFetch: time.Hour}})
	delayed := dial(t, p.Addr())
	delayed.send(apiFetch, 1, "x")
	broker.nextRequest(t) // the response is now held back in the proxy
	idle := dial(t, p.Addr())
	idle.send(apiMetadata, 2, "y")
	idle.expectResponse(2, "y")

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	delayed.expectClosed()
	idle.expectClosed()
	if got := p.Stats().OpenConnections; got != 0 {
		t.Errorf("open connections after Close = %d", got)
	}
	if _, err := net.Dial("tcp", p.Addr()); err == nil {
		t.Error("proxy still accepts after Close")
	}
}

// Run with -race: replacing rules while several connections exchange
// requests must be safe.
func TestSetRulesWhileTrafficFlows(t *testing.T) {
	broker := startFakeBroker(t)
	p := startProxy(t, broker.addr())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(ioTimeout))
			in := bufio.NewReader(conn)
			for i := range 200 {
				body := fmt.Sprintf("w%d-%d", w, i)
				var frame []byte
				frame = binary.BigEndian.AppendUint16(frame, uint16(apiMetadata))
				frame = binary.BigEndian.AppendUint16(frame, 0)
				frame = binary.BigEndian.AppendUint32(frame, uint32(i))
				if _, err := conn.Write(appendFrame(nil, append(frame, body...))); err != nil {
					t.Error(err)
					return
				}
				resp, err := readFrame(in)
				if err != nil {
					t.Error(err)
					return
				}
				if string(resp[4:]) != body {
					t.Errorf("got %q, want %q", resp[4:], body)
					return
				}
			}
		}()
	}
	for i := range 200 {
		// Rules that never fire on this traffic, but exercise every map.
		p.SetRules(Rules{
			Seed:                int64(i),
			DropResponseProb:    map[int16]float64{apiProduce: 0.5},
			CutAfterRequestProb: map[int16]float64{apiProduce: 0.5},
			DelayResponse:       map[int16]time.Duration{apiFetch: time.Millisecond},
		})
	}
	wg.Wait()
	if got := p.Stats().Requests[apiMetadata]; got != 4*200 {
		t.Errorf("metadata requests = %d, want %d", got, 4*200)
	}
	// Drain the fake broker's record so its channel never fills.
	for range 4 * 200 {
		broker.nextRequest(t)
	}
}
