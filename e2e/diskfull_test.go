package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kgo"
)

// mountTmpfs mounts a small tmpfs for a real full disk, or skips the test
// where that is not possible (not Linux, not root, no mount permission).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("needs root on Linux to mount a small tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes a file until the filesystem is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(err)
	}
	if f == nil {
		return
	}
	defer f.Close()
	for _, chunk := range []int{1 << 20, 4096, 1} {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
}

func readyz(addr string) (int, string) {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A real full disk under a running broker: produce gets errors (and no
// crash), /readyz says which partition is offline, freeing space brings it
// back without a restart, and every acknowledged record is there once.
// Then a restart on a disk that is still full exits with a clear error
// instead of hanging unready.
func TestFullDiskRealFilesystem(t *testing.T) {
	mnt := mountTmpfs(t, "48m")
	data := filepath.Join(mnt, "data")
	b := testbroker.Start(t, testbroker.Options{DataDir: data})
	createTopic(t, b.Addr(), "full", 1, nil)

	acked := map[string]bool{}
	n := 0
	produce := func(cl *kgo.Client) error {
		n++
		v := fmt.Sprintf("record-%06d-%s", n, strings.Repeat("x", 1000))
		err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "full", Value: []byte(v)}).FirstErr()
		if err == nil {
			acked[v] = true
		}
		return err
	}
	cl := newClient(t, b.Addr(), kgo.RecordDeliveryTimeout(3*time.Second))
	for range 200 {
		if err := produce(cl); err != nil {
			t.Fatalf("produce before the disk is full: %v", err)
		}
	}

	filler := filepath.Join(mnt, "filler")
	fill(t, filler)
	failed := 0
	for i := 0; i < 20 && failed < 2; i++ {
		if err := produce(cl); err != nil {
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("no produce failed on a full disk")
	}
	if code, body := readyz(b.AdminAddr()); code != http.StatusServiceUnavailable || !strings.Contains(body, "full-0") {
		t.Fatalf("/readyz on a full disk: %d %q, want 503 naming full-0", code, body)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if code, _ := readyz(b.AdminAddr()); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			code, body := readyz(b.AdminAddr())
			t.Fatalf("not ready 60 s after space was freed: %d %q", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for range 50 {
		if err := produce(cl); err != nil {
			t.Fatalf("produce after space was freed: %v", err)
		}
	}
	seen := map[string]int{}
	for _, r := range consumeAll(t, b.Addr(), "full", len(acked)) {
		seen[string(r.Value)]++
	}
	for v := range acked {
		if seen[v] != 1 {
			t.Fatalf("acknowledged record %.13s read %d times", v, seen[v])
		}
	}
	t.Logf("%d records acknowledged, %d produce calls failed on the full disk", len(acked), failed)

	// kill -9 and restart on a full disk.
	b.Kill()
	fill(t, filler)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, testbroker.BinaryPath(t), "serve", "--listen", "127.0.0.1:0", "--advertise", "127.0.0.1:9092", "--admin-listen", "", "--http-listen", "", "--data-dir", data)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("restart on a full disk neither came up nor exited within 60 s:\n%s", out.String())
	}
	if err == nil || !strings.Contains(out.String(), "no space left") {
		t.Fatalf("restart on a full disk: %v, want a non-zero exit naming the full disk:\n%s", err, out.String())
	}
	t.Logf("restart on a full disk: %v: %s", err, lastLine(out.String()))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
