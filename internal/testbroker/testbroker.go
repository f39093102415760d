package testbroker

import (
	"fmt"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/brokerproc"
)

const (
	// readyTimeout bounds how long Start and Restart wait for the broker
	// to answer ApiVersions.
	readyTimeout = 30 * time.Second
	// stopTimeout bounds a clean shutdown after SIGTERM, and a SIGKILL.
	stopTimeout = 30 * time.Second
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
	// Protocol is the Kafka listener's security protocol; default
	// PLAINTEXT (--listen). SASL_PLAINTEXT works with the readiness probe
	// (ApiVersions is served before authentication).
	Protocol string
	// ExtraListeners are listeners beside the PLAINTEXT one the
	// readiness probe uses, e.g. "SSL://127.0.0.1:40001" (see brokerproc).
	ExtraListeners string
	// Binary is run instead of the oncelog built for the tests: say, a
	// script that lowers a limit and then execs BinaryPath's binary.
	Binary string
}

// Broker is a running (or stopped) oncelog subprocess.
type Broker struct {
	t    testing.TB
	proc *brokerproc.Process
}

// Start builds the binary if needed, starts a broker and waits until it
// answers. The broker is killed when the test ends.
func Start(t testing.TB, opts Options) *Broker {
	t.Helper()
	binary := opts.Binary
	if binary == "" {
		binary = BinaryPath(t)
	}
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	proc, err := brokerproc.New(binary, opts.DataDir, opts.Advertise, opts.ExtraArgs, opts.Env)
	if err != nil {
		t.Fatalf("testbroker: %v", err)
	}
	proc.Protocol = opts.Protocol
	proc.ExtraListeners = opts.ExtraListeners
	b := &Broker{t: t, proc: proc}
	// Registered after t.TempDir, so it runs before the data dir is removed.
	t.Cleanup(func() {
		proc.Kill(stopTimeout)
		if t.Failed() {
			t.Logf("testbroker %s output (tail):\n%s", proc.Addr, proc.Tail())
		}
	})
	b.launchAndWait()
	return b
}

// Addr is the Kafka listener address (host:port).
func (b *Broker) Addr() string { return b.proc.Addr }

// AdminAddr is the admin listener address (host:port).
func (b *Broker) AdminAddr() string { return b.proc.AdminAddr }

// HTTPAddr is the HTTP ingest listener address (host:port).
func (b *Broker) HTTPAddr() string { return b.proc.HTTPAddr }

// Pid is the broker's process id, or 0 if it is not running (it exited or
// was never started). Tests use it to inspect or limit the process, e.g.
// lower its RLIMIT_NOFILE with prlimit.
func (b *Broker) Pid() int { return b.proc.Pid() }

// DataDir is the broker's data directory.
func (b *Broker) DataDir() string { return b.proc.DataDir }

// Stderr returns the captured stdout and stderr of every run of this broker,
// up to the last MiB.
func (b *Broker) Stderr() string { return b.proc.Output.String() }

// Kill sends SIGKILL and waits until the process is gone. It does nothing if
// the broker is not running.
func (b *Broker) Kill() {
	b.t.Helper()
	if err := b.proc.Kill(stopTimeout); err != nil {
		b.t.Fatalf("testbroker: %v", err)
	}
}

// Stop sends SIGTERM and waits for a clean shutdown. It fails the test if the
// broker does not exit within 30 s (it is then killed) or exits with a
// non-zero status. It does nothing if the broker is not running.
func (b *Broker) Stop() {
	b.t.Helper()
	if err := b.proc.Stop(stopTimeout); err != nil {
		b.t.Fatalf("testbroker: %v; output:\n%s", err, b.proc.Tail())
	}
}

// Restart starts the broker again on the same ports and data directory and
// waits until it answers. A broker still running is stopped cleanly first
// (see Stop); call Kill before Restart to simulate a crash.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.proc.Output.Write([]byte("--- testbroker: restart ---\n"))
	b.launchAndWait()
}

// launchAndWait starts the process and waits until it is ready, failing the
// test otherwise.
func (b *Broker) launchAndWait() {
	b.t.Helper()
	exited, err := b.proc.Launch()
	if err != nil {
		b.t.Fatalf("testbroker: start %s: %v", b.proc.Binary, err)
	}
	if err := waitReady(b.proc.Addr, exited, readyTimeout); err != nil {
		if brokerproc.IsClosed(exited) {
			err = fmt.Errorf("%w (exit: %v)", err, b.proc.ExitErr())
		}
		b.t.Fatalf("testbroker: broker on %s not ready: %v; output:\n%s", b.proc.Addr, err, b.proc.Tail())
	}
}
