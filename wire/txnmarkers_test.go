package wire

import (
	"context"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// TestWriteTxnMarkersAbortsAnOpenTransaction: a WriteTxnMarkers ABORT from
// outside (kafka-transactions.sh abort) closes what a producer holds open,
// with Kafka's fencing of older producer and coordinator epochs.
func TestWriteTxnMarkersAbortsAnOpenTransaction(t *testing.T) {
	b, addr := startInProcess(t)
	ctx := context.Background()
	if _, terr := b.CreateTopic("wtm", 1, 1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	id := "hanging"
	pid, epoch, code := b.Txns.InitProducerID(ctx, id, 60000, -1, -1, 5)
	if code != 0 {
		t.Fatal(kerr.ErrorForCode(code))
	}
	vs := kversion.Stable()
	vs.SetMaxKeyVersion(0, 12) // v12: the implicit add of KIP-890, by topic name
	cl := newTestClient(t, addr, kgo.MaxVersions(vs))
	produce := kmsg.NewPtrProduceRequest()
	produce.TransactionID = &id
	produce.Acks, produce.TimeoutMillis = -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "wtm"
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batchtest.Build(batchtest.Spec{Records: 2, ProducerID: pid, ProducerEpoch: epoch, Transactional: true, Timestamp: time.Now().UnixMilli()})
	rt.Partitions = append(rt.Partitions, rp)
	produce.Topics = append(produce.Topics, rt)
	presp, err := produce.RequestWith(ctx, cl)
	if err != nil || presp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("transactional produce: %v %+v", err, presp)
	}
	p := b.Partition("wtm", 0)
	if p.LastStableOffset() != 0 || p.LogEndOffset() != 2 {
		t.Fatalf("open transaction: LSO %d, log end %d; want 0 and 2", p.LastStableOffset(), p.LogEndOffset())
	}
	coordEpoch := p.Producers()[0].CoordinatorEpoch
	rc := dialRaw(t, addr) // raw: kgo would not send to a partition it has no leader for

	write := func(epoch int16, coordinatorEpoch int32, partitions ...int32) map[int32]int16 {
		t.Helper()
		req := kmsg.NewPtrWriteTxnMarkersRequest()
		req.Version = 1
		m := kmsg.NewWriteTxnMarkersRequestMarker()
		m.ProducerID, m.ProducerEpoch, m.CoordinatorEpoch, m.Committed = pid, epoch, coordinatorEpoch, false
		mt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
		mt.Topic, mt.Partitions = "wtm", partitions
		m.Topics = append(m.Topics, mt)
		req.Markers = append(req.Markers, m)
		resp := rc.do(req).(*kmsg.WriteTxnMarkersResponse)
		codes := map[int32]int16{}
		for _, rm := range resp.Markers {
			for _, rt := range rm.Topics {
				for _, rp := range rt.Partitions {
					codes[rp.Partition] = rp.ErrorCode
				}
			}
		}
		return codes
	}
	wantCodes(t, "older producer epoch", write(epoch-1, coordEpoch, 0), map[int32]int16{0: kerr.InvalidProducerEpoch.Code})
	wantCodes(t, "older coordinator epoch", write(epoch, coordEpoch-1, 0), map[int32]int16{0: kerr.TransactionCoordinatorFenced.Code})
	if p.LastStableOffset() != 0 {
		t.Fatalf("a fenced marker moved the LSO to %d", p.LastStableOffset())
	}
	wantCodes(t, "abort", write(epoch, coordEpoch, 0, 7), map[int32]int16{0: 0, 7: kerr.UnknownTopicOrPartition.Code})
	if p.LogEndOffset() != 3 || p.LastStableOffset() != 3 || p.Producers()[0].CurrentTxnStartOffset != -1 {
		t.Fatalf("after the ABORT marker: log end %d, LSO %d, producer %+v; want 3, 3 and nothing open", p.LogEndOffset(), p.LastStableOffset(), p.Producers()[0])
	}
	// Nothing open any more: a second marker appends nothing.
	wantCodes(t, "again", write(epoch, coordEpoch, 0), map[int32]int16{0: 0})
	if p.LogEndOffset() != 3 {
		t.Fatalf("a marker for nothing open appended: log end %d", p.LogEndOffset())
	}
}
