package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestIntegrationGroupResetAndDelete moves a group's offsets by shift and
// by time, is refused while a member is active, and deletes the group.
func TestIntegrationGroupResetAndDelete(t *testing.T) {
	topic := createTopic(t, 2)
	group := uniqueName(t, "g")
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(testBrokers(t), ",")...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// Partition 0: records a minute apart, an hour ago; partition 1: one record.
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i, v := range []string{"a", "b", "c", "d", "e"} {
		r := &kgo.Record{Topic: topic, Partition: 0, Value: []byte(v), Timestamp: base.Add(time.Duration(i) * time.Minute)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 1, Value: []byte("z"), Timestamp: base}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cli(t, "", "group", "reset-offsets", group, "--topic", topic+":0", "--to-offset", "3", "--execute")

	plan := func(args ...string) offsetReset {
		t.Helper()
		out, _ := cli(t, "", append([]string{"group", "reset-offsets", group, "--output", "json"}, args...)...)
		return decodeJSON[offsetReset](t, out)
	}
	newOffsets := func(r offsetReset) map[int32]int64 {
		m := map[int32]int64{}
		for _, o := range r.Offsets {
			m[o.Partition] = o.NewOffset
		}
		return m
	}
	if got := newOffsets(plan("--topic", topic+":0", "--shift-by", "-2")); got[0] != 1 {
		t.Errorf("--shift-by -2 from 3: %v, want 1", got)
	}
	if got := newOffsets(plan("--topic", topic+":0", "--shift-by", "10")); got[0] != 5 {
		t.Errorf("--shift-by 10 from 3: %v, want the end offset 5", got)
	}
	// Partition 1 has nothing committed: a shift has nowhere to start.
	out, _, err := cliErr(t, nil, "group", "reset-offsets", group, "--topic", topic, "--shift-by", "1", "--execute", "--output", "json")
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "nothing committed to shift from") {
		t.Errorf("--shift-by with a partition that has no commit: %v", err)
	}
	if r := decodeJSON[offsetReset](t, out); r.Executed {
		t.Errorf("a refused shift was executed: %+v", r)
	}

	at := base.Add(90 * time.Second).UTC().Format("2006-01-02T15:04:05Z07:00")
	if got := newOffsets(plan("--topic", topic, "--to-datetime", at)); got[0] != 2 || got[1] != 1 {
		t.Errorf("--to-datetime %s: %v, want 2 on partition 0 (the first record at or after it) and the end offset 1 on partition 1", at, got)
	}
	exact := base.Add(4 * time.Minute).In(time.Local).Format("2006-01-02T15:04:05.000") // local time, no zone, as Kafka
	out, _ = cli(t, "", "group", "reset-offsets", group, "--topic", topic+":0", "--to-datetime", exact, "--execute")
	if !strings.Contains(out, "NEW-OFFSET") {
		t.Errorf("text reset:\n%s", out)
	}
	out, _ = cli(t, "", "group", "describe", group, "--output", "json")
	committed := int64(-1)
	for _, o := range decodeJSON[describedGroup](t, out).Offsets {
		if o.Partition == 0 {
			committed = o.CommittedOffset
		}
	}
	if committed != 4 {
		t.Errorf("after --to-datetime %s --execute: committed %d on partition 0, want 4 (e's offset)", exact, committed)
	}

	// An active member: reset and delete are refused, as Kafka refuses them.
	member, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(testBrokers(t), ",")...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	for {
		out, _ := cli(t, "", "group", "describe", group, "--output", "json")
		if d := decodeJSON[describedGroup](t, out); d.State == "Stable" {
			break
		}
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		member.PollFetches(pctx)
		cancel()
	}
	_, _, err = cliErr(t, nil, "group", "reset-offsets", group, "--topic", topic, "--to-earliest", "--execute")
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "stop its consumers first") {
		t.Errorf("reset with an active member: %v", err)
	}
	_, _, err = cliErr(t, nil, "group", "delete", group)
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "active members") {
		t.Errorf("delete with an active member: %v", err)
	}
	member.Close() // leaves the group

	missing := uniqueName(t, "nogroup")
	out, _, err = cliErr(t, nil, "group", "delete", group, missing, "--output", "json")
	deleted := decodeJSON[[]deletedGroup](t, out)
	if exitCode(err) != 1 || len(deleted) != 2 || !strings.Contains(err.Error(), missing) || strings.Contains(err.Error(), `"`+group+`"`) {
		t.Errorf("delete of a group and a missing one: %v\n%s", err, out)
	}
	for _, d := range deleted {
		if (d.Group == group) != (d.Error == "") {
			t.Errorf("delete result: %+v", d)
		}
	}
	if _, _, err = cliErr(t, nil, "group", "describe", group); exitCode(err) != 1 || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("describe after delete: %v", err)
	}
}

// TestIntegrationGroupDescribeConsumerProtocol: a KIP-848 group (which the
// classic DescribeGroups does not describe) is described with its members,
// their broker-made assignments, committed offsets and lag.
func TestIntegrationGroupDescribeConsumerProtocol(t *testing.T) {
	topic := createTopic(t, 2)
	group := uniqueName(t, "g848")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seeds := strings.Split(testBrokers(t), ",")
	prod, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for _, v := range []string{"a", "b", "c", "d"} {
		if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ServerSideBalancer(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	var n int
	for n < 4 && ctx.Err() == nil {
		fs := cons.PollFetches(ctx)
		n += fs.NumRecords()
		if err := cons.CommitUncommittedOffsets(ctx); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
	var d describedGroup
	for ctx.Err() == nil {
		out, _ := cli(t, "", "group", "describe", group, "--output", "json")
		if d = decodeJSON[describedGroup](t, out); d.State == "Stable" && d.TotalLag == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d.ProtocolType != "consumer" || d.Protocol != "uniform" || len(d.Members) != 1 || len(d.Offsets) != 2 {
		t.Fatalf("describe: %+v", d)
	}
	if a := d.Members[0].Assignments; len(a) != 1 || a[0].Topic != topic || len(a[0].Partitions) != 2 {
		t.Fatalf("assignments: %+v", a)
	}
	for _, o := range d.Offsets {
		if o.Lag != 0 || (o.EndOffset > 0 && o.CommittedOffset != o.EndOffset) || o.MemberID != d.Members[0].MemberID {
			t.Fatalf("offset: %+v", o)
		}
	}
	out, _ := cli(t, "", "group", "describe", group)
	if !strings.Contains(out, "PROTOCOL     consumer (uniform)") {
		t.Errorf("text describe:\n%s", out)
	}
	if _, _, err := cliErr(t, nil, "group", "reset-offsets", group, "--topic", topic, "--to-earliest", "--execute"); exitCode(err) != 1 || !strings.Contains(err.Error(), "stop its consumers first") {
		t.Errorf("reset of a consumer group with a member: %v", err)
	}
}
