//go:build !linux

package segment

import "os"

// fdatasync falls back to a full fsync (F_FULLFSYNC on macOS) where
// fdatasync(2) is not available.
func fdatasync(f *os.File) error { return f.Sync() }

// dirSyncSupported is false where syncing a directory may be refused
// (Windows, some macOS file systems): there it is best effort. Linux is the
// platform whose crash guarantees this package is written for.
const dirSyncSupported = false
