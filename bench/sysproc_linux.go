package main

import "syscall"

// childProcAttr makes the kernel kill the broker if the bench dies, so an
// interrupted run never leaves a broker behind.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
