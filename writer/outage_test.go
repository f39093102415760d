package writer

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/faultproxy"
	"github.com/oncelog/oncelog/internal/sdktest"
	"github.com/oncelog/oncelog/internal/testbroker"
)

// TestBrokerOutages: both modes on oncelog behind the fault proxy, which
// drops a fifth of the responses to the requests that decide delivery
// (Produce, InitProducerId, AddOffsetsToTxn, EndTxn, TxnOffsetCommit: the
// client sees its connection die without the answer, as after a lost ack),
// and a broker stopped for a while and started again in the middle. Every
// event ends up in the topic exactly once.
func TestBrokerOutages(t *testing.T) {
	for _, mode := range []Mode{ModeKeyWindow, ModeTransactional} {
		t.Run(string(mode), func(t *testing.T) {
			proxy, err := faultproxy.Start("127.0.0.1:1")
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			b := testbroker.Start(t, testbroker.Options{Advertise: proxy.Addr()})
			proxy.SetTarget(b.Addr())
			brokers := []string{proxy.Addr()}
			var configs map[string]*string
			if mode == ModeKeyWindow {
				v := "header:Idempotency-Key"
				configs = map[string]*string{"oncelog.dedup.key": &v}
			}
			if err := sdktest.CreateTopic(brokers, "events", 3, 1, configs); err != nil {
				t.Fatal(err)
			}
			seed := time.Now().UnixNano()
			t.Logf("fault seed %d", seed)
			drop := map[int16]float64{0: 0.2, 22: 0.2, 25: 0.2, 26: 0.2, 28: 0.2}
			proxy.SetRules(faultproxy.Rules{Seed: seed, DropResponseProb: drop})

			w, err := Open(context.Background(), Config{Brokers: brokers, Dir: t.TempDir(), Mode: mode, TxnMaxEntries: 100})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			const n = 3000
			rs := emitRange(t, w, "events", 0, n/3)
			// An outage: the outbox keeps accepting while the broker is down.
			b.Stop()
			rs = append(rs, emitRange(t, w, "events", n/3, 2*n/3)...)
			b.Restart()
			rs = append(rs, emitRange(t, w, "events", 2*n/3, n)...)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			for i, r := range rs {
				if _, err := r.Wait(ctx); err != nil {
					t.Fatalf("event %d: %v (proxy stats %+v)", i, err, proxy.Stats())
				}
			}
			proxy.SetRules(faultproxy.Rules{})
			st := proxy.Stats()
			t.Logf("proxy: %s", fmt.Sprint(st))
			sdktest.CheckExactlyOnce(t, sdktest.ReadCommitted(t, brokers, "events"), n)
		})
	}
}
