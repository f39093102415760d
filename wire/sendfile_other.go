//go:build !linux

package wire

import (
	"fmt"
	"net"

	"github.com/oncelog/oncelog/segment"
)

// sendfile without sendfile(2): the span is read and written.
func sendfile(tcp *net.TCPConn, sp segment.Span) error {
	b := make([]byte, sp.Len)
	if n, err := sp.File.ReadAt(b, sp.Pos); n < sp.Len {
		return fmt.Errorf("segment file ended %d bytes short of a fetch span: %w", sp.Len-n, err)
	}
	_, err := tcp.Write(b)
	return err
}
