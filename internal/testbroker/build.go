package testbroker

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// binaryEnv names a prebuilt oncelog binary to use instead of building one.
const binaryEnv = "ONCELOG_TESTBROKER_BINARY"

const mainPackage = "github.com/oncelog/oncelog/cmd/oncelog"

var build struct {
	once   sync.Once
	path   string
	tmpDir string // removed by Run; empty when binaryEnv was used
	err    error
}

// BinaryPath returns the oncelog binary the brokers run, building it on the
// first call in this test process. It fails the test if the build fails.
func BinaryPath(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		build.path, build.tmpDir, build.err = buildBinary()
	})
	if build.err != nil {
		t.Fatalf("testbroker: %v", build.err)
	}
	return build.path
}

// Run runs the tests and then removes the binary built for them. Use it from
// TestMain: func TestMain(m *testing.M) { os.Exit(testbroker.Run(m)) }
func Run(m *testing.M) int {
	code := m.Run()
	if build.tmpDir != "" {
		os.RemoveAll(build.tmpDir)
	}
	return code
}

func buildBinary() (path, tmpDir string, err error) {
	if prebuilt := os.Getenv(binaryEnv); prebuilt != "" {
		if _, err := os.Stat(prebuilt); err != nil {
			return "", "", fmt.Errorf("%s: %w", binaryEnv, err)
		}
		return prebuilt, "", nil
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", "", fmt.Errorf("building oncelog needs the go command: %w", err)
	}
	out, err := exec.Command(goTool, "env", "GOMOD").Output()
	if err != nil {
		return "", "", fmt.Errorf("go env GOMOD: %w", err)
	}
	goMod := strings.TrimSpace(string(out))
	if goMod == "" || goMod == os.DevNull {
		return "", "", errors.New("go env GOMOD: not inside the oncelog module")
	}
	tmpDir, err = os.MkdirTemp("", "oncelog-testbroker-")
	if err != nil {
		return "", "", err
	}
	path = filepath.Join(tmpDir, "oncelog")
	cmd := exec.Command(goTool, "build", "-o", path, mainPackage)
	cmd.Dir = filepath.Dir(goMod)
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		os.RemoveAll(tmpDir)
		return "", "", fmt.Errorf("go build %s: %w\n%s", mainPackage, err, output.String())
	}
	return path, tmpDir, nil
}
