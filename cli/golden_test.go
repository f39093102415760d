package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// TestGoldenOutput runs a session of CLI commands against a real oncelog
// broker and against franz-go's kfake (the "any Kafka broker" claim) and
// compares what each prints with testdata/golden/<broker>.txt: a changed
// table, message or exit code shows up as a diff to review. Regenerate with
//
//	ONCELOG_UPDATE_GOLDEN=1 go test ./cli -run TestGoldenOutput
//
// Addresses, topic ids and times are normalised.
func TestGoldenOutput(t *testing.T) {
	if os.Getenv("ONCELOG_TEST_BROKERS") != "" {
		t.Skip("golden output is recorded for oncelog and kfake; ONCELOG_TEST_BROKERS points elsewhere")
	}
	fake, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	for _, target := range []struct{ name, brokers string }{
		{"oncelog", testBrokers(t)},
		{"kfake", strings.Join(fake.ListenAddrs(), ",")},
	} {
		t.Run(target.name, func(t *testing.T) {
			got := goldenSession(t, target.brokers)
			path := filepath.Join("testdata", "golden", target.name+".txt")
			if os.Getenv("ONCELOG_UPDATE_GOLDEN") != "" {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (create it with ONCELOG_UPDATE_GOLDEN=1)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s (ONCELOG_UPDATE_GOLDEN=1 rewrites it after review):\n%s", path, lineDiff(string(want), got))
			}
		})
	}
}

var (
	goldenAddr = regexp.MustCompile(`127\.0\.0\.1:\d+`)
	goldenID   = regexp.MustCompile(`\b[A-Za-z0-9_-]{22}\b`)
	goldenTime = regexp.MustCompile(`\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?Z?`)
)

func goldenSession(t *testing.T, brokers string) string {
	topic := "golden-orders"
	steps := []struct {
		stdin string
		args  []string
	}{
		{"", []string{"topic", "create", topic, "-p", "2"}},
		{"", []string{"topic", "create", topic, "-p", "2"}},
		{"", []string{"topic", "create", topic, "-p", "2", "--if-not-exists"}},
		{"a:1\nb:2\nc:3\n", []string{"produce", topic, "-K", ":", "--partition", "0", "--output", "json"}},
		{"d:4\n", []string{"produce", topic, "-K", ":", "--partition", "1", "--output", "json"}},
		{"", []string{"consume", topic, "--partition", "0", "--format", "{{.Partition}}/{{.Offset}} {{.Key}}={{.Value}}"}},
		{"", []string{"consume", topic, "--partition", "0", "--from", "1", "-n", "1"}},
		{"", []string{"topic", "list"}},
		{"", []string{"topic", "add-partitions", topic, "-p", "1"}},
		{"", []string{"group", "reset-offsets", "golden-billing", "--topic", topic, "--to-offset", "1"}},
		{"", []string{"group", "reset-offsets", "golden-billing", "--topic", topic + ":0", "--to-offset", "1", "--execute"}},
		{"", []string{"group", "reset-offsets", "golden-billing", "--topic", topic + ":0", "--shift-by", "1", "--execute"}},
		{"", []string{"group", "list"}},
		{"", []string{"group", "delete", "golden-billing"}},
		{"", []string{"consume", "golden-missing"}},
		{"", []string{"topic", "describe", "golden-missing"}},
		{"", []string{"topic", "delete", topic}},
	}
	var out strings.Builder
	for _, s := range steps {
		stdout, _, err := runCLI(strings.NewReader(s.stdin), append(s.args, "--brokers", brokers, "--timeout", "20s")...)
		fmt.Fprintf(&out, "$ oncelog %s\n%s", strings.Join(s.args, " "), stdout)
		if err != nil {
			fmt.Fprintf(&out, "exit %d: %v\n", exitCode(err), err)
		}
		out.WriteString("\n")
	}
	s := goldenAddr.ReplaceAllString(out.String(), "BROKER")
	s = goldenTime.ReplaceAllString(s, "TIME")
	s = goldenID.ReplaceAllString(s, "TOPIC-ID")
	s = regexp.MustCompile(`"elapsed_ms": \d+`).ReplaceAllString(s, `"elapsed_ms": N`)
	s = regexp.MustCompile(`"records_per_second": [0-9.e+]+`).ReplaceAllString(s, `"records_per_second": N`)
	return s
}

// lineDiff lists the lines that differ, with their numbers.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want %q\n  got  %q\n", i+1, wl, gl)
		}
	}
	return b.String()
}
