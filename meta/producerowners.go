package meta

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/oncelog/oncelog/internal/pebblestore"
)

// ownerPrefix keys the principal each producer id was issued to (with the
// authorizer on): "pid/" + the id as 8 big-endian bytes.
const ownerPrefix = "pid/"

// ProducerOwner is who obtained a producer id, and when (unix ms).
type ProducerOwner struct {
	Principal string `json:"principal"`
	BoundMs   int64  `json:"bound_ms"`
}

func ownerKey(pid int64) []byte {
	return binary.BigEndian.AppendUint64([]byte(ownerPrefix), uint64(pid))
}

// PutProducerOwner records (synced) that pid belongs to o.
func (s *Store) PutProducerOwner(pid int64, o ProducerOwner) (err error) {
	defer pebblestore.Guard(&err)
	v, err := json.Marshal(o)
	if err != nil {
		return err
	}
	return s.db.Set(ownerKey(pid), v, pebble.Sync)
}

// DeleteProducerOwners forgets the owners of pids (one synced batch).
func (s *Store) DeleteProducerOwners(pids []int64) (err error) {
	defer pebblestore.Guard(&err)
	batch := s.db.NewBatch()
	defer batch.Close()
	for _, pid := range pids {
		if err := batch.Delete(ownerKey(pid), nil); err != nil {
			return err
		}
	}
	return batch.Commit(pebble.Sync)
}

// ProducerOwners returns every recorded producer id owner.
func (s *Store) ProducerOwners() (_ map[int64]ProducerOwner, err error) {
	defer pebblestore.Guard(&err)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(ownerPrefix), UpperBound: []byte("pid0")})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[int64]ProducerOwner{}
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()[len(ownerPrefix):]
		if len(k) != 8 {
			return nil, fmt.Errorf("bad producer owner key %q", it.Key())
		}
		var o ProducerOwner
		if err := json.Unmarshal(it.Value(), &o); err != nil {
			return nil, fmt.Errorf("decode producer owner %q: %w", it.Key(), err)
		}
		out[int64(binary.BigEndian.Uint64(k))] = o
	}
	return out, it.Error()
}
