//go:build !linux

package cleaner

// lowerPriority is a no-op where threads have no nice value of their own.
func lowerPriority() {}
