package writer

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/sys/unix"
)

// The undelivered entries are in the outbox log (outboxlog.go, Dir/log);
// the key index and the outbox's metadata are a pebble store in Dir/store.
// Its keys:
//
//	K | slice (8, BE) | idempotency key -> keyState (delivered); slice =
//	                                 delivered-at ms / m/slice, so a window's
//	                                 keys expire as a few range deletions
//	k, x                          -> the key index before slices (k | key ->
//	                                 keyState, x | ms | key expiry order):
//	                                 rewritten as K keys at Open
//	m | "slice"                   -> the slice length in ms (window/8 when the
//	                                 outbox was created)
//	m | "id"                      -> the outbox id (random, made at creation)
//	m | "sent"                    -> the delivered watermark W (8, BE): every
//	                                 seq <= W was delivered or given up
//	m | "next"                    -> a floor for the next seq (written when an
//	                                 older outbox is migrated, see migrate)
//	o | seq (8, BE)               -> entry: only in outboxes written before the
//	                                 log; moved to the log at Open
//
// Invariant (relied on by nextSeq at open and by the transactional
// position): every seq ever handed out to a durable entry is in the log
// or at most W (segments are removed only once all their seqs are <= a
// checkpointed W), so max(last seq in the log, W, next-1)+1 is never a seq
// handed out before.
const (
	prefixEntry    = 'o'
	prefixKey      = 'k' // before slices
	prefixExpiry   = 'x' // before slices
	prefixSliceKey = 'K'
	keySliceMs     = "mslice"
	keyOutboxID    = "mid"
	keySentSeq     = "msent"
	keyNextSeq     = "mnext"
	statePending   = 1
	stateDelivered = 2
)

func entryKey(seq uint64) []byte {
	b := make([]byte, 9)
	b[0] = prefixEntry
	binary.BigEndian.PutUint64(b[1:], seq)
	return b
}

func slicePrefix(slice int64) []byte {
	b := make([]byte, 9)
	b[0] = prefixSliceKey
	binary.BigEndian.PutUint64(b[1:], uint64(slice))
	return b
}

func sliceKey(slice int64, k string) []byte { return append(slicePrefix(slice), k...) }

// entry is an undelivered event as stored.
type entry struct {
	seq       uint64
	topic     string
	key       []byte // record key; nil = null
	value     []byte // nil = null
	idemKey   string
	headers   []Header
	timestamp int64 // ms; the record's timestamp, fixed at Emit so a re-send is identical
	// contentDigest is computeDigest's result, set once where the entry is
	// built (Emit, decodeEntry): the Emit and ack paths need it several
	// times per event, and a SHA-256 per use was measurable.
	contentDigest [32]byte
	// keyHash is keyHashOf(idemKey), also set once where the entry is
	// built: the pending tables, the filter and the recent deliveries'
	// key sets all take it, and it is worked out outside the writer's
	// lock.
	keyHash uint64
}

// Header is a record header.
type Header struct {
	Key   string
	Value []byte
}

func (e *entry) size() int64 {
	n := len(e.topic) + len(e.key) + len(e.value) + len(e.idemKey) + 32
	for _, h := range e.headers {
		n += len(h.Key) + len(h.Value) + 8
	}
	return int64(n)
}

// digest identifies an event's content, so a key reused for another event
// is a conflict rather than a silent no-op.
func (e *entry) digest() [32]byte { return e.contentDigest }

func (e *entry) computeDigest() [32]byte {
	h := sha256.New()
	var lb [binary.MaxVarintLen64]byte
	put := func(b []byte, null bool) {
		n := int64(len(b))
		if null {
			n = -1
		}
		h.Write(lb[:binary.PutVarint(lb[:], n)])
		h.Write(b)
	}
	put([]byte(e.topic), false)
	put(e.key, e.key == nil)
	put(e.value, e.value == nil)
	for _, hd := range e.headers {
		put([]byte(hd.Key), false)
		put(hd.Value, hd.Value == nil)
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

func appendBytes(b, v []byte, null bool) []byte {
	if null {
		return binary.AppendVarint(b, -1)
	}
	b = binary.AppendVarint(b, int64(len(v)))
	return append(b, v...)
}

func (e *entry) encode() []byte { return e.appendEncoded(make([]byte, 0, e.size()+16)) }

func (e *entry) appendEncoded(b []byte) []byte {
	b = append(b, 1) // version
	b = binary.BigEndian.AppendUint64(b, uint64(e.timestamp))
	b = appendBytes(b, []byte(e.topic), false)
	b = appendBytes(b, e.key, e.key == nil)
	b = appendBytes(b, e.value, e.value == nil)
	b = appendBytes(b, []byte(e.idemKey), false)
	b = binary.AppendUvarint(b, uint64(len(e.headers)))
	for _, h := range e.headers {
		b = appendBytes(b, []byte(h.Key), false)
		b = appendBytes(b, h.Value, h.Value == nil)
	}
	return b
}

var errCorrupt = errors.New("writer: corrupt outbox entry")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) bytes() []byte {
	if d.err != nil {
		return nil
	}
	n, w := binary.Varint(d.b)
	if w <= 0 || n < -1 || n > int64(len(d.b)-w) {
		d.err = errCorrupt
		return nil
	}
	d.b = d.b[w:]
	if n == -1 {
		return nil
	}
	v := append(make([]byte, 0, n), d.b[:n]...)
	d.b = d.b[n:]
	return v
}

// decodeEntry decodes an entry; digest is its stored content digest (nil:
// computed).
func decodeEntry(seq uint64, b []byte, digest *[32]byte) (*entry, error) {
	if len(b) < 9 || b[0] != 1 {
		return nil, errCorrupt
	}
	e := &entry{seq: seq, timestamp: int64(binary.BigEndian.Uint64(b[1:9]))}
	d := &decoder{b: b[9:]}
	e.topic = string(d.bytes())
	e.key = d.bytes()
	e.value = d.bytes()
	e.idemKey = string(d.bytes())
	if d.err == nil {
		n, w := binary.Uvarint(d.b)
		if w <= 0 || n > uint64(len(d.b)) {
			return nil, errCorrupt
		}
		d.b = d.b[w:]
		for i := uint64(0); i < n && d.err == nil; i++ {
			k := d.bytes()
			v := d.bytes()
			e.headers = append(e.headers, Header{Key: string(k), Value: v})
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if digest != nil {
		e.contentDigest = *digest
	} else {
		e.contentDigest = e.computeDigest()
	}
	e.keyHash = keyHashOf(e.idemKey)
	return e, nil
}

// keyState is what the outbox knows of an idempotency key.
type keyState struct {
	state     byte
	seq       uint64
	partition int32
	offset    int64
	atMs      int64 // delivered at (ms)
	topic     string
	digest    [32]byte
}

func (k *keyState) encode() []byte { return k.appendEncoded(make([]byte, 0, 64+len(k.topic))) }

func (k *keyState) appendEncoded(b []byte) []byte {
	b = append(b, k.state)
	b = binary.BigEndian.AppendUint64(b, k.seq)
	b = binary.BigEndian.AppendUint32(b, uint32(k.partition))
	b = binary.BigEndian.AppendUint64(b, uint64(k.offset))
	b = binary.BigEndian.AppendUint64(b, uint64(k.atMs))
	b = append(b, k.digest[:]...)
	return append(b, k.topic...)
}

func decodeKeyState(b []byte) (keyState, error) {
	if len(b) < 1+8+4+8+8+32 {
		return keyState{}, errCorrupt
	}
	k := keyState{
		state:     b[0],
		seq:       binary.BigEndian.Uint64(b[1:]),
		partition: int32(binary.BigEndian.Uint32(b[9:])),
		offset:    int64(binary.BigEndian.Uint64(b[13:])),
		atMs:      int64(binary.BigEndian.Uint64(b[21:])),
	}
	copy(k.digest[:], b[29:61])
	k.topic = string(b[61:])
	return k, nil
}

// dirLock is an exclusive flock on Dir/LOCK held while the writer is open.
// The kernel releases it when the process dies, so a kill -9 never leaves a
// stale lock behind.
type dirLock struct{ f *os.File }

func lockDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("writer: open lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(holder))
			if pid == "" {
				pid = "unknown"
			}
			return nil, fmt.Errorf("%w: %s (held by pid %s)", ErrLocked, dir, pid)
		}
		return nil, fmt.Errorf("writer: lock %s: %w", path, err)
	}
	// The pid is only for the error message above.
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return &dirLock{f: f}, nil
}

func (l *dirLock) release() {
	if l != nil && l.f != nil {
		_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
		l.f.Close()
	}
}

func newOutboxID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// getOrInit returns the stored outbox id, creating it on first use.
func loadOutboxID(db *pebble.DB) (string, error) {
	v, closer, err := db.Get([]byte(keyOutboxID))
	if err == nil {
		id := string(v)
		closer.Close()
		return id, nil
	}
	if !errors.Is(err, pebble.ErrNotFound) {
		return "", err
	}
	id := newOutboxID()
	if err := db.Set([]byte(keyOutboxID), []byte(id), pebble.Sync); err != nil {
		return "", err
	}
	return id, nil
}
