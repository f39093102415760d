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
)

// machine describes where the benchmark ran.
type machine struct {
	NumCPU    int    `json:"nproc"`
	CPUModel  string `json:"cpu_model"`
	Memory    string `json:"memory"`
	Disk      string `json:"disk"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
}

// describeMachine reads /proc; fields it cannot read are left "unknown".
// dir is where the brokers keep their data, whose disk is described.
func describeMachine(dir string) machine {
	return machine{
		NumCPU:    runtime.NumCPU(),
		CPUModel:  procField("/proc/cpuinfo", "model name"),
		Memory:    memTotal(),
		Disk:      describeDisk(dir),
		Kernel:    "Linux " + firstLine("/proc/sys/kernel/osrelease"),
		GoVersion: runtime.Version(),
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

func within(path, mount string) bool {
	return mount == "/" || path == mount || strings.HasPrefix(path, strings.TrimSuffix(mount, "/")+"/")
}
