package brokerproc

import "syscall"

// sysProcAttr makes the kernel kill the broker if the test process dies
// (a test timeout, a crash), so no orphan broker keeps its ports and files.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
