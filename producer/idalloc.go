package producer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"sync"

	"github.com/oncelog/oncelog/internal/fsx"
)

// IDBlockSize is how many producer ids one durable reservation covers, as in
// Kafka's ProducerIdsBlock.
const IDBlockSize = 1000

// idFileMagic starts the allocator's file: "OPID", then the i64 end of the
// reserved block and a CRC-32C of those 12 bytes.
const (
	idFileMagic = "OPID"
	idFileSize  = 16
)

// IDAllocator hands out broker-wide producer ids that are never reused, even
// across crashes: before any id of a block is returned, the block's end is
// durably written, and a restart continues after it (skipping whatever the
// crashed process had not handed out).
type IDAllocator struct {
	mu   sync.Mutex
	fs   fsx.FS
	path string
	next int64 // next id to hand out
	end  int64 // ids below end are durably reserved
}

// OpenIDAllocator loads the allocator's state from path, starting from id 0
// if the file does not exist. A damaged file is an error rather than a
// restart from 0, which could hand out ids again. fs nil is the operating
// system's filesystem.
func OpenIDAllocator(fs fsx.FS, path string) (*IDAllocator, error) {
	fs = fsx.Or(fs)
	end := int64(0)
	data, err := fsx.ReadFile(fs, path)
	switch {
	case fsx.IsNotExist(err):
	case err != nil:
		return nil, err
	default:
		if end, err = decodeIDFile(data); err != nil {
			return nil, fmt.Errorf("producer: id allocator %s: %w", path, err)
		}
	}
	_ = fs.Remove(path + tempSuffix)
	return &IDAllocator{fs: fs, path: path, next: end, end: end}, nil
}

func decodeIDFile(data []byte) (int64, error) {
	if len(data) != idFileSize || string(data[:4]) != idFileMagic {
		return 0, errors.New("not a producer id block file")
	}
	if crc32.Checksum(data[:12], castagnoli) != binary.BigEndian.Uint32(data[12:]) {
		return 0, errors.New("CRC mismatch")
	}
	end := int64(binary.BigEndian.Uint64(data[4:]))
	if end < 0 {
		return 0, fmt.Errorf("negative block end %d", end)
	}
	return end, nil
}

// Next returns a new producer id. It is safe for concurrent use; once per
// IDBlockSize ids it waits for a file write and fsync.
func (a *IDAllocator) Next() (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.next >= a.end {
		if a.end > math.MaxInt64-IDBlockSize {
			return -1, errors.New("producer: producer ids exhausted")
		}
		end := a.end + IDBlockSize
		data := make([]byte, 0, idFileSize)
		data = append(data, idFileMagic...)
		data = binary.BigEndian.AppendUint64(data, uint64(end))
		data = binary.BigEndian.AppendUint32(data, crc32.Checksum(data, castagnoli))
		if err := fsx.WriteFileAtomic(a.fs, a.path, data); err != nil {
			return -1, fmt.Errorf("producer: reserving producer ids: %w", err)
		}
		a.end = end
	}
	id := a.next
	a.next++
	return id, nil
}
