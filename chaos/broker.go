package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/oncelog/oncelog/internal/tailbuf"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// This file is a small launcher for the oncelog binary, modelled on
// internal/testbroker (which needs a testing.TB and so cannot serve the
// command-line harness): fixed ports kept across restarts, SIGKILL and clean
// stop, readiness by polling the admin /readyz endpoint.

const (
	readyTimeout  = 60 * time.Second
	readyInterval = 25 * time.Millisecond
	exitTimeout   = 30 * time.Second
	outputLimit   = 1 << 20
	outputTail    = 8 << 10
)

const mainPackage = "github.com/oncelog/oncelog/cmd/oncelog"

// BuildBinary builds the oncelog command of the module the current directory
// belongs to into dir and returns its path.
func BuildBinary(dir string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building oncelog needs the go command: %w", err)
	}
	out, err := exec.Command(goTool, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	goMod := strings.TrimSpace(string(out))
	if goMod == "" || goMod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside the oncelog module (use --binary)")
	}
	path := filepath.Join(dir, "oncelog")
	cmd := exec.Command(goTool, "build", "-o", path, mainPackage)
	cmd.Dir = filepath.Dir(goMod)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", mainPackage, err, output.String())
	}
	return path, nil
}

// brokerProcess is an oncelog subprocess that can be killed and restarted on
// the same ports and data directory.
type brokerProcess struct {
	binary    string
	dataDir   string
	addr      string // Kafka listener
	adminAddr string // /readyz, /metrics
	advertise string
	extraArgs []string
	output    *tailbuf.Buffer

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

func newBrokerProcess(binary, dataDir, advertise string, extraArgs []string) (*brokerProcess, error) {
	ports, err := pickFreePorts(2)
	if err != nil {
		return nil, err
	}
	return &brokerProcess{
		binary:    binary,
		dataDir:   dataDir,
		addr:      net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		adminAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
		advertise: advertise,
		extraArgs: extraArgs,
		output:    tailbuf.New(outputLimit),
	}, nil
}

// start launches the process and waits until /readyz answers 200.
func (b *brokerProcess) start(ctx context.Context) error {
	args := append([]string{
		"serve",
		"--listen", b.addr,
		"--advertise", b.advertise,
		"--data-dir", b.dataDir,
		"--admin-listen", b.adminAddr,
		"--log-level", "warn",
	}, b.extraArgs...)
	cmd := exec.Command(b.binary, args...)
	cmd.Stdout, cmd.Stderr = b.output, b.output
	cmd.WaitDelay = 5 * time.Second
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", b.binary, err)
	}
	exited := make(chan struct{})
	b.mu.Lock()
	b.cmd, b.exited, b.waitErr = cmd, exited, nil
	b.mu.Unlock()
	go func() {
		err := cmd.Wait()
		b.mu.Lock()
		b.waitErr = err
		b.mu.Unlock()
		close(exited)
	}()
	if err := b.waitReady(ctx, exited); err != nil {
		return fmt.Errorf("broker on %s not ready: %w; output tail:\n%s", b.addr, err, b.tail())
	}
	return nil
}

func (b *brokerProcess) waitReady(ctx context.Context, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + b.adminAddr + "/readyz"
	ticker := time.NewTicker(readyInterval)
	defer ticker.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("process exited before it was ready: %v", b.exitErr())
		case <-ctx.Done():
			return fmt.Errorf("not ready within %v: %w", readyTimeout, ctx.Err())
		case <-ticker.C:
		}
	}
}

// kill sends SIGKILL and waits until the process is reaped.
func (b *brokerProcess) kill() error {
	cmd, exited := b.current()
	if cmd == nil || isClosed(exited) {
		return nil
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGKILL: %w", err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(exitTimeout):
		return fmt.Errorf("broker not reaped %v after SIGKILL", exitTimeout)
	}
}

// stop sends SIGTERM and waits for the process to exit, killing it if it
// does not within exitTimeout. It returns the exit error of an unclean stop.
func (b *brokerProcess) stop() error {
	cmd, exited := b.current()
	if cmd == nil || isClosed(exited) {
		return nil
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case <-exited:
		return b.exitErr()
	case <-time.After(exitTimeout):
		b.kill()
		return fmt.Errorf("broker did not exit within %v of SIGTERM", exitTimeout)
	}
}

func (b *brokerProcess) current() (*exec.Cmd, chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cmd, b.exited
}

func (b *brokerProcess) exitErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waitErr
}

// tail is the end of the broker's combined output, for error messages.
func (b *brokerProcess) tail() string {
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
// ago, below the Linux ephemeral range so that no client connection takes one
// while the broker is down between a kill and its restart.
func pickFreePorts(n int) ([]int, error) {
	const lowest, highest = 20000, 32767
	var ports []int
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
