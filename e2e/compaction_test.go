package e2e

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func strp(s string) *string { return &s }

// A compacted topic accepts keyed records only (Kafka's LogValidator
// answers INVALID_RECORD with this message), reports its compaction
// configs with their sources, and can be switched between policies live.
func TestCompactedTopicConfigsAndKeylessRecords(t *testing.T) {
	b := startBroker(t, "--log-cleaner-delete-retention-ms", "1000")
	ctx := testCtx(t, time.Minute)
	createTopic(t, b.Addr(), "compacted", 1, map[string]*string{"cleanup.policy": strp("compact"), "min.cleanable.dirty.ratio": strp("0.1")})

	cl := newClient(t, b.Addr(), kgo.DefaultProduceTopic("compacted"), kgo.RecordRetries(0))
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("no key")}).FirstErr(); !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("keyless record on a compacted topic: %v, want INVALID_RECORD", err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatalf("keyed record: %v", err)
	}

	adm := kadm.NewClient(newClient(t, b.Addr()))
	rcs, err := adm.DescribeTopicConfigs(ctx, "compacted")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On("compacted", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		value  string
		source string
	}{
		"cleanup.policy":            {"compact", "DYNAMIC_TOPIC_CONFIG"},
		"min.cleanable.dirty.ratio": {"0.1", "DYNAMIC_TOPIC_CONFIG"},
		"delete.retention.ms":       {"1000", "STATIC_BROKER_CONFIG"},
		"min.compaction.lag.ms":     {"0", "DEFAULT_CONFIG"},
		"max.compaction.lag.ms":     {"9223372036854775807", "DEFAULT_CONFIG"},
	}
	for _, c := range rc.Configs {
		if w, ok := want[c.Key]; ok {
			if c.MaybeValue() != w.value || c.Source.String() != w.source {
				t.Errorf("%s = %q (%s), want %q (%s)", c.Key, c.MaybeValue(), c.Source, w.value, w.source)
			}
			delete(want, c.Key)
		}
	}
	if len(want) != 0 {
		t.Errorf("configs not described: %v", want)
	}

	// Live switch to delete: keyless records are accepted again.
	if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "cleanup.policy", Value: strp("delete")}}, "compacted"); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("no key")}).FirstErr(); err != nil {
		t.Fatalf("keyless record after switching to delete: %v", err)
	}
	resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "cleanup.policy", Value: strp("compact,delete")}}, "compacted")
	if err != nil || resp[0].Err != nil {
		t.Fatalf("compact,delete: %v %v", err, resp)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("no key")}).FirstErr(); !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("keyless record on compact,delete: %v", err)
	}
	resp, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "cleanup.policy", Value: strp("shred")}}, "compacted")
	if err == nil && resp[0].Err == nil || !strings.Contains(resp[0].ErrMessage+errString(err), "cleanup policy") {
		t.Fatalf("bad policy accepted: %v %+v", err, resp)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
