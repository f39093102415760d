package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// throughput is what a produce or consume run moved, and how long it took.
type throughput struct {
	Records int64
	Bytes   int64 // record value bytes, the payload the application sees
	Elapsed time.Duration
	// BrokerCPU is the broker's CPU time during the run, when the broker is a
	// separate process (oncelog); zero otherwise. ClientCPU is the bench
	// process's: the clients', plus kfake's or NATS's when they are the broker.
	BrokerCPU, ClientCPU time.Duration
	// Batches and Requests are the record batches and Produce requests the
	// clients wrote during the run (kgo targets' produce runs; zero
	// elsewhere).
	Batches, Requests int64
}

// BrokerCores is the broker's average CPU use during the run, in cores.
func (t throughput) BrokerCores() float64 { return cores(t.BrokerCPU, t.Elapsed) }

// ClientCores is the bench process's average CPU use during the run.
func (t throughput) ClientCores() float64 { return cores(t.ClientCPU, t.Elapsed) }

func cores(cpu, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return cpu.Seconds() / elapsed.Seconds()
}

// cpuMeter measures the CPU time the bench process and (when pid is not 0)
// a broker subprocess use between its creation and done.
type cpuMeter struct {
	pid                int
	broker0, ownStart0 time.Duration
}

func startCPUMeter(brokerPid int) cpuMeter {
	m := cpuMeter{pid: brokerPid}
	m.ownStart0, _ = processCPU(os.Getpid())
	if brokerPid != 0 {
		m.broker0, _ = processCPU(brokerPid)
	}
	return m
}

// done stores the CPU used since the meter started into t.
func (m cpuMeter) done(t *throughput) {
	if own, err := processCPU(os.Getpid()); err == nil {
		t.ClientCPU = own - m.ownStart0
	}
	if m.pid != 0 {
		if broker, err := processCPU(m.pid); err == nil {
			t.BrokerCPU = broker - m.broker0
		}
	}
}

func (t throughput) RecordsPerSec() float64 {
	if t.Elapsed <= 0 {
		return 0
	}
	return float64(t.Records) / t.Elapsed.Seconds()
}

// MBPerSec is payload megabytes (10^6 bytes) per second.
func (t throughput) MBPerSec() float64 {
	if t.Elapsed <= 0 {
		return 0
	}
	return float64(t.Bytes) / 1e6 / t.Elapsed.Seconds()
}

// latencies summarises end-to-end latency samples.
type latencies struct {
	P50, P99, P999 time.Duration
	Samples        int
	Rate           float64 // records/s the producer was paced at
	// Sent is the rate the records were actually handed to the client
	// (below Rate when the producer's buffer was full); AckP99 the p99 of
	// Produce-to-acknowledgement, the producer's half of the end-to-end
	// latency (Kafka targets only; zero when not measured).
	Sent   float64
	AckP99 time.Duration
}

func summariseLatencies(samples []time.Duration, rate float64) latencies {
	if len(samples) == 0 {
		return latencies{Rate: rate}
	}
	slices.Sort(samples)
	at := func(q float64) time.Duration {
		i := int(q * float64(len(samples)))
		return samples[min(i, len(samples)-1)]
	}
	return latencies{P50: at(0.50), P99: at(0.99), P999: at(0.999), Samples: len(samples), Rate: rate}
}

// latencyRecorder collects produce-to-receive latencies of records whose value
// starts with the producer's send time in Unix nanoseconds (see stampValue).
// Records sent before measureFrom (the warm-up) are counted but not sampled.
type latencyRecorder struct {
	mu          sync.Mutex
	measureFrom int64
	received    int64
	samples     []time.Duration
	arrived     chan struct{} // signalled (non-blocking) on every receive
}

func newLatencyRecorder(expected int) *latencyRecorder {
	return &latencyRecorder{samples: make([]time.Duration, 0, expected), arrived: make(chan struct{}, 1)}
}

func (l *latencyRecorder) startMeasuring(at time.Time) {
	l.mu.Lock()
	l.measureFrom = at.UnixNano()
	l.mu.Unlock()
}

func (l *latencyRecorder) observe(value []byte, now time.Time) {
	if len(value) < 8 {
		return
	}
	sent := int64(binary.BigEndian.Uint64(value))
	l.mu.Lock()
	l.received++
	if l.measureFrom != 0 && sent >= l.measureFrom {
		l.samples = append(l.samples, time.Duration(now.UnixNano()-sent))
	}
	l.mu.Unlock()
	select {
	case l.arrived <- struct{}{}:
	default:
	}
}

func (l *latencyRecorder) receivedCount() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.received
}

// waitFor waits until n records have been received or timeout passes.
func (l *latencyRecorder) waitFor(n int64, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for l.receivedCount() < n {
		select {
		case <-l.arrived:
		case <-deadline.C:
			return l.receivedCount() >= n
		}
	}
	return true
}

func (l *latencyRecorder) result(rate float64) latencies {
	l.mu.Lock()
	defer l.mu.Unlock()
	return summariseLatencies(l.samples, rate)
}

// stampValue returns a copy of payload whose first 8 bytes are now in Unix
// nanoseconds, for latencyRecorder.
func stampValue(payload []byte, now time.Time) []byte {
	v := slices.Clone(payload)
	binary.BigEndian.PutUint64(v, uint64(now.UnixNano()))
	return v
}

// settle prepares the machine for the next measured run: sync flushes the
// dirty pages earlier runs left behind (NATS does not fsync by default, and
// their writeback would otherwise compete with the next run's fsyncs), and a
// GC clears the bench process's garbage from earlier runs (kfake and NATS run
// in this process).
func settle() {
	syscall.Sync()
	runtime.GC()
}

// processCPU returns the CPU time (user + system) a process has used so far,
// from /proc/pid/stat.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may contain spaces:
	// count fields from the closing one. utime and stime are fields 14 and 15.
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(b[end+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	// Linux reports these in USER_HZ, which is 100 on every architecture Go
	// supports.
	const userHZ = 100
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// payload returns size pseudo-random (incompressible) bytes, the same for a
// given size in every run.
func payload(size int) []byte {
	rng := rand.New(rand.NewPCG(uint64(size), 0x0ce1))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// pace calls send(i) for i = 0, 1, ... at rate calls per second until d has
// passed or stop returns true, catching up in bursts after each short sleep.
// It returns the number of calls made.
func pace(rate float64, d time.Duration, stop func() bool, send func(i int)) int {
	start := time.Now()
	sent := 0
	for {
		elapsed := time.Since(start)
		if elapsed >= d || stop() {
			return sent
		}
		due := int(rate * elapsed.Seconds())
		for ; sent < due; sent++ {
			send(sent)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// share splits total into n near-equal parts and returns part i.
func share(total, n, i int) int {
	part := total / n
	if i < total%n {
		part++
	}
	return part
}

// firstError keeps the first error reported from concurrent goroutines.
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) set(err error) {
	if err == nil {
		return
	}
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}
