package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// buildOncelog builds the oncelog binary of the main module (the directory
// the bench module's replace directive points at) into dir. It builds inside
// the main module, not this one, so the binary has exactly the main module's
// dependency versions.
func buildOncelog(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/oncelog/oncelog").Output()
	if err != nil {
		return "", fmt.Errorf("locating the oncelog module (run from the bench directory): %w", err)
	}
	moduleDir := strings.TrimSpace(string(out))
	path := filepath.Join(dir, "bin", "oncelog")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "./cmd/oncelog")
	cmd.Dir = moduleDir
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/oncelog in %s: %w\n%s", moduleDir, err, output.String())
	}
	return path, nil
}

// oncelogProcess is an oncelog broker run as a subprocess, on fixed ports and a
// fixed data directory so that it can be killed and restarted in place.
type oncelogProcess struct {
	binary    string
	dataDir   string
	addr      string // Kafka listener
	adminAddr string
	httpAddr  string // HTTP ingest listener
	logPath   string // the broker's stdout and stderr, appended across restarts

	cmd     *exec.Cmd
	exited  chan struct{}
	started time.Time
}

// newOncelogProcess prepares (but does not start) a broker whose data
// directory and log file live under workDir.
func newOncelogProcess(binary, workDir string) (*oncelogProcess, error) {
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return nil, err
	}
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	adminAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	return &oncelogProcess{
		httpAddr:  httpAddr,
		binary:    binary,
		dataDir:   filepath.Join(workDir, "data"),
		addr:      addr,
		adminAddr: adminAddr,
		logPath:   filepath.Join(workDir, "oncelog.log"),
	}, nil
}

// Start starts the broker and returns once it answers ApiVersions, with the
// time that took measured from just before the process was spawned.
func (p *oncelogProcess) Start(ctx context.Context) (time.Duration, error) {
	if dead, _ := p.Exited(); p.cmd != nil && !dead {
		return 0, errors.New("oncelog is already running")
	}
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	// ONCELOG_BENCH_LOG_LEVEL=info shows in oncelog.log (with --keep)
	// what each partition's recovery took.
	level := cmp.Or(os.Getenv("ONCELOG_BENCH_LOG_LEVEL"), "warn")
	cmd := exec.Command(p.binary, "serve",
		"--listen", p.addr,
		"--admin-listen", p.adminAddr,
		"--http-listen", p.httpAddr,
		"--data-dir", p.dataDir,
		"--log-level", level,
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = childProcAttr()
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return 0, fmt.Errorf("starting oncelog: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited

	if err := waitForAPIVersions(ctx, p.addr, exited, 10*time.Minute); err != nil {
		p.Kill()
		return 0, fmt.Errorf("%w\n%s", err, p.logTail())
	}
	return time.Since(p.started), nil
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *oncelogProcess) Kill() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	<-p.exited
	p.cmd = nil
}

// Stop sends SIGTERM and waits for a clean exit, returning how long the
// shutdown took. The process is killed if it has not exited within timeout.
func (p *oncelogProcess) Stop(timeout time.Duration) (time.Duration, error) {
	if p.cmd == nil {
		return 0, nil
	}
	begin := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.Kill()
		return 0, fmt.Errorf("oncelog did not exit within %v of SIGTERM", timeout)
	}
	took := time.Since(begin)
	state := p.cmd.ProcessState
	p.cmd = nil
	if !state.Success() {
		return took, fmt.Errorf("oncelog exited with %v after SIGTERM\n%s", state, p.logTail())
	}
	return took, nil
}

// Exited reports whether a started broker has exited on its own, and how.
func (p *oncelogProcess) Exited() (bool, string) {
	if p.cmd == nil {
		return false, ""
	}
	select {
	case <-p.exited:
		return true, p.cmd.ProcessState.String()
	default:
		return false, ""
	}
}

// Pid returns the broker's process id, or 0 when it is not running.
func (p *oncelogProcess) Pid() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *oncelogProcess) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	const keep = 4000
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return "oncelog output (tail):\n" + string(b)
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitForAPIVersions polls addr with a raw ApiVersions v0 request until a
// well-formed answer comes back. It gives up if exited closes (the process
// died) or after timeout.
func waitForAPIVersions(ctx context.Context, addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		if lastErr = probeAPIVersions(addr); lastErr == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("oncelog exited before answering ApiVersions")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("oncelog did not answer ApiVersions within %v: %w", timeout, lastErr)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// probeAPIVersions sends one ApiVersions v0 request (an empty body, so it is
// written by hand) and checks the response's correlation id and error code.
func probeAPIVersions(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))

	const (
		apiVersionsKey = 18
		correlationID  = 0x0ce1
		clientID       = "oncelog-bench"
	)
	req := binary.BigEndian.AppendUint16(nil, apiVersionsKey)
	req = binary.BigEndian.AppendUint16(req, 0) // version
	req = binary.BigEndian.AppendUint32(req, correlationID)
	req = binary.BigEndian.AppendUint16(req, uint16(len(clientID)))
	req = append(req, clientID...)
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(req)))
	if _, err := conn.Write(append(frame, req...)); err != nil {
		return err
	}
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 6 || n > 1<<20 {
		return fmt.Errorf("ApiVersions response of %d bytes", n)
	}
	resp := make([]byte, n)
	if _, err := io.ReadFull(conn, resp); err != nil {
		return err
	}
	if got := binary.BigEndian.Uint32(resp); got != correlationID {
		return fmt.Errorf("ApiVersions correlation id %d, want %d", got, correlationID)
	}
	if code := int16(binary.BigEndian.Uint16(resp[4:])); code != 0 {
		return fmt.Errorf("ApiVersions error code %d", code)
	}
	return nil
}
