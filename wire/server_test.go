package wire

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// startInProcess runs a broker and its listener inside the test process;
// configure changes the broker's configuration first.
func startInProcess(t *testing.T, configure ...func(*broker.Config)) (*broker.Broker, string) {
	t.Helper()
	return startInProcessWith(t, DefaultConfig(), configure...)
}

// startInProcessWith is startInProcess with the listener limits of wcfg.
func startInProcessWith(t *testing.T, wcfg Config, configure ...func(*broker.Config)) (*broker.Broker, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := broker.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.AdvertisedHost = "127.0.0.1"
	cfg.AdvertisedPort = int32(ln.Addr().(*net.TCPAddr).Port)
	cfg.GroupInitialRebalanceDelay = 0
	for _, c := range configure {
		c(&cfg)
	}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := broker.Open(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(b, wcfg, logger)
	go s.Serve(ln)
	t.Cleanup(func() {
		s.Close()
		b.Close()
	})
	return b, ln.Addr().String()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func TestProduceConsumeInProcess(t *testing.T) {
	_, addr := startInProcess(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("t"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 1000
	for i := 0; i < n; i++ {
		cl.Produce(ctx, &kgo.Record{Topic: "t", Value: []byte(strconv.Itoa(i))}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := 0
	for got < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("got %d of %d", got, n)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatal(err) })
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Value) != strconv.Itoa(int(r.Offset)) {
				t.Fatalf("offset %d holds %q", r.Offset, r.Value)
			}
			got++
		})
	}
}

func TestApiVersionsListsEveryHandler(t *testing.T) {
	_, addr := startInProcess(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	resp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.ApiKeys) != len(handlers) {
		t.Fatalf("ApiVersions lists %d keys, %d handlers registered", len(resp.ApiKeys), len(handlers))
	}
	for _, k := range resp.ApiKeys {
		h := handlers[k.ApiKey]
		if h.min != k.MinVersion || h.max != k.MaxVersion {
			t.Fatalf("key %d advertised %d-%d, served %d-%d", k.ApiKey, k.MinVersion, k.MaxVersion, h.min, h.max)
		}
	}
}
