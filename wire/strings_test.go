package wire

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestErrorMessageFitsOldVersion: CreateTopics v4 (non-flexible) can send a
// config value of up to 32,767 bytes; the error message quoting it is
// longer than an int16 string. The answer must still decode.
func TestErrorMessageFitsOldVersion(t *testing.T) {
	_, addr := startInProcess(t)
	rc := dialRaw(t, addr)
	req := kmsg.NewPtrCreateTopicsRequest()
	req.Version = 4
	req.TimeoutMillis = 10000
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "bad-config", 1, 1
	c := kmsg.NewCreateTopicsRequestTopicConfig()
	c.Name = "retention.ms"
	value := strings.Repeat("9x", (1<<15-1)/2)
	c.Value = &value
	rt.Configs = append(rt.Configs, c)
	req.Topics = append(req.Topics, rt)
	resp := rc.do(req).(*kmsg.CreateTopicsResponse)
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != kerr.InvalidConfig.Code || resp.Topics[0].ErrorMessage == nil ||
		!strings.HasPrefix(*resp.Topics[0].ErrorMessage, "invalid value") {
		t.Fatalf("CreateTopics v4: %+v, want INVALID_CONFIG", resp.Topics)
	}
}

func TestFitStringsCutsOnlyNonFlexible(t *testing.T) {
	long := strings.Repeat("é", 20000) // 40,000 bytes
	resp := kmsg.NewPtrCreateTopicsResponse()
	resp.Version = 4
	rt := kmsg.NewCreateTopicsResponseTopic()
	rt.Topic, rt.ErrorMessage = "t", &long
	resp.Topics = append(resp.Topics, rt)
	var cut []string
	fitStrings(resp, func(field string) { cut = append(cut, field) })
	got := *resp.Topics[0].ErrorMessage
	if len(got) > 1<<15-1 || !strings.HasPrefix(long, got) || len(got)%2 != 0 {
		t.Fatalf("cut to %d bytes", len(got))
	}
	if len(cut) != 1 || cut[0] != "Topics.ErrorMessage" {
		t.Fatalf("reported %q", cut)
	}
	flexible := kmsg.NewPtrCreateTopicsResponse()
	flexible.Version = 5
	rt.ErrorMessage = &long
	flexible.Topics = append(flexible.Topics, rt)
	fitStrings(flexible, func(string) { t.Fatal("cut a flexible response") })
}
