// Package deploy_test checks the deployment files kept in the repository
// against the binary they deploy: the systemd unit must pass systemd's own
// verifier, and every ONCELOG_* variable the unit and the Dockerfile set must
// name a real `serve` setting (a renamed flag would otherwise leave them
// unnoticed until the first production start).
package deploy_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func buildOncelog(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "oncelog")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/oncelog")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (apt-get install systemd)")
	}
	unit, err := os.ReadFile("oncelog.service")
	if err != nil {
		t.Fatal(err)
	}
	bin := buildOncelog(t)
	// The unit names /usr/local/bin/oncelog; verify a copy that points at the
	// binary just built (systemd-analyze checks the executable exists).
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/oncelog", bin)
	if text == string(unit) {
		t.Fatal("the unit no longer runs /usr/local/bin/oncelog: update this test and the install steps in the unit")
	}
	path := filepath.Join(t.TempDir(), "oncelog.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	// In a container without a running systemd, verify still parses the unit
	// and reports unknown settings and missing executables, which is what
	// this test is for; it can also complain about the host's own units.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "oncelog.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
	if err != nil && !strings.Contains(string(out), "oncelog.service") {
		t.Logf("systemd-analyze verify exited %v (nothing about oncelog.service):\n%s", err, out)
	}
}

var envSetting = regexp.MustCompile(`ONCELOG_[A-Z0-9_]+`)

// TestDeployFilesNameRealSettings runs `oncelog serve --help` and checks that
// each ONCELOG_<FLAG> the deployment files set is one of its flags.
func TestDeployFilesNameRealSettings(t *testing.T) {
	bin := buildOncelog(t)
	help, err := exec.Command(bin, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("serve --help: %v\n%s", err, help)
	}
	flags := map[string]bool{"ONCELOG_CONFIG": true}
	sc := bufio.NewScanner(strings.NewReader(string(help)))
	flagName := regexp.MustCompile(`--([a-z0-9-]+)`)
	for sc.Scan() {
		for _, m := range flagName.FindAllStringSubmatch(sc.Text(), -1) {
			flags["ONCELOG_"+strings.ToUpper(strings.ReplaceAll(m[1], "-", "_"))] = true
		}
	}
	for _, file := range []string{"oncelog.service", "../Dockerfile"} {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		found := envSetting.FindAllString(string(raw), -1)
		if len(found) == 0 {
			t.Errorf("%s sets no ONCELOG_* variable: this test is out of date", file)
		}
		for _, v := range found {
			if v == "ONCELOG_" || strings.HasSuffix(v, "_FLAG") {
				continue
			}
			if !flags[v] {
				t.Errorf("%s sets %s, which names no `oncelog serve` flag", file, v)
			}
		}
	}
}
