// Command txnload runs transactional producers against a Kafka-protocol
// broker for a fixed time and prints records and transactions per second.
// It is for profiling the transaction path (with the broker's /debug/pprof
// and /metrics), not part of the bench report.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9092", "broker host:port")
	producers := flag.Int("producers", 8, "transactional producers, each its own client and transactional id")
	perTxn := flag.Int("txn", 100, "records per transaction")
	size := flag.Int("size", 100, "record value bytes")
	partitions := flag.Int("partitions", 12, "partitions of the topic, if it is created")
	duration := flag.Duration("d", 20*time.Second, "how long to produce")
	topic := flag.String("topic", "txnload", "topic (created if missing)")
	flag.Parse()
	ctx := context.Background()

	admin, err := kgo.NewClient(kgo.SeedBrokers(*addr))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := kadm.NewClient(admin).CreateTopic(ctx, int32(*partitions), 1, nil, *topic); err != nil {
		log.Printf("create topic %s: %v (going on: it may exist)", *topic, err)
	}
	admin.Close()

	var acked, txns atomic.Int64
	rtts := &roundTrips{}
	var wg sync.WaitGroup
	end := time.Now().Add(*duration)
	value := make([]byte, *size)
	for i := range *producers {
		wg.Go(func() {
			cl, err := kgo.NewClient(kgo.SeedBrokers(*addr), kgo.DefaultProduceTopic(*topic),
				kgo.TransactionalID(fmt.Sprintf("%s-%d", *topic, i)), kgo.ProducerLinger(5*time.Millisecond),
				kgo.WithHooks(rtts))
			if err != nil {
				log.Fatal(err)
			}
			defer cl.Close()
			for time.Now().Before(end) {
				if err := cl.BeginTransaction(); err != nil {
					log.Fatalf("producer %d: begin: %v", i, err)
				}
				for range *perTxn {
					cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
						if err == nil {
							acked.Add(1)
						}
					})
				}
				if err := cl.Flush(ctx); err != nil {
					log.Fatalf("producer %d: flush: %v", i, err)
				}
				if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
					log.Fatalf("producer %d: commit: %v", i, err)
				}
				txns.Add(1)
			}
		})
	}
	wg.Wait()
	secs := duration.Seconds()
	fmt.Printf("%d records in %d transactions in %s: %.0f records/s, %.0f transactions/s\n",
		acked.Load(), txns.Load(), *duration, float64(acked.Load())/secs, float64(txns.Load())/secs)
	if t := txns.Load(); t > 0 {
		cycle := time.Duration(float64(*producers) * float64(time.Second) / (float64(t) / secs))
		fmt.Printf("per transaction and producer: cycle %v; round trips as the client saw them (write to response read): %s\n",
			cycle.Round(time.Microsecond), rtts)
	}
}

// roundTrips keeps the mean round trip of each request kind the clients
// sent (kgo's HookBrokerE2E: from the start of the write to the end of the
// response read), to set beside the broker's own per-API latency in its
// /metrics: the difference is the sockets, the scheduling and the
// broker's reading and writing of the request.
type roundTrips struct {
	mu    sync.Mutex
	total map[int16]time.Duration
	count map[int16]int64
}

// OnBrokerE2E implements kgo.HookBrokerE2E.
func (r *roundTrips) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e kgo.BrokerE2E) {
	if e.Err() != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.total == nil {
		r.total, r.count = map[int16]time.Duration{}, map[int16]int64{}
	}
	r.total[key] += e.DurationE2E()
	r.count[key]++
}

func (r *roundTrips) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, key := range []int16{0, 26} { // Produce, EndTxn: a transaction's two round trips
		if n := r.count[key]; n > 0 {
			out = append(out, fmt.Sprintf("%s %v (%d)", kmsg.NameForKey(key), (r.total[key]/time.Duration(n)).Round(time.Microsecond), n))
		}
	}
	return strings.Join(out, ", ")
}
