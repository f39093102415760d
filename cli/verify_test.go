package cli

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// verifyBrokers are the brokers the verify tests run against: oncelog and
// franz-go's in-memory kfake, since verify must work on any Kafka-compatible
// broker.
func verifyBrokers(t *testing.T) map[string]string {
	t.Helper()
	fake, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(fake.Close)
	return map[string]string{
		"oncelog": testBrokers(t),
		"kfake":   strings.Join(fake.ListenAddrs(), ","),
	}
}

func verifyCLI(t *testing.T, brokers string, args ...string) (verifyReport, int) {
	t.Helper()
	stdout, stderr, err := runCLI(nil, append([]string{"verify"}, append(args, "--brokers", brokers, "--timeout", "20s", "--output", "json")...)...)
	code := 0
	if err != nil {
		var ee *exitError
		if !errors.As(err, &ee) {
			t.Fatalf("verify %v: %v\nstderr: %s", args, err, stderr)
		}
		code = ee.code
	}
	if code == 2 {
		return verifyReport{}, code
	}
	return decodeJSON[verifyReport](t, stdout), code
}

func verifyProduce(t *testing.T, brokers string, extra []kgo.Opt, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.RecordPartitioner(kgo.ManualPartitioner())}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func TestVerifyFindsPlantedDuplicates(t *testing.T) {
	for name, brokers := range verifyBrokers(t) {
		t.Run(name, func(t *testing.T) {
			topic := uniqueName(t, "verify")
			cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 1, nil, topic); err != nil {
				t.Fatalf("create: %v", err)
			}

			// One idempotent producer writes 60 distinct keys over three
			// partitions, in several batches.
			var recs []*kgo.Record
			for i := range 60 {
				recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % 3), Key: fmt.Appendf(nil, "k%02d", i), Value: []byte("v"),
					Headers: []kgo.RecordHeader{{Key: "Idempotency-Key", Value: fmt.Appendf(nil, "id-%02d", i)}}})
			}
			verifyProduce(t, brokers, nil, recs[:30]...)
			verifyProduce(t, brokers, nil, recs[30:]...)

			// An aborted transaction holding copies of existing keys is
			// invisible to read_committed and must not count.
			txCl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.TransactionalID(topic+"-tx"),
				kgo.RecordPartitioner(kgo.ManualPartitioner()))
			if err != nil {
				t.Fatal(err)
			}
			if err := txCl.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			if err := txCl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 1, Key: []byte("k05"), Value: []byte("aborted")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			if err := txCl.EndTransaction(ctx, kgo.TryAbort); err != nil {
				t.Fatal(err)
			}
			txCl.Close()

			for _, key := range []string{"record-key", "header:Idempotency-Key", "value"} {
				r, code := verifyCLI(t, brokers, topic, "--key", key)
				wantCode, wantDistinct, wantDups := 0, int64(60), int64(0)
				if key == "value" { // every value is "v"
					wantCode, wantDistinct, wantDups = 1, 1, 59
				}
				if code != wantCode || r.Records != 60 || r.DistinctKeys != wantDistinct || r.DuplicateCopies != wantDups || r.Unkeyed != 0 {
					t.Fatalf("--key %s on a clean topic: exit %d, %+v", key, code, r)
				}
				if r.SequenceGaps != 0 || r.SequenceRepeats != 0 {
					t.Fatalf("--key %s: sequence anomalies on a clean topic: %+v", key, r.Producers)
				}
			}

			// Plant duplicates: a second producer (a new producer id, as
			// after an application restart) sends k07 again to another
			// partition and k10 twice more.
			verifyProduce(t, brokers, nil,
				&kgo.Record{Topic: topic, Partition: 2, Key: []byte("k07"), Value: []byte("v")},
				&kgo.Record{Topic: topic, Partition: 1, Key: []byte("k10"), Value: []byte("v")},
				&kgo.Record{Topic: topic, Partition: 1, Key: []byte("k10"), Value: []byte("v")},
			)
			r, code := verifyCLI(t, brokers, topic)
			if code != 1 || r.OK || r.Records != 63 || r.DistinctKeys != 60 || r.DuplicateCopies != 3 || r.DuplicatedKeys != 2 || len(r.Duplicates) != 2 {
				t.Fatalf("planted duplicates: exit %d, %+v", code, r)
			}
			// k07 was first at partition 1 (7 % 3), k10 at partition 1 too.
			if d := r.Duplicates[0]; d.Key != "k07" || d.Copies != 2 || len(d.Locations) != 2 || d.Locations[0].Partition != 1 || d.Locations[1].Partition != 2 {
				t.Fatalf("k07: %+v", d)
			}
			if d := r.Duplicates[1]; d.Key != "k10" || d.Copies != 3 || len(d.Locations) != 3 {
				t.Fatalf("k10: %+v", d)
			}
			// Distinct producer ids: the first producer's two clients, the
			// planting one, and the transactional one.
			if len(r.Producers) < 3 || r.SequenceRepeats != 0 || r.SequenceGaps != 0 {
				t.Fatalf("producers: %+v", r.Producers)
			}
			// The header key still sees no duplicate: the planted
			// records carry no Idempotency-Key.
			if r, code := verifyCLI(t, brokers, topic, "--key", "header:Idempotency-Key"); code != 0 || r.Unkeyed != 3 || r.DistinctKeys != 60 {
				t.Fatalf("header key after planting: exit %d, %+v", code, r)
			}

			// The text report names the duplicated keys and their copies.
			out, _, err := runCLI(nil, "verify", topic, "--brokers", brokers, "--timeout", "20s")
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(out, "DUPLICATES FOUND") || !strings.Contains(out, `key "k10": 3 copies`) {
				t.Fatalf("text report: %v\n%s", err, out)
			}
		})
	}
}

func TestVerifyUsageAndConnectionErrorsExitTwo(t *testing.T) {
	t.Setenv(brokersEnv, "")
	brokers := verifyBrokers(t)["kfake"]
	for _, args := range [][]string{
		{"verify"},
		{"verify", "t", "--key", "header:"},
		{"verify", "t", "--key", "offset", "--brokers", brokers},
		{"verify", "no-such-topic", "--brokers", brokers},
		{"verify", "t", "--brokers", "127.0.0.1:1", "--timeout", "2s"},
	} {
		_, _, err := runCLI(nil, args...)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 2 {
			t.Errorf("oncelog %s: want exit 2, got %v", strings.Join(args, " "), err)
		}
	}
}

// batchBytes encodes a v2 record batch header as a fetch response carries it.
func batchBytes(base int64, producer int64, epoch int16, firstSeq, n int32, attrs int16) []byte {
	b := kmsg.RecordBatch{FirstOffset: base, Magic: 2, Attributes: attrs, LastOffsetDelta: n - 1, ProducerID: producer,
		ProducerEpoch: epoch, FirstSequence: firstSeq, NumRecords: n}
	out := b.AppendTo(nil)
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-12))
	return out
}

func TestVerifyAuditsSequences(t *testing.T) {
	v := &verifier{o: &verifyOptions{}, seqs: map[seqKey]seqState{}, producers: map[int64]*verifyProducer{}}
	var in []byte
	for _, b := range [][]byte{
		batchBytes(0, 7, 0, 5, 3, 0),   // first seen: anywhere (retention)
		batchBytes(3, 7, 0, 8, 2, 0),   // in order
		batchBytes(5, 7, 0, 8, 2, 0),   // repeat: 8-9 again
		batchBytes(7, 7, 0, 13, 1, 0),  // gap: 10-12 missing
		batchBytes(8, 7, 1, 0, 4, 0),   // new epoch starts at 0
		batchBytes(12, 7, 1, 0, 1, 32), // a control batch: ignored
		batchBytes(13, 8, 0, 0, 1, 0),  // another producer
		batchBytes(14, -1, -1, -1, 1, 0),
	} {
		in = append(in, b...)
	}
	in = append(in, batchBytes(15, 7, 1, 4, 1, 0)[:30]...) // a truncated batch ends the fetch
	v.auditBatches(0, in, 0, 100)
	if got := nextOffset(in, 0); got != 15 {
		t.Fatalf("next offset %d, want 15", got)
	}
	p7, p8 := v.producers[7], v.producers[8]
	if p7 == nil || p8 == nil || len(v.producers) != 2 {
		t.Fatalf("producers: %+v", v.producers)
	}
	if p7.Batches != 5 || p7.Records != 12 || p7.Repeats != 1 || p7.Gaps != 1 || len(p7.Anomalies) != 2 {
		t.Fatalf("producer 7: %+v", p7)
	}
	if a := p7.Anomalies[0]; a.Kind != "repeat" || a.Offset != 5 || a.Expected != 10 || a.Got != 8 {
		t.Fatalf("repeat: %+v", a)
	}
	if a := p7.Anomalies[1]; a.Kind != "gap" || a.Offset != 7 || a.Expected != 10 || a.Got != 13 {
		t.Fatalf("gap: %+v", a)
	}
	if p8.Gaps+p8.Repeats != 0 {
		t.Fatalf("producer 8: %+v", p8)
	}
	// Batches before the fetch offset (a fetch answers from a batch's
	// start) are not audited twice.
	v.auditBatches(0, batchBytes(12, 8, 0, 1, 1, 0), 13, 100)
	if p8.Batches != 1 {
		t.Fatalf("re-audited a batch below the fetch offset: %+v", p8)
	}
	if addSeq(2147483647, 1) != 0 || !seqBefore(5, 5) || seqBefore(6, 5) || !seqBefore(2147483640, 3) {
		t.Fatal("sequence arithmetic does not wrap")
	}
}
