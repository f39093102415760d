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
	if epoch == 0 {
		// Epoch -1: Kafka cannot build that control batch and fails the
		// whole request (TestWriteTxnMarkersV2TransactionVersion checks
		// an older epoch that is not -1).
		wantCodes(t, "producer epoch -1", write(epoch-1, coordEpoch, 0, 7), map[int32]int16{0: kerr.UnknownServerError.Code, 7: kerr.UnknownServerError.Code})
	} else {
		wantCodes(t, "older producer epoch", write(epoch-1, coordEpoch, 0), map[int32]int16{0: kerr.InvalidProducerEpoch.Code})
	}
	wantCodes(t, "older coordinator epoch", write(epoch, coordEpoch-1, 0), map[int32]int16{0: kerr.TransactionCoordinatorFenced.Code})
	if p.LastStableOffset() != 0 {
		t.Fatalf("a fenced marker moved the LSO to %d", p.LastStableOffset())
	}
	wantCodes(t, "abort", write(epoch, coordEpoch, 0, 7), map[int32]int16{0: 0, 7: kerr.UnknownTopicOrPartition.Code})
	if p.LogEndOffset() != 3 || p.LastStableOffset() != 3 || p.Producers()[0].CurrentTxnStartOffset != -1 {
		t.Fatalf("after the ABORT marker: log end %d, LSO %d, producer %+v; want 3, 3 and nothing open", p.LogEndOffset(), p.LastStableOffset(), p.Producers()[0])
	}
	// Nothing open any more: a second marker is appended all the same,
	// as Kafka appends it.
	wantCodes(t, "again", write(epoch, coordEpoch, 0), map[int32]int16{0: 0})
	if p.LogEndOffset() != 4 || p.LastStableOffset() != 4 {
		t.Fatalf("a marker for nothing open: log end %d, LSO %d; want 4 and 4", p.LogEndOffset(), p.LastStableOffset())
	}
}

// TestWriteTxnMarkersV2TransactionVersion: a v2 marker of transaction
// version 2 must carry the epoch the coordinator bumped at the end of the
// transaction (the producer's + 1), as Kafka 4.4 checks it; the same epoch
// passes at v1 and at v2 with TransactionVersion 0.
func TestWriteTxnMarkersV2TransactionVersion(t *testing.T) {
	b, addr := startInProcess(t)
	ctx := context.Background()
	if _, terr := b.CreateTopic("wtm2", 1, 1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	id := "hanging2"
	pid, epoch, code := b.Txns.InitProducerID(ctx, id, 60000, -1, -1, 5)
	if code != 0 {
		t.Fatal(kerr.ErrorForCode(code))
	}
	vs := kversion.Stable()
	vs.SetMaxKeyVersion(0, 12)
	cl := newTestClient(t, addr, kgo.MaxVersions(vs))
	produce := kmsg.NewPtrProduceRequest()
	produce.TransactionID = &id
	produce.Acks, produce.TimeoutMillis = -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "wtm2"
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batchtest.Build(batchtest.Spec{Records: 2, ProducerID: pid, ProducerEpoch: epoch, Transactional: true, Timestamp: time.Now().UnixMilli()})
	rt.Partitions = append(rt.Partitions, rp)
	produce.Topics = append(produce.Topics, rt)
	if presp, err := produce.RequestWith(ctx, cl); err != nil || presp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("transactional produce: %v %+v", err, presp)
	}
	p := b.Partition("wtm2", 0)
	coordEpoch := p.Producers()[0].CoordinatorEpoch
	rc := dialRaw(t, addr)
	write := func(version int16, tv int8, epoch int16) int16 {
		t.Helper()
		req := kmsg.NewPtrWriteTxnMarkersRequest()
		req.Version = version
		m := kmsg.NewWriteTxnMarkersRequestMarker()
		m.ProducerID, m.ProducerEpoch, m.CoordinatorEpoch, m.TransactionVersion = pid, epoch, coordEpoch, tv
		mt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
		mt.Topic, mt.Partitions = "wtm2", []int32{0}
		m.Topics = append(m.Topics, mt)
		req.Markers = append(req.Markers, m)
		return rc.do(req).(*kmsg.WriteTxnMarkersResponse).Markers[0].Topics[0].Partitions[0].ErrorCode
	}
	if got := write(2, 2, epoch); got != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("TV2 marker at the open transaction's epoch: %d, want INVALID_PRODUCER_EPOCH", got)
	}
	if p.LastStableOffset() != 0 {
		t.Fatalf("a fenced marker moved the LSO to %d", p.LastStableOffset())
	}
	if got := write(2, 2, epoch+1); got != 0 {
		t.Fatalf("TV2 marker at the bumped epoch: %d", got)
	}
	if p.LastStableOffset() != 3 || p.Producers()[0].Epoch != epoch+1 {
		t.Fatalf("after the TV2 abort: LSO %d, producer %+v; want 3 and epoch %d", p.LastStableOffset(), p.Producers()[0], epoch+1)
	}
	for _, tc := range []struct {
		version int16
		tv      int8
		epoch   int16
		want    int16
	}{
		{2, 2, epoch + 1, 0}, // the coordinator's retry: nothing open
		{1, 0, epoch, kerr.InvalidProducerEpoch.Code},
		{2, 0, epoch, kerr.InvalidProducerEpoch.Code},
		{2, 0, epoch + 1, 0},
		{1, 0, epoch + 1, 0},
		{2, -1, epoch + 1, kerr.UnknownServerError.Code}, // Kafka refuses the unknown version
		{2, 2, epoch + 2, 0},                             // nothing open: appended, its epoch taken
		{2, 2, epoch + 1, kerr.InvalidProducerEpoch.Code},
		{2, 0, epoch + 1, kerr.InvalidProducerEpoch.Code},
	} {
		if got := write(tc.version, tc.tv, tc.epoch); got != tc.want {
			t.Errorf("v%d TV%d at epoch %d: %d, want %d", tc.version, tc.tv, tc.epoch, got, tc.want)
		}
	}
}
