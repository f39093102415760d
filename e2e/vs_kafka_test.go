package e2e

import (
	"testing"

	"github.com/oncelog/oncelog/internal/kafkafixture"
)

// requireSameAnswersAsKafka runs steps against oncelog and against a real
// Apache Kafka 4.4 (internal/kafkafixture), each step answering a string,
// and requires the two lists to be equal step by step.
func requireSameAnswersAsKafka(t *testing.T, steps func(t *testing.T, addr string) []string) {
	t.Helper()
	kafka := kafkafixture.StartT(t, kafkafixture.Options{})
	o := steps(t, startBroker(t).Addr())
	k := steps(t, kafka.Bootstrap()[0])
	if len(o) != len(k) {
		t.Fatalf("different number of steps:\noncelog %v\nkafka   %v", o, k)
	}
	for i := range o {
		if o[i] != k[i] {
			t.Errorf("step %d:\noncelog %s\nkafka   %s", i+1, o[i], k[i])
		} else {
			t.Logf("step %d: both %s", i+1, o[i])
		}
	}
}
