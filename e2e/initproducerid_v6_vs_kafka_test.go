package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/kafkafixture"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestInitProducerIDv6MatchesKafka pins what Kafka 4.4 does by default with
// InitProducerId v6 (KIP-939, two-phase commit): v6 is marked
// latestVersionUnstable in Kafka 4.4's schema, so a broker without
// unstable.api.versions.enable advertises 0-5 and closes the connection of a
// client that sends v6 anyway, with Enable2Pc set or not. oncelog must do the
// same until it implements 2PC. (With unstable.api.versions.enable=true Kafka
// 4.4 answers Enable2Pc=true, while transaction.two.phase.commit.enable is
// false, with TRANSACTIONAL_ID_AUTHORIZATION_FAILED.)
func TestInitProducerIDv6MatchesKafka(t *testing.T) {
	kafka := kafkafixture.StartT(t, kafkafixture.Options{})
	for _, target := range []struct{ name, addr string }{
		{"oncelog", startBroker(t).Addr()},
		{"kafka", kafka.Bootstrap()[0]},
	} {
		if min, max := initProducerIDVersions(t, target.addr); min != 0 || max != 5 {
			t.Errorf("%s advertises InitProducerId %d-%d, want 0-5 (Kafka 4.4's default)", target.name, min, max)
		}
		for _, enable2PC := range []bool{false, true} {
			if got := sendInitProducerIDv6(t, target.addr, enable2PC); len(got) != 0 {
				t.Errorf("%s answered InitProducerId v6 (Enable2Pc=%v) with %x; Kafka 4.4 closes the connection", target.name, enable2PC, got)
			}
		}
	}
}

func initProducerIDVersions(t *testing.T, addr string) (min, max int16) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range resp.ApiKeys {
		if k.ApiKey == 22 {
			return k.MinVersion, k.MaxVersion
		}
	}
	return -1, -1
}

// sendInitProducerIDv6 writes a raw InitProducerId v6 request (kmsg knows
// v0-5 only) for transactional id "tx" and returns whatever the broker
// sends back before it closes the connection.
func sendInitProducerIDv6(t *testing.T, addr string, enable2PC bool) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Header v2: api key 22, version 6, correlation id 1, client id "x",
	// no tagged fields.
	body := []byte{0, 22, 0, 6, 0, 0, 0, 1, 0, 1, 'x', 0}
	body = append(body, 3, 't', 'x') // TransactionalId, compact string
	body = binary.BigEndian.AppendUint32(body, 60000)
	body = binary.BigEndian.AppendUint64(body, ^uint64(0)) // ProducerId -1
	body = binary.BigEndian.AppendUint16(body, 0xffff)     // ProducerEpoch -1
	var enable byte
	if enable2PC {
		enable = 1
	}
	body = append(body, enable, 0, 0) // Enable2Pc, KeepPreparedTxn, no tagged fields
	msg := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	if _, err := c.Write(append(msg, body...)); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("%s kept the connection open for 30 s after InitProducerId v6 (answered %x)", addr, got)
	}
	return got
}
