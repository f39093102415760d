package broker

import (
	"reflect"
	"testing"
)

// TestTopicConfigSynonymsAsKafka: DescribeConfigs synonyms are Kafka's, so
// that kafka-configs --describe prints the same lines against oncelog as
// against Kafka 4.4 (e2e/jvm CliToolsTest): a topic override is followed
// by the broker default it overrides, except where Kafka's broker config
// has no default of its own (log.retention.ms, log.roll.ms).
func TestTopicConfigSynonymsAsKafka(t *testing.T) {
	entries := DefaultConfig().EffectiveTopicConfigs(map[string]string{
		"retention.ms": "86400000", "cleanup.policy": "compact", "segment.ms": "60000",
	})
	want := map[string][]ConfigSynonym{
		"retention.ms":   {{"retention.ms", "86400000", SourceTopic}},
		"segment.ms":     {{"segment.ms", "60000", SourceTopic}},
		"cleanup.policy": {{"cleanup.policy", "compact", SourceTopic}, {"log.cleanup.policy", "delete", SourceDefault}},
	}
	for _, e := range entries {
		if w, ok := want[e.Name]; ok {
			if !reflect.DeepEqual(e.Synonyms, w) {
				t.Errorf("%s synonyms %+v, want %+v", e.Name, e.Synonyms, w)
			}
			delete(want, e.Name)
		}
	}
	if len(want) > 0 {
		t.Fatalf("configs missing: %v", want)
	}
}
