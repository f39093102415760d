package wire

import (
	"encoding/binary"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// frame encodes a request body (without the size prefix) as a client would.
func frame(req kmsg.Request, corr int32) []byte {
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("fuzz"))
	b := f.AppendRequest(nil, req, corr)
	return b[4:]
}

// FuzzRequestDecode feeds arbitrary request bodies to the decoder: it must
// return an error or a request, never panic, and never accept a request of
// a version we don't serve.
func FuzzRequestDecode(f *testing.F) {
	for _, req := range []kmsg.Request{
		kmsg.NewPtrApiVersionsRequest(),
		kmsg.NewPtrMetadataRequest(),
		func() kmsg.Request { r := kmsg.NewPtrProduceRequest(); r.Version = 9; return r }(),
		func() kmsg.Request { r := kmsg.NewPtrFetchRequest(); r.Version = 12; return r }(),
		func() kmsg.Request { r := kmsg.NewPtrJoinGroupRequest(); r.Version = 9; return r }(),
		// The versions that name topics by id, and DeleteGroups v3.
		func() kmsg.Request {
			r := kmsg.NewPtrOffsetCommitRequest()
			r.Version, r.Topics = 10, []kmsg.OffsetCommitRequestTopic{{TopicID: [16]byte{1}, Partitions: []kmsg.OffsetCommitRequestTopicPartition{{}}}}
			return r
		}(),
		func() kmsg.Request {
			r := kmsg.NewPtrOffsetFetchRequest()
			r.Version, r.Groups = 10, []kmsg.OffsetFetchRequestGroup{{Group: "g", Topics: []kmsg.OffsetFetchRequestGroupTopic{{TopicID: [16]byte{1}, Partitions: []int32{0}}}}}
			return r
		}(),
		func() kmsg.Request {
			r := kmsg.NewPtrTxnOffsetCommitRequest()
			r.Version, r.Topics = 6, []kmsg.TxnOffsetCommitRequestTopic{{TopicID: [16]byte{1}, Partitions: []kmsg.TxnOffsetCommitRequestTopicPartition{{}}}}
			return r
		}(),
		func() kmsg.Request {
			r := kmsg.NewPtrDeleteGroupsRequest()
			r.Version, r.Groups = 3, []string{"g"}
			return r
		}(),
		func() kmsg.Request { r := kmsg.NewPtrInitProducerIDRequest(); r.Version = 4; return r }(),
	} {
		f.Add(frame(req, 1))
	}
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, body []byte) {
		var c conn
		req, resp, err := c.decode(body)
		if err != nil {
			return
		}
		if resp != nil {
			return // ApiVersions fallback
		}
		h := handlers[req.key]
		if req.version < h.min || req.version > h.max {
			t.Fatalf("accepted %d v%d outside %d-%d", req.key, req.version, h.min, h.max)
		}
		if req.kreq == nil {
			t.Fatal("nil request without error")
		}
	})
}

func TestDecodeRejectsUnknownAndUnsupported(t *testing.T) {
	var c conn
	body := make([]byte, 10)
	binary.BigEndian.PutUint16(body[0:], 9999) // unknown API key
	if _, _, err := c.decode(body); err == nil {
		t.Fatal("unknown api key accepted")
	}
	r := kmsg.NewPtrProduceRequest()
	r.Version = 2 // message sets: not served
	if _, _, err := c.decode(frame(r, 1)); err == nil {
		t.Fatal("Produce v2 accepted")
	}
	av := kmsg.NewPtrApiVersionsRequest()
	av.Version = 99
	_, resp, err := c.decode(frame(av, 1))
	if err != nil || resp == nil {
		t.Fatalf("ApiVersions v99: resp=%v err=%v, want a v0 UNSUPPORTED_VERSION answer", resp, err)
	}
	if resp.(*kmsg.ApiVersionsResponse).ErrorCode != 35 {
		t.Fatal("want UNSUPPORTED_VERSION")
	}
}
