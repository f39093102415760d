package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// machine describes where the benchmark ran.
type machine struct {
	NumCPU   int    `json:"nproc"`
	CPUModel string `json:"cpu_model"`
	Memory   string `json:"memory"`
	Disk     string `json:"disk"`
	// DiskSyncWrite is sequential write speed with every 1 MiB write synced
	// (O_DSYNC) in the data directory, measured when the run starts.
	DiskSyncWrite string `json:"disk_sync_write"`
	Kernel        string `json:"kernel"`
	// LoadAverage is /proc/loadavg's 1, 5 and 15 minute figures when the run
	// started: other work on the machine skews every figure.
	LoadAverage string `json:"load_average"`
	GoVersion   string `json:"go_version"`
}

// describeMachine reads /proc; fields it cannot read are left "unknown".
// dir is where the brokers keep their data, whose disk is described.
func describeMachine(dir string) machine {
	return machine{
		NumCPU:        runtime.NumCPU(),
		CPUModel:      procField("/proc/cpuinfo", "model name"),
		Memory:        memTotal(),
		Disk:          describeDisk(dir),
		DiskSyncWrite: measureSyncWrite(dir),
		Kernel:        "Linux " + firstLine("/proc/sys/kernel/osrelease"),
		LoadAverage:   loadAverage(),
		GoVersion:     runtime.Version(),
	}
}

func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func firstLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line)
}

func loadAverage() string {
	f := strings.Fields(firstLine("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func memTotal() string {
	fields := strings.Fields(procField("/proc/meminfo", "MemTotal"))
	if len(fields) == 0 {
		return "unknown"
	}
	kb, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
}

// describeDisk names the device and filesystem that dir is on (the longest
// mount point in /proc/mounts that is a prefix of dir) and its size.
func describeDisk(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "unknown"
	}
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return "unknown"
	}
	var device, fsType, mount string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		if within(abs, f[1]) && len(f[1]) > len(mount) {
			device, mount, fsType = f[0], f[1], f[2]
		}
	}
	if mount == "" {
		return "unknown"
	}
	desc := fmt.Sprintf("%s (%s on %s)", device, fsType, mount)
	var st syscall.Statfs_t
	if syscall.Statfs(abs, &st) == nil {
		desc += fmt.Sprintf(", %.0f GB", float64(st.Blocks)*float64(st.Bsize)/1e9)
	}
	if rot := firstLine("/sys/block/" + filepath.Base(device) + "/queue/rotational"); rot == "0" {
		desc += ", non-rotational"
	}
	return desc
}

// measureSyncWrite writes 256 MiB in 1 MiB O_DSYNC writes to a file in dir
// (like dd oflag=dsync) and returns the speed, the ceiling for any broker that
// fsyncs before acknowledging.
func measureSyncWrite(dir string) string {
	const chunk, total = 1 << 20, 256 << 20
	path := filepath.Join(dir, "sync-write-probe")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|syscall.O_DSYNC, 0o644)
	if err != nil {
		return "unknown"
	}
	defer os.Remove(path)
	defer f.Close()
	buf := make([]byte, chunk)
	start := time.Now()
	for written := 0; written < total; written += chunk {
		if _, err := f.Write(buf); err != nil {
			return "unknown"
		}
	}
	return fmt.Sprintf("%.0f MB/s", total/1e6/time.Since(start).Seconds())
}

func within(path, mount string) bool {
	return mount == "/" || path == mount || strings.HasPrefix(path, strings.TrimSuffix(mount, "/")+"/")
}
