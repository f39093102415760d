package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestKgoIntegrationSuite runs franz-go's own pkg/kgo integration suite (the
// franz-go version go.mod names, from the module cache) against a real
// oncelog with KGO_SEEDS, and fails on any failed test, on any skipped test
// but the authentication ones (they need seeds of their own), and unless
// the KIP-848 and regex tests the issue names passed. It takes about five
// minutes on two cores, so it runs only with ONCELOG_KGO_SUITE=1
// (e2e/kgosuite/run.sh).
func TestKgoIntegrationSuite(t *testing.T) {
	if os.Getenv("ONCELOG_KGO_SUITE") != "1" {
		t.Skip("set ONCELOG_KGO_SUITE=1 to run franz-go's kgo integration suite against oncelog (e2e/kgosuite/run.sh)")
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/twmb/franz-go").Output()
	if err != nil {
		t.Fatalf("locate franz-go in the module cache: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "pkg", "kgo")
	b := startBroker(t)

	cmd := exec.Command("go", "test", "-count=1", "-json", "-timeout", "25m", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"KGO_SEEDS="+b.Addr(),
		"KGO_TEST_RF=1", // one broker
		"KGO_LOG_LEVEL=none",
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil && len(stdout) == 0 {
		t.Fatalf("go test in %s: %v\n%s", dir, err, stderr.String())
	}

	results := map[string]string{} // top-level test -> pass, fail or skip
	output := map[string]*strings.Builder{}
	sc := bufio.NewScanner(bytes.NewReader(stdout))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev struct{ Action, Test, Output string }
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Test == "" {
			continue
		}
		top, _, _ := strings.Cut(ev.Test, "/")
		switch ev.Action {
		case "output":
			if output[top] == nil {
				output[top] = &strings.Builder{}
			}
			output[top].WriteString(ev.Output)
		case "pass", "fail", "skip":
			if ev.Test == top {
				results[top] = ev.Action
			}
		}
	}
	count := map[string][]string{}
	for name, r := range results {
		count[r] = append(count[r], name)
	}
	for _, names := range count {
		slices.Sort(names)
	}
	t.Logf("franz-go kgo suite against oncelog: %d passed, %d failed, %d skipped", len(count["pass"]), len(count["fail"]), len(count["skip"]))
	t.Logf("skipped: %s", strings.Join(count["skip"], ", "))
	for _, name := range count["fail"] {
		t.Errorf("%s failed:\n%s", name, output[name])
	}
	authOnly := func(name string) bool { return strings.Contains(name, "SCRAM") || strings.Contains(name, "OAuth") }
	for _, name := range count["skip"] {
		if !authOnly(name) {
			t.Errorf("%s skipped:\n%s", name, output[name])
		}
	}
	for _, name := range []string{"TestConsumeRegex", "Test848RegexBrokerResolves", "TestGroupETL", "TestTxnEtl"} {
		if results[name] != "pass" {
			t.Errorf("%s: %q, want pass", name, results[name])
		}
	}
	if len(results) == 0 {
		t.Fatalf("no test results from the suite:\n%s", stderr.String())
	}
}
