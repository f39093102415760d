package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
)

const roundTripRecords = 100_000

// TestFranzGoRoundTrip produces 100k records with keys, headers and
// timestamps to 4 partitions, with every compression codec, and reads them
// back byte for byte with their offsets.
func TestFranzGoRoundTrip(t *testing.T) {
	b := startBroker(t)
	codecs := []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
	for i, codec := range codecs {
		topic := fmt.Sprintf("kgo-%d", i)
		createTopic(t, b.Addr(), topic, 4, nil)
		n := roundTripRecords / len(codecs)
		cl := newClient(t, b.Addr(), kgo.ProducerBatchCompression(codec), kgo.RequiredAcks(kgo.AllISRAcks()))
		base := time.UnixMilli(1_700_000_000_000)
		type sent struct {
			key, value string
			ts         time.Time
			partition  int32
			offset     int64
		}
		sents := make([]sent, n)
		var wg sync.WaitGroup
		var firstErr error
		var mu sync.Mutex
		for j := 0; j < n; j++ {
			r := &kgo.Record{
				Topic:     topic,
				Key:       []byte("key-" + strconv.Itoa(j%97)),
				Value:     []byte(fmt.Sprintf("value-%d-%s", j, strings.Repeat("x", j%50))),
				Headers:   []kgo.RecordHeader{{Key: "h", Value: []byte(strconv.Itoa(j))}},
				Timestamp: base.Add(time.Duration(j) * time.Millisecond),
			}
			wg.Add(1)
			idx := j
			cl.Produce(testCtx(t, time.Minute), r, func(r *kgo.Record, err error) {
				defer wg.Done()
				mu.Lock()
				defer mu.Unlock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				sents[idx] = sent{string(r.Key), string(r.Value), r.Timestamp, r.Partition, r.Offset}
			})
		}
		wg.Wait()
		if firstErr != nil {
			t.Fatalf("%v: produce: %v", codec, firstErr)
		}
		got := consumeAll(t, b.Addr(), topic, n)
		if len(got) != n {
			t.Fatalf("%v: got %d records, want %d", codec, len(got), n)
		}
		byPos := map[string]*kgo.Record{}
		for _, r := range got {
			if _, dup := byPos[recordID(r)]; dup {
				t.Fatalf("record %s delivered twice", recordID(r))
			}
			byPos[recordID(r)] = r
		}
		for j, s := range sents {
			r := byPos[fmt.Sprintf("%s/%d@%d", topic, s.partition, s.offset)]
			if r == nil {
				t.Fatalf("record %d (%s/%d@%d) not read back", j, topic, s.partition, s.offset)
			}
			if string(r.Key) != s.key || string(r.Value) != s.value || !r.Timestamp.Equal(s.ts) ||
				len(r.Headers) != 1 || string(r.Headers[0].Value) != strconv.Itoa(j) {
				t.Fatalf("record %d read back as key=%q value=%q ts=%v headers=%v", j, r.Key, r.Value, r.Timestamp, r.Headers)
			}
		}
		// Offsets of each partition are dense from 0.
		perPartition := map[int32]int64{}
		for _, s := range sents {
			perPartition[s.partition]++
		}
		for p, count := range perPartition {
			for off := int64(0); off < count; off++ {
				if byPos[fmt.Sprintf("%s/%d@%d", topic, p, off)] == nil {
					t.Fatalf("%s/%d: offset %d missing (offsets not dense)", topic, p, off)
				}
			}
		}
	}
}

// TestSaramaRoundTrip produces 100k records with sarama's idempotent
// producer and reads them back with sarama's partition consumers.
func TestSaramaRoundTrip(t *testing.T) {
	b := startBroker(t)
	const topic = "sarama"
	createTopic(t, b.Addr(), topic, 3, nil)

	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Retry.Max = 10
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Compression = sarama.CompressionSnappy
	cfg.Producer.Flush.Messages = 500
	cfg.Producer.Flush.Frequency = 5 * time.Millisecond
	prod, err := sarama.NewAsyncProducer([]string{b.Addr()}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	type pos struct {
		p   int32
		off int64
	}
	sent := map[string]pos{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < roundTripRecords; i++ {
			select {
			case m := <-prod.Successes():
				sent[string(m.Value.(sarama.StringEncoder))] = pos{m.Partition, m.Offset}
			case err := <-prod.Errors():
				t.Errorf("sarama produce: %v", err)
				return
			}
		}
	}()
	for i := 0; i < roundTripRecords; i++ {
		prod.Input() <- &sarama.ProducerMessage{
			Topic:   topic,
			Key:     sarama.StringEncoder("k" + strconv.Itoa(i%31)),
			Value:   sarama.StringEncoder("v" + strconv.Itoa(i)),
			Headers: []sarama.RecordHeader{{Key: []byte("n"), Value: []byte(strconv.Itoa(i))}},
		}
	}
	<-done
	if err := prod.Close(); err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		return
	}

	consumer, err := sarama.NewConsumer([]string{b.Addr()}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	seen := 0
	for p := int32(0); p < 3; p++ {
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		hw := pc.HighWaterMarkOffset()
		next := int64(0)
		for next < hw {
			select {
			case m := <-pc.Messages():
				if m.Offset != next {
					t.Fatalf("partition %d: offset %d, want %d", p, m.Offset, next)
				}
				next++
				want, ok := sent[string(m.Value)]
				if !ok || want.p != p || want.off != m.Offset {
					t.Fatalf("partition %d offset %d: value %q was acked at %+v", p, m.Offset, m.Value, want)
				}
				if len(m.Headers) != 1 || string(m.Headers[0].Value) != strings.TrimPrefix(string(m.Value), "v") {
					t.Fatalf("headers %v for %q", m.Headers, m.Value)
				}
				seen++
			case err := <-pc.Errors():
				t.Fatal(err)
			case <-time.After(time.Minute):
				t.Fatalf("partition %d: stuck at offset %d of %d", p, next, hw)
			}
		}
		pc.Close()
	}
	if seen != roundTripRecords {
		t.Fatalf("consumed %d records, want %d", seen, roundTripRecords)
	}
}

// TestKcatRoundTrip produces 100k keyed records with kcat (librdkafka,
// idempotence on) and reads them back with kcat.
func TestKcatRoundTrip(t *testing.T) {
	kcat := requireKcat(t)
	b := startBroker(t)
	const topic = "kcat"
	createTopic(t, b.Addr(), topic, 3, nil)
	var in bytes.Buffer
	for i := 0; i < roundTripRecords; i++ {
		fmt.Fprintf(&in, "key%d:value%d\n", i%13, i)
	}
	cmd := exec.Command(kcat, "-b", b.Addr(), "-t", topic, "-P", "-K:", "-z", "lz4",
		"-H", "origin=kcat", "-X", "enable.idempotence=true", "-X", "linger.ms=5")
	cmd.Stdin = &in
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat produce: %v\n%s", err, out)
	}
	out, err := exec.Command(kcat, "-b", b.Addr(), "-t", topic, "-C", "-e", "-o", "beginning", "-q",
		"-f", "%p %o %k %s %h\n").Output()
	if err != nil {
		t.Fatalf("kcat consume: %v", err)
	}
	seen := map[string]bool{}
	nextOffset := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 5 {
			t.Fatalf("unexpected kcat line %q", sc.Text())
		}
		off, _ := strconv.ParseInt(f[1], 10, 64)
		if off != nextOffset[f[0]] {
			t.Fatalf("partition %s: offset %d, want %d", f[0], off, nextOffset[f[0]])
		}
		nextOffset[f[0]]++
		n, _ := strconv.Atoi(strings.TrimPrefix(f[3], "value"))
		if f[2] != "key"+strconv.Itoa(n%13) || f[4] != "origin=kcat" {
			t.Fatalf("bad record %q", sc.Text())
		}
		if seen[f[3]] {
			t.Fatalf("%s read twice", f[3])
		}
		seen[f[3]] = true
	}
	if len(seen) != roundTripRecords {
		t.Fatalf("kcat read %d distinct records, want %d", len(seen), roundTripRecords)
	}
}

func requireKcat(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"kcat", "kafkacat"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("kcat is not installed; .ci/run installs it with apt-get")
	}
	t.Skip("kcat not installed (apt-get install kcat)")
	return ""
}
