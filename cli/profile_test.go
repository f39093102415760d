package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func useProfileFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "oncelog", "profiles.yaml")
	t.Setenv(profileFileEnv, path)
	t.Setenv(profileEnv, "")
	t.Setenv(brokersEnv, "")
	for _, env := range []string{"ONCELOG_SASL_MECHANISM", "ONCELOG_SASL_USER", saslPasswordEnv} {
		t.Setenv(env, "")
		os.Unsetenv(env)
	}
	return path
}

func TestProfileLifecycle(t *testing.T) {
	path := useProfileFile(t)
	out, _, err := runCLI(nil, "profile", "list")
	if err != nil || !strings.Contains(out, "no profiles") {
		t.Fatalf("list with no file: %q %v", out, err)
	}
	if out, _, err = runCLI(nil, "profile", "create", "local", "--brokers", "127.0.0.1:9092"); err != nil || !strings.Contains(out, "(current)") {
		t.Fatalf("create the first profile: %q %v, want it current", out, err)
	}
	t.Setenv("PROD_PW", "hunter2-secret")
	if _, _, err = runCLI(nil, "profile", "create", "prod", "--brokers", "b1:9094,b2:9094", "--sasl-user", "app",
		"--sasl-password-env", "PROD_PW", "--tls-ca-file", "/etc/ca.pem"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("profiles file: %v, mode %v, want 0600", err, st.Mode())
	}
	raw, _ := os.ReadFile(path)
	out, _, err = runCLI(nil, "profile", "list", "--output", "json")
	if err != nil {
		t.Fatal(err)
	}
	for _, where := range []string{string(raw), out} {
		if strings.Contains(where, "hunter2") {
			t.Fatalf("the password is stored or printed: %s", where)
		}
	}
	var rows []profileRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 2 {
		t.Fatalf("list json: %s %v", out, err)
	}
	if prod := rows[1]; prod.Name != "prod" || prod.Current || !prod.TLS || prod.SASLMechanism != "SCRAM-SHA-512" || prod.SASLPasswordFrom != "$PROD_PW" || len(prod.Brokers) != 2 {
		t.Errorf("prod row: %+v", prod)
	}
	if !rows[0].Current {
		t.Errorf("local is not current: %+v", rows[0])
	}
	if _, _, err := runCLI(nil, "profile", "use", "prod"); err != nil {
		t.Fatal(err)
	}
	if out, _, _ := runCLI(nil, "profile", "list"); !strings.Contains(out, "*  prod") {
		t.Errorf("after use prod:\n%s", out)
	}
	if _, _, err := runCLI(nil, "profile", "delete", "prod"); err != nil {
		t.Fatal(err)
	}
	if out, _, _ := runCLI(nil, "profile", "list", "--output", "json"); strings.Contains(out, `"prod"`) || strings.Contains(out, `"current": true`) {
		t.Errorf("after delete: %s", out)
	}

	for _, args := range [][]string{
		{"profile", "create", "x"}, // no brokers
		{"profile", "create", "x", "--brokers", "h:1", "--sasl-user", "u"}, // no password source
		{"profile", "create", "x", "--brokers", "h:1", "--sasl-password-env", "V"},
		{"profile", "create", "x", "--brokers", "h:1", "--tls-cert-file", "c.pem"},
		{"profile", "create", "a b", "--brokers", "h:1"},
		{"profile", "use", "nosuch"},
		{"profile", "delete", "nosuch"},
		{"profile", "list", "--output", "yaml"},
		{"topic", "list", "--profile", "nosuch"},
	} {
		if _, _, err := runCLI(nil, args...); exitCode(err) != 2 {
			t.Errorf("oncelog %s: %v, want a usage error", strings.Join(args, " "), err)
		}
	}
}

// TestProfilePrecedence: flag > environment > profile > default, and the
// profile's password comes from the variable it names.
func TestProfilePrecedence(t *testing.T) {
	useProfileFile(t)
	t.Setenv("APP_PW", "s3cret")
	if _, _, err := runCLI(nil, "profile", "create", "p", "--brokers", "profile:9092", "--sasl-user", "app",
		"--sasl-password-env", "APP_PW", "--sasl-mechanism", "SCRAM-SHA-256"); err != nil {
		t.Fatal(err)
	}
	resolve := func(args ...string) *clientOptions {
		t.Helper()
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		o := &clientOptions{}
		o.addClientFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		if err := o.validate(); err != nil {
			t.Fatal(err)
		}
		return o
	}
	o := resolve()
	if strings.Join(o.brokers, ",") != "profile:9092" || o.sec.user != "app" || o.sec.password != "s3cret" || o.sec.mechanism != "SCRAM-SHA-256" {
		t.Errorf("from the profile: brokers %v, sasl %s %s (password set: %t)", o.brokers, o.sec.mechanism, o.sec.user, o.sec.password == "s3cret")
	}
	t.Setenv(brokersEnv, "env:9092")
	if o := resolve(); strings.Join(o.brokers, ",") != "env:9092" {
		t.Errorf("env beats the profile: %v", o.brokers)
	}
	if o := resolve("--brokers", "flag:9092", "--sasl-user", "other", "--sasl-password", "x"); strings.Join(o.brokers, ",") != "flag:9092" || o.sec.user != "other" || o.sec.password != "x" {
		t.Errorf("flags beat both: %v %s", o.brokers, o.sec.user)
	}
	os.Unsetenv("APP_PW")
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o = &clientOptions{}
	o.addClientFlags(fs)
	if err := o.validate(); exitCode(err) != 2 || !strings.Contains(err.Error(), "$APP_PW") {
		t.Errorf("missing password variable: %v, want a usage error naming it", err)
	}
}
