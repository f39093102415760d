//go:build !unix

package fdlimit

import "errors"

// Raise reports that the limit is unknown on this platform.
func Raise() (soft, hard uint64, err error) {
	return 0, 0, errors.New("RLIMIT_NOFILE is not available on this platform")
}
