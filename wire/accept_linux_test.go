//go:build linux

package wire

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"
)

// TestAcceptSurvivesFileDescriptorExhaustion runs out of file descriptors
// in a broker subprocess (its RLIMIT_NOFILE lowered to a few dozen above
// what it has open) by opening connections, as ~19,500 idle connections
// did under the default limit: accept then fails with EMFILE. The broker
// must back off and keep accepting, not shut down, and serve new clients
// once the connections close.
func TestAcceptSurvivesFileDescriptorExhaustion(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	pid := b.Pid()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Skipf("cannot count the broker's open files: %v", err)
	}
	limit := uint64(len(fds) + 30)
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: limit}, nil); err != nil {
		t.Skipf("prlimit: %v", err)
	}

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 100; i++ { // the listen backlog takes them all
		c, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(b.Stderr(), "too many open files"); {
		if time.Now().After(deadline) {
			t.Fatalf("the broker never ran out of file descriptors (limit %d); output:\n%s", limit, b.Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil

	// A new client is served once descriptors are free again.
	var lastErr error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if b.Pid() == 0 {
			t.Fatalf("the broker exited after running out of file descriptors; output:\n%s", b.Stderr())
		}
		if lastErr = apiVersionsProbe(b.Addr()); lastErr == nil {
			return
		}
	}
	t.Fatalf("the broker does not serve after its connections closed: %v; output:\n%s", lastErr, b.Stderr())
}

// apiVersionsProbe sends one ApiVersions request on a new connection.
func apiVersionsProbe(addr string) error {
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(2 * time.Second))
	req := kmsg.NewPtrApiVersionsRequest()
	if _, err := nc.Write(kmsg.NewRequestFormatter().AppendRequest(nil, req, 1)); err != nil {
		return err
	}
	var size [4]byte
	if _, err := nc.Read(size[:]); err != nil {
		return err
	}
	return nil
}
