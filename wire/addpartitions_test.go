package wire

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/txn"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawConn sends each request at exactly the version set on it. A kgo client
// would not: its sharder sends a single AddPartitionsToTxn transaction at v3
// and anything batched or VerifyOnly at the broker's highest version.
type rawConn struct {
	t    *testing.T
	nc   net.Conn
	corr int32
	// clientID, if set, is sent in every request header.
	clientID *string
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc}
}

func (rc *rawConn) do(req kmsg.Request) kmsg.Response {
	t := rc.t
	t.Helper()
	rc.corr++
	if err := rc.nc.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var opts []kmsg.RequestFormatterOpt
	if rc.clientID != nil {
		opts = append(opts, kmsg.FormatterClientID(*rc.clientID))
	}
	if _, err := rc.nc.Write(kmsg.NewRequestFormatter(opts...).AppendRequest(nil, req, rc.corr)); err != nil {
		t.Fatal(err)
	}
	var size [4]byte
	if _, err := io.ReadFull(rc.nc, size[:]); err != nil {
		t.Fatalf("key %d v%d: %v", req.Key(), req.GetVersion(), err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(rc.nc, body); err != nil {
		t.Fatal(err)
	}
	if corr := int32(binary.BigEndian.Uint32(body)); corr != rc.corr {
		t.Fatalf("correlation id %d, want %d", corr, rc.corr)
	}
	body = body[4:]
	if req.IsFlexible() && req.Key() != 18 { // response header v1: tagged fields
		body = skipTags(t, body)
	}
	resp := req.ResponseKind()
	if err := resp.ReadFrom(body); err != nil {
		t.Fatalf("key %d v%d response: %v", req.Key(), req.GetVersion(), err)
	}
	// A string whose length overflowed its prefix decodes "successfully"
	// but leaves bytes over: re-encoding shows it.
	if n := len(resp.AppendTo(nil)); n != len(body) {
		t.Fatalf("key %d v%d response: %d bytes, of which a decoder reads %d (malformed)", req.Key(), req.GetVersion(), len(body), n)
	}
	return resp
}

func skipTags(t *testing.T, b []byte) []byte {
	t.Helper()
	uvarint := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			t.Fatal("bad tagged fields in the response header")
		}
		b = b[n:]
		return v
	}
	for n := uvarint(); n > 0; n-- {
		uvarint() // tag
		size := uvarint()
		if size > uint64(len(b)) {
			t.Fatal("bad tagged field size in the response header")
		}
		b = b[size:]
	}
	return b
}

// batchTxn is one transaction of an AddPartitionsToTxn v4+ request.
func batchTxn(id string, pid int64, epoch int16, verifyOnly bool, topic string, partitions ...int32) kmsg.AddPartitionsToTxnRequestTransaction {
	t := kmsg.NewAddPartitionsToTxnRequestTransaction()
	t.TransactionalID, t.ProducerID, t.ProducerEpoch, t.VerifyOnly = id, pid, epoch, verifyOnly
	rt := kmsg.NewAddPartitionsToTxnRequestTransactionTopic()
	rt.Topic, rt.Partitions = topic, partitions
	t.Topics = append(t.Topics, rt)
	return t
}

// batchCodes maps each transactional id of a v4+ response to its partitions' codes.
type batchCodes map[string]map[int32]int16

func (rc *rawConn) addBatch(version int16, txns ...kmsg.AddPartitionsToTxnRequestTransaction) batchCodes {
	rc.t.Helper()
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version = version
	req.Transactions = txns
	resp := rc.do(req).(*kmsg.AddPartitionsToTxnResponse)
	if resp.ErrorCode != 0 || len(resp.Topics) != 0 {
		rc.t.Fatalf("v%d: top-level error %d, %d v3 topics", version, resp.ErrorCode, len(resp.Topics))
	}
	out := batchCodes{}
	for _, rt := range resp.Transactions {
		if _, dup := out[rt.TransactionalID]; dup {
			rc.t.Fatalf("v%d: two results for %q", version, rt.TransactionalID)
		}
		codes := map[int32]int16{}
		for _, st := range rt.Topics {
			for _, sp := range st.Partitions {
				if _, dup := codes[sp.Partition]; dup {
					rc.t.Fatalf("v%d: %q answers %s/%d twice", version, rt.TransactionalID, st.Topic, sp.Partition)
				}
				codes[sp.Partition] = sp.ErrorCode
			}
		}
		out[rt.TransactionalID] = codes
	}
	return out
}

// addV3 sends the client form and returns the codes by partition.
func (rc *rawConn) addV3(id string, pid int64, epoch int16, topic string, partitions ...int32) map[int32]int16 {
	rc.t.Helper()
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version = 3
	req.TransactionalID, req.ProducerID, req.ProducerEpoch = id, pid, epoch
	rt := kmsg.NewAddPartitionsToTxnRequestTopic()
	rt.Topic, rt.Partitions = topic, partitions
	req.Topics = append(req.Topics, rt)
	resp := rc.do(req).(*kmsg.AddPartitionsToTxnResponse)
	if len(resp.Transactions) != 0 {
		rc.t.Fatal("v3 answered with v4 results")
	}
	codes := map[int32]int16{}
	for _, st := range resp.Topics {
		for _, sp := range st.Partitions {
			codes[sp.Partition] = sp.ErrorCode
		}
	}
	return codes
}

// partitionsInTxn asks DescribeTransactions for the partitions of id's
// transaction, sorted.
func (rc *rawConn) partitionsInTxn(id string) []int32 {
	rc.t.Helper()
	req := kmsg.NewPtrDescribeTransactionsRequest()
	req.TransactionalIDs = []string{id}
	resp := rc.do(req).(*kmsg.DescribeTransactionsResponse)
	if len(resp.TransactionStates) != 1 || resp.TransactionStates[0].ErrorCode != 0 {
		rc.t.Fatalf("describe %q: %+v", id, resp.TransactionStates)
	}
	var out []int32
	for _, st := range resp.TransactionStates[0].Topics {
		out = append(out, st.Partitions...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

type txnProducer struct {
	id    string
	pid   int64
	epoch int16
}

// startTxnBroker starts a broker with topic "apt" (3 partitions) and
// transactional ids tx-a, tx-b and tx-c initialised.
func startTxnBroker(t *testing.T) (*broker.Broker, *rawConn, map[string]txnProducer) {
	t.Helper()
	b, addr := startInProcess(t)
	if _, terr := b.CreateTopic("apt", 3, 1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	producers := map[string]txnProducer{}
	for _, id := range []string{"tx-a", "tx-b", "tx-c"} {
		pid, epoch, code := b.Txns.InitProducerID(context.Background(), id, 60000, -1, -1, 4)
		if code != 0 {
			t.Fatalf("init %s: %v", id, kerr.ErrorForCode(code))
		}
		producers[id] = txnProducer{id, pid, epoch}
	}
	return b, dialRaw(t, addr), producers
}

func wantCodes(t *testing.T, what string, got, want map[int32]int16) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: codes %v, want %v", what, got, want)
	}
}

func TestAddPartitionsToTxnV3Unchanged(t *testing.T) {
	_, rc, p := startTxnBroker(t)
	a := p["tx-a"]
	wantCodes(t, "add", rc.addV3(a.id, a.pid, a.epoch, "apt", 0, 1), map[int32]int16{0: 0, 1: 0})
	wantCodes(t, "unknown partition", rc.addV3(a.id, a.pid, a.epoch, "apt", 2, 9),
		map[int32]int16{2: kerr.OperationNotAttempted.Code, 9: kerr.UnknownTopicOrPartition.Code})
	wantCodes(t, "wrong epoch", rc.addV3(a.id, a.pid, a.epoch+1, "apt", 2), map[int32]int16{2: kerr.ProducerFenced.Code})
	if got := rc.partitionsInTxn(a.id); !reflect.DeepEqual(got, []int32{0, 1}) {
		t.Fatalf("partitions in txn %v, want [0 1]", got)
	}
}

func TestAddPartitionsToTxnVerifyOnly(t *testing.T) {
	_, rc, p := startTxnBroker(t)
	a, b := p["tx-a"], p["tx-b"]
	wantCodes(t, "v3 add", rc.addV3(a.id, a.pid, a.epoch, "apt", 0), map[int32]int16{0: 0})

	got := rc.addBatch(4, batchTxn(a.id, a.pid, a.epoch, true, "apt", 0, 1))
	wantCodes(t, "v4 verify", got[a.id], map[int32]int16{0: 0, 1: kerr.InvalidTxnState.Code})
	got = rc.addBatch(5, batchTxn(a.id, a.pid, a.epoch, true, "apt", 0, 1))
	wantCodes(t, "v5 verify", got[a.id], map[int32]int16{0: 0, 1: kerr.TransactionAbortable.Code})
	got = rc.addBatch(4, batchTxn(b.id, b.pid, b.epoch, true, "apt", 0))
	wantCodes(t, "verify without a transaction", got[b.id], map[int32]int16{0: kerr.InvalidTxnState.Code})
	got = rc.addBatch(4, batchTxn(a.id, a.pid, a.epoch+1, true, "apt", 0))
	wantCodes(t, "verify at the wrong epoch", got[a.id], map[int32]int16{0: kerr.ProducerFenced.Code})
	got = rc.addBatch(4, batchTxn(a.id, b.pid, a.epoch, true, "apt", 0))
	wantCodes(t, "verify with another producer id", got[a.id], map[int32]int16{0: kerr.InvalidProducerIDMapping.Code})
	got = rc.addBatch(4, batchTxn("nobody", a.pid, a.epoch, true, "apt", 0))
	wantCodes(t, "verify an unknown id", got["nobody"], map[int32]int16{0: kerr.InvalidProducerIDMapping.Code})
	got = rc.addBatch(4, batchTxn(a.id, a.pid, a.epoch, true, "apt", 0, 9))
	wantCodes(t, "verify an unknown partition", got[a.id], map[int32]int16{0: kerr.OperationNotAttempted.Code, 9: kerr.UnknownTopicOrPartition.Code})

	// Verifying added nothing.
	if parts := rc.partitionsInTxn(a.id); !reflect.DeepEqual(parts, []int32{0}) {
		t.Fatalf("tx-a partitions %v after verifying, want [0]", parts)
	}
	if parts := rc.partitionsInTxn(b.id); len(parts) != 0 {
		t.Fatalf("tx-b partitions %v after verifying, want none", parts)
	}
}

func TestAddPartitionsToTxnV4Adds(t *testing.T) {
	_, rc, p := startTxnBroker(t)
	a := p["tx-a"]
	got := rc.addBatch(4, batchTxn(a.id, a.pid, a.epoch+1, false, "apt", 1))
	wantCodes(t, "add at the wrong epoch", got[a.id], map[int32]int16{1: kerr.ProducerFenced.Code})
	got = rc.addBatch(4, batchTxn("", a.pid, a.epoch, false, "apt", 1))
	wantCodes(t, "add with an empty id", got[""], map[int32]int16{1: kerr.InvalidRequest.Code})
	if parts := rc.partitionsInTxn(a.id); len(parts) != 0 {
		t.Fatalf("failed adds added %v", parts)
	}
	got = rc.addBatch(4, batchTxn(a.id, a.pid, a.epoch, false, "apt", 1, 2))
	wantCodes(t, "v4 add", got[a.id], map[int32]int16{1: 0, 2: 0})
	got = rc.addBatch(5, batchTxn(a.id, a.pid, a.epoch, false, "apt", 0))
	wantCodes(t, "v5 add", got[a.id], map[int32]int16{0: 0})
	if parts := rc.partitionsInTxn(a.id); !reflect.DeepEqual(parts, []int32{0, 1, 2}) {
		t.Fatalf("partitions %v, want [0 1 2]", parts)
	}
	got = rc.addBatch(5, batchTxn(a.id, a.pid, a.epoch, true, "apt", 0, 1, 2))
	wantCodes(t, "verify what was added", got[a.id], map[int32]int16{0: 0, 1: 0, 2: 0})
}

func TestAddPartitionsToTxnBatchOfTransactions(t *testing.T) {
	_, rc, p := startTxnBroker(t)
	a, b, c := p["tx-a"], p["tx-b"], p["tx-c"]
	wantCodes(t, "v3 add", rc.addV3(a.id, a.pid, a.epoch, "apt", 0), map[int32]int16{0: 0})
	got := rc.addBatch(5,
		batchTxn(a.id, a.pid, a.epoch, true, "apt", 0, 1),
		batchTxn(b.id, b.pid, b.epoch, false, "apt", 1, 2),
		batchTxn(c.id, c.pid, c.epoch+1, false, "apt", 0),
	)
	want := batchCodes{
		a.id: {0: 0, 1: kerr.TransactionAbortable.Code},
		b.id: {1: 0, 2: 0},
		c.id: {0: kerr.ProducerFenced.Code},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for id, wantParts := range map[string][]int32{a.id: {0}, b.id: {1, 2}, c.id: nil} {
		if parts := rc.partitionsInTxn(id); !reflect.DeepEqual(parts, wantParts) {
			t.Fatalf("%s partitions %v, want %v", id, parts, wantParts)
		}
	}
}

// A transactional id named twice gets one result, INVALID_REQUEST for the
// partitions of both entries, and neither entry is applied; the other
// transactions of the request are.
func TestAddPartitionsToTxnDuplicateID(t *testing.T) {
	_, rc, p := startTxnBroker(t)
	a, b := p["tx-a"], p["tx-b"]
	got := rc.addBatch(4,
		batchTxn(a.id, a.pid, a.epoch, false, "apt", 0),
		batchTxn(b.id, b.pid, b.epoch, false, "apt", 0),
		batchTxn(a.id, a.pid, a.epoch, true, "apt", 0, 1),
	)
	want := batchCodes{
		a.id: {0: kerr.InvalidRequest.Code, 1: kerr.InvalidRequest.Code},
		b.id: {0: 0},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if parts := rc.partitionsInTxn(a.id); len(parts) != 0 {
		t.Fatalf("duplicate entries added %v", parts)
	}
}

// Advertising v5 must not move clients off v3: kgo's transactional
// producer still adds partitions and commits.
func TestTransactionalProducerAfterV5(t *testing.T) {
	b, addr := startInProcess(t)
	if _, terr := b.CreateTopic("apt", 1, 1, nil, false); terr != nil {
		t.Fatal(terr)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("kgo-txn"), kgo.DefaultProduceTopic("apt"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if info, _ := b.Txns.Describe("kgo-txn"); !reflect.DeepEqual(info.Partitions, []txn.TopicPartition{{Topic: "apt", Partition: 0}}) {
		t.Fatalf("partitions in txn: %v", info.Partitions)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
}
