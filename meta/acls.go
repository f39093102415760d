package meta

import (
	"encoding/json"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/oncelog/oncelog/acl"
	"github.com/oncelog/oncelog/internal/pebblestore"
)

// aclPrefix keys one ACL binding each: the key is the binding's JSON (its
// fields in a fixed order), so a binding is stored once and deleting it
// needs no lookup.
const aclPrefix = "acl/"

func aclKey(b acl.Binding) ([]byte, error) {
	j, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	return append([]byte(aclPrefix), j...), nil
}

// LoadACLs returns every stored ACL binding.
func (s *Store) LoadACLs() (_ []acl.Binding, err error) {
	defer pebblestore.Guard(&err)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(aclPrefix), UpperBound: []byte("acl0")})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []acl.Binding
	for it.First(); it.Valid(); it.Next() {
		var b acl.Binding
		if err := json.Unmarshal(it.Key()[len(aclPrefix):], &b); err != nil {
			return nil, fmt.Errorf("decode ACL %q: %w", it.Key(), err)
		}
		out = append(out, b)
	}
	return out, it.Error()
}

// ApplyACLs adds and removes bindings in one synced batch: all or none
// survive a crash.
func (s *Store) ApplyACLs(add, remove []acl.Binding) (err error) {
	defer pebblestore.Guard(&err)
	batch := s.db.NewBatch()
	defer batch.Close()
	for _, b := range add {
		k, err := aclKey(b)
		if err != nil {
			return err
		}
		if err := batch.Set(k, nil, nil); err != nil {
			return err
		}
	}
	for _, b := range remove {
		k, err := aclKey(b)
		if err != nil {
			return err
		}
		if err := batch.Delete(k, nil); err != nil {
			return err
		}
	}
	return batch.Commit(pebble.Sync)
}
