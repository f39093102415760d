//go:build !linux

package brokerproc

import "syscall"

// sysProcAttr has no parent-death signal outside Linux: a broker may outlive
// a test process that crashes.
func sysProcAttr() *syscall.SysProcAttr { return nil }
