package e2e

import (
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestAdminAPIs drives the admin surface with kadm, as Kafka tooling would:
// topic configs (describe, alter, incremental alter, validation), partition
// growth, ListOffsets by time, DeleteRecords, DescribeCluster, transactions
// listing.
func TestAdminAPIs(t *testing.T) {
	b := startBroker(t)
	cl := newClient(t, b.Addr())
	adm := kadm.NewClient(cl)
	ctx := testCtx(t, time.Minute)
	retention := "3600000"
	createTopic(t, b.Addr(), "admin", 2, map[string]*string{"retention.ms": &retention})

	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "admin"); err == nil {
		t.Fatal("creating an existing topic succeeded")
	}
	if resp, _ := adm.CreateTopic(ctx, 1, 3, nil, "rf3"); resp.Err == nil || !errorIs(resp.Err, kerr.InvalidReplicationFactor) {
		t.Fatalf("replication factor 3 on one node: %v", resp.Err)
	}
	bogus := "x"
	if resp, _ := adm.CreateTopic(ctx, 1, 1, map[string]*string{"no.such.config": &bogus}, "badcfg"); !errorIs(resp.Err, kerr.InvalidConfig) {
		t.Fatalf("unknown config: %v", resp.Err)
	}

	configs, err := adm.DescribeTopicConfigs(ctx, "admin")
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := configs.On("admin", nil)
	found := false
	for _, c := range rc.Configs {
		if c.Key == "retention.ms" {
			found = c.MaybeValue() == "3600000" && c.Source == 1
		}
	}
	if !found {
		t.Fatalf("retention.ms override not described: %+v", rc.Configs)
	}
	seg := "1048576"
	alter, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "segment.bytes", Value: &seg}}, "admin")
	if err != nil || alter[0].Err != nil {
		t.Fatalf("incremental alter: %v %v", err, alter)
	}
	configs, _ = adm.DescribeTopicConfigs(ctx, "admin")
	rc, _ = configs.On("admin", nil)
	for _, c := range rc.Configs {
		if c.Key == "segment.bytes" && c.MaybeValue() != seg {
			t.Fatalf("segment.bytes = %s after alter", c.MaybeValue())
		}
		if c.Key == "retention.ms" && c.MaybeValue() != "3600000" {
			t.Fatal("incremental alter dropped another override")
		}
	}

	if _, err := adm.CreatePartitions(ctx, 2, "admin"); err != nil { // 2 -> 4
		t.Fatal(err)
	}
	md, err := adm.ListTopics(ctx, "admin")
	if err != nil || len(md["admin"].Partitions) != 4 {
		t.Fatalf("partitions after CreatePartitions: %v %v", err, md)
	}

	p := newClient(t, b.Addr(), kgo.DefaultProduceTopic("admin"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	base := time.UnixMilli(1_750_000_000_000)
	for i := 0; i < 10; i++ {
		r := kgo.StringRecord(strconv.Itoa(i))
		r.Partition = 0
		r.Timestamp = base.Add(time.Duration(i) * time.Second)
		if err := p.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	byTime, err := adm.ListOffsetsAfterMilli(ctx, base.Add(4500*time.Millisecond).UnixMilli(), "admin")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := byTime.Lookup("admin", 0); o.Offset != 5 {
		t.Fatalf("offset for timestamp +4.5s: %d, want 5", o.Offset)
	}
	del, err := adm.DeleteRecords(ctx, kadm.Offsets{"admin": {0: {At: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := del.Lookup("admin", 0); d.Err != nil || d.LowWatermark != 3 {
		t.Fatalf("delete records: %+v", d)
	}
	start, _ := adm.ListStartOffsets(ctx, "admin")
	if o, _ := start.Lookup("admin", 0); o.Offset != 3 {
		t.Fatalf("start offset after DeleteRecords: %d", o.Offset)
	}

	cluster, err := adm.BrokerMetadata(ctx)
	if err != nil || len(cluster.Brokers) != 1 || cluster.Cluster == "" {
		t.Fatalf("cluster metadata: %v %+v", err, cluster)
	}
	if _, err := adm.DeleteTopics(ctx, "admin"); err != nil {
		t.Fatal(err)
	}
	if md, _ := adm.ListTopics(ctx); len(md) != 0 {
		t.Fatalf("topics after delete: %v", md.Names())
	}
}

func errorIs(err error, target *kerr.Error) bool {
	ke, ok := err.(*kerr.Error)
	return ok && ke.Code == target.Code
}
