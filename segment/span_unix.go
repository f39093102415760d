//go:build unix

package segment

import (
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"

	"github.com/oncelog/oncelog/internal/fsx"
)

// dupFile duplicates f's operating-system descriptor (close-on-exec) as an
// *os.File of its own, or reports false for a file without one (a test
// filesystem) or when the process is out of descriptors: the caller then
// copies the bytes instead.
func dupFile(f fsx.File, name string) (*os.File, bool) {
	fd := f.Fd()
	if fd == vfs.InvalidFd {
		return nil, false
	}
	nfd, err := unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, false
	}
	return os.NewFile(uintptr(nfd), name), true
}
