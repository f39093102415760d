//go:build !(linux || darwin || freebsd)

package fsx

const mmapSupported = false

func mmap(uintptr, string, int64) ([]byte, func() error, error) { panic("unreachable") }
