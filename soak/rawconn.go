package soak

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawConn is one hostile client's TCP connection: requests are written as
// kmsg frames (or raw bytes) and responses read back with a bound on their
// size, so a broker that answers too much is caught rather than believed.
type rawConn struct {
	net.Conn
	corr      int32
	formatter *kmsg.RequestFormatter
	stop      func() bool // unregisters the close-on-cancel hook
}

const dialTimeout = 10 * time.Second

// dialRaw connects to addr; the connection is closed when ctx ends.
func dialRaw(ctx context.Context, addr string) (*rawConn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &rawConn{
		Conn:      c,
		formatter: kmsg.NewRequestFormatter(kmsg.FormatterClientID("oncelog-soak-hostile")),
		stop:      context.AfterFunc(ctx, func() { c.Close() }),
	}, nil
}

func (c *rawConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// frame encodes req with the next correlation id.
func (c *rawConn) frame(req kmsg.Request) ([]byte, int32) {
	c.corr++
	return c.formatter.AppendRequest(nil, req, c.corr), c.corr
}

// send writes req and returns its correlation id.
func (c *rawConn) send(req kmsg.Request) (int32, error) {
	b, corr := c.frame(req)
	_, err := c.Write(b)
	return corr, err
}

// recv reads one response to req (sent with correlation id corr). A
// response frame bigger than maxBytes is an error of its own
// (errTooLarge), reported with its declared size, and is not read.
func (c *rawConn) recv(req kmsg.Request, corr int32, maxBytes int) (kmsg.Response, int, error) {
	var sizeBuf [4]byte
	if _, err := io.ReadFull(c, sizeBuf[:]); err != nil {
		return nil, 0, err
	}
	size := int(binary.BigEndian.Uint32(sizeBuf[:]))
	if size > maxBytes {
		return nil, size, fmt.Errorf("%w: %d bytes, bound %d", errTooLarge, size, maxBytes)
	}
	if size < 4 {
		return nil, size, fmt.Errorf("%w: frame of %d bytes", errMalformed, size)
	}
	frame := make([]byte, size)
	if _, err := io.ReadFull(c, frame); err != nil {
		return nil, size, err
	}
	if got := int32(binary.BigEndian.Uint32(frame)); got != corr {
		return nil, size, fmt.Errorf("%w: correlation id %d, want %d", errMalformed, got, corr)
	}
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	body := frame[4:]
	// Flexible responses have a tag section in their header, except
	// ApiVersions (header v0 always).
	if resp.IsFlexible() && req.Key() != 18 {
		var err error
		if body, err = skipTags(body); err != nil {
			return nil, size, err
		}
	}
	if err := resp.ReadFrom(body); err != nil {
		return nil, size, fmt.Errorf("%w: %v", errMalformed, err)
	}
	return resp, size, nil
}

// roundTrip sends req and reads its response.
func (c *rawConn) roundTrip(req kmsg.Request, maxBytes int) (kmsg.Response, int, error) {
	corr, err := c.send(req)
	if err != nil {
		return nil, 0, err
	}
	return c.recv(req, corr, maxBytes)
}

func skipTags(b []byte) ([]byte, error) {
	n, used := binary.Uvarint(b)
	if used <= 0 {
		return nil, fmt.Errorf("%w: bad header tag count", errMalformed)
	}
	b = b[used:]
	for range n {
		_, used = binary.Uvarint(b) // key
		if used <= 0 {
			return nil, fmt.Errorf("%w: bad header tag", errMalformed)
		}
		b = b[used:]
		size, used := binary.Uvarint(b)
		if used <= 0 || uint64(len(b)-used) < size {
			return nil, fmt.Errorf("%w: bad header tag", errMalformed)
		}
		b = b[used+int(size):]
	}
	return b, nil
}

var (
	errTooLarge  = errors.New("response larger than its bound")
	errMalformed = errors.New("malformed response")
)

// isClosed reports whether err means the broker closed (or reset) the
// connection, which is an acceptable answer to a hostile client.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// isTimeout reports whether err is a deadline passing.
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}
