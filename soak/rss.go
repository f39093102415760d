package soak

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// rssSampler samples the broker's resident set size from /proc/<pid>/status:
// VmRSS now, and VmHWM, the kernel's own peak (so a spike between two
// samples is not missed).
type rssSampler struct {
	pid int

	mu   sync.Mutex
	cur  int64
	peak int64
	n    int
}

func (s *rssSampler) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *rssSampler) sample() {
	rss, hwm, err := readStatus(s.pid)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur, s.peak = rss, max(s.peak, hwm, rss)
	s.n++
}

func (s *rssSampler) current() (cur, peak int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur, s.peak
}

func (s *rssSampler) samples() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func readVmHWM(pid int) (int64, error) {
	_, hwm, err := readStatus(pid)
	return hwm, err
}

// readStatus reads VmRSS and VmHWM (in bytes) of a process.
func readStatus(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	found := 0
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		fields := strings.Fields(value) // "123456 kB"
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc/%d/status: unexpected %s line %q", pid, name, value)
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, 0, err
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS/VmHWM", pid)
	}
	return rss, hwm, sc.Err()
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
