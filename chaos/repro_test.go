package chaos

import (
	"context"
	"encoding/binary"
	"hash/crc32"
	"path/filepath"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// TestReproDedupWindowAfterRestart reproduces, with raw requests, the
// duplicates the chaos run found (seed 20260101): a producer has five
// batches in flight, the partition rolls a segment (which writes a producer
// snapshot), the broker is killed and restarted, and the producer retries an
// older in-flight batch. With a Kafka-style snapshot that keeps only each
// producer's newest batch the retry was answered OUT_OF_ORDER_SEQUENCE_NUMBER
// instead of as a duplicate; franz-go (like the Java client) then bumps its
// epoch, renumbers and resends the batch, storing it twice. It now guards the
// fix (snapshot version 2 keeps the whole five-batch window).
func TestReproDedupWindowAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	b := testbroker.Start(t, testbroker.Options{
		ExtraArgs: []string{"--log-segment-bytes", "1000"},
		Env:       []string{"ONCELOG_TEST_MIN_SEGMENT_BYTES=14"}, // below Kafka's 1 MiB minimum
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Produce v12: the raw requests name the topic (v13 carries ids).
	byName := kversion.Stable()
	byName.SetMaxKeyVersion(0, 12)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.MaxVersions(byName))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const topic = "dedup-window"
	createReq := kmsg.NewPtrCreateTopicsRequest()
	createTopic := kmsg.NewCreateTopicsRequestTopic()
	createTopic.Topic, createTopic.NumPartitions, createTopic.ReplicationFactor = topic, 1, 1
	createReq.Topics = append(createReq.Topics, createTopic)
	if _, err := createReq.RequestWith(ctx, cl); err != nil {
		t.Fatal(err)
	}

	initReq := kmsg.NewPtrInitProducerIDRequest()
	initReq.TransactionTimeoutMillis = 60000
	initResp, err := initReq.RequestWith(ctx, cl)
	if err != nil || initResp.ErrorCode != 0 {
		t.Fatalf("InitProducerID: %v %v", err, kerr.ErrorForCode(initResp.ErrorCode))
	}
	pid, epoch := initResp.ProducerID, initResp.ProducerEpoch

	produce := func(pid int64, epoch int16, seq int32) (int64, error) {
		t.Helper()
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 10000
		reqTopic := kmsg.NewProduceRequestTopic()
		reqTopic.Topic = topic
		reqPartition := kmsg.NewProduceRequestTopicPartition()
		reqPartition.Records = rawBatch(pid, epoch, seq, []byte("some value of a record"))
		reqTopic.Partitions = append(reqTopic.Partitions, reqPartition)
		req.Topics = append(req.Topics, reqTopic)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		p := resp.Topics[0].Partitions[0]
		return p.BaseOffset, kerr.ErrorForCode(p.ErrorCode)
	}

	// Five batches in flight, all written; pretend their acks were lost.
	for seq := range int32(5) {
		if off, err := produce(pid, epoch, seq); err != nil || off != int64(seq) {
			t.Fatalf("batch %d: offset %d, %v", seq, off, err)
		}
	}
	// Other traffic rolls the segment: a producer snapshot is written.
	for i := 0; ; i++ {
		snapshots, _ := filepath.Glob(filepath.Join(b.DataDir(), "topics", topic+"-0", "*.snapshot"))
		if len(snapshots) > 0 {
			break
		}
		if i == 100 {
			t.Fatal("no segment roll after 100 batches")
		}
		if _, err := produce(-1, -1, -1); err != nil {
			t.Fatal(err)
		}
	}
	// Before a restart the retry of the second batch is a duplicate.
	if off, err := produce(pid, epoch, 1); err != nil || off != 1 {
		t.Fatalf("retry before restart: offset %d, %v; want the original offset 1", off, err)
	}

	b.Kill()
	b.Restart()

	off, err := produce(pid, epoch, 1)
	if err != nil || off != 1 {
		t.Fatalf("retry of batch 1 after a kill -9: offset %d, %v; want the original offset 1 "+
			"(the dedup window of the last 5 batches did not survive the restart: the producer snapshot keeps only the newest batch)", off, err)
	}
}

// rawBatch encodes a RecordBatch v2 with one record; pid -1 makes it a
// plain (non-idempotent) batch.
func rawBatch(pid int64, epoch int16, seq int32, value []byte) []byte {
	var rec []byte
	rec = append(rec, 0)              // attributes
	rec = binary.AppendVarint(rec, 0) // timestamp delta
	rec = binary.AppendVarint(rec, 0) // offset delta
	rec = binary.AppendVarint(rec, -1)
	rec = binary.AppendVarint(rec, int64(len(value)))
	rec = append(rec, value...)
	rec = binary.AppendVarint(rec, 0) // headers
	records := binary.AppendVarint(nil, int64(len(rec)))
	records = append(records, rec...)

	now := time.Now().UnixMilli()
	b := make([]byte, 0, 61+len(records))
	b = binary.BigEndian.AppendUint64(b, 0)                       // base offset
	b = binary.BigEndian.AppendUint32(b, uint32(49+len(records))) // length
	b = binary.BigEndian.AppendUint32(b, 0xffffffff)              // partition leader epoch
	b = append(b, 2)                                              // magic
	b = binary.BigEndian.AppendUint32(b, 0)                       // CRC, below
	b = binary.BigEndian.AppendUint16(b, 0)                       // attributes
	b = binary.BigEndian.AppendUint32(b, 0)                       // last offset delta
	b = binary.BigEndian.AppendUint64(b, uint64(now))
	b = binary.BigEndian.AppendUint64(b, uint64(now))
	b = binary.BigEndian.AppendUint64(b, uint64(pid))
	b = binary.BigEndian.AppendUint16(b, uint16(epoch))
	b = binary.BigEndian.AppendUint32(b, uint32(seq))
	b = binary.BigEndian.AppendUint32(b, 1) // records
	b = append(b, records...)
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}
