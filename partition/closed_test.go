package partition

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/twmb/franz-go/pkg/kerr"
)

// TestClosedPartitionIsUnknown: a produce that races DeleteTopics (found
// in the soak: a producer auto-creating the topic another client deletes)
// reaches a partition that was closed under it. It is answered
// UNKNOWN_TOPIC_OR_PARTITION, as Kafka answers for a partition that is
// gone and as Read already does, not KAFKA_STORAGE_ERROR (the disk is
// fine), and it does not mark the partition failed; a wait for durability
// that the close cut short returns ErrClosed.
func TestClosedPartitionIsUnknown(t *testing.T) {
	for _, how := range []string{"close", "delete"} {
		t.Run(how, func(t *testing.T) {
			p := openPartition(t, t.TempDir())
			first := p.Append(batchtest.Plain(1), time.Now())
			if first.ErrorCode != 0 {
				t.Fatalf("append: %+v", first)
			}
			if how == "close" {
				if err := p.Close(); err != nil {
					t.Fatal(err)
				}
			} else if _, err := p.Delete(); err != nil {
				t.Fatal(err)
			}
			res := p.Append(batchtest.Plain(1), time.Now())
			if res.ErrorCode != kerr.UnknownTopicOrPartition.Code {
				t.Errorf("append after %s: error code %d (%s), want UNKNOWN_TOPIC_OR_PARTITION", how, res.ErrorCode, res.ErrorMessage)
			}
			if err := p.sync.failure(); err != nil {
				t.Errorf("append after %s marked the partition failed: %v", how, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := p.WaitDurable(ctx, first.DurableAt+10); !errors.Is(err, ErrClosed) {
				t.Errorf("durable wait after %s: %v, want ErrClosed", how, err)
			}
		})
	}
}
