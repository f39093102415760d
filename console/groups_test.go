package console_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type consoleGroup struct {
	Group   string `json:"group"`
	Type    string `json:"type"`
	State   string `json:"state"`
	Members []struct {
		MemberID    string   `json:"member_id"`
		Assignments []string `json:"assignments"`
		MemberEpoch *int32   `json:"member_epoch"`
	} `json:"members"`
	Offsets []struct {
		Partition int32 `json:"partition"`
		Committed int64 `json:"committed"`
		Lag       int64 `json:"lag"`
	} `json:"offsets"`
	ShareOffsets []struct {
		Partition   int32 `json:"partition"`
		StartOffset int64 `json:"start_offset"`
	} `json:"share_offsets"`
}

// getJSON decodes a console answer into v; false on 404 (a group not
// created yet), a failed test on anything else but 200.
type consoleGroupLag struct {
	Lag int64 `json:"lag"`
}

func getJSON(t *testing.T, url string, v any) bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return false
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, v) != nil {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return true
}

// TestKIP848AndShareGroups: a franz-go KIP-848 consumer and a franz-go share
// consumer on a real broker; the console lists both with their types and
// describes each: the consumer group's member with its epoch, assignment
// and committed offsets, the share group's member and share-partition
// start offset.
func TestKIP848AndShareGroups(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{ExtraArgs: []string{"--group-initial-rebalance-delay", "0s"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const topic = "events"
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("e")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	startKIP848AndShareConsumers(ctx, t, b.Addr(), topic, "g848", "gshare")

	// A KIP-848 member that commits offset 1 of the 5 records itself: its
	// group lags by 4, in the list and in the group's page.
	lagging, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics(topic), kgo.ConsumerGroup("g848-lagging"),
		kgo.ServerSideBalancer(), kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer lagging.Close()
	for {
		lagging.PollFetches(ctx) // joins the group and gets partition 0
		var commitErr error
		lagging.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{topic: {0: {Epoch: -1, Offset: 1}}},
			func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
				commitErr = err
				if err == nil {
					for _, rt := range resp.Topics {
						for _, rp := range rt.Partitions {
							commitErr = kerr.ErrorForCode(rp.ErrorCode)
						}
					}
				}
			})
		if commitErr == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("commit of the lagging member: %v", commitErr)
		}
	}
	console := "http://" + b.AdminAddr()
	var cg, sg consoleGroup
	for {
		cg, sg = consoleGroup{}, consoleGroup{}
		if getJSON(t, console+"/api/groups/g848", &cg) && getJSON(t, console+"/api/groups/gshare", &sg) &&
			len(cg.Members) == 1 && len(cg.Members[0].Assignments) == 1 && len(cg.Offsets) == 1 && cg.Offsets[0].Committed == 5 &&
			len(sg.Members) == 1 && len(sg.ShareOffsets) == 1 && sg.ShareOffsets[0].StartOffset > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("groups never settled: consumer %+v, share %+v", cg, sg)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if cg.Type != "consumer" || cg.Members[0].MemberEpoch == nil || *cg.Members[0].MemberEpoch <= 0 || cg.Members[0].Assignments[0] != topic+"/0" || cg.Offsets[0].Lag != 0 {
		t.Errorf("KIP-848 group: %+v", cg)
	}
	if sg.Type != "share" || sg.Members[0].MemberEpoch == nil || len(sg.Members[0].Assignments) != 1 {
		t.Errorf("share group: %+v", sg)
	}
	var list []struct {
		Group   string `json:"group"`
		Type    string `json:"type"`
		Members int    `json:"members"`
		Lag     int64  `json:"lag"`
	}
	getJSON(t, console+"/api/groups", &list)
	types, lags := map[string]string{}, map[string]int64{}
	for _, g := range list {
		types[g.Group], lags[g.Group] = g.Type, g.Lag
		if g.Members != 1 {
			t.Errorf("group %s listed with %d members, want 1", g.Group, g.Members)
		}
	}
	var lg consoleGroupLag
	getJSON(t, console+"/api/groups/g848-lagging", &lg)
	if lg.Lag != 4 {
		t.Errorf("g848-lagging: lag %d on its page, want 4", lg.Lag)
	}
	if types["g848"] != "consumer" || types["gshare"] != "share" || types["g848-lagging"] != "consumer" || lags["g848-lagging"] != 4 {
		t.Errorf("groups listed %+v, want g848 and g848-lagging (lag 4) consumer and gshare share", list)
	}
}

// startKIP848AndShareConsumers runs a KIP-848 consumer (server-side
// assignment, committing what it polled) and a share consumer (acknowledging
// what it polled) on topic until the test ends.
func startKIP848AndShareConsumers(ctx context.Context, t *testing.T, addr, topic, group, shareGroup string) {
	t.Helper()
	for _, opts := range [][]kgo.Opt{
		{kgo.ConsumerGroup(group), kgo.ServerSideBalancer(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.AutoCommitInterval(200 * time.Millisecond)},
		{kgo.ShareGroup(shareGroup)},
	} {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		pollCtx, stop := context.WithCancel(ctx)
		go func() {
			defer close(done)
			for pollCtx.Err() == nil {
				cl.PollFetches(pollCtx)
			}
		}()
		t.Cleanup(func() { stop(); <-done; cl.Close() })
	}
}
