package chaos

import "syscall"

// sysProcAttr makes the kernel kill the broker if the harness dies, so no
// orphan broker keeps its ports and files.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
