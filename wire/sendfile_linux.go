package wire

import (
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"

	"github.com/oncelog/oncelog/segment"
)

// sendfile sends sp (a file span) to the socket with sendfile(2) at the
// span's own offset: the descriptor's file position is not used, so
// concurrent fetches of one segment do not disturb each other. It waits
// for the socket to drain as a Write would, under the write deadline.
func sendfile(tcp *net.TCPConn, sp segment.Span) error {
	rc, err := tcp.SyscallConn()
	if err != nil {
		return err
	}
	src := int(sp.File.Fd())
	off, remain := sp.Pos, sp.Len
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		for remain > 0 {
			n, err := unix.Sendfile(int(fd), src, &off, min(remain, 1<<30))
			if n > 0 {
				remain -= n
			}
			switch {
			case err == unix.EAGAIN:
				return false // wait until the socket is writable
			case err == unix.EINTR:
				continue
			case err != nil:
				serr = err
				return true
			case n == 0:
				serr = fmt.Errorf("segment file ended %d bytes short of a fetch span: %w", remain, io.ErrUnexpectedEOF)
				return true
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	return serr
}
