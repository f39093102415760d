// Package sdktest holds what the writer, reader and example tests share:
// topic setup, a read_committed count of a topic's values, the exactly-once
// check, building an example program, and a throwaway PostgreSQL server.
package sdktest

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// CreateTopic creates topic with replication factor 1 (or the cluster
// default when rf is -1).
func CreateTopic(brokers []string, topic string, partitions int32, rf int16, configs map[string]*string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, rf, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}

// ReadCommitted reads topic read_committed from its start to its end and
// counts each value. It first waits until no transaction is open on it
// (the last stable offset equals the high watermark): EndTxn is answered
// before the markers are written, so right after a commit the stable
// offset can still trail.
func ReadCommitted(t testing.TB, brokers []string, topic string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	var ends kadm.ListedOffsets
	for {
		lso, err := adm.ListCommittedOffsets(ctx, topic)
		if err == nil {
			err = lso.Error()
		}
		hwm, err2 := adm.ListEndOffsets(ctx, topic)
		if err2 == nil {
			err2 = hwm.Error()
		}
		if err == nil && err2 == nil {
			stable := true
			hwm.Each(func(o kadm.ListedOffset) {
				if l, ok := lso.Lookup(topic, o.Partition); !ok || l.Offset != o.Offset {
					stable = false
				}
			})
			if stable {
				ends = lso
				break
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: no stable end (a transaction stays open?): %v %v", topic, err, err2)
		case <-time.After(50 * time.Millisecond):
		}
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	counts := map[string]int{}
	if len(want) == 0 {
		return counts
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers take the last offsets of a transactional
		// partition; keeping them tells when its end is reached.
		kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %v (still waiting for %v)", topic, ctx.Err(), want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				counts[string(r.Value)]++
			}
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	return counts
}

// CheckExactlyOnce fails t unless counts holds exactly event-0..event-(n-1)
// once each.
func CheckExactlyOnce(t testing.TB, counts map[string]int, n int) {
	t.Helper()
	missing, dups, logged := 0, 0, 0
	for i := 0; i < n; i++ {
		v := fmt.Sprintf("event-%d", i)
		c := counts[v]
		if c != 1 && logged < 10 {
			t.Logf("%s: %d copies", v, c)
			logged++
		}
		switch {
		case c == 0:
			missing++
		case c > 1:
			dups += c - 1
		}
	}
	if missing > 0 || dups > 0 || len(counts) != n {
		t.Fatalf("topic holds %d distinct values for %d events: %d lost, %d duplicate copies", len(counts), n, missing, dups)
	}
}

// Build builds the main package pkg (an import path in this module) into a
// temporary directory and returns the binary's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	path := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", path, pkg)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(out)))
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, buf.String())
	}
	return path
}

// Proc is a started example program.
type Proc struct {
	Cmd    *exec.Cmd
	Output *bytes.Buffer
	done   chan struct{}
	err    error
}

// Start runs binary with args, output collected.
func Start(t testing.TB, binary string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Cmd: exec.Command(binary, args...), Output: &bytes.Buffer{}, done: make(chan struct{})}
	p.Cmd.Stdout, p.Cmd.Stderr = p.Output, p.Output
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", binary, err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.Cmd.Process.Kill()
		<-p.done
	})
	return p
}

// Kill sends SIGKILL and waits for the process to go; true if it was still
// running (it had not finished on its own).
func (p *Proc) Kill() bool {
	select {
	case <-p.done:
		return false
	default:
	}
	_ = p.Cmd.Process.Kill()
	<-p.done
	return true
}

// Wait waits up to d for the process to exit and returns its exit code
// (-1 if it had to be killed).
func (p *Proc) Wait(d time.Duration) int {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
	default:
		select {
		case <-p.done:
		case <-t.C:
			p.Kill()
			return -1
		}
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Sleep is for the random kill moments of crash tests (not a timing
// assertion): it returns early if the process ends.
func (p *Proc) Sleep(d time.Duration) {
	select {
	case <-p.done:
	case <-time.After(d):
	}
}
