package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/oncelog/oncelog/dedup"
)

// The key-index workload measures the key window's index (oncelog's dedup
// package) alone, in a process of its own so that its RSS is the index's and
// the Go runtime's, not the bench's peers': the bench re-executes itself
// with keyIndexChildEnv set, the child indexes the keys, and prints a
// keyIndexResult as JSON.
const keyIndexChildEnv = "ONCELOG_BENCH_KEYINDEX_CHILD"

// keyIndexBatch is the keys indexed per InsertBatch (one pebble commit): a
// produce batch of 1000 keyed records. The commits are not synced, as the
// broker's are not (dedup.Config.NoSyncInserts: the log is the durable copy
// and the index is rebuilt from it past its watermark at start).
const keyIndexBatch = 1000

// keyIndexLookups is how many lookups of present and of absent keys are
// timed after the inserts.
const keyIndexLookups = 20_000

type keyIndexResult struct {
	Keys            int64   `json:"keys"`
	InsertSeconds   float64 `json:"insert_seconds"`
	LookupHitMicros float64 `json:"lookup_hit_us"`
	// LookupMissMicros is a lookup of a key the window does not hold: the
	// produce path's common case (every new key).
	LookupMissMicros float64 `json:"lookup_miss_us"`
	// PeakRSSBytes is the child's VmHWM over the whole run; ReopenRSSBytes
	// its VmRSS after closing the index, opening it again (as a restarted
	// broker does) and running the lookups.
	PeakRSSBytes   uint64 `json:"peak_rss_bytes"`
	ReopenRSSBytes uint64 `json:"reopen_rss_bytes"`
	HeapBytes      uint64 `json:"go_heap_bytes"`
	DiskBytes      uint64 `json:"disk_bytes"`
	// FilterBytes is what the index's in-memory key filters take (off
	// the Go heap), after the reopen.
	FilterBytes uint64 `json:"filter_bytes"`
	// Progress samples the child's VmRSS and the disk after every tenth of
	// the inserts: whether memory grows with the key count.
	Progress []keyIndexSample `json:"progress"`
}

type keyIndexSample struct {
	Keys       int64   `json:"keys"`
	Seconds    float64 `json:"seconds"`
	RSSBytes   uint64  `json:"rss_bytes"`
	DiskBytes  uint64  `json:"disk_bytes"`
	HeapBytes  uint64  `json:"go_heap_bytes"`
	FilterSize int64   `json:"filter_bytes"`
}

// indexKey is the i-th key: 36 bytes, shaped like the UUIDs applications
// use as idempotency keys, spread over the key space.
func indexKey(i int64) []byte {
	h := uint64(i)*0x9e3779b97f4a7c15 ^ 0xd1b54a32d192ed03
	return fmt.Appendf(nil, "%08x-%04x-%04x-%04x-%012x", uint32(h>>32), uint16(h>>16), uint16(h), uint16(i>>48), uint64(i)&0xffffffffffff)
}

// runKeyIndexChild is the child's main: index n keys in dir.
func runKeyIndexChild(dir string, n int64) error {
	const topic = "bench-keys"
	window := 7 * 24 * time.Hour
	quiet := slog.New(slog.DiscardHandler)
	ix, err := dedup.Open(dedup.Config{Dir: dir, FS: vfs.Default, Logger: quiet, NoSyncInserts: true})
	if err != nil {
		return err
	}
	var res keyIndexResult
	res.Keys = n
	start := time.Now()
	ins := make([]dedup.Insert, 0, keyIndexBatch)
	var digest [32]byte
	tenth := max(n/10, 1)
	for i := int64(0); i < n; i++ {
		binary.BigEndian.PutUint64(digest[:], uint64(i))
		ins = append(ins, dedup.Insert{Key: indexKey(i), Entry: dedup.Entry{Partition: int32(i % 12), Offset: i / 12, Timestamp: start.UnixMilli(), Digest: digest}})
		if len(ins) == keyIndexBatch || i == n-1 {
			if err := ix.InsertBatch(topic, int32(i%12), ins, window, i/12+1); err != nil {
				return err
			}
			ins = ins[:0]
		}
		if (i+1)%tenth == 0 || i == n-1 {
			rss, err := procStatus("VmRSS")
			if err != nil {
				return err
			}
			st, disk := ix.Stats()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			res.Progress = append(res.Progress, keyIndexSample{Keys: i + 1, Seconds: time.Since(start).Seconds(), RSSBytes: rss, DiskBytes: disk, HeapBytes: ms.HeapInuse, FilterSize: st.FilterBytes})
		}
	}
	res.InsertSeconds = time.Since(start).Seconds()
	if err := ix.Close(); err != nil {
		return err
	}

	// Reopen, as a broker restarting with a full window does, then look up.
	if ix, err = dedup.Open(dedup.Config{Dir: dir, FS: vfs.Default, Logger: quiet, NoSyncInserts: true}); err != nil {
		return err
	}
	defer ix.Close()
	lookups := min(int64(keyIndexLookups), n)
	timeLookups := func(key func(j int64) []byte, want bool) (float64, error) {
		t := time.Now()
		for j := range lookups {
			if _, found, err := ix.Lookup(topic, key(j), window); err != nil || found != want {
				return 0, fmt.Errorf("lookup %d: found %v, want %v (%v)", j, found, want, err)
			}
		}
		return float64(time.Since(t).Microseconds()) / float64(max(lookups, 1)), nil
	}
	stride := max(n/max(lookups, 1), 1)
	if res.LookupHitMicros, err = timeLookups(func(j int64) []byte { return indexKey(j * stride % n) }, true); err != nil {
		return err
	}
	if res.LookupMissMicros, err = timeLookups(func(j int64) []byte { return indexKey(n + j) }, false); err != nil {
		return err
	}
	st, disk := ix.Stats()
	res.DiskBytes, res.FilterBytes = disk, uint64(st.FilterBytes)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.HeapBytes = ms.HeapInuse
	if res.PeakRSSBytes, err = procStatus("VmHWM"); err != nil {
		return err
	}
	if res.ReopenRSSBytes, err = procStatus("VmRSS"); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// procStatus reads a kB field of /proc/self/status, in bytes.
func procStatus(field string) (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		return kb << 10, err
	}
	return 0, fmt.Errorf("/proc/self/status has no %s", field)
}

// measureKeyIndex runs the child for n keys in a new directory under
// workDir, and removes the directory afterwards.
func measureKeyIndex(ctx context.Context, workDir string, n int64) (keyIndexResult, error) {
	dir, err := os.MkdirTemp(workDir, "keyindex-")
	if err != nil {
		return keyIndexResult{}, err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return keyIndexResult{}, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), keyIndexChildEnv+"="+filepath.Join(dir, "dedup")+","+strconv.FormatInt(n, 10))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return keyIndexResult{}, fmt.Errorf("key-index child: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var res keyIndexResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return keyIndexResult{}, fmt.Errorf("key-index child printed %q: %v", stdout.String(), err)
	}
	return res, nil
}

// keyIndexChildMain runs the child if this process is one; it reports
// whether it was (the caller then exits with the returned code).
func keyIndexChildMain() (bool, int) {
	spec, ok := os.LookupEnv(keyIndexChildEnv)
	if !ok {
		return false, 0
	}
	dir, count, _ := strings.Cut(spec, ",")
	n, err := strconv.ParseInt(count, 10, 64)
	if err == nil {
		err = runKeyIndexChild(dir, n)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "key-index child:", err)
		return true, 1
	}
	return true, 0
}

// keyIndexRSSGoal is the memory bound: 100M keys in the window in at
// most 512 MiB of RSS. The index keeps keys on disk (pebble, bounded block
// cache and memtable), so RSS should not grow with the key count; the check
// is made at the count measured and says so.
const keyIndexRSSGoal = 512 << 20

// keyIndex measures the key window's index alone: insert rate, memory, disk
// bytes per key and lookup latency for the profile's key count.
func (b *bench) keyIndex(ctx context.Context) {
	n := b.profile.KeyIndexKeys
	if n <= 0 {
		return
	}
	const section = "key window index (oncelog only)"
	what := humanCount(float64(n)) + " keys"
	b.logf("%s: indexing %s", section, what)
	res, err := measureKeyIndex(ctx, b.workDir, n)
	chk := &check{Name: fmt.Sprintf("key index peak RSS, %s (issue: 100M keys)", what), Goal: keyIndexRSSGoal >> 20, Unit: "MiB", AtMost: true}
	b.report.Checks = append(b.report.Checks, chk)
	if err != nil {
		rw := b.report.addRow(section, "index "+what, "keys/s", false)
		b.record(rw, "oncelog", nil, err)
		chk.Missed = true
		return
	}
	mib := func(v uint64) *cell {
		return &cell{Value: float64(v) / (1 << 20), Text: fmt.Sprintf("%.1f MiB", float64(v)/(1<<20))}
	}
	micros := func(v float64) *cell { return &cell{Value: v, Text: fmt.Sprintf("%.1f us", v)} }
	rate := float64(n) / res.InsertSeconds
	perKey := float64(res.DiskBytes) / float64(n)
	for _, r := range []struct {
		name, unit string
		lower      bool
		c          *cell
	}{
		{fmt.Sprintf("index %s (36-byte keys, %d per commit, unsynced as the broker's)", what, keyIndexBatch), "keys/s", false, &cell{Value: rate, Text: humanCount(rate) + " keys/s"}},
		{"peak RSS of a process indexing " + what, "MiB", true, mib(res.PeakRSSBytes)},
		{"RSS after reopening the index and looking keys up", "MiB", true, mib(res.ReopenRSSBytes)},
		{"Go heap after the lookups", "MiB", true, mib(res.HeapBytes)},
		{"key filters after the reopen (off the Go heap)", "MiB", true, mib(res.FilterBytes)},
		{"disk per key (pebble, before compaction settles)", "B/key", true, &cell{Value: perKey, Text: fmt.Sprintf("%.0f B/key", perKey)}},
		{"lookup of a key not in the window (every new key)", "us", true, micros(res.LookupMissMicros)},
		{"lookup of a key in the window (a replay)", "us", true, micros(res.LookupHitMicros)},
	} {
		rw := b.report.addRow(section, r.name, r.unit, r.lower)
		b.record(rw, "oncelog", r.c, nil)
	}
	if len(res.Progress) > 0 {
		var steps []string
		for _, p := range res.Progress {
			steps = append(steps, fmt.Sprintf("%s: %.0f MiB, %.0f B/key", humanCount(float64(p.Keys)), float64(p.RSSBytes)/(1<<20), float64(p.DiskBytes)/float64(p.Keys)))
		}
		last := res.Progress[len(res.Progress)-1]
		rw := b.report.addRow(section, "RSS and disk per key after each tenth of the inserts", "MiB", true)
		b.record(rw, "oncelog", &cell{Value: float64(last.RSSBytes) / (1 << 20), Text: strings.Join(steps, "; ")}, nil)
	}
	chk.Value = float64(res.PeakRSSBytes) / (1 << 20)
	chk.Pass = res.PeakRSSBytes <= keyIndexRSSGoal
}
