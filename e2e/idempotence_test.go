package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/oncelog/oncelog/internal/faultproxy"
	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	idempotentRecords = 100_000
	produceKey        = 0
)

// proxiedBroker starts a broker that advertises a fault proxy in front of
// itself, so every client connection goes through the proxy.
func proxiedBroker(t *testing.T, extra ...string) (*testbroker.Broker, *faultproxy.Proxy) {
	t.Helper()
	proxy, err := faultproxy.Start("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	b := testbroker.Start(t, testbroker.Options{Advertise: proxy.Addr(), ExtraArgs: extra})
	proxy.SetTarget(b.Addr())
	return b, proxy
}

// checkExactlyOnce reads the topic back and checks that every number in
// [0, n) appears exactly once and that each partition holds its numbers in
// increasing order (the producer sent them in increasing order).
func checkExactlyOnce(t *testing.T, addr, topic string, n int, number func(value []byte) (int, bool)) {
	t.Helper()
	records := consumeAll(t, addr, topic, n)
	seen := make([]int, n)
	last := map[int32]int{}
	dups := 0
	for _, r := range records {
		num, ok := number(r.Value)
		if !ok || num < 0 || num >= n {
			t.Fatalf("record %s has unexpected value %q", recordID(r), r.Value)
		}
		seen[num]++
		if seen[num] > 1 {
			dups++
		}
		if prev, ok := last[r.Partition]; ok && num <= prev {
			t.Fatalf("partition %d: %d stored after %d: per-producer order broken", r.Partition, num, prev)
		}
		last[r.Partition] = num
	}
	lost := 0
	for _, c := range seen {
		if c == 0 {
			lost++
		}
	}
	if dups != 0 || lost != 0 || len(records) != n {
		t.Fatalf("read %d records for %d sent: %d duplicates, %d lost", len(records), n, dups, lost)
	}
}

func numberValue(v []byte) (int, bool) {
	n, err := strconv.Atoi(string(v))
	return n, err == nil
}

func dropProduceResponses(p *faultproxy.Proxy, prob float64) {
	p.SetRules(faultproxy.Rules{Seed: 42, DropResponseProb: map[int16]float64{produceKey: prob}})
}

// TestIdempotentFranzGoThroughLostAcks: kgo retries every produce whose
// response the proxy swallowed; the broker must recognise each retry.
func TestIdempotentFranzGoThroughLostAcks(t *testing.T) {
	b, proxy := proxiedBroker(t)
	const topic = "idem-kgo"
	createTopic(t, proxy.Addr(), topic, 3, nil)
	dropProduceResponses(proxy, 0.05)

	// Small batches make many produce requests, so that ~5% of them is a
	// few dozen lost acks.
	cl := newClient(t, proxy.Addr(), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerLinger(time.Millisecond), kgo.MaxBufferedRecords(20_000), kgo.ProducerBatchMaxBytes(4<<10))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	ctx := testCtx(t, 5*time.Minute)
	for i := 0; i < idempotentRecords; i++ {
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: []byte(strconv.Itoa(i))}, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("produce: %v", firstErr)
	}
	dropped := proxy.Stats().DroppedResponses[produceKey]
	t.Logf("proxy dropped %d produce responses", dropped)
	if dropped == 0 {
		t.Fatal("the proxy dropped no produce response: the test proved nothing")
	}
	proxy.SetRules(faultproxy.Rules{})
	checkExactlyOnce(t, b.Addr(), topic, idempotentRecords, numberValue)
}

// TestIdempotentSaramaThroughLostAcks does the same with sarama's
// idempotent producer.
func TestIdempotentSaramaThroughLostAcks(t *testing.T) {
	b, proxy := proxiedBroker(t)
	const topic = "idem-sarama"
	createTopic(t, proxy.Addr(), topic, 3, nil)
	dropProduceResponses(proxy, 0.05)

	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Retry.Max = 1000
	cfg.Producer.Retry.Backoff = 10 * time.Millisecond
	cfg.Producer.Partitioner = sarama.NewRoundRobinPartitioner
	cfg.Producer.Flush.Messages = 100
	cfg.Producer.Flush.MaxMessages = 100
	cfg.Producer.Flush.Frequency = 2 * time.Millisecond
	cfg.Net.MaxOpenRequests = 1
	cfg.Metadata.Retry.Backoff = 10 * time.Millisecond
	prod, err := sarama.NewAsyncProducer([]string{proxy.Addr()}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for i := 0; i < idempotentRecords; i++ {
			select {
			case <-prod.Successes():
			case err := <-prod.Errors():
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := 0; i < idempotentRecords; i++ {
		prod.Input() <- &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(strconv.Itoa(i))}
	}
	if err := <-done; err != nil {
		t.Fatalf("sarama produce: %v", err)
	}
	prod.Close()
	dropped := proxy.Stats().DroppedResponses[produceKey]
	t.Logf("proxy dropped %d produce responses", dropped)
	if dropped == 0 {
		t.Fatal("the proxy dropped no produce response: the test proved nothing")
	}
	proxy.SetRules(faultproxy.Rules{})
	checkExactlyOnce(t, b.Addr(), topic, idempotentRecords, numberValue)
}

// TestIdempotentKcatThroughLostAcks does the same with librdkafka (kcat).
func TestIdempotentKcatThroughLostAcks(t *testing.T) {
	kcat := requireKcat(t)
	b, proxy := proxiedBroker(t)
	const topic = "idem-kcat"
	createTopic(t, proxy.Addr(), topic, 1, nil)
	dropProduceResponses(proxy, 0.05)

	var in bytes.Buffer
	for i := 0; i < idempotentRecords; i++ {
		fmt.Fprintf(&in, "%d\n", i)
	}
	// kcat exits when all its broker connections are down at once, which
	// every dropped response causes with a single broker; bootstrapping by
	// another name for the same proxy keeps a second connection open.
	_, port, _ := net.SplitHostPort(proxy.Addr())
	cmd := exec.Command(kcat, "-b", "localhost:"+port, "-t", topic, "-P",
		"-X", "enable.idempotence=true", "-X", "linger.ms=2", "-X", "batch.num.messages=500",
		"-X", "message.timeout.ms=300000", "-X", "retry.backoff.ms=10")
	cmd.Stdin = &in
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kcat produce: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "Delivery failed") {
		t.Fatalf("kcat reported failed deliveries:\n%s", out)
	}
	dropped := proxy.Stats().DroppedResponses[produceKey]
	t.Logf("proxy dropped %d produce responses", dropped)
	if dropped == 0 {
		t.Fatal("the proxy dropped no produce response: the test proved nothing")
	}
	proxy.SetRules(faultproxy.Rules{})
	checkExactlyOnce(t, b.Addr(), topic, idempotentRecords, numberValue)
}
