// Package brokerproc runs the oncelog binary as a subprocess on fixed
// loopback ports and a fixed data directory, so that it can be killed with
// SIGKILL or stopped cleanly and started again where it was. The test
// harness (internal/testbroker) and the chaos harness build on it; each
// decides how to wait for readiness.
package brokerproc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/oncelog/oncelog/internal/tailbuf"
)

const (
	// outputLimit bounds the captured output; older bytes are dropped.
	outputLimit = 1 << 20
	// outputTail is how much output Tail returns, for failure messages.
	outputTail = 8 << 10
)

// Process is an oncelog broker subprocess, running or not.
type Process struct {
	Binary    string
	DataDir   string
	Addr      string // Kafka listener
	AdminAddr string // /metrics, /healthz, /readyz
	HTTPAddr  string // HTTP ingest (httpapi)
	Advertise string
	ExtraArgs []string // appended to the serve command line
	// Protocol, if set, is the Kafka listener's security protocol
	// (SASL_PLAINTEXT, ...): the broker gets --listeners and
	// --advertised-listeners instead of the --listen shorthand.
	Protocol string
	// ExtraListeners, if set, are --listeners entries served beside the
	// PLAINTEXT one on Addr (which the readiness probe uses), e.g.
	// "SSL://127.0.0.1:40001".
	ExtraListeners string
	Env            []string // added to this process's environment
	// Output holds stdout and stderr of every run, restarts included.
	Output *tailbuf.Buffer

	mu      sync.Mutex
	proc    *os.Process   // nil before the first launch
	exited  chan struct{} // closed once the current process is reaped
	waitErr error         // its exit status, set before exited closes
}

// New prepares a broker on three free loopback ports (Kafka, admin, HTTP
// ingest); advertise "" means the listen address.
func New(binary, dataDir, advertise string, extraArgs, env []string) (*Process, error) {
	ports, err := PickFreePorts(3)
	if err != nil {
		return nil, err
	}
	p := &Process{
		Binary:    binary,
		DataDir:   dataDir,
		Addr:      net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		AdminAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
		HTTPAddr:  net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2])),
		Advertise: advertise,
		ExtraArgs: extraArgs,
		Env:       env,
		Output:    tailbuf.New(outputLimit),
	}
	if p.Advertise == "" {
		p.Advertise = p.Addr
	}
	return p, nil
}

// Launch starts the process and returns a channel closed when it exits.
func (p *Process) Launch() (exited <-chan struct{}, err error) {
	listen := []string{"--listen", p.Addr, "--advertise", p.Advertise}
	if p.ExtraListeners != "" {
		listen = []string{"--listeners", "PLAINTEXT://" + p.Addr + "," + p.ExtraListeners, "--advertised-listeners", "PLAINTEXT://" + p.Advertise}
	}
	if p.Protocol != "" {
		listen = []string{"--listeners", p.Protocol + "://" + p.Addr, "--advertised-listeners", p.Protocol + "://" + p.Advertise}
	}
	args := append(append([]string{"serve"}, listen...), append([]string{
		"--data-dir", p.DataDir,
		"--admin-listen", p.AdminAddr,
		"--http-listen", p.HTTPAddr,
		"--log-level", "warn",
	}, p.ExtraArgs...)...)
	cmd := exec.Command(p.Binary, args...)
	cmd.Env = append(os.Environ(), p.Env...)
	// One writer for both streams: exec then shares one pipe, so the
	// interleaving is the broker's own.
	cmd.Stdout, cmd.Stderr = p.Output, p.Output
	// If the broker leaves a child holding the pipe, do not hang in Wait.
	cmd.WaitDelay = 5 * time.Second
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.proc, p.exited, p.waitErr = cmd.Process, done, nil
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(done)
	}()
	return done, nil
}

// Kill sends SIGKILL and waits up to timeout for the process to be reaped.
// It does nothing if the broker is not running.
func (p *Process) Kill(timeout time.Duration) error {
	proc, exited := p.current()
	if proc == nil || IsClosed(exited) {
		return nil
	}
	if err := proc.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGKILL: %w", err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("broker still not reaped %v after SIGKILL", timeout)
	}
}

// Stop sends SIGTERM and waits up to timeout for a clean exit; a broker
// still running then is killed. It returns an error for either, or for an
// exit with a non-zero status, and does nothing if the broker is not
// running.
func (p *Process) Stop(timeout time.Duration) error {
	proc, exited := p.current()
	if proc == nil || IsClosed(exited) {
		return nil
	}
	if err := proc.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case <-exited:
	case <-time.After(timeout):
		p.Kill(timeout)
		return fmt.Errorf("broker did not exit within %v of SIGTERM", timeout)
	}
	if err := p.ExitErr(); err != nil {
		return fmt.Errorf("unclean shutdown after SIGTERM: %w", err)
	}
	return nil
}

func (p *Process) current() (*os.Process, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proc, p.exited
}

// Pid is the process id of the current run, or 0 if it is not running.
func (p *Process) Pid() int {
	proc, exited := p.current()
	if proc == nil || IsClosed(exited) {
		return 0
	}
	return proc.Pid
}

// ExitErr is the last run's exit status (nil while it runs).
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// Tail is the end of the captured output, for error messages.
func (p *Process) Tail() string {
	out := p.Output.String()
	if len(out) > outputTail {
		out = "..." + out[len(out)-outputTail:]
	}
	return out
}

// IsClosed reports whether ch is closed.
func IsClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// PickFreePorts returns n distinct loopback ports that were free a moment
// ago. It picks below the Linux ephemeral range (32768-60999) so that the
// kernel does not hand a port to an outgoing connection while the broker is
// down between a kill and its restart; clients dial from that range.
func PickFreePorts(n int) ([]int, error) {
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
