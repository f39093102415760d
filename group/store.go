package group

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/oncelog/oncelog/internal/fsx"
	"github.com/oncelog/oncelog/internal/pebblestore"
)

// The store keeps three kinds of records in pebble, each under its own
// one-byte prefix so that a prefix scan finds one kind:
//
//	'g' group                                   -> groupRecord
//	'o' group, topic, partition                 -> offsetValue
//	'p' producer id, group, topic, partition    -> pendingValue (transactional)
//	'c' group                                   -> consumer group (KIP-848) record
//	'm' group, member id                        -> consumer group member
//
// Variable-length key parts are length-prefixed (uvarint), so any group id,
// NUL bytes included, sorts and splits unambiguously.
const (
	prefixGroup   = 'g'
	prefixOffset  = 'o'
	prefixPending = 'p'

	recordVersion = 1
)

// writeOp is one key change: a set, or a delete when Delete is true.
type writeOp = pebblestore.Op

// store is the durable half of the coordinator: its changes become durable
// through a group commit (pebblestore.Committer), in the order the
// coordinator queued them under its lock.
type store struct {
	db        *pebble.DB
	committer *pebblestore.Committer
}

func openStore(dir string, fs fsx.FS, log *slog.Logger, onFatal func(error)) (*store, error) {
	db, err := pebblestore.Open(dir, pebblestore.Config{Name: "groups", FS: fs, Logger: log, OnFatal: onFatal})
	if err != nil {
		return nil, err
	}
	return &store{db: db, committer: pebblestore.NewCommitter(db, func(err error) {
		log.Error("group store write failed", "err", err)
	})}, nil
}

// enqueue schedules ops to be written and synced. The returned channel
// receives nil once they are durable, or the write error.
func (s *store) enqueue(ops []writeOp) <-chan error { return s.committer.Enqueue(ops) }

var errStoreClosed = errors.New("group store closed")

// close drains queued writes, then closes pebble.
func (s *store) close() error {
	s.committer.Close()
	return closeDB(s.db)
}

// loaded is everything the store held when it was opened.
type loaded struct {
	groups  map[string]groupRecord
	offsets map[string]map[string]map[int32]offsetValue // group -> topic -> partition
	pending []loadedPending
	// consumerGroups and consumerMembers are the KIP-848 groups.
	consumerGroups  map[string]*consumerGroupRecord
	consumerMembers map[string][]*consumerMember
}

type loadedPending struct {
	producerID    int64
	group, topic  string
	partition     int32
	value         offsetValue
	producerEpoch int16
}

func (s *store) load() (*loaded, error) {
	l := &loaded{
		groups:          make(map[string]groupRecord),
		offsets:         make(map[string]map[string]map[int32]offsetValue),
		consumerGroups:  make(map[string]*consumerGroupRecord),
		consumerMembers: make(map[string][]*consumerMember),
	}
	it, err := s.db.NewIter(nil)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		key, val := it.Key(), it.Value()
		if len(key) == 0 {
			continue
		}
		switch key[0] {
		case prefixGroup:
			rec, err := decodeGroupRecord(val)
			if err != nil {
				return nil, fmt.Errorf("group %q: %w", key[1:], err)
			}
			l.groups[string(key[1:])] = rec
		case prefixOffset:
			group, topic, partition, err := decodeOffsetKey(key[1:])
			if err != nil {
				return nil, err
			}
			v, _, err := decodeOffsetValue(val, false)
			if err != nil {
				return nil, fmt.Errorf("offset %q/%q/%d: %w", group, topic, partition, err)
			}
			byTopic := l.offsets[group]
			if byTopic == nil {
				byTopic = make(map[string]map[int32]offsetValue)
				l.offsets[group] = byTopic
			}
			if byTopic[topic] == nil {
				byTopic[topic] = make(map[int32]offsetValue)
			}
			byTopic[topic][partition] = v
		case prefixPending:
			if len(key) < 9 {
				return nil, errCorruptKey
			}
			pid := int64(binary.BigEndian.Uint64(key[1:9]))
			group, topic, partition, err := decodeOffsetKey(key[9:])
			if err != nil {
				return nil, err
			}
			v, epoch, err := decodeOffsetValue(val, true)
			if err != nil {
				return nil, fmt.Errorf("pending offset pid %d %q/%q/%d: %w", pid, group, topic, partition, err)
			}
			l.pending = append(l.pending, loadedPending{producerID: pid, group: group, topic: topic, partition: partition, value: v, producerEpoch: epoch})
		case prefixConsumerGroup:
			rec, err := decodeConsumerGroupRecord(val)
			if err != nil {
				return nil, fmt.Errorf("consumer group %q: %w", key[1:], err)
			}
			l.consumerGroups[string(key[1:])] = rec
		case prefixConsumerMember:
			group, member, err := decodeConsumerMemberKey(key[1:])
			if err != nil {
				return nil, err
			}
			m, err := decodeConsumerMember(member, val)
			if err != nil {
				return nil, fmt.Errorf("consumer group %q member %q: %w", group, member, err)
			}
			l.consumerMembers[group] = append(l.consumerMembers[group], m)
		default:
			return nil, fmt.Errorf("unknown key prefix %q in group store", key[0])
		}
	}
	return l, it.Error()
}

var (
	errCorruptKey    = errors.New("corrupt group store key")
	errCorruptRecord = errors.New("corrupt group store record")
)

// groupRecord is what survives a restart of a classic group: its
// existence, its protocol type and generation and, once a generation has
// completed, that generation's members and assignments (stored), which
// come back Stable. A group without stored comes back Empty.
type groupRecord struct {
	protocolType string
	generation   int32
	// emptySinceMs is when the group became Empty, or -1 if it was not
	// Empty when written (it then counts as Empty from the reload).
	emptySinceMs int64
	stored       *storedGeneration
}

func groupKey(group string) []byte {
	return append([]byte{prefixGroup}, group...)
}

func encodeGroupRecord(r groupRecord) []byte {
	b := []byte{recordVersion}
	b = appendString(b, r.protocolType)
	b = binary.AppendVarint(b, int64(r.generation))
	b = binary.AppendVarint(b, r.emptySinceMs)
	// The stored generation follows; records written before members were
	// kept end above.
	if sg := r.stored; sg != nil {
		b = append(b, 1)
		b = appendString(b, sg.protocol)
		b = appendString(b, sg.leader)
		b = binary.AppendUvarint(b, uint64(len(sg.members)))
		for _, m := range sg.members {
			b = appendString(b, m.id)
			b = appendOptString(b, m.instanceID)
			b = appendString(b, m.clientID)
			b = appendString(b, m.clientHost)
			b = binary.AppendVarint(b, m.rebalanceTimeout.Milliseconds())
			b = binary.AppendVarint(b, m.sessionTimeout.Milliseconds())
			b = appendString(b, string(m.subscription))
			b = appendString(b, string(m.assignment))
		}
	}
	return b
}

func decodeGroupRecord(b []byte) (groupRecord, error) {
	var r groupRecord
	d := decoder{b: b}
	if d.byte() != recordVersion {
		return r, errCorruptRecord
	}
	r.protocolType = d.string()
	r.generation = int32(d.varint())
	r.emptySinceMs = d.varint()
	if len(d.b) > 0 && !d.bad {
		if d.byte() != 1 {
			return r, errCorruptRecord
		}
		sg := &storedGeneration{generation: r.generation}
		sg.protocol = d.string()
		sg.leader = d.string()
		n := d.uvarint()
		if n > uint64(len(d.b)) {
			return r, errCorruptRecord
		}
		for range n {
			var m storedMember
			m.id = d.string()
			m.instanceID = d.optString()
			m.clientID = d.string()
			m.clientHost = d.string()
			m.rebalanceTimeout = time.Duration(d.varint()) * time.Millisecond
			m.sessionTimeout = time.Duration(d.varint()) * time.Millisecond
			m.subscription = []byte(d.string())
			m.assignment = []byte(d.string())
			sg.members = append(sg.members, m)
		}
		r.stored = sg
	}
	return r, d.err()
}

func appendOffsetKeySuffix(b []byte, group, topic string, partition int32) []byte {
	b = appendString(b, group)
	b = appendString(b, topic)
	return binary.BigEndian.AppendUint32(b, uint32(partition))
}

func offsetKey(group, topic string, partition int32) []byte {
	return appendOffsetKeySuffix([]byte{prefixOffset}, group, topic, partition)
}

func pendingKey(producerID int64, group, topic string, partition int32) []byte {
	b := binary.BigEndian.AppendUint64([]byte{prefixPending}, uint64(producerID))
	return appendOffsetKeySuffix(b, group, topic, partition)
}

func decodeOffsetKey(b []byte) (group, topic string, partition int32, err error) {
	d := decoder{b: b}
	group = d.string()
	topic = d.string()
	if d.bad || len(d.b) != 4 {
		return "", "", 0, errCorruptKey
	}
	return group, topic, int32(binary.BigEndian.Uint32(d.b)), nil
}

// encodeOffsetValue encodes a committed offset; a pending (transactional)
// one also carries its producer epoch.
func encodeOffsetValue(v offsetValue, pending bool, producerEpoch int16) []byte {
	b := []byte{recordVersion}
	b = binary.AppendVarint(b, v.offset)
	b = binary.AppendVarint(b, int64(v.leaderEpoch))
	b = appendString(b, v.metadata)
	b = binary.AppendVarint(b, v.commitMs)
	b = binary.AppendVarint(b, v.expireMs)
	b = binary.AppendUvarint(b, v.seq)
	if pending {
		b = binary.AppendVarint(b, int64(producerEpoch))
	}
	return b
}

func decodeOffsetValue(b []byte, pending bool) (offsetValue, int16, error) {
	var v offsetValue
	d := decoder{b: b}
	if d.byte() != recordVersion {
		return v, 0, errCorruptRecord
	}
	v.offset = d.varint()
	v.leaderEpoch = int32(d.varint())
	v.metadata = d.string()
	v.commitMs = d.varint()
	v.expireMs = d.varint()
	v.seq = d.uvarint()
	var epoch int16
	if pending {
		epoch = int16(d.varint())
	}
	return v, epoch, d.err()
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads the encodings above; after the first malformed field every
// read returns a zero value and err reports the corruption.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) byte() byte {
	if d.bad || len(d.b) < 1 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.bad {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.bad {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.bad || uint64(len(d.b)) < n {
		d.bad = true
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) err() error {
	if d.bad || len(d.b) != 0 {
		return errCorruptRecord
	}
	return nil
}

func closeDB(db *pebble.DB) (err error) {
	defer pebblestore.Guard(&err)
	return db.Close()
}
