//go:build !linux

package kafkafixture

import "syscall"

// sysProcAttr has no parent-death signal outside Linux: a Kafka JVM may
// outlive a Go process that crashes.
func sysProcAttr() *syscall.SysProcAttr { return nil }
