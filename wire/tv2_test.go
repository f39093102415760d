package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/oncelog/oncelog/txn"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

func apiVersions(t *testing.T, ctx context.Context, cl *kgo.Client) *kmsg.ApiVersionsResponse {
	t.Helper()
	resp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func finalizedLevel(resp *kmsg.ApiVersionsResponse, name string) (int16, bool) {
	for _, f := range resp.FinalizedFeatures {
		if f.Name == name {
			return f.MaxVersionLevel, true
		}
	}
	return 0, false
}

// runTransactions commits odd and aborts even transactions of a kgo
// transactional producer, two partitions each, and returns how many
// records were committed.
func runTransactions(t *testing.T, ctx context.Context, addr, topic, id string, n int) int {
	t.Helper()
	cl := newTestClient(t, addr, kgo.TransactionalID(id), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	committed := 0
	for i := 1; i <= n; i++ {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for p := int32(0); p < 2; p++ {
			if err := cl.ProduceSync(ctx, &kgo.Record{Partition: p, Value: fmt.Appendf(nil, "%d-%d", i, p)}).FirstErr(); err != nil {
				t.Fatalf("transaction %d: %v", i, err)
			}
		}
		commit := kgo.TransactionEndTry(i%2 == 1)
		if err := cl.EndTransaction(ctx, commit); err != nil {
			t.Fatalf("end transaction %d: %v", i, err)
		}
		if commit {
			committed += 2
		}
	}
	return committed
}

func readCommitted(t *testing.T, ctx context.Context, addr, topic string, want int) {
	t.Helper()
	cl := newTestClient(t, addr, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := 0
	for got < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d committed records", got, want)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatal(err) })
		got += fs.NumRecords()
	}
	if got != want {
		t.Fatalf("read %d committed records, want %d", got, want)
	}
}

// TestTransactionVersion2WithKgo: with transaction.version finalized at 2
// (the default) kgo switches to KIP-890 part 2 by itself, so every
// transaction ends with an epoch bump; at 0 it keeps one epoch. Either way
// read_committed sees exactly the committed records.
func TestTransactionVersion2WithKgo(t *testing.T) {
	for _, tv := range []int16{2, 0} {
		t.Run(fmt.Sprintf("transaction.version=%d", tv), func(t *testing.T) {
			b, addr := startInProcess(t, func(c *broker.Config) { c.TransactionVersion = tv })
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			admin := newTestClient(t, addr)
			level, ok := finalizedLevel(apiVersions(t, ctx, admin), broker.TransactionVersionFeature)
			if tv > 0 && (!ok || level != tv) || tv == 0 && ok {
				t.Fatalf("finalized transaction.version: %d %v, want %d", level, ok, tv)
			}
			if _, err := kadm.NewClient(admin).CreateTopic(ctx, 2, 1, nil, "tv"); err != nil {
				t.Fatal(err)
			}
			const n = 6
			committed := runTransactions(t, ctx, addr, "tv", "tv-producer", n)
			info, ok := b.Txns.Describe("tv-producer")
			if !ok {
				t.Fatal("transactional id unknown")
			}
			wantEpoch := int16(0)
			if tv == 2 {
				wantEpoch = n // one bump per EndTxn
			}
			if info.Epoch != wantEpoch {
				t.Fatalf("epoch after %d transactions: %d, want %d", n, info.Epoch, wantEpoch)
			}
			readCommitted(t, ctx, addr, "tv", committed)
		})
	}
}

// TestUpdateFeatures: kadm lowers and raises transaction.version; the
// level shows in ApiVersions with a new epoch and survives a restart,
// winning over the configured level; bad updates change nothing.
func TestUpdateFeatures(t *testing.T) {
	dir := t.TempDir()
	b, addr := startInProcess(t, func(c *broker.Config) { c.DataDir = dir })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := newTestClient(t, addr)
	adm := kadm.NewClient(cl)
	before := apiVersions(t, ctx, cl)
	if lvl, _ := finalizedLevel(before, broker.TransactionVersionFeature); lvl != 2 {
		t.Fatalf("default level %d", lvl)
	}
	if len(before.SupportedFeatures) != 1 || before.SupportedFeatures[0].Name != broker.TransactionVersionFeature || before.SupportedFeatures[0].MaxVersion != 2 {
		t.Fatalf("supported features %+v", before.SupportedFeatures)
	}

	// A downgrade needs a downgrade type; an unknown feature or level fails.
	for _, bad := range []kadm.FeatureUpdate{
		{Feature: broker.TransactionVersionFeature, MaxVersionLevel: 1, UpgradeType: 1},
		{Feature: broker.TransactionVersionFeature, MaxVersionLevel: 3, UpgradeType: 1},
		{Feature: "no.such.version", MaxVersionLevel: 1, UpgradeType: 1},
	} {
		res, err := adm.UpdateFeatures(ctx, false, bad)
		if err != nil {
			t.Fatal(err)
		}
		if err := res.Error(); !errors.Is(err, kerr.InvalidUpdateVersion) {
			t.Fatalf("update %+v: %v, want INVALID_UPDATE_VERSION", bad, err)
		}
	}
	down := kadm.FeatureUpdate{Feature: broker.TransactionVersionFeature, MaxVersionLevel: 1, UpgradeType: 2}
	if res, err := adm.UpdateFeatures(ctx, true, down); err != nil || res.Error() != nil {
		t.Fatalf("validate-only downgrade: %v %v", err, res.Error())
	}
	if lvl, _ := finalizedLevel(apiVersions(t, ctx, cl), broker.TransactionVersionFeature); lvl != 2 {
		t.Fatalf("validate-only changed the level to %d", lvl)
	}
	if res, err := adm.UpdateFeatures(ctx, false, down); err != nil || res.Error() != nil {
		t.Fatalf("downgrade: %v %v", err, res.Error())
	}
	after := apiVersions(t, ctx, cl)
	if lvl, _ := finalizedLevel(after, broker.TransactionVersionFeature); lvl != 1 || after.FinalizedFeaturesEpoch <= before.FinalizedFeaturesEpoch {
		t.Fatalf("after the downgrade: level %d epoch %d (was %d)", lvl, after.FinalizedFeaturesEpoch, before.FinalizedFeaturesEpoch)
	}

	// The stored level wins over the configured one after a restart.
	b.Close()
	b2, err := broker.Open(b.Config(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if lvl := b2.Features().Levels[broker.TransactionVersionFeature]; lvl != 1 {
		t.Fatalf("level after a restart %d, want the stored 1", lvl)
	}
}

// TestProduceVersionDecidesImplicitAdd: a transactional batch for a
// partition outside the transaction is TRANSACTION_ABORTABLE at Produce
// v11 (KIP-890 part 1) and adds the partition at v12 (part 2), whatever
// the finalized level: the request version says which protocol the client
// runs, as in Kafka.
func TestProduceVersionDecidesImplicitAdd(t *testing.T) {
	b, addr := startInProcess(t, func(c *broker.Config) { c.TransactionVersion = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, terr := b.CreateTopic("implicit", 1, 1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	id := "implicit-producer"
	pid, epoch, code := b.Txns.InitProducerID(ctx, id, 60000, -1, -1, 5)
	if code != 0 {
		t.Fatal(code)
	}
	produceAt := func(version int16) int16 {
		vs := kversion.Stable()
		vs.SetMaxKeyVersion(0, version)
		cl := newTestClient(t, addr, kgo.MaxVersions(vs))
		req := kmsg.NewPtrProduceRequest()
		req.TransactionID = &id
		req.Acks, req.TimeoutMillis = -1, 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "implicit"
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = batchtest.Build(batchtest.Spec{Records: 1, ProducerID: pid, ProducerEpoch: epoch, BaseSequence: 0, Transactional: true, Timestamp: time.Now().UnixMilli()})
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Version != version {
			t.Fatalf("produce went out at v%d, want v%d", resp.Version, version)
		}
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	if code := produceAt(11); code != kerr.TransactionAbortable.Code {
		t.Fatalf("Produce v11 outside the transaction: %d, want 120", code)
	}
	if code := produceAt(12); code != 0 {
		t.Fatalf("Produce v12 outside the transaction: %d, want the implicit add", code)
	}
	if info, _ := b.Txns.Describe(id); info.Status != txn.Ongoing || len(info.Partitions) != 1 {
		t.Fatalf("after the v12 produce: %+v", info)
	}
}
