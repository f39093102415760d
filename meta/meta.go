// Package meta is the broker's durable metadata: the cluster id and each
// topic's id, partition count and config overrides, kept in an embedded
// pebble store. Every write is synced before it returns, so a topic that
// CreateTopics acknowledged exists after kill -9.
package meta

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/oncelog/oncelog/internal/fsx"
	"github.com/oncelog/oncelog/internal/pebblestore"
)

// Topic is a topic's persisted description.
type Topic struct {
	Name       string            `json:"name"`
	ID         [16]byte          `json:"id"`
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
}

// Store wraps the pebble database.
type Store struct{ db *pebble.DB }

const (
	topicPrefix  = "topic/"
	clusterIDKey = "cluster/id"
)

// Open opens or creates the store in dir on fs (nil: the operating
// system's filesystem). onFatal (may be nil) is told when the store fails
// for good (see internal/pebblestore); the failing call returns an error.
func Open(fs fsx.FS, dir string, logger *slog.Logger, onFatal func(error)) (*Store, error) {
	db, err := pebblestore.Open(dir, pebblestore.Config{Name: "metadata", FS: fs, Logger: logger, OnFatal: onFatal})
	if err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() (err error) {
	defer pebblestore.Guard(&err)
	return s.db.Close()
}

// ClusterID returns the cluster id, creating and persisting a random one on
// first use (a 22-character base64url string, as Kafka's).
func (s *Store) ClusterID() (_ string, err error) {
	defer pebblestore.Guard(&err)
	v, closer, err := s.db.Get([]byte(clusterIDKey))
	if err == nil {
		id := string(v)
		closer.Close()
		return id, nil
	}
	if !errors.Is(err, pebble.ErrNotFound) {
		return "", err
	}
	id := NewUUIDString()
	if err := s.db.Set([]byte(clusterIDKey), []byte(id), pebble.Sync); err != nil {
		return "", err
	}
	return id, nil
}

// PutTopic creates or replaces a topic.
func (s *Store) PutTopic(t Topic) (err error) {
	defer pebblestore.Guard(&err)
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return s.db.Set([]byte(topicPrefix+t.Name), b, pebble.Sync)
}

// DeleteTopic removes a topic.
func (s *Store) DeleteTopic(name string) (err error) {
	defer pebblestore.Guard(&err)
	return s.db.Delete([]byte(topicPrefix+name), pebble.Sync)
}

// Topics lists every topic.
func (s *Store) Topics() (_ []Topic, err error) {
	defer pebblestore.Guard(&err)
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte(topicPrefix),
		UpperBound: []byte(topicPrefix[:len(topicPrefix)-1] + string(rune(topicPrefix[len(topicPrefix)-1]+1))),
	})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []Topic
	for it.First(); it.Valid(); it.Next() {
		var t Topic
		if err := json.Unmarshal(it.Value(), &t); err != nil {
			return nil, fmt.Errorf("decode topic %q: %w", it.Key(), err)
		}
		out = append(out, t)
	}
	return out, it.Error()
}

// NewUUID returns a random (version 4) UUID.
func NewUUID() [16]byte {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// NewUUIDString returns a random UUID in Kafka's base64url form.
func NewUUIDString() string {
	u := NewUUID()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	out := make([]byte, 0, 22)
	var acc uint32
	var bits uint
	for _, b := range u {
		acc = acc<<8 | uint32(b)
		bits += 8
		for bits >= 6 {
			bits -= 6
			out = append(out, alphabet[(acc>>bits)&0x3f])
		}
	}
	if bits > 0 {
		out = append(out, alphabet[(acc<<(6-bits))&0x3f])
	}
	return string(out)
}

const featuresKey = "cluster/features"

// Features are finalized feature levels (KIP-584) an UpdateFeatures set,
// with their epoch.
type Features struct {
	Levels map[string]int16 `json:"levels"`
	Epoch  int64            `json:"epoch"`
}

// Features returns the stored feature levels; ok is false if none were
// ever stored.
func (s *Store) Features() (f Features, ok bool, err error) {
	defer pebblestore.Guard(&err)
	v, closer, err := s.db.Get([]byte(featuresKey))
	if errors.Is(err, pebble.ErrNotFound) {
		return Features{}, false, nil
	}
	if err != nil {
		return Features{}, false, err
	}
	defer closer.Close()
	if err := json.Unmarshal(v, &f); err != nil {
		return Features{}, false, fmt.Errorf("decode feature levels: %w", err)
	}
	return f, true, nil
}

// PutFeatures stores feature levels.
func (s *Store) PutFeatures(f Features) (err error) {
	defer pebblestore.Guard(&err)
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return s.db.Set([]byte(featuresKey), b, pebble.Sync)
}
