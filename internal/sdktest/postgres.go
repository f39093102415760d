package sdktest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
)

// Postgres starts a PostgreSQL server (Debian's postgresql package: initdb
// and pg_ctl on PATH or in /usr/lib/postgresql/*/bin) in a temporary
// directory on a free loopback port, and returns a connection string for
// its "postgres" database. The test is skipped when PostgreSQL is not
// installed, unless CI is set (CI installs it). As root, the server runs as
// the postgres user (PostgreSQL refuses to run as root).
func Postgres(t testing.TB) string {
	t.Helper()
	initdb := findPG("initdb")
	pgctl := findPG("pg_ctl")
	if initdb == "" || pgctl == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("PostgreSQL (initdb, pg_ctl) not found; .ci/run installs the postgresql package")
		}
		t.Skip("PostgreSQL not installed (apt-get install postgresql)")
	}
	base, err := os.MkdirTemp("", "oncelog-sdk-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	var runAs []string
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("running as root and no postgres user to run PostgreSQL as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(base, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(base, uid, gid); err != nil {
			t.Fatal(err)
		}
		runAs = []string{"runuser", "-u", "postgres", "--"}
	}
	run := func(args ...string) {
		t.Helper()
		full := append(append([]string{}, runAs...), args...)
		cmd := exec.Command(full[0], full[1:]...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out.String())
		}
	}
	data := filepath.Join(base, "data")
	run(initdb, "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c max_connections=50", port, base)
	run(pgctl, "-D", data, "-l", filepath.Join(base, "log"), "-o", opts, "-w", "-t", "60", "start")
	t.Cleanup(func() {
		full := append(append([]string{}, runAs...), pgctl, "-D", data, "-m", "immediate", "-w", "stop")
		_ = exec.Command(full[0], full[1:]...).Run()
	})
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}

func findPG(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(matches) > 0 {
		return matches[len(matches)-1]
	}
	return ""
}
