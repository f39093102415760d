package testbroker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	// probeInterval is the pause between readiness probes.
	probeInterval = 50 * time.Millisecond
	// probeTimeout bounds one probe (dial, request, response).
	probeTimeout = 2 * time.Second
	// probeCorrelationID is arbitrary; a reply must echo it.
	probeCorrelationID = 0x0ce1
	// maxProbeResponse guards against reading a garbage size prefix.
	maxProbeResponse = 1 << 20
)

// waitReady probes addr until the broker answers, the process exits (exited
// closes) or timeout passes.
func waitReady(addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := probe(addr, min(probeTimeout, time.Until(deadline)))
		if err == nil {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("no ApiVersions answer within %v: %w", timeout, err)
		}
		select {
		case <-exited:
			return fmt.Errorf("process exited before it answered (last probe: %w)", err)
		case <-time.After(probeInterval):
		}
	}
}

// probe sends one ApiVersions request, as a Kafka client's first request on a
// connection, and checks that the answer is a well-formed ApiVersions
// response.
func probe(addr string, timeout time.Duration) error {
	if timeout <= 0 {
		return errors.New("probe timeout expired")
	}
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}

	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName = "oncelog-testbroker"
	req.ClientSoftwareVersion = "0"
	formatter := kmsg.NewRequestFormatter(kmsg.FormatterClientID("oncelog-testbroker"))
	if _, err := conn.Write(formatter.AppendRequest(nil, req, probeCorrelationID)); err != nil {
		return err
	}

	var sizeBuf [4]byte
	if _, err := io.ReadFull(conn, sizeBuf[:]); err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	size := binary.BigEndian.Uint32(sizeBuf[:])
	if size < 4 || size > maxProbeResponse {
		return fmt.Errorf("implausible response size %d", size)
	}
	frame := make([]byte, size)
	if _, err := io.ReadFull(conn, frame); err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	// ApiVersions responses always use header v0 (just the correlation id),
	// even for flexible versions, so a client can read them before it knows
	// which versions the broker speaks.
	if id := int32(binary.BigEndian.Uint32(frame[:4])); id != probeCorrelationID {
		return fmt.Errorf("response correlation id %d, want %d", id, probeCorrelationID)
	}
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = req.Version
	if err := resp.ReadFrom(frame[4:]); err != nil {
		// A broker that does not serve this version answers with a v0 body
		// and UNSUPPORTED_VERSION; it is up, which is all a probe asks.
		resp = kmsg.NewPtrApiVersionsResponse()
		if errV0 := resp.ReadFrom(frame[4:]); errV0 != nil || resp.ErrorCode != kerr.UnsupportedVersion.Code {
			return fmt.Errorf("undecodable ApiVersions response: %w", err)
		}
	}
	if resp.ErrorCode != 0 && resp.ErrorCode != kerr.UnsupportedVersion.Code {
		return fmt.Errorf("ApiVersions error: %w", kerr.ErrorForCode(resp.ErrorCode))
	}
	if len(resp.ApiKeys) == 0 {
		return errors.New("ApiVersions response lists no APIs")
	}
	return nil
}
