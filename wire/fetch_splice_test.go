package wire

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/oncelog/oncelog/auth"
	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/internal/testcerts"
	"github.com/oncelog/oncelog/partition"
	"github.com/oncelog/oncelog/segment"
)

// The spliced encoding, with each span's bytes put where appendSpliced
// says they go, is kmsg's encoding of the same response with the records in
// RecordBatches: every Fetch version served, null and empty records, data
// spans and file spans.
func TestSplicedFetchEncodingMatchesKmsg(t *testing.T) {
	file, err := os.Create(filepath.Join(t.TempDir(), "segment"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	content := make([]byte, 1<<20)
	for i := range content {
		content[i] = byte(i * 7)
	}
	if _, err := file.Write(content); err != nil {
		t.Fatal(err)
	}
	for version := int16(4); version <= 18; version++ {
		rng := rand.New(rand.NewPCG(2, uint64(version)))
		resp := testFetchResponse(version)
		out := &splicedFetchResponse{FetchResponse: resp}
		for i := range resp.Topics {
			resp.Topics[i].TopicID = [16]byte{byte(i + 1), 2, 3}
			out.spans = append(out.spans, make([]*segment.Records, len(resp.Topics[i].Partitions)))
			for j := range resp.Topics[i].Partitions {
				p := &resp.Topics[i].Partitions[j]
				switch j % 3 {
				case 0: // records in RecordBatches, or null
					if j == 3 {
						p.RecordBatches = nil
					}
				case 1: // a data span and a file span
					pos, n := rng.Int64N(1<<19), 1+rng.IntN(1<<19)
					data := bytes.Repeat([]byte{byte(j)}, 1+rng.IntN(1000))
					out.spans[i][j] = &segment.Records{Len: len(data) + n, Spans: []segment.Span{{Data: data, Len: len(data)}, {File: file, Pos: pos, Len: n}}}
					p.RecordBatches = append(append([]byte{}, data...), content[pos:pos+int64(n)]...)
				case 2:
					p.RecordBatches = []byte{}
				}
			}
		}
		want := resp.AppendTo(nil)
		enc, points, ok := out.appendSpliced(nil)
		if !ok {
			t.Fatalf("v%d: not encodable", version)
		}
		var got []byte
		from := 0
		for _, pt := range points {
			got = append(got, enc[from:pt.at]...)
			from = pt.at
			for _, sp := range pt.recs.Spans {
				if sp.File == nil {
					got = append(got, sp.Data...)
				} else {
					got = append(got, content[sp.Pos:sp.Pos+int64(sp.Len)]...)
				}
			}
		}
		got = append(got, enc[from:]...)
		if !bytes.Equal(got, want) {
			t.Fatalf("v%d: spliced encoding differs from kmsg's (%d vs %d bytes)", version, len(got), len(want))
		}
		// A tagged field it does not write: it declines.
		resp.Topics[0].Partitions[0].DivergingEpoch.Epoch = 3
		if _, _, ok := out.appendSpliced(nil); ok && version >= 12 {
			t.Fatalf("v%d: encoded a response with a tagged field set", version)
		}
	}
}

// startSegmented starts an in-process broker with 1 MiB segments on the
// given listener.
func startSegmented(t *testing.T, l Listener) (*broker.Broker, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := broker.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.AdvertisedHost = "127.0.0.1"
	cfg.AdvertisedPort = int32(ln.Addr().(*net.TCPAddr).Port)
	cfg.SegmentBytes = 1 << 20
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := broker.Open(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(b, DefaultConfig(), logger)
	go s.ServeListener(ln, l)
	t.Cleanup(func() {
		s.Close()
		b.Close()
	})
	return b, ln.Addr().String()
}

// oldBytes reads partition p's log from offset through the copying path in
// the segment-at-a-time steps it always took, until n bytes.
func oldBytes(t *testing.T, p *partition.Partition, n int) []byte {
	var out []byte
	for off := int64(0); len(out) < n; {
		res := p.Read(partition.ReadOptions{Offset: off, MaxBytes: n - len(out), MinOneBatch: len(out) == 0})
		if res.ErrorCode != 0 || len(res.Records) == 0 {
			break
		}
		out = append(out, res.Records...)
		for rest := res.Records; len(rest) > 0; {
			last := int64(0)
			h, err := kmsgLastOffset(rest)
			if err != nil {
				t.Fatal(err)
			}
			last, rest = h.last, rest[h.size:]
			off = last + 1
		}
	}
	return out
}

type batchEnd struct {
	last int64
	size int
}

func kmsgLastOffset(b []byte) (batchEnd, error) {
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(b); err != nil {
		return batchEnd{}, err
	}
	return batchEnd{rb.FirstOffset + int64(rb.LastOffsetDelta), int(rb.Length) + 12}, nil
}

// A fetch over a log of several segments, on a plain TCP listener (records
// sent with sendfile) and on a TLS one (copied): a raw Fetch returns, in
// one response, the same bytes the copying read path returns, across a
// segment boundary; a franz-go consumer reads every record back in order.
func TestFetchAcrossSegmentsPlainAndTLS(t *testing.T) {
	ca := testcerts.New(t, t.TempDir())
	server := ca.Server("server")
	tlsL, _ := tlsListener(t, "SSL", SSL, auth.TLSFiles{CertFile: server.CertFile, KeyFile: server.KeyFile})
	for _, tc := range []struct {
		name string
		l    Listener
		opts []kgo.Opt
	}{
		{"plaintext", Listener{Name: "PLAINTEXT", Protocol: Plaintext}, nil},
		{"tls", tlsL, []kgo.Opt{kgo.DialTLSConfig(ca.ClientConfig(testcerts.Pair{}))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, addr := startSegmented(t, tc.l)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			opts := append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("seg"), kgo.ProducerLinger(0),
				kgo.ProducerBatchCompression(kgo.NoCompression())}, tc.opts...)
			cl, err := kgo.NewClient(opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "seg"); err != nil {
				t.Fatal(err)
			}
			const n = 1500                // 1.5k x 3 KB: about 5 segments
			value := func(i int) []byte { // incompressible, different per record
				rng := rand.New(rand.NewPCG(uint64(i), 1))
				v := make([]byte, 3000)
				for k := range v {
					v[k] = byte(rng.Uint32())
				}
				copy(v, strconv.Itoa(i))
				return v
			}
			for i := range n {
				cl.Produce(ctx, &kgo.Record{Value: value(i)}, func(_ *kgo.Record, err error) {
					if err != nil {
						t.Error(err)
					}
				})
			}
			if err := cl.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			p := b.Topic("seg").Partitions[0]

			req := kmsg.NewPtrFetchRequest()
			req.Version = 12
			req.MaxWaitMillis, req.MaxBytes = 100, 8<<20
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic, rt.TopicID = "seg", b.Topic("seg").ID // kgo sends its newest version: by id
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.PartitionMaxBytes = 3 << 20
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			sentBefore := sentByFile.Load()
			resp, err := req.RequestWith(ctx, cl)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
				t.Fatalf("fetch response %+v", resp)
			}
			got := resp.Topics[0].Partitions[0].RecordBatches
			if len(got) <= 1<<20 {
				t.Fatalf("fetch returned %d bytes: not past the first 1 MiB segment", len(got))
			}
			if want := oldBytes(t, p, len(got)); !bytes.Equal(got, want) {
				t.Fatalf("fetch returned %d bytes that differ from the copying read's %d", len(got), len(want))
			}
			// sendfile on plain TCP only (other tests may run in parallel:
			// at least this fetch's long spans on plain TCP, none on TLS).
			if sent := sentByFile.Load() - sentBefore; tc.l.TLS == nil && sent < 1<<20 {
				t.Fatalf("plain TCP: %d bytes sent from the segment files, want most of the %d", sent, len(got))
			} else if tc.l.TLS != nil && sent != 0 {
				t.Fatalf("TLS: %d bytes sent with sendfile", sent)
			}

			cons, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr),
				kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"seg": {0: kgo.NewOffset().At(0)}}),
				kgo.FetchMaxBytes(8 << 20), kgo.FetchMaxPartitionBytes(4 << 20)}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			defer cons.Close()
			for i := 0; i < n; {
				fs := cons.PollFetches(ctx)
				if ctx.Err() != nil {
					t.Fatalf("consumed %d of %d", i, n)
				}
				fs.EachError(func(_ string, _ int32, err error) { t.Fatal(err) })
				fs.EachRecord(func(r *kgo.Record) {
					if r.Offset != int64(i) || !bytes.Equal(r.Value, value(i)) {
						t.Fatalf("record %d: offset %d, value %q...", i, r.Offset, r.Value[:8])
					}
					i++
				})
			}
		})
	}
}
