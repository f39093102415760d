//go:build !linux

package chaos

import "syscall"

// sysProcAttr has no parent-death signal outside Linux: a broker may outlive
// a harness that crashes.
func sysProcAttr() *syscall.SysProcAttr { return nil }
