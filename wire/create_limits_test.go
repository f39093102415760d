package wire

import (
	"fmt"
	"strings"
	"testing"

	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestCreateTopicsRequestBounds: one CreateTopics request naming 100,000
// topics, or one topic of 100,000 partitions, is refused whole with Kafka's
// POLICY_VIOLATION before any file is opened (it used to exhaust the file
// descriptors); so is a CreatePartitions adding as many. A topic config
// below Kafka's minimums is INVALID_CONFIG, in CreateTopics and in both
// alter APIs. The broker then still creates a normal topic.
func TestCreateTopicsRequestBounds(t *testing.T) {
	b, addr := startInProcess(t)
	rc := dialRaw(t, addr)
	create := func(topics ...kmsg.CreateTopicsRequestTopic) *kmsg.CreateTopicsResponse {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.Version = 7
		req.TimeoutMillis = 10000
		req.Topics = topics
		return rc.do(req).(*kmsg.CreateTopicsResponse)
	}
	topic := func(name string, partitions int32, configs ...string) kmsg.CreateTopicsRequestTopic {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, partitions, 1
		for i := 0; i+1 < len(configs); i += 2 {
			c := kmsg.NewCreateTopicsRequestTopicConfig()
			c.Name, c.Value = configs[i], &configs[i+1]
			rt.Configs = append(rt.Configs, c)
		}
		return rt
	}
	var many []kmsg.CreateTopicsRequestTopic
	for i := range 100000 {
		many = append(many, topic(fmt.Sprintf("t%d", i), 1))
	}
	resp := create(many...)
	if len(resp.Topics) != len(many) {
		t.Fatalf("%d answers for %d topics", len(resp.Topics), len(many))
	}
	for _, st := range resp.Topics {
		if st.ErrorCode != kerr.PolicyViolation.Code || st.ErrorMessage == nil || *st.ErrorMessage != broker.ExcessivePartitionsMessage {
			t.Fatalf("topic %s: code %d message %v, want POLICY_VIOLATION", st.Topic, st.ErrorCode, st.ErrorMessage)
		}
	}
	if n := len(b.Topics()); n != 0 {
		t.Fatalf("%d topics created by a refused request", n)
	}
	resp = create(topic("huge", 100000))
	if st := resp.Topics[0]; st.ErrorCode != kerr.PolicyViolation.Code {
		t.Fatalf("100,000 partitions: code %d, want POLICY_VIOLATION", st.ErrorCode)
	}
	for _, bad := range [][]string{
		{"segment.bytes", "100"},
		{"segment.bytes", "1048575"},
		{"segment.bytes", "4294967296"},
		{"segment.ms", "0"},
	} {
		resp = create(topic("bad", 1, bad...))
		if st := resp.Topics[0]; st.ErrorCode != kerr.InvalidConfig.Code {
			t.Fatalf("%s=%s: code %d, want INVALID_CONFIG", bad[0], bad[1], st.ErrorCode)
		}
	}
	resp = create(topic("ok", 2, "segment.bytes", "1048576", "segment.ms", "1"))
	if st := resp.Topics[0]; st.ErrorCode != 0 {
		t.Fatalf("a normal topic: code %d %v", st.ErrorCode, st.ErrorMessage)
	}

	grow := kmsg.NewPtrCreatePartitionsRequest()
	gt := kmsg.NewCreatePartitionsRequestTopic()
	gt.Topic, gt.Count = "ok", 100002
	grow.Topics = append(grow.Topics, gt)
	gresp := rc.do(grow).(*kmsg.CreatePartitionsResponse)
	if st := gresp.Topics[0]; st.ErrorCode != kerr.PolicyViolation.Code {
		t.Fatalf("CreatePartitions +100,000: code %d, want POLICY_VIOLATION", st.ErrorCode)
	}

	alter := kmsg.NewPtrAlterConfigsRequest()
	ar := kmsg.NewAlterConfigsRequestResource()
	ar.ResourceType, ar.ResourceName = 2, "ok"
	ac := kmsg.NewAlterConfigsRequestResourceConfig()
	ac.Name, ac.Value = "segment.bytes", kmsg.StringPtr("100")
	ar.Configs = append(ar.Configs, ac)
	alter.Resources = append(alter.Resources, ar)
	if r := rc.do(alter).(*kmsg.AlterConfigsResponse).Resources[0]; r.ErrorCode != kerr.InvalidConfig.Code {
		t.Fatalf("AlterConfigs segment.bytes=100: code %d, want INVALID_CONFIG", r.ErrorCode)
	}
	inc := kmsg.NewPtrIncrementalAlterConfigsRequest()
	ir := kmsg.NewIncrementalAlterConfigsRequestResource()
	ir.ResourceType, ir.ResourceName = 2, "ok"
	ic := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	ic.Name, ic.Value = "segment.bytes", kmsg.StringPtr("100")
	ir.Configs = append(ir.Configs, ic)
	inc.Resources = append(inc.Resources, ir)
	r := rc.do(inc).(*kmsg.IncrementalAlterConfigsResponse).Resources[0]
	if r.ErrorCode != kerr.InvalidConfig.Code || r.ErrorMessage == nil || !strings.Contains(*r.ErrorMessage, "1048576") {
		t.Fatalf("IncrementalAlterConfigs segment.bytes=100: code %d %v, want INVALID_CONFIG naming the minimum", r.ErrorCode, r.ErrorMessage)
	}
}
