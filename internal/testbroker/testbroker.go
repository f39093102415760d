package testbroker

import (
	"errors"
	"fmt"
	"github.com/oncelog/oncelog/internal/tailbuf"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// readyTimeout bounds how long Start and Restart wait for the broker
	// to answer ApiVersions.
	readyTimeout = 30 * time.Second
	// stopTimeout bounds a clean shutdown after SIGTERM, and a SIGKILL.
	stopTimeout = 30 * time.Second
	// outputLimit bounds the captured broker output; older bytes are dropped.
	outputLimit = 1 << 20
	// outputTail is how much output goes into failure messages.
	outputTail = 8 << 10
)

// Options configure a broker. Zero values pick sensible defaults.
type Options struct {
	// DataDir is the broker's data directory; default t.TempDir().
	DataDir string
	// Advertise is the address the broker advertises to clients; default
	// the listen address.
	Advertise string
	// ExtraArgs are appended to the serve command line.
	ExtraArgs []string
	// Env entries ("KEY=value") are added to the test process's environment.
	Env []string
}

// Broker is a running (or stopped) oncelog subprocess.
type Broker struct {
	t         testing.TB
	binary    string
	addr      string
	adminAddr string
	opts      Options
	output    *tailbuf.Buffer // stdout and stderr of every run, restarts included

	mu      sync.Mutex
	process *os.Process   // nil before the first launch
	exited  chan struct{} // closed when the current process has been reaped
	waitErr error         // the current process's exit status, set before exited closes
}

// Start builds the binary if needed, starts a broker and waits until it
// answers. The broker is killed when the test ends.
func Start(t testing.TB, opts Options) *Broker {
	t.Helper()
	binary := BinaryPath(t)
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	ports, err := pickFreePorts(2)
	if err != nil {
		t.Fatalf("testbroker: %v", err)
	}
	b := &Broker{
		t:         t,
		binary:    binary,
		addr:      net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		adminAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
		opts:      opts,
		output:    tailbuf.New(outputLimit),
	}
	if b.opts.Advertise == "" {
		b.opts.Advertise = b.addr
	}
	// Registered after t.TempDir, so it runs before the data dir is removed.
	t.Cleanup(func() {
		b.kill()
		if t.Failed() {
			t.Logf("testbroker %s output (tail):\n%s", b.addr, b.tail())
		}
	})
	b.launchAndWait()
	return b
}

// Addr is the Kafka listener address (host:port).
func (b *Broker) Addr() string { return b.addr }

// AdminAddr is the admin listener address (host:port).
func (b *Broker) AdminAddr() string { return b.adminAddr }

// DataDir is the broker's data directory.
func (b *Broker) DataDir() string { return b.opts.DataDir }

// Stderr returns the captured stdout and stderr of every run of this broker,
// up to the last MiB.
func (b *Broker) Stderr() string { return b.output.String() }

// Kill sends SIGKILL and waits until the process is gone. It does nothing if
// the broker is not running.
func (b *Broker) Kill() {
	b.t.Helper()
	if err := b.kill(); err != nil {
		b.t.Fatalf("testbroker: %v", err)
	}
}

// Stop sends SIGTERM and waits for a clean shutdown. It fails the test if the
// broker does not exit within 30 s (it is then killed) or exits with a
// non-zero status. It does nothing if the broker is not running.
func (b *Broker) Stop() {
	b.t.Helper()
	process, exited := b.current()
	if process == nil || isClosed(exited) {
		return
	}
	if err := process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		b.t.Fatalf("testbroker: SIGTERM: %v", err)
	}
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		b.kill()
		b.t.Fatalf("testbroker: broker did not exit within %v of SIGTERM; output:\n%s", stopTimeout, b.tail())
	}
	if err := b.exitErr(); err != nil {
		b.t.Fatalf("testbroker: unclean shutdown after SIGTERM: %v; output:\n%s", err, b.tail())
	}
}

// Restart starts the broker again on the same ports and data directory and
// waits until it answers. A broker still running is stopped cleanly first
// (see Stop); call Kill before Restart to simulate a crash.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.output.Write([]byte("--- testbroker: restart ---\n"))
	b.launchAndWait()
}

// launchAndWait starts the process and waits until it is ready, failing the
// test otherwise.
func (b *Broker) launchAndWait() {
	b.t.Helper()
	exited, err := b.launch()
	if err != nil {
		b.t.Fatalf("testbroker: start %s: %v", b.binary, err)
	}
	if err := waitReady(b.addr, exited, readyTimeout); err != nil {
		if isClosed(exited) {
			err = fmt.Errorf("%w (exit: %v)", err, b.exitErr())
		}
		b.t.Fatalf("testbroker: broker on %s not ready: %v; output:\n%s", b.addr, err, b.tail())
	}
}

func (b *Broker) launch() (exited chan struct{}, err error) {
	args := []string{
		"serve",
		"--listen", b.addr,
		"--advertise", b.opts.Advertise,
		"--data-dir", b.opts.DataDir,
		"--admin-listen", b.adminAddr,
		"--log-level", "warn",
	}
	args = append(args, b.opts.ExtraArgs...)
	cmd := exec.Command(b.binary, args...)
	cmd.Env = append(os.Environ(), b.opts.Env...)
	// One writer for both streams: exec then shares one pipe, so the
	// interleaving is the broker's own.
	cmd.Stdout = b.output
	cmd.Stderr = b.output
	// If the broker leaves a child holding the pipe, do not hang in Wait.
	cmd.WaitDelay = 5 * time.Second
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited = make(chan struct{})
	b.mu.Lock()
	b.process = cmd.Process
	b.exited = exited
	b.waitErr = nil
	b.mu.Unlock()
	go func() {
		err := cmd.Wait()
		b.mu.Lock()
		b.waitErr = err
		b.mu.Unlock()
		close(exited)
	}()
	return exited, nil
}

// kill sends SIGKILL to the current process, if any, and waits for it.
func (b *Broker) kill() error {
	process, exited := b.current()
	if process == nil || isClosed(exited) {
		return nil
	}
	if err := process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGKILL: %w", err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("broker still not reaped %v after SIGKILL", stopTimeout)
	}
}

func (b *Broker) current() (*os.Process, chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.process, b.exited
}

func (b *Broker) exitErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waitErr
}

func (b *Broker) tail() string {
	out := b.output.String()
	if len(out) > outputTail {
		out = "..." + out[len(out)-outputTail:]
	}
	return out
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// pickFreePorts returns n distinct loopback ports that were free a moment
// ago. It picks below the Linux ephemeral range (32768-60999) so that the
// kernel does not hand a port to an outgoing connection while the broker is
// down between Kill and Restart; a test's clients dial from that range.
func pickFreePorts(n int) ([]int, error) {
	const lowest, highest = 20000, 32767
	ports := make([]int, 0, n)
	for attempt := 0; len(ports) < n && attempt < 200; attempt++ {
		port := lowest + rand.IntN(highest-lowest+1)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		dup := false
		for _, p := range ports {
			dup = dup || p == port
		}
		if !dup {
			ports = append(ports, port)
		}
	}
	if len(ports) < n {
		return nil, fmt.Errorf("found only %d free loopback ports of %d", len(ports), n)
	}
	return ports, nil
}
