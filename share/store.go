package share

import (
	"encoding/binary"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/oncelog/oncelog/internal/fsx"
	"github.com/oncelog/oncelog/internal/pebblestore"
)

// The store keeps two kinds of records in pebble (Kafka keeps them in
// __consumer_offsets and __share_group_state):
//
//	'g' group                       -> group epoch, group configs
//	's' group, topic id, partition  -> share-partition state (state.go)
//
// The group id is length-prefixed (uvarint) so any id sorts and splits
// unambiguously.
const (
	prefixGroup     = 'g'
	prefixPartition = 's'
	// groupVersion 2 adds live; a version 1 group record is a live group.
	groupVersion = 2
)

type writeOp = pebblestore.Op

// store applies queued changes in the order the coordinator queued them
// (under its lock), everything queued so far as one synced batch
// (pebblestore.Committer): group commit, and a later snapshot of a
// partition never overtaken by an older.
type store struct {
	db        *pebble.DB
	committer *pebblestore.Committer
}

func openStore(dir string, fs fsx.FS, log *slog.Logger, onFatal func(error)) (*store, error) {
	db, err := pebblestore.Open(dir, pebblestore.Config{Name: "share-groups", FS: fs, Logger: log, OnFatal: onFatal})
	if err != nil {
		return nil, err
	}
	return &store{db: db, committer: pebblestore.NewCommitter(db, nil)}, nil
}

func (s *store) enqueue(ops []writeOp) <-chan error { return s.committer.Enqueue(ops) }

func (s *store) close() error {
	s.committer.Close()
	return s.db.Close()
}

func groupKey(group string) []byte {
	k := []byte{prefixGroup}
	k = binary.AppendUvarint(k, uint64(len(group)))
	return append(k, group...)
}

func partitionKey(group string, id [16]byte, p int32) []byte {
	k := []byte{prefixPartition}
	k = binary.AppendUvarint(k, uint64(len(group)))
	k = append(k, group...)
	k = append(k, id[:]...)
	return binary.BigEndian.AppendUint32(k, uint32(p))
}

func splitGroup(k []byte) (group string, rest []byte, ok bool) {
	n, w := binary.Uvarint(k[1:])
	if w <= 0 || uint64(len(k)-1-w) < n {
		return "", nil, false
	}
	return string(k[1+w : 1+w+int(n)]), k[1+w+int(n):], true
}

type storedGroup struct {
	epoch   int32
	configs map[string]string
	live    bool
}

func encodeGroup(g storedGroup) []byte {
	b := []byte{groupVersion}
	b = binary.BigEndian.AppendUint32(b, uint32(g.epoch))
	live := byte(0)
	if g.live {
		live = 1
	}
	b = append(b, live)
	b = binary.AppendUvarint(b, uint64(len(g.configs)))
	for k, v := range g.configs {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

func decodeGroup(b []byte) (storedGroup, error) {
	g := storedGroup{configs: map[string]string{}}
	if len(b) < 5 || b[0] != 1 && b[0] != groupVersion {
		return g, errCorrupt
	}
	version := b[0]
	g.epoch = int32(binary.BigEndian.Uint32(b[1:]))
	b = b[5:]
	g.live = true
	if version >= 2 {
		if len(b) < 1 || b[0] > 1 {
			return g, errCorrupt
		}
		g.live = b[0] == 1
		b = b[1:]
	}
	n, w := binary.Uvarint(b)
	if w <= 0 {
		return g, errCorrupt
	}
	b = b[w:]
	str := func() (string, bool) {
		l, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < l {
			return "", false
		}
		s := string(b[w : w+int(l)])
		b = b[w+int(l):]
		return s, true
	}
	for range n {
		k, ok1 := str()
		v, ok2 := str()
		if !ok1 || !ok2 {
			return g, errCorrupt
		}
		g.configs[k] = v
	}
	return g, nil
}

type storedPartition struct {
	group string
	id    [16]byte
	part  int32
	sp    *sharePartition
}

// load reads everything stored.
func (s *store) load() (groups map[string]storedGroup, parts []storedPartition, err error) {
	defer pebblestore.Guard(&err)
	groups = map[string]storedGroup{}
	it, err := s.db.NewIter(nil)
	if err != nil {
		return nil, nil, err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) < 2 {
			return nil, nil, errCorrupt
		}
		group, rest, ok := splitGroup(k)
		if !ok {
			return nil, nil, errCorrupt
		}
		switch k[0] {
		case prefixGroup:
			g, err := decodeGroup(it.Value())
			if err != nil {
				return nil, nil, err
			}
			groups[group] = g
		case prefixPartition:
			if len(rest) != 20 {
				return nil, nil, errCorrupt
			}
			sp, err := decodeSharePartition(it.Value())
			if err != nil {
				return nil, nil, err
			}
			p := storedPartition{group: group, part: int32(binary.BigEndian.Uint32(rest[16:])), sp: sp}
			copy(p.id[:], rest[:16])
			parts = append(parts, p)
		default:
			return nil, nil, errCorrupt
		}
	}
	return groups, parts, it.Error()
}
