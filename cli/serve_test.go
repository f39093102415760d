package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
)

// clearServeEnv unsets every ONCELOG_* variable a serve setting reads, for
// the duration of the test, so the caller's environment can't leak in.
func clearServeEnv(t *testing.T) {
	t.Helper()
	names := []string{configEnvVar}
	newServeCmd().Flags().VisitAll(func(f *pflag.Flag) { names = append(names, envVarFor(f.Name)) })
	for _, name := range names {
		if v, ok := os.LookupEnv(name); ok {
			t.Setenv(name, v) // restores it afterwards
			os.Unsetenv(name)
		}
	}
}

// resolveServe runs `oncelog serve args...` up to the point where the broker
// would start, returning the options it would start with.
func resolveServe(t *testing.T, args ...string) (*serveOptions, string, error) {
	t.Helper()
	var got *serveOptions
	cmd := newServeCommand(func(_ context.Context, o *serveOptions) error {
		got = o
		return nil
	})
	var stderr bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(&stderr)
	err := cmd.Execute()
	if err == nil && got == nil {
		t.Fatalf("serve %v: no error, but the broker was not started", args)
	}
	if err != nil && got != nil {
		t.Fatalf("serve %v: the broker was started despite %v", args, err)
	}
	return got, stderr.String(), err
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestServeSettingPrecedence(t *testing.T) {
	file := writeFile(t, "oncelog.yaml", `
data-dir: /from/file
node-id: 7
log-segment-bytes: 2097152
group-initial-rebalance-delay: 250ms
auto-create-topics: false
`)
	defaults := broker.DefaultConfig()
	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		dataDir string
		nodeID  int32
	}{
		{name: "default", dataDir: defaults.DataDir, nodeID: defaults.NodeID},
		{name: "file over default", args: []string{"--config", file}, dataDir: "/from/file", nodeID: 7},
		{name: "env over file", env: map[string]string{"ONCELOG_DATA_DIR": "/from/env"}, args: []string{"--config", file}, dataDir: "/from/env", nodeID: 7},
		{name: "flag over env and file",
			env:  map[string]string{"ONCELOG_DATA_DIR": "/from/env", "ONCELOG_NODE_ID": "8"},
			args: []string{"--config", file, "--data-dir", "/from/flag"}, dataDir: "/from/flag", nodeID: 8},
		{name: "flag over file", args: []string{"--config", file, "--node-id", "9"}, dataDir: "/from/file", nodeID: 9},
		{name: "config file from env", env: map[string]string{configEnvVar: file}, dataDir: "/from/file", nodeID: 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearServeEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			o, stderr, err := resolveServe(t, tc.args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			if o.cfg.DataDir != tc.dataDir || o.cfg.NodeID != tc.nodeID {
				t.Errorf("data-dir %q node-id %d, want %q %d", o.cfg.DataDir, o.cfg.NodeID, tc.dataDir, tc.nodeID)
			}
			// Settings no level above the file touches come from the file
			// (or the default when there is no file).
			wantSegment, wantDelay, wantAutoCreate := defaults.SegmentBytes, defaults.GroupInitialRebalanceDelay, defaults.AutoCreateTopics
			if tc.name != "default" {
				wantSegment, wantDelay, wantAutoCreate = 2097152, 250*time.Millisecond, false
			}
			if o.cfg.SegmentBytes != wantSegment || o.cfg.GroupInitialRebalanceDelay != wantDelay || o.cfg.AutoCreateTopics != wantAutoCreate {
				t.Errorf("segment bytes %d, rebalance delay %v, auto-create %v; want %d %v %v",
					o.cfg.SegmentBytes, o.cfg.GroupInitialRebalanceDelay, o.cfg.AutoCreateTopics, wantSegment, wantDelay, wantAutoCreate)
			}
			if o.cfg.MaxProducers != defaults.MaxProducers || o.listen != "127.0.0.1:9092" {
				t.Errorf("unset settings changed: max-producers %d, listen %q", o.cfg.MaxProducers, o.listen)
			}
		})
	}
}

func TestServeConfigFlagBeatsConfigEnv(t *testing.T) {
	clearServeEnv(t)
	t.Setenv(configEnvVar, writeFile(t, "env.yaml", "node-id: 1\n"))
	o, _, err := resolveServe(t, "--config", writeFile(t, "flag.yaml", "node-id: 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.NodeID != 2 {
		t.Errorf("node-id %d: want 2 from the --config file, not ONCELOG_CONFIG's", o.cfg.NodeID)
	}
}

func TestServeEmptyValuesInFileAndEnv(t *testing.T) {
	clearServeEnv(t)
	// An empty admin-listen turns the admin listener off, from either source.
	o, _, err := resolveServe(t, "--config", writeFile(t, "c.yaml", "admin-listen:\nadvertise: ''\n"))
	if err != nil {
		t.Fatal(err)
	}
	if o.adminListen != "" || o.advertise != "" {
		t.Errorf("admin-listen %q advertise %q, want both empty", o.adminListen, o.advertise)
	}
	t.Setenv("ONCELOG_ADMIN_LISTEN", "")
	if o, _, err = resolveServe(t); err != nil || o.adminListen != "" {
		t.Errorf("ONCELOG_ADMIN_LISTEN='': admin-listen %q, err %v", o.adminListen, err)
	}
}

func TestServeConfigErrorsExitTwo(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string // config file content, if any
		env  map[string]string
		args []string
		want string // in the error message
	}{
		{name: "missing file", args: []string{"--config", "/nonexistent/oncelog.yaml"}, want: "read config file: open /nonexistent/oncelog.yaml"},
		{name: "unknown key", file: "data_dir: /x\n", want: `unknown setting "data_dir" (did you mean "data-dir"?)`},
		{name: "unknown key without a near match", file: "colour: blue\n", want: `unknown setting "colour" (keys are the flag names of`},
		{name: "config key in the file", file: "config: other.yaml\n", want: `unknown setting "config"`},
		{name: "bad file value", file: "node-id: one\n", want: `node-id: "one" is not a valid int32`},
		{name: "bad file duration", file: "group-min-session-timeout: 6\n", want: `group-min-session-timeout: "6" is not a valid duration`},
		{name: "list value", file: "listen: [a, b]\n", want: "listen must be a single value"},
		{name: "not a mapping", file: "- data-dir\n", want: "is not a YAML mapping"},
		{name: "not YAML", file: "data-dir: [\n", want: "is not a YAML mapping"},
		{name: "bad env value", env: map[string]string{"ONCELOG_LOG_SEGMENT_BYTES": "1GB"}, want: `ONCELOG_LOG_SEGMENT_BYTES="1GB": not a valid int64 for --log-segment-bytes`},
		{name: "segment bytes below Kafka's minimum", args: []string{"--log-segment-bytes", "4096"}, want: `--log-segment-bytes 4096: must be between 1048576 and 2147483647`},
		{name: "bad env bool", env: map[string]string{"ONCELOG_AUTO_CREATE_TOPICS": "yes please"}, want: `ONCELOG_AUTO_CREATE_TOPICS="yes please": not a valid bool`},
		{name: "bad env log level", env: map[string]string{"ONCELOG_LOG_LEVEL": "verbose"}, want: `--log-level "verbose": use debug, info, warn or error`},
		{name: "bad log format", args: []string{"--log-format", "xml"}, want: `--log-format "xml": use text or json`},
		{name: "unknown flag", args: []string{"--data-directory", "/x"}, want: "unknown flag: --data-directory"},
		{name: "bad flag value", args: []string{"--node-id", "x"}, want: `invalid argument "x" for "--node-id"`},
		{name: "argument", args: []string{"extra"}, want: "extra"},
		{name: "out of range", args: []string{"--log-retention-check-interval", "0s"}, want: "--log-retention-check-interval must be positive"},
		{name: "inconsistent", env: map[string]string{"ONCELOG_GROUP_MIN_SESSION_TIMEOUT": "1h"}, want: "--group-min-session-timeout must not exceed --group-max-session-timeout"},
		{name: "bad advertise", args: []string{"--advertise", "broker1"}, want: `--advertise "broker1" must be host:port`},
		{name: "bad listen is blamed on --listen", args: []string{"--listen", "nope"}, want: `--listen "nope" must be host:port`},
		{name: "bad listen port", args: []string{"--listen", "127.0.0.1:99999"}, want: `--listen "127.0.0.1:99999": the port must be 1-65535`},
		{name: "advertised port 0", args: []string{"--advertise", "broker1:0"}, want: `--advertise "broker1:0": the port must be 1-65535`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearServeEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := tc.args
			if tc.file != "" {
				args = append(args, "--config", writeFile(t, "bad.yaml", tc.file))
			}
			_, _, err := resolveServe(t, args...)
			if code := exitCode(err); code != 2 {
				t.Fatalf("exit code %d (%v), want 2", code, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestServeReportsEveryBadSettingAtOnce(t *testing.T) {
	clearServeEnv(t)
	t.Setenv("ONCELOG_NODE_ID", "x")
	_, _, err := resolveServe(t, "--config", writeFile(t, "c.yaml", "colour: blue\nflavour: mint\n"))
	for _, want := range []string{`"colour"`, `"flavour"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

// TestServeBinaryBadConfigExitsTwo checks the exit status of the real
// process, and that it gives up before creating the data directory.
func TestServeBinaryBadConfigExitsTwo(t *testing.T) {
	clearServeEnv(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(testbroker.BinaryPath(t), "serve",
		"--config", writeFile(t, "bad.yaml", "data-dir: "+dataDir+"\nlisten_address: 127.0.0.1:1\n"),
		"--admin-listen", "")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("exit: %v, want status 2\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), `unknown setting "listen_address"`) {
		t.Errorf("stderr does not name the bad key:\n%s", stderr.String())
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir was created (stat: %v)", err)
	}
}

func TestServeHelpExplainsEverySetting(t *testing.T) {
	cmd := newServeCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	if err := cmd.Help(); err != nil {
		t.Fatal(err)
	}
	help := out.String()
	for _, want := range []string{"ONCELOG_DATA_DIR", "ONCELOG_CONFIG", "/metrics", "/healthz", "/readyz", "status 2", "SIGTERM"} {
		if !strings.Contains(help, want) {
			t.Errorf("serve --help does not mention %q", want)
		}
	}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if len(f.Usage) < 15 {
			t.Errorf("--%s: usage %q explains too little", f.Name, f.Usage)
		}
		// pflag prints "(default X)" unless the default is the zero value;
		// then the usage must say what happens itself.
		if (f.DefValue == "" || f.DefValue == "0" || f.DefValue == "false") && f.Name != "help" && !strings.Contains(f.Usage, "default") {
			t.Errorf("--%s: zero default %q, and the usage doesn't say what it means", f.Name, f.DefValue)
		}
		if !strings.Contains(help, "--"+f.Name) {
			t.Errorf("--%s missing from serve --help", f.Name)
		}
	})
}

// exampleConfigPath is the documented example config, at the repository root.
const exampleConfigPath = "../oncelog.example.yaml"

// exampleConfig renders the example config file from the serve flags: every
// setting, its description, its environment variable and its default.
func exampleConfig(fs *pflag.FlagSet) string {
	var b strings.Builder
	b.WriteString(`# oncelog serve configuration: every setting with its default.
#
# Use it with:  oncelog serve --config oncelog.yaml
#         or:   ONCELOG_CONFIG=oncelog.yaml oncelog serve
# Keys are the flag names of ` + "`oncelog serve --help`" + `; uncomment and change what
# you need. Precedence: flag > environment variable > this file > default.
# An unknown key or a bad value stops the broker with exit status 2.
#
# Generated from the flag definitions by TestExampleConfigListsEveryFlag in
# cli/serve_test.go; after changing a flag, regenerate it with
#   ONCELOG_UPDATE_EXAMPLE=1 go test ./cli -run TestExampleConfigListsEveryFlag
`)
	fs.VisitAll(func(f *pflag.Flag) {
		if notSetting(f.Name) {
			return
		}
		b.WriteString("\n")
		for _, line := range wrap(f.Usage+".", 76) {
			b.WriteString("# " + line + "\n")
		}
		b.WriteString("# Environment: " + envVarFor(f.Name) + "\n")
		value := f.DefValue
		switch f.Value.Type() {
		case "string", "duration":
			value = strconv.Quote(value)
		}
		fmt.Fprintf(&b, "# %s: %s\n", f.Name, value)
	})
	return b.String()
}

// wrap breaks text into lines of at most width bytes at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	return append(lines, line)
}

// settingLine matches a commented-out setting of the example file.
var settingLine = regexp.MustCompile(`(?m)^# ([a-z0-9-]+: .*)$`)

func TestExampleConfigListsEveryFlag(t *testing.T) {
	want := exampleConfig(newServeCmd().Flags())
	if os.Getenv("ONCELOG_UPDATE_EXAMPLE") != "" {
		if err := os.WriteFile(exampleConfigPath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(exampleConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s is out of date with the serve flags; regenerate it with\n  ONCELOG_UPDATE_EXAMPLE=1 go test ./cli -run TestExampleConfigListsEveryFlag", exampleConfigPath)
	}

	// Uncommented, the example is a valid config that changes nothing.
	var settings []string
	for _, m := range settingLine.FindAllStringSubmatch(string(got), -1) {
		settings = append(settings, m[1])
	}
	clearServeEnv(t)
	withFile, _, err := resolveServe(t, "--config", writeFile(t, "example.yaml", strings.Join(settings, "\n")))
	if err != nil {
		t.Fatalf("the uncommented example does not load: %v", err)
	}
	if changed := fmt.Sprint(withFile.settings); changed != "[config="+withFile.configFile+"]" {
		t.Errorf("the uncommented example changes settings from their defaults: %s", changed)
	}
	n := 0
	newServeCmd().Flags().VisitAll(func(f *pflag.Flag) {
		if !notSetting(f.Name) {
			n++
		}
	})
	if len(settings) != n {
		t.Errorf("the example has %d settings, serve has %d", len(settings), n)
	}
}

func TestAdminHandler(t *testing.T) {
	var ready atomic.Bool
	var stats atomic.Pointer[broker.Stats]
	var brk atomic.Pointer[broker.Broker]
	srv := httptest.NewServer(adminHandler(&ready, &stats, &brk))
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	expect := func(path string, wantCode int, wantBody string) {
		t.Helper()
		if code, body := get(path); code != wantCode || !strings.Contains(body, wantBody) {
			t.Errorf("GET %s: %d %q, want %d with %q", path, code, body, wantCode, wantBody)
		}
	}

	// Recovering: alive, not ready, no metrics yet.
	expect("/healthz", 200, "ok")
	expect("/readyz", 503, "recovering")
	expect("/metrics", 503, "recovering")

	// Broker open and listening.
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "oncelog_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	stats.Store(&broker.Stats{Registry: reg})
	ready.Store(true)
	expect("/healthz", 200, "ok")
	expect("/readyz", 200, "ready")
	expect("/metrics", 200, "oncelog_test_total 3")

	// Shutting down.
	ready.Store(false)
	expect("/readyz", 503, "shutting down")
	expect("/healthz", 200, "ok")
	expect("/nothing", 404, "")
}

// TestServeBinaryPortInUse: a Kafka port already taken is reported before
// recovery (the data directory is not even opened), and with
// --log-format json the error that ends the process is a JSON line too.
func TestServeBinaryPortInUse(t *testing.T) {
	clearServeEnv(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(testbroker.BinaryPath(t), "serve", "--listen", taken.Addr().String(),
		"--data-dir", dataDir, "--admin-listen", "", "--log-format", "json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1\n%s", err, stderr.String())
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir was opened before the port was checked (stat: %v)", err)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	for _, line := range lines {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Errorf("stderr line is not JSON: %q", line)
		}
	}
	last := lines[len(lines)-1]
	if !strings.Contains(last, `"level":"ERROR"`) || !strings.Contains(last, "address already in use") || !strings.Contains(last, "--listen") {
		t.Errorf("last line %q is not the JSON error naming the port in use and --listen", last)
	}
}
