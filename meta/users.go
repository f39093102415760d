package meta

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/oncelog/oncelog/internal/pebblestore"
)

// ScramCredential is a user's stored SCRAM credential for one mechanism:
// salt, iterations and the derived keys, never the password.
type ScramCredential struct {
	User       string `json:"user"`
	Mechanism  string `json:"mechanism"`
	Iterations int    `json:"iterations"`
	Salt       []byte `json:"salt"`
	StoredKey  []byte `json:"stored_key"`
	ServerKey  []byte `json:"server_key"`
}

// scramPrefix keys credentials by user, then mechanism: a user's
// credentials are adjacent, so listing and deleting them is one range.
const scramPrefix = "scram/"

func scramKey(user, mechanism string) []byte {
	// NUL cannot occur in a Kafka user name sent by a client (SCRAM
	// forbids it), so it separates the two unambiguously.
	return []byte(scramPrefix + user + "\x00" + mechanism)
}

// ScramCredential returns the credential of user for mechanism; ok is false
// when there is none.
func (s *Store) ScramCredential(user, mechanism string) (c ScramCredential, ok bool, err error) {
	defer pebblestore.Guard(&err)
	v, closer, err := s.db.Get(scramKey(user, mechanism))
	if errors.Is(err, pebble.ErrNotFound) {
		return ScramCredential{}, false, nil
	}
	if err != nil {
		return ScramCredential{}, false, err
	}
	defer closer.Close()
	if err := json.Unmarshal(v, &c); err != nil {
		return ScramCredential{}, false, fmt.Errorf("decode SCRAM credential: %w", err)
	}
	return c, true, nil
}

// PutScramCredential creates or replaces a credential, synced.
func (s *Store) PutScramCredential(c ScramCredential) (err error) {
	defer pebblestore.Guard(&err)
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return s.db.Set(scramKey(c.User, c.Mechanism), b, pebble.Sync)
}

// DeleteScramCredential removes a credential, synced; ok is false if there
// was none.
func (s *Store) DeleteScramCredential(user, mechanism string) (ok bool, err error) {
	defer pebblestore.Guard(&err)
	key := scramKey(user, mechanism)
	_, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	closer.Close()
	return true, s.db.Delete(key, pebble.Sync)
}

// ScramCredentials lists every stored credential, ordered by user then
// mechanism.
func (s *Store) ScramCredentials() (_ []ScramCredential, err error) {
	defer pebblestore.Guard(&err)
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte(scramPrefix),
		UpperBound: []byte("scram0"), // '0' follows '/'
	})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []ScramCredential
	for it.First(); it.Valid(); it.Next() {
		var c ScramCredential
		if err := json.Unmarshal(it.Value(), &c); err != nil {
			return nil, fmt.Errorf("decode SCRAM credential %q: %w", it.Key(), err)
		}
		out = append(out, c)
	}
	return out, it.Error()
}
