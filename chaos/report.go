package chaos

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// apiNames names the API keys that appear in the proxy counters.
var apiNames = map[int16]string{
	-1: "unknown", 0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata",
	8: "OffsetCommit", 9: "OffsetFetch", 10: "FindCoordinator", 11: "JoinGroup",
	12: "Heartbeat", 13: "LeaveGroup", 14: "SyncGroup", 18: "ApiVersions",
	19: "CreateTopics", 22: "InitProducerId", 24: "AddPartitionsToTxn",
	25: "AddOffsetsToTxn", 26: "EndTxn", 28: "TxnOffsetCommit",
}

func apiName(key int16) string {
	if name, ok := apiNames[key]; ok {
		return name
	}
	return fmt.Sprintf("api%d", key)
}

// String renders the report for people: the run, the faults, the
// workload's figures and every anomaly class with its count and examples.
func (r *Report) String() string {
	var b strings.Builder
	cfg := r.Config
	verdict := "PASS"
	if !r.OK() {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "oncelog chaos run: %s (seed %d, %v of faults, %v in all)\n", verdict, cfg.Seed, cfg.Duration, r.Elapsed.Round(time.Second))
	fmt.Fprintf(&b, "  workload: %d producers x %d records/s, %d transform members (%d of them capped to TV1; broker transaction.version %d), %d partitions, tear-tail %v, porcupine %v\n",
		cfg.Producers, cfg.ProducerRate, cfg.Transformers, cfg.TV1Members, cfg.transactionVersion(), cfg.Partitions, cfg.TearTail, cfg.Porcupine)

	fmt.Fprintf(&b, "faults: %d crashes (kill -9)\n", r.Crashes)
	for _, kind := range slices.Sorted(maps.Keys(r.Faults)) {
		fmt.Fprintf(&b, "  %-26s %d\n", kind, r.Faults[kind])
	}
	var tornBytes int64
	tornBatches := 0
	for _, t := range r.Torn {
		tornBytes += t.Bytes
		tornBatches += t.Batches
	}
	if len(r.Torn) > 0 {
		fmt.Fprintf(&b, "  torn tails: %d, %d batches, %d bytes, all beyond the high watermark\n", len(r.Torn), tornBatches, tornBytes)
	}
	fmt.Fprintf(&b, "  proxy: %d connections, %d cut-alls, dropped %s, cut after %s, delayed %s\n",
		r.Proxy.Connections, r.Proxy.CutAlls, apiCounts(r.Proxy.DroppedResponses), apiCounts(r.Proxy.CutsAfterRequest), apiCounts(r.Proxy.DelayedResponses))

	if f := r.Findings; f != nil {
		fmt.Fprintf(&b, "produce: %d sent, %d acked, %d failed, %d unanswered\n", f.Sent, f.Acked, f.Failed, f.Pending)
		for i, e := range r.ProduceErrors {
			if i == maxExamples {
				break
			}
			fmt.Fprintf(&b, "      e.g. %s\n", e)
		}
		fmt.Fprintf(&b, "transform: %d transactions committed, %d aborted, %d unknown; %d session restarts; caught up: %v\n",
			f.TxnsCommitted, f.TxnsAborted, f.TxnsUnknown, r.SessionRestarts, r.CaughtUp)
		fmt.Fprintf(&b, "producer epochs between consecutive committed transactions of a member: TV2 members %d bumped, %d kept; TV1 members %d bumped, %d kept\n",
			f.EpochBumps[1], f.EpochKept[1], f.EpochBumps[0], f.EpochKept[0])
		fmt.Fprintf(&b, "read back: %d input records, %d committed and %d aborted output records\n", f.InputRead, f.OutputCommitted, f.OutputAborted)
		linear := fmt.Sprintf("linearizability: %d appends in real-time order", f.LinearizabilityOps)
		if cfg.Porcupine {
			linear += ", porcupine"
			if f.PorcupineInconclusive > 0 {
				linear += fmt.Sprintf(" (inconclusive on %d partitions)", f.PorcupineInconclusive)
			}
		}
		fmt.Fprintln(&b, linear)
		fmt.Fprintf(&b, "anomalies: %d\n", f.Total())
		for _, a := range Anomalies {
			fmt.Fprintf(&b, "  %-22s %d\n", a, f.Counts[a])
			for _, ex := range f.Examples[a] {
				fmt.Fprintf(&b, "      e.g. %s\n", ex)
			}
		}
	}
	if r.ProducerResets > 0 {
		fmt.Fprintf(&b, "producer id resets (franz-go renumbered after OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID): %d\n", r.ProducerResets)
		for i, e := range r.ProducerResetExamples {
			if i == 2*maxExamples {
				break
			}
			fmt.Fprintf(&b, "      e.g. %s\n", e)
		}
	}
	if first, ok := r.firstReset(); ok {
		fmt.Fprintf(&b, "timeline up to the first producer id reset:\n")
		for _, e := range r.Timeline {
			if e.At >= first.At-20*time.Second && e.At <= first.At {
				fmt.Fprintf(&b, "  %v\n", e)
			}
		}
	}
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "problem: %s\n", p)
	}
	if r.BrokerLogTail != "" {
		fmt.Fprintf(&b, "broker output (tail):\n%s\n", r.BrokerLogTail)
	}
	return b.String()
}

func apiCounts(m map[int16]int64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, key := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", apiName(key), m[key]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// firstReset returns the timeline's first producer id reset.
func (r *Report) firstReset() (Event, bool) {
	for _, e := range r.Timeline {
		if strings.Contains(e.What, "failing the producer ID") || strings.Contains(e.What, "resetting sequence numbers") {
			return e, true
		}
	}
	return Event{}, false
}

// WriteTimeline writes every event of the run, one per line.
func (r *Report) WriteTimeline(w io.Writer) error {
	for _, e := range r.Timeline {
		if _, err := fmt.Fprintln(w, e); err != nil {
			return err
		}
	}
	return nil
}
