package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/kafkafixture"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
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

// errName is how the step-by-step comparisons print an error code.
func errName(code int16) string {
	if code == 0 {
		return "NONE"
	}
	return kerr.ErrorForCode(code).(*kerr.Error).Message
}

// coordinatorStarting reports the codes a broker answers while its
// coordinator is not ready yet: Kafka creates __transaction_state and
// __consumer_offsets on first use and then loads them.
func coordinatorStarting(code int16) bool {
	return code == kerr.CoordinatorLoadInProgress.Code || code == kerr.CoordinatorNotAvailable.Code || code == kerr.NotCoordinator.Code
}

// initProducerIDRaw sends InitProducerId at version until the coordinator
// is ready and returns the producer id and epoch; txnID nil asks for an
// idempotent producer id.
func initProducerIDRaw(ctx context.Context, t *testing.T, cl *kgo.Client, addr string, version int16, txnID *string) (int64, int16) {
	t.Helper()
	for {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.Version = version
		req.TransactionalID = txnID
		req.TransactionTimeoutMillis = 60000
		req.ProducerID, req.ProducerEpoch = -1, -1
		resp, err := req.RequestWith(ctx, cl)
		var ke *kerr.Error
		switch {
		case errors.As(err, &ke) && coordinatorStarting(ke.Code):
		case err != nil:
			t.Fatalf("%s: InitProducerId: %v", addr, err)
		case coordinatorStarting(resp.ErrorCode):
		case resp.ErrorCode != 0:
			t.Fatalf("%s: InitProducerId: %v", addr, kerr.ErrorForCode(resp.ErrorCode))
		default:
			return resp.ProducerID, resp.ProducerEpoch
		}
		time.Sleep(200 * time.Millisecond)
	}
}
