package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/oncelog/oncelog/internal/brokerproc"
)

// The broker runs through internal/brokerproc (fixed ports kept across
// restarts, SIGKILL and clean stop); this harness waits for readiness by
// polling the admin /readyz endpoint.

const (
	readyTimeout = 60 * time.Second
	exitTimeout  = 30 * time.Second
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
type brokerProcess struct{ *brokerproc.Process }

func newBrokerProcess(binary, dataDir, advertise string, extraArgs []string) (*brokerProcess, error) {
	p, err := brokerproc.New(binary, dataDir, advertise, extraArgs, nil)
	if err != nil {
		return nil, err
	}
	return &brokerProcess{p}, nil
}

// start launches the process and waits until /readyz answers 200.
func (b *brokerProcess) start(ctx context.Context) error {
	exited, err := b.Launch()
	if err != nil {
		return fmt.Errorf("start %s: %w", b.Binary, err)
	}
	if err := b.WaitReadyz(ctx, exited, readyTimeout); err != nil {
		return fmt.Errorf("broker on %s not ready: %w; output tail:\n%s", b.Addr, err, b.Tail())
	}
	return nil
}

// kill sends SIGKILL and waits until the process is reaped.
func (b *brokerProcess) kill() error { return b.Kill(exitTimeout) }

// stop sends SIGTERM and waits for the process to exit, killing it if it
// does not within exitTimeout. It returns the error of an unclean stop.
func (b *brokerProcess) stop() error { return b.Stop(exitTimeout) }

// tail is the end of the broker's combined output, for error messages.
func (b *brokerProcess) tail() string { return b.Tail() }
