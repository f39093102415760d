package fdlimit

// Needed estimates the descriptors a broker may use: two per partition (the
// active segment, the aborted-transaction index), the closed segments' file
// cache, the connections, and a reserve for the metadata stores, listeners
// and short-lived files.
func Needed(partitions, segmentFiles, connections int) uint64 {
	return uint64(2*partitions+segmentFiles+connections) + 256
}
