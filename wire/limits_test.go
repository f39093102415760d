package wire

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/oncelog/oncelog/broker"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// waitUntil polls cond for up to 30 s (a bound for a hung broker, not a
// timing expectation).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// expectClosed reads from nc until the broker closes it (EOF or reset),
// failing if it is still open after 30 s.
func expectClosed(t *testing.T, nc net.Conn, what string) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.Copy(io.Discard, nc)
	if isTimeout(err) {
		t.Fatalf("%s: the broker kept the connection open", what)
	}
}

func apiVersionsFrame(corr int32) []byte {
	return kmsg.NewRequestFormatter().AppendRequest(nil, kmsg.NewPtrApiVersionsRequest(), corr)
}

// readResponse reads one response frame and returns its correlation id.
func readResponse(t *testing.T, nc net.Conn) int32 {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(nc, size[:]); err != nil {
		t.Fatalf("no response: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(nc, body); err != nil {
		t.Fatal(err)
	}
	return int32(binary.BigEndian.Uint32(body))
}

func dialServed(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if _, err := nc.Write(apiVersionsFrame(1)); err != nil {
		t.Fatal(err)
	}
	readResponse(t, nc)
	return nc
}

// counterValue reads a counter or gauge.
func counterValue(m prometheus.Metric) float64 {
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		panic(err)
	}
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}

func TestMaxConnections(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxConnections = 3
	b, addr := startInProcessWith(t, cfg)
	var open []net.Conn
	for range 3 {
		open = append(open, dialServed(t, addr))
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.Write(apiVersionsFrame(1))
	expectClosed(t, extra, "a fourth connection over max.connections=3")
	if got := counterValue(b.Stats.ConnectionsRejected.WithLabelValues("max_connections")); got != 1 {
		t.Fatalf("rejected connections metric %v, want 1", got)
	}
	// A slot frees when a connection closes.
	open[0].Close()
	waitUntil(t, "the closed connection is forgotten", func() bool { return counterValue(b.Stats.Connections) == 2 })
	dialServed(t, addr)
}

func TestMaxConnectionsPerIP(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxConnectionsPerIP = 2
	b, addr := startInProcessWith(t, cfg)
	dialServed(t, addr)
	dialServed(t, addr)
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	expectClosed(t, extra, "a third connection from 127.0.0.1 over max.connections.per.ip=2")
	if got := counterValue(b.Stats.ConnectionsRejected.WithLabelValues("max_connections_per_ip")); got != 1 {
		t.Fatalf("rejected connections metric %v, want 1", got)
	}
}

func TestIdleConnectionClosed(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ConnectionsMaxIdle = 100 * time.Millisecond
	b, addr := startInProcessWith(t, cfg)
	nc := dialServed(t, addr)
	expectClosed(t, nc, "an idle connection past connections.max.idle.ms")
	if got := counterValue(b.Stats.ConnectionsTimedOut.WithLabelValues("idle")); got != 1 {
		t.Fatalf("idle connections metric %v, want 1", got)
	}
}

// A connection waiting for a response (here a fetch long-polling longer
// than connections.max.idle.ms) is not idle.
func TestLongPollIsNotIdle(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ConnectionsMaxIdle = 100 * time.Millisecond
	b, addr := startInProcessWith(t, cfg)
	if _, terr := b.CreateTopic("quiet", 1, 1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	nc := dialServed(t, addr)
	req := kmsg.NewPtrFetchRequest()
	req.Version = 11
	req.MaxWaitMillis = 1000
	req.MinBytes, req.MaxBytes = 1, 1<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = "quiet"
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes = 1 << 20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	if _, err := nc.Write(kmsg.NewRequestFormatter().AppendRequest(nil, req, 7)); err != nil {
		t.Fatal(err)
	}
	if corr := readResponse(t, nc); corr != 7 {
		t.Fatalf("correlation id %d", corr)
	}
	if got := counterValue(b.Stats.ConnectionsTimedOut.WithLabelValues("idle")); got != 0 {
		t.Fatalf("a long-polling connection was closed as idle")
	}
}

// TestSlowlorisCutOff: a client that declares a 50 MB frame and trickles
// it is disconnected once the request read timeout passes, and what it
// reserved is given back; it never holds more than what it sent (plus one
// read chunk).
func TestSlowlorisCutOff(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RequestReadTimeout = 300 * time.Millisecond
	b, addr := startInProcessWith(t, cfg)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	head := binary.BigEndian.AppendUint32(nil, 50<<20)
	if _, err := nc.Write(append(head, make([]byte, 100)...)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the frame is being read", func() bool { return counterValue(b.Stats.QueuedRequestBytes) > 0 })
	if got := counterValue(b.Stats.QueuedRequestBytes); got > readChunk {
		t.Fatalf("a 50 MB frame of which 100 bytes arrived reserves %v bytes", got)
	}
	// Trickle: a byte now and then keeps a connection alive, not a frame.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := nc.Write([]byte{0}); err != nil {
					return
				}
			}
		}
	}()
	expectClosed(t, nc, "a trickled frame past the request read timeout")
	if got := counterValue(b.Stats.ConnectionsTimedOut.WithLabelValues("request_read")); got != 1 {
		t.Fatalf("request read timeouts metric %v, want 1", got)
	}
	waitUntil(t, "the reservation is released", func() bool { return counterValue(b.Stats.QueuedRequestBytes) == 0 })
}

// TestQueuedMaxRequestBytes: while partly read frames hold the budget (one
// of them overdrawing it), other connections' requests wait, and go ahead
// once it is freed.
func TestQueuedMaxRequestBytes(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxRequestBytes = 1 << 20
	cfg.QueuedMaxRequestBytes = 1 << 20
	b, addr := startInProcessWith(t, cfg)
	partial := func() net.Conn {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		if _, err := nc.Write(binary.BigEndian.AppendUint32(nil, 1<<20)); err != nil {
			t.Fatal(err)
		}
		return nc
	}
	waiting := dialServed(t, addr) // served before the budget is spent
	a := partial()
	waitUntil(t, "the first frame reserves the budget", func() bool { return counterValue(b.Stats.QueuedRequestBytes) == 1<<20 })
	overdraft := partial()
	waitUntil(t, "the second frame overdraws it", func() bool { return counterValue(b.Stats.QueuedRequestBytes) == 2<<20 })

	if _, err := waiting.Write(apiVersionsFrame(9)); err != nil {
		t.Fatal(err)
	}
	throttled := b.Stats.ReadsThrottled.WithLabelValues("queued_max_request_bytes")
	waitUntil(t, "the third connection waits for the budget", func() bool { return counterValue(throttled) == 1 })
	overdraft.Close()
	if corr := readResponse(t, waiting); corr != 9 {
		t.Fatalf("correlation id %d", corr)
	}
	a.Close()
	waitUntil(t, "the budget is free again", func() bool { return counterValue(b.Stats.QueuedRequestBytes) == 0 })
}

// TestPipelinedLargeRequestsReadOneAtATime: a connection that pipelines
// several requests near socket.request.max.bytes has only one buffered at a
// time (Kafka mutes the channel while a request is processed); all are
// answered, in order.
func TestPipelinedLargeRequestsReadOneAtATime(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxRequestBytes = 1 << 20
	b, addr := startInProcessWith(t, cfg)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var frames []byte
	for i := range 5 {
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = 3
		req.ClientSoftwareName = strings.Repeat("a", 700<<10)
		req.ClientSoftwareVersion = "1"
		frames = append(frames, kmsg.NewRequestFormatter().AppendRequest(nil, req, int32(i))...)
	}
	go nc.Write(frames)
	for i := range 5 {
		if corr := readResponse(t, nc); corr != int32(i) {
			t.Fatalf("response %d has correlation id %d", i, corr)
		}
	}
	if got := counterValue(b.Stats.ReadsThrottled.WithLabelValues("connection")); got < 1 {
		t.Fatalf("a second 700 KB request was read while the first held the connection's budget")
	}
}

// TestRequestBudgetOverdraft checks requestBudget's rules directly: a
// frame may reserve while there is room; one frame at a time may overdraw;
// others wait until it is read or released.
func TestRequestBudgetOverdraft(t *testing.T) {
	var used int64
	b := newRequestBudget(10, func(d int64) { used += d })
	cancelled, cancel := context.WithCancel(context.Background())
	cancel() // grow with it fails instead of waiting
	f1, f2, f3 := b.newFrame(), b.newFrame(), b.newFrame()
	if _, err := f1.grow(cancelled, 6, nil); err != nil {
		t.Fatal("room in the budget:", err)
	}
	if _, err := f2.grow(cancelled, 6, nil); err != nil {
		t.Fatal("the first frame over the budget may overdraw:", err)
	}
	if _, err := f2.grow(cancelled, 6, nil); err != nil {
		t.Fatal("the overdraft holder may go on:", err)
	}
	if _, err := f3.grow(cancelled, 1, nil); !errors.Is(err, context.Canceled) {
		t.Fatal("a second frame overdrew the budget")
	}
	f2.read()
	if _, err := f3.grow(cancelled, 1, nil); err != nil {
		t.Fatal("the overdraft is free once its frame is read:", err)
	}
	f1.release()
	f2.release()
	f3.release()
	if used != 0 || b.used != 0 {
		t.Fatalf("after release: gauge %d, used %d", used, b.used)
	}
}

// TestParkedRequestReleasesBudget: a JoinGroup parked until the rebalance
// (minutes, if the client asks) no longer counts as queued once the
// coordinator has it, as Kafka releases a request's pool memory when its
// handler returns; otherwise a few parked joins with large metadata would
// stop every connection's reads for as long.
func TestParkedRequestReleasesBudget(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxRequestBytes = 1 << 20
	cfg.QueuedMaxRequestBytes = 1 << 20
	b, addr := startInProcessWith(t, cfg, func(c *broker.Config) { c.GroupInitialRebalanceDelay = time.Minute })
	rc := dialRaw(t, addr)
	join := joinRequest(3, "parked", "")
	join.Protocols[0].Metadata = make([]byte, 900<<10)
	go rc.nc.Write(kmsg.NewRequestFormatter().AppendRequest(nil, join, 1))
	admin := dialRaw(t, addr)
	waitUntil(t, "the member waits in JoinGroup", func() bool {
		describe := kmsg.NewPtrDescribeGroupsRequest()
		describe.Groups = []string{"parked"}
		dg := admin.do(describe).(*kmsg.DescribeGroupsResponse)
		return len(dg.Groups) == 1 && len(dg.Groups[0].Members) == 1
	})
	waitUntil(t, "the parked join's bytes are released", func() bool { return counterValue(b.Stats.QueuedRequestBytes) == 0 })
}
