//go:build !(linux || darwin || freebsd)

package segment

import "os"

// mapFile reads a whole index file into memory where mmap is not available.
func mapFile(path string) (data []byte, release func() error, err error) {
	data, err = os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return data, func() error { return nil }, nil
}
