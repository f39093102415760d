package e2e

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/batchtest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawRequest sends one framed request body and returns the response body,
// or an error if the broker closed the connection.
func rawRequest(t *testing.T, addr string, frame []byte) ([]byte, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(frame); err != nil {
		return nil, err
	}
	// Half-close: a broker waiting for the rest of a truncated frame sees
	// EOF instead of waiting for bytes that never come.
	c.(*net.TCPConn).CloseWrite()
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	_, err = io.ReadFull(c, body)
	return body, err
}

// sendAndForget writes a frame without waiting for an answer: a random
// frame may decode as a long-polling Fetch or a JoinGroup.
func sendAndForget(t *testing.T, addr string, frame []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("broker stopped accepting connections: %v", err)
	}
	c.Write(frame)
	c.Close()
}

func framed(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// produceRaw sends a ProduceRequest v9 whose only partition carries records
// and returns the partition's error code.
func produceRaw(t *testing.T, addr, topic string, records []byte) int16 {
	t.Helper()
	return producePartition(t, addr, topic, records).ErrorCode
}

// TestBadInputGetsErrorsNotCorruption sends what a broken or hostile client
// might: oversize and truncated frames, garbage, unknown APIs and versions,
// bad topic names, corrupt, oversized and old-format batches. Each gets a
// Kafka error code or a closed connection; the broker stays up and the log
// holds only the good records.
func TestBadInputGetsErrorsNotCorruption(t *testing.T) {
	b := startBroker(t, "--socket-request-max-bytes", "1048576", "--message-max-bytes", "10000")
	addr := b.Addr()
	createTopic(t, addr, "bad", 1, nil)

	closed := func(name string, frame []byte) {
		t.Helper()
		if _, err := rawRequest(t, addr, frame); err == nil {
			t.Errorf("%s: got a response, want the connection closed", name)
		}
	}
	closed("oversize frame", binary.BigEndian.AppendUint32(nil, 200<<20))
	closed("negative size", binary.BigEndian.AppendUint32(nil, 0xffffffff))
	closed("truncated frame", append(binary.BigEndian.AppendUint32(nil, 100), 0, 3, 0, 1))
	closed("unknown api key", framed([]byte{0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0, 0}))
	produceV2 := kmsg.NewPtrProduceRequest()
	produceV2.Version = 2
	closed("unsupported produce version", kmsg.NewRequestFormatter().AppendRequest(nil, produceV2, 1))
	closed("garbage body", framed([]byte{0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 0xde, 0xad, 0xbe, 0xef}))

	// ApiVersions at a version from the future: a v0 UNSUPPORTED_VERSION answer.
	av := kmsg.NewPtrApiVersionsRequest()
	av.Version = 77
	body, err := rawRequest(t, addr, kmsg.NewRequestFormatter().AppendRequest(nil, av, 1))
	if err != nil {
		t.Fatalf("ApiVersions v77: %v", err)
	}
	avr := kmsg.NewPtrApiVersionsResponse()
	if err := avr.ReadFrom(body[4:]); err != nil || avr.ErrorCode != kerr.UnsupportedVersion.Code {
		t.Fatalf("ApiVersions v77: code %d err %v", avr.ErrorCode, err)
	}

	good := batchtest.Plain(3)
	if code := produceRaw(t, addr, "bad", good); code != 0 {
		t.Fatalf("good batch: %d", code)
	}
	corrupt := batchtest.Plain(3)
	corrupt[len(corrupt)-2] ^= 0x55
	cases := []struct {
		name    string
		topic   string
		records []byte
		want    int16
	}{
		{"bad CRC", "bad", corrupt, kerr.CorruptMessage.Code},
		{"too large", "bad", batchtest.Build(batchtest.Spec{Records: 2000, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}), kerr.MessageTooLarge.Code},
		{"magic 1", "bad", func() []byte { b := batchtest.Plain(1); b[16] = 1; return b }(), kerr.InvalidRecord.Code},
		{"two batches", "bad", append(batchtest.Plain(1), batchtest.Plain(1)...), kerr.InvalidRecord.Code},
		{"truncated batch", "bad", good[:len(good)-5], kerr.CorruptMessage.Code},
		{"empty records", "bad", nil, kerr.InvalidRecord.Code},
		{"invalid topic name", "bad topic!", good, kerr.InvalidTopicException.Code},
	}
	for _, c := range cases {
		if code := produceRaw(t, addr, c.topic, c.records); code != c.want {
			t.Errorf("%s: error %d (%v), want %d (%v)", c.name, code, kerr.ErrorForCode(code), c.want, kerr.ErrorForCode(c.want))
		}
	}

	// A bounded soak of random frames, then a healthy client still works
	// and the log holds exactly the one good batch.
	rng := rand.New(rand.NewPCG(1, 2))
	deadline := time.Now().Add(3 * time.Second)
	frames := 0
	for time.Now().Before(deadline) {
		n := rng.IntN(64)
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(rng.Uint32())
		}
		if n >= 4 && rng.IntN(2) == 0 { // a plausible header: a real key and version
			binary.BigEndian.PutUint16(payload[0:], uint16(rng.IntN(70)))
			binary.BigEndian.PutUint16(payload[2:], uint16(rng.IntN(13)))
		}
		sendAndForget(t, addr, framed(payload))
		frames++
	}
	t.Logf("sent %d random frames", frames)
	cl := newClient(t, addr, kgo.DefaultProduceTopic("bad"))
	ctx := testCtx(t, 30*time.Second)
	if err := cl.ProduceSync(ctx, kgo.StringRecord("after the storm")).FirstErr(); err != nil {
		t.Fatalf("healthy client after bad input: %v", err)
	}
	records := consumeAll(t, addr, "bad", 4)
	for i, r := range records[:3] {
		if string(r.Value) != "value-"+strconv.Itoa(i) {
			t.Fatalf("record %d is %q", i, r.Value)
		}
	}
	if string(records[3].Value) != "after the storm" || len(records) != 4 {
		t.Fatalf("log holds %d records, last %q", len(records), records[len(records)-1].Value)
	}
}
