package soak

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/oncelog/oncelog/chaos"
)

// Report is the outcome of a soak.
type Report struct {
	Config Config
	// Findings is chaos.Check's verdict on the normal producers' sends
	// and the final full read of their topic (nil if it was not read).
	Findings *chaos.Findings
	// GroupConsumed is how many distinct records the consumer group
	// polled; GroupMissed how many acknowledged records it never polled
	// (plus redeliveries without a rebalance); GroupRedelivered how many
	// polls repeated a record, GroupRevokes the rebalances that allow it.
	GroupConsumed, GroupMissed, GroupRedelivered, GroupRevokes int
	GroupExamples                                              []string
	GroupBad                                                   []string // records the group polled that no producer wrote
	// Latencies are the ack latencies of the acknowledged records, sorted.
	Latencies []time.Duration
	// ProduceErrors are the first errors normal producers got.
	ProduceErrors []string

	// Hostile is what each hostile kind did and how the broker answered.
	Hostile []KindResult
	// PoisonStored is the poison topic's high watermark (0 if no poison
	// batch was stored); PoisonChecked whether it was listed.
	PoisonStored  int64
	PoisonChecked bool
	// HugeTopicsCreated lists topics CreateTopics should have refused.
	HugeTopicsCreated []string

	// PeakRSS is the broker's peak resident set (VmHWM), in bytes.
	PeakRSS     int64
	RSSMeasured bool
	// BrokerAlive: the process never exited during the soak; Panicked:
	// its output has a panic or fatal error; CleanStop: SIGTERM at the
	// end stopped it with status 0.
	BrokerAlive, Panicked, CleanStop bool
	BrokerLogTail                    string

	// Problems kept the soak from observing everything.
	Problems []string
	Elapsed  time.Duration
}

// Check is one pass/fail line of the summary.
type Check struct {
	Name   string
	OK     bool
	Detail string
}

// Checks are the soak's verdicts, in report order.
func (r *Report) Checks() []Check {
	var cs []Check
	f := r.Findings
	if f == nil {
		cs = append(cs, Check{"acknowledged records read back exactly once, in order", false, "the final read did not happen"})
	} else {
		var bad []string
		for _, a := range chaos.Anomalies {
			if n := f.Counts[a]; n > 0 {
				bad = append(bad, fmt.Sprintf("%s %d (e.g. %s)", a, n, f.Examples[a][0]))
			}
		}
		detail := fmt.Sprintf("%d acked of %d sent (%d failed, %d pending), %d read", f.Acked, f.Sent, f.Failed, f.Pending, f.InputRead)
		if len(bad) > 0 {
			detail += ": " + strings.Join(bad, "; ")
		}
		cs = append(cs, Check{"acknowledged records read back exactly once, in order", f.OK() && f.Acked > 0, detail})
	}
	groupDetail := fmt.Sprintf("%d distinct records polled, %d acked never polled, %d redelivered after %d rebalances", r.GroupConsumed, r.GroupMissed, r.GroupRedelivered, r.GroupRevokes)
	if len(r.GroupExamples) > 0 {
		groupDetail += " (e.g. " + r.GroupExamples[0] + ")"
	}
	cs = append(cs, Check{"consumer group polled every acknowledged record", r.Findings != nil && r.GroupMissed == 0 && len(r.GroupBad) == 0, groupDetail})
	cs = append(cs, Check{"broker alive the whole run, no panic, clean stop", r.BrokerAlive && !r.Panicked && r.CleanStop,
		fmt.Sprintf("alive %v, panic in output %v, clean SIGTERM stop %v", r.BrokerAlive, r.Panicked, r.CleanStop)})
	cs = append(cs, Check{"peak RSS under the bound", r.RSSMeasured && r.PeakRSS <= r.Config.MaxRSSBytes,
		fmt.Sprintf("peak %s (VmHWM), bound %s", mib(r.PeakRSS), mib(r.Config.MaxRSSBytes))})
	attempts, unexpected, failing := 0, 0, []string{}
	for _, k := range r.Hostile {
		attempts += k.Attempts
		unexpected += k.Unexpected
		if !k.OK() {
			failing = append(failing, k.Kind)
		}
	}
	hostileDetail := fmt.Sprintf("%d outcomes over %d kinds, %d unexpected", attempts, len(r.Hostile), unexpected)
	if len(failing) > 0 {
		hostileDetail += "; failing: " + strings.Join(failing, ", ")
	}
	cs = append(cs, Check{"hostile clients answered as expected or closed", len(r.Hostile) > 0 && len(failing) == 0, hostileDetail})
	cs = append(cs, Check{"no poison batch stored, no huge topic created", r.PoisonChecked && r.PoisonStored == 0 && len(r.HugeTopicsCreated) == 0,
		fmt.Sprintf("%s high watermark %d; huge topics created: %v", poisonTopic, r.PoisonStored, r.HugeTopicsCreated)})
	cs = append(cs, Check{"soak observed everything", len(r.Problems) == 0, strings.Join(r.Problems, "; ")})
	return cs
}

// OK reports whether every check passed.
func (r *Report) OK() bool {
	for _, c := range r.Checks() {
		if !c.OK {
			return false
		}
	}
	return true
}

// P99 is the 99th percentile produce (ack) latency of the normal traffic.
func (r *Report) P99() time.Duration { return percentile(r.Latencies, 0.99) }

func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\noncelog soak: %v of traffic, %v in all\n\n", r.Config.Duration, r.Elapsed.Truncate(time.Second))
	fmt.Fprintf(&b, "normal traffic: %d producers x %d records/s; produce latency p50 %v, p99 %v, max %v (%d acknowledged)\n",
		r.Config.Producers, r.Config.ProducerRate,
		percentile(r.Latencies, 0.5).Round(100*time.Microsecond), r.P99().Round(100*time.Microsecond),
		percentile(r.Latencies, 1).Round(time.Millisecond), len(r.Latencies))
	fmt.Fprintf(&b, "broker peak RSS: %s (bound %s)\n\n", mib(r.PeakRSS), mib(r.Config.MaxRSSBytes))

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOSTILE KIND\tOUTCOMES\tUNEXPECTED\tLARGEST ANSWER\tBY ANSWER")
	for _, k := range r.Hostile {
		var parts []string
		for _, l := range slices.Sorted(maps.Keys(k.Labels)) {
			parts = append(parts, fmt.Sprintf("%s %d", l, k.Labels[l]))
		}
		mark := ""
		if !k.OK() {
			mark = "  <- FAIL"
		}
		largest := "-"
		if k.MaxAnswer > 0 {
			largest = fmt.Sprintf("%.1f MiB", float64(k.MaxAnswer)/(1<<20))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s%s\n", k.Kind, k.Attempts, k.Unexpected, largest, strings.Join(parts, ", "), mark)
	}
	tw.Flush()
	for _, k := range r.Hostile {
		for _, e := range k.Examples {
			fmt.Fprintf(&b, "  %s: %s\n", k.Kind, e)
		}
		if k.NeedsAnswer && k.Answered == 0 && k.Attempts > 0 {
			fmt.Fprintf(&b, "  %s: never answered (only closed connections); expected: %s\n", k.Kind, k.Expect)
		}
	}

	fmt.Fprintln(&b)
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tDETAIL")
	for _, c := range r.Checks() {
		res := "ok"
		if !c.OK {
			res = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, res, c.Detail)
	}
	tw.Flush()
	for _, e := range r.ProduceErrors {
		fmt.Fprintf(&b, "produce error: %s\n", e)
	}
	if r.BrokerLogTail != "" {
		fmt.Fprintf(&b, "\nbroker output (tail):\n%s\n", r.BrokerLogTail)
	}
	if r.OK() {
		fmt.Fprintln(&b, "\nPASS")
	} else {
		fmt.Fprintln(&b, "\nFAIL")
	}
	return b.String()
}

// Expectations lists each hostile kind with what the broker must answer.
func (r *Report) Expectations() []string {
	var out []string
	for _, k := range r.Hostile {
		out = append(out, k.Kind+": "+k.Expect)
	}
	return out
}
