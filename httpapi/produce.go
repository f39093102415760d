package httpapi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Request headers of a POST.
const (
	// IdempotencyKeyHeader is stored as the record header of the same name:
	// the dedup key of a topic with oncelog.dedup.key=header:Idempotency-Key.
	IdempotencyKeyHeader = "Idempotency-Key"
	// KafkaKeyHeader is the record key (optional): it picks the partition
	// as Kafka's default partitioner does, and is the dedup key of a topic
	// with oncelog.dedup.key=record-key.
	KafkaKeyHeader = "Kafka-Key"
)

// ProduceResponse is the body of a successful POST.
type ProduceResponse struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Duplicate bool   `json:"duplicate"`
}

// handleProduce appends the body as one record and answers once it is
// durable: 201 for a new record, 200 with the original's position when the
// key window already held its key with the same content.
func (s *Server) handleProduce(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	if err := broker.ValidTopicName(topic); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var headers []kmsg.Header
	if vs, ok := r.Header[IdempotencyKeyHeader]; ok {
		if len(vs) != 1 || vs[0] == "" {
			writeError(w, http.StatusBadRequest, "the Idempotency-Key header must be given once and not be empty")
			return
		}
		headers = append(headers, kmsg.Header{Key: IdempotencyKeyHeader, Value: []byte(vs[0])})
	}
	var key []byte // nil: no key, as a Kafka producer sends a keyless record
	if vs, ok := r.Header[KafkaKeyHeader]; ok {
		if len(vs) != 1 {
			writeError(w, http.StatusBadRequest, "the Kafka-Key header must be given at most once")
			return
		}
		key = []byte(vs[0])
	}
	partition := int32(-1)
	if p := r.URL.Query().Get("partition"); p != "" {
		n, err := strconv.ParseInt(p, 10, 32)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("partition %q is not a partition number", p))
			return
		}
		partition = int32(n)
	}

	info, kerr := s.b.Topic(topic)
	if kerr != nil {
		writeKafkaError(w, kerr)
		return
	}
	if partition >= int32(info.Partitions) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("topic %s has %d partitions, no partition %d", topic, info.Partitions, partition))
		return
	}
	value, status, err := readBody(w, r, info.MaxMessageBytes)
	if err != nil {
		writeError(w, status, err.Error())
		return
	}
	if partition < 0 {
		partition = s.pickPartition(topic, key, info.Partitions)
	}

	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	res, kerr := s.b.Produce(ctx, topic, partition, recordBatch(key, value, headers, time.Now()))
	if kerr != nil {
		writeKafkaError(w, kerr)
		return
	}
	status = http.StatusCreated
	if res.Duplicate {
		status = http.StatusOK
	}
	writeJSON(w, status, ProduceResponse{Topic: topic, Partition: res.Partition, Offset: res.Offset, Duplicate: res.Duplicate})
}

// readBody reads the record value, at most limit bytes (the topic's
// max.message.bytes: a bigger body could never fit in a batch).
func readBody(w http.ResponseWriter, r *http.Request, limit int) ([]byte, int, error) {
	tooLarge := func() ([]byte, int, error) {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the body is larger than the topic's max.message.bytes (%d)", limit)
	}
	if r.ContentLength > int64(limit) {
		return tooLarge()
	}
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		return tooLarge()
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, http.StatusRequestTimeout, errors.New("the body did not arrive within the request timeout")
	case err != nil:
		return nil, http.StatusBadRequest, fmt.Errorf("reading the body: %v", err)
	}
	if value == nil {
		value = []byte{} // an empty body is an empty value, not a null one
	}
	return value, 0, nil
}

// keyPartitioner is Kafka's default partitioner for keyed records
// (murmur2 of the key modulo the partition count), so a record posted over
// HTTP lands where a Kafka producer would put the same key.
var keyPartitioner = kgo.StickyKeyPartitioner(nil)

// pickPartition: murmur2 of the key as Kafka's default partitioner does;
// keyless records round robin.
func (s *Server) pickPartition(topic string, key []byte, partitions int) int32 {
	if key != nil {
		return int32(keyPartitioner.ForTopic(topic).Partition(&kgo.Record{Key: key}, partitions))
	}
	return int32((s.next.Add(1) - 1) % uint32(partitions))
}

// recordBatch encodes one record as a RecordBatch v2 without a producer id
// (not idempotent: HTTP retries are caught by the Idempotency-Key, not by
// producer sequences), uncompressed, CreateTime now.
func recordBatch(key, value []byte, headers []kmsg.Header, now time.Time) []byte {
	rec := kmsg.Record{Key: key, Value: value, Headers: headers}
	// Length is the varint-encoded size of the rest; encoded as 0 it takes
	// one byte, so the rest is everything after that byte.
	rec.Length = int32(len(rec.AppendTo(nil)) - 1)
	ms := now.UnixMilli()
	rb := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1, Magic: 2, LastOffsetDelta: 0,
		FirstTimestamp: ms, MaxTimestamp: ms,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		NumRecords: 1, Records: rec.AppendTo(nil),
	}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-batch.LengthFieldEnd))
	binary.BigEndian.PutUint32(b[17:], batch.ComputeCRC(b))
	return b
}
