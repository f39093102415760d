// Command oncelog-faultproxy runs internal/faultproxy as a process, for test
// harnesses that are not written in Go (the JVM suite in e2e/jvm): a Kafka
// framing-aware TCP proxy in front of one broker that loses a fraction of the
// responses of an API (the client sees its connection die without the
// answer, as after a lost ack).
//
// It prints "listening <host:port>" on stdout once it accepts connections,
// and on SIGTERM or SIGINT prints its counters as one JSON line and exits 0.
// Point the broker's advertised address at the proxy, so that clients come
// back through it after reading metadata.
package main

import (
	"encoding/json"
	"fmt"
	flag "github.com/spf13/pflag"
	"os"
	"os/signal"
	"syscall"

	"github.com/oncelog/oncelog/internal/faultproxy"
)

func main() { os.Exit(run()) }

func run() int {
	target := flag.String("target", "", "host:port of the broker to forward to (required)")
	apiKey := flag.Int("api-key", 0, "Kafka API key whose responses are dropped (0 = Produce)")
	dropProb := flag.Float64("drop-response-prob", 0, "probability of dropping a response of --api-key and closing the connection")
	seed := flag.Int64("seed", 1, "seed of the fault draws")
	flag.Parse()
	if *target == "" {
		fmt.Fprintln(os.Stderr, "oncelog-faultproxy: --target is required")
		return 2
	}
	proxy, err := faultproxy.Start(*target)
	if err != nil {
		fmt.Fprintln(os.Stderr, "oncelog-faultproxy:", err)
		return 2
	}
	proxy.SetRules(faultproxy.Rules{
		Seed:             *seed,
		DropResponseProb: map[int16]float64{int16(*apiKey): *dropProb},
	})
	fmt.Println("listening", proxy.Addr())

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
	stats := proxy.Stats()
	_ = proxy.Close()
	out, _ := json.Marshal(map[string]any{
		"connections":       stats.Connections,
		"requests":          stats.Requests[int16(*apiKey)],
		"responses":         stats.Responses[int16(*apiKey)],
		"dropped_responses": stats.DroppedResponses[int16(*apiKey)],
	})
	fmt.Println(string(out))
	return 0
}
