package kafkafixture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// probeCorrelationID is arbitrary; the answer must echo it.
const probeCorrelationID = 0x0ce2

// maxProbeResponse guards against reading a garbage size prefix.
const maxProbeResponse = 1 << 20

// metadataBrokers asks the broker at addr, on its own listener rather than
// the advertised address (which may be a proxy not yet pointed at it), for
// Metadata without topics and returns how many brokers it lists.
func metadataBrokers(addr string, timeout time.Duration) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, err
	}
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 12
	req.Topics = []kmsg.MetadataRequestTopic{}
	formatter := kmsg.NewRequestFormatter(kmsg.FormatterClientID("oncelog-kafkafixture"))
	if _, err := conn.Write(formatter.AppendRequest(nil, req, probeCorrelationID)); err != nil {
		return 0, err
	}
	var sizeBuf [4]byte
	if _, err := io.ReadFull(conn, sizeBuf[:]); err != nil {
		return 0, fmt.Errorf("reading Metadata response: %w", err)
	}
	size := binary.BigEndian.Uint32(sizeBuf[:])
	if size < 5 || size > maxProbeResponse {
		return 0, fmt.Errorf("implausible Metadata response size %d", size)
	}
	frame := make([]byte, size)
	if _, err := io.ReadFull(conn, frame); err != nil {
		return 0, fmt.Errorf("reading Metadata response: %w", err)
	}
	if id := int32(binary.BigEndian.Uint32(frame[:4])); id != probeCorrelationID {
		return 0, fmt.Errorf("metadata response correlation id %d, want %d", id, probeCorrelationID)
	}
	body, err := skipTags(frame[4:])
	if err != nil {
		return 0, err
	}
	resp := kmsg.NewPtrMetadataResponse()
	resp.Version = req.Version
	if err := resp.ReadFrom(body); err != nil {
		return 0, fmt.Errorf("undecodable Metadata response: %w", err)
	}
	return len(resp.Brokers), nil
}

// skipTags skips the tagged fields of a flexible response header (v1).
func skipTags(b []byte) ([]byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, errors.New("bad response header tag count")
	}
	b = b[k:]
	for range n {
		if _, k = binary.Uvarint(b); k <= 0 {
			return nil, errors.New("bad response header tag")
		}
		b = b[k:]
		size, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < size {
			return nil, errors.New("bad response header tag size")
		}
		b = b[k+int(size):]
	}
	return b, nil
}
