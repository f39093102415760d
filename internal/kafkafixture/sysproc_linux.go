package kafkafixture

import "syscall"

// sysProcAttr makes the kernel kill a Kafka JVM if the Go process that
// started it dies (a test timeout, a crash), so no orphan broker keeps its
// ports, its memory and its data directory busy.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
