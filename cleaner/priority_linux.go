package cleaner

import (
	"runtime"
	"syscall"
)

// lowerPriority pins the calling goroutine (a cleaner thread) to its OS
// thread and gives that thread a nice value of 10, so that on a busy
// machine the produce and fetch paths win the CPU over compaction, which
// can wait (Kafka's cleaner threads compete on equal terms; here the
// appends would lose up to a third of their throughput on two cores). The
// goroutine keeps the thread until it exits.
func lowerPriority() {
	runtime.LockOSThread()
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), 10)
}
