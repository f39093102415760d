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
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
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
	var wg sync.WaitGroup
	end := time.Now().Add(*duration)
	value := make([]byte, *size)
	for i := range *producers {
		wg.Go(func() {
			cl, err := kgo.NewClient(kgo.SeedBrokers(*addr), kgo.DefaultProduceTopic(*topic),
				kgo.TransactionalID(fmt.Sprintf("%s-%d", *topic, i)), kgo.ProducerLinger(5*time.Millisecond))
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
}
