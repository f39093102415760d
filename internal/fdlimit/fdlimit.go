//go:build unix

// Package fdlimit reads and raises the process's file-descriptor limit
// (RLIMIT_NOFILE), which bounds the broker's partitions, segment files and
// connections together.
package fdlimit

import "syscall"

// Raise lifts the soft RLIMIT_NOFILE to the hard one and returns the limit
// then in force (soft) and the hard limit. Go already does this at start
// on Linux since 1.19; calling it makes the number known and logged, and
// covers platforms and runtimes where it did not happen.
func Raise() (soft, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			lim = raised
		}
	}
	return uint64(lim.Cur), uint64(lim.Max), nil
}
