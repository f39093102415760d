package testbroker

import (
	"encoding/binary"
	"github.com/oncelog/oncelog/internal/tailbuf"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// answer decides what a fake listener does with one request frame (without
// its size prefix): the response frame to send, or nil to close the
// connection.
type answer func(conn int, request []byte) []byte

// fakeListener serves answer on a loopback port and counts connections.
func fakeListener(t *testing.T, respond answer) (addr string, connections *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	connections = new(atomic.Int64)
	var wg sync.WaitGroup
	var open sync.Map
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n := int(connections.Add(1))
			open.Store(c, nil)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer open.Delete(c)
				defer c.Close()
				for {
					var size [4]byte
					if _, err := io.ReadFull(c, size[:]); err != nil {
						return
					}
					req := make([]byte, binary.BigEndian.Uint32(size[:]))
					if _, err := io.ReadFull(c, req); err != nil {
						return
					}
					resp := respond(n, req)
					if resp == nil {
						return
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		open.Range(func(c, _ any) bool { c.(net.Conn).Close(); return true })
		wg.Wait()
	})
	return l.Addr().String(), connections
}

// apiVersionsAnswer encodes an ApiVersions response of the given version to
// the request, echoing its correlation id unless correlationID is non-zero.
func apiVersionsAnswer(version int16, errorCode int16, correlationID int32) answer {
	return func(_ int, req []byte) []byte {
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.Version = version
		resp.ErrorCode = errorCode
		resp.ApiKeys = []kmsg.ApiVersionsResponseApiKey{{ApiKey: 18, MaxVersion: 4}}
		body := append([]byte(nil), req[4:8]...)
		if correlationID != 0 {
			body = binary.BigEndian.AppendUint32(body[:0], uint32(correlationID))
		}
		body = resp.AppendTo(body)
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	}
}

func TestProbe(t *testing.T) {
	for _, tc := range []struct {
		name    string
		respond answer
		wantErr string // empty: ready
	}{
		{"answers", apiVersionsAnswer(3, 0, 0), ""},
		{"old broker answers v0 unsupported version", apiVersionsAnswer(0, kerr.UnsupportedVersion.Code, 0), ""},
		{"closes without answering", func(int, []byte) []byte { return nil }, "EOF"},
		{"wrong correlation id", apiVersionsAnswer(3, 0, 7), "correlation id"},
		{"error code", apiVersionsAnswer(3, kerr.BrokerNotAvailable.Code, 0), "BROKER_NOT_AVAILABLE"},
		{"garbage", func(int, []byte) []byte { return []byte{0, 0, 0, 4, 0, 0, 0x0c, 0xe1} }, "undecodable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := fakeListener(t, tc.respond)
			err := probe(addr, 5*time.Second)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("probe: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("probe error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestProbeTimesOutOnSilentListener(t *testing.T) {
	silent := make(chan struct{})
	addr, _ := fakeListener(t, func(int, []byte) []byte { <-silent; return nil })
	t.Cleanup(func() { close(silent) }) // runs before fakeListener's cleanup waits
	if err := probe(addr, 100*time.Millisecond); err == nil {
		t.Fatal("probe of a listener that never answers succeeded")
	}
}

func TestWaitReadyRetriesUntilAnswered(t *testing.T) {
	answerV3 := apiVersionsAnswer(3, 0, 0)
	addr, connections := fakeListener(t, func(conn int, req []byte) []byte {
		if conn < 3 {
			return nil // still starting up
		}
		return answerV3(conn, req)
	})
	if err := waitReady(addr, make(chan struct{}), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := connections.Load(); got != 3 {
		t.Errorf("connections = %d, want 3", got)
	}
}

func TestWaitReadyGivesUpWhenProcessExits(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	exited := make(chan struct{})
	close(exited)
	err = waitReady(addr, exited, time.Hour)
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("waitReady = %v, want a process-exited error", err)
	}
}

func TestRingBufferKeepsTail(t *testing.T) {
	r := tailbuf.New(16)
	r.Write([]byte("0123456789"))
	r.Write([]byte("abcdefghij"))
	got := r.String()
	if len(got) > 16 || !strings.HasSuffix(got, "abcdefghij") || !strings.HasSuffix("0123456789abcdefghij", got) {
		t.Fatalf("got %q, want a tail of at most 16 bytes of the input", got)
	}
	r.Write([]byte(strings.Repeat("x", 40) + "end"))
	if got := r.String(); got != strings.Repeat("x", 13)+"end" {
		t.Fatalf("after an oversized write got %q", got)
	}
}
