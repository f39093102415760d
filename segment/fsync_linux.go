//go:build linux

package segment

import (
	"os"
	"syscall"
)

// fdatasync flushes a file's data and the metadata needed to read it back
// (its size), but not its timestamps: cheaper than fsync for an append-only
// log. The call goes through SyscallConn so the descriptor cannot be closed
// and reused underneath it.
func fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var syncErr error
	if err := rc.Control(func(fd uintptr) {
		for {
			syncErr = syscall.Fdatasync(int(fd))
			if syncErr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if syncErr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: syncErr}
	}
	return nil
}

// dirSyncSupported: Linux fsyncs directories, which is what makes file
// creation, renames and removals durable.
const dirSyncSupported = true
