package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/oncelog/oncelog/internal/fsx"
)

// Small metadata files kept beside the segments. Both are written with
// write-temp, fsync, rename, fsync-directory, so after a crash either the old
// or the new version is present, never a torn one; a CRC still guards
// against anything else (a file copied half, a bit flip).
const (
	cleanMarkerName = "clean-shutdown"
	startOffsetName = "log-start-offset"
	tmpSuffix       = fsx.TempSuffix
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var errBadMeta = errors.New("segment: invalid metadata file")

// cleanMarker records what Close left behind. Open trusts the last segment
// without scanning it only if the marker exists, its CRC is right and it
// describes the segment actually on disk (same base offset and file size).
type cleanMarker struct {
	lastBase   int64
	lastSize   int64
	nextOffset int64
}

const (
	cleanMarkerMagic  = "OLCS"
	startOffsetMagic  = "OLSO"
	metaVersion       = 1
	cleanMarkerLength = 4 + 2 + 8*3 + 4
	startOffsetLength = 4 + 2 + 8 + 4
)

func (m cleanMarker) encode() []byte {
	b := make([]byte, 0, cleanMarkerLength)
	b = append(b, cleanMarkerMagic...)
	b = binary.BigEndian.AppendUint16(b, metaVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(m.lastBase))
	b = binary.BigEndian.AppendUint64(b, uint64(m.lastSize))
	b = binary.BigEndian.AppendUint64(b, uint64(m.nextOffset))
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeCleanMarker(b []byte) (cleanMarker, error) {
	if err := checkMeta(b, cleanMarkerMagic, cleanMarkerLength); err != nil {
		return cleanMarker{}, err
	}
	return cleanMarker{
		lastBase:   int64(binary.BigEndian.Uint64(b[6:])),
		lastSize:   int64(binary.BigEndian.Uint64(b[14:])),
		nextOffset: int64(binary.BigEndian.Uint64(b[22:])),
	}, nil
}

func encodeStartOffset(off int64) []byte {
	b := make([]byte, 0, startOffsetLength)
	b = append(b, startOffsetMagic...)
	b = binary.BigEndian.AppendUint16(b, metaVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(off))
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeStartOffset(b []byte) (int64, error) {
	if err := checkMeta(b, startOffsetMagic, startOffsetLength); err != nil {
		return 0, err
	}
	off := int64(binary.BigEndian.Uint64(b[6:]))
	if off < 0 {
		return 0, fmt.Errorf("%w: negative start offset", errBadMeta)
	}
	return off, nil
}

func checkMeta(b []byte, magic string, length int) error {
	if len(b) != length || string(b[:4]) != magic {
		return fmt.Errorf("%w: bad length or magic", errBadMeta)
	}
	if binary.BigEndian.Uint16(b[4:]) != metaVersion {
		return fmt.Errorf("%w: unknown version", errBadMeta)
	}
	if crc32.Checksum(b[:length-4], castagnoli) != binary.BigEndian.Uint32(b[length-4:]) {
		return fmt.Errorf("%w: CRC mismatch", errBadMeta)
	}
	return nil
}
