package writer

import (
	"encoding/binary"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/oncelog/oncelog/internal/pebblestore"
)

// runExpiry forgets delivered keys older than the key window, so the key
// index holds at most one window of keys. Lookups ignore an older key
// anyway (exact to the millisecond); this only reclaims the disk.
func (w *Writer) runExpiry() {
	every := min(w.cfg.KeyWindow/8, time.Minute)
	for {
		for w.expireOnce(time.Now().Add(-w.cfg.KeyWindow)) {
		}
		w.filter.expire(time.Now().UnixMilli())
		if !w.sleep(every) {
			return
		}
	}
}

// expireOnce removes up to one chunk of keys delivered before cutoff; true
// if there may be more.
func (w *Writer) expireOnce(cutoff time.Time) (more bool) {
	const chunk = 1000
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.failed != nil {
		return false
	}
	var err error
	defer func() {
		pebblestore.Guard(&err)
		if err != nil {
			w.cfg.Logger.Warn("writer: key expiry failed", "err", err)
			more = false
		}
	}()
	upper := expiryKey(cutoff.UnixMilli(), "")
	it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixExpiry}, UpperBound: upper})
	if err != nil {
		return false
	}
	b := w.db.NewBatch()
	defer b.Close()
	n := 0
	for it.First(); it.Valid() && n < chunk; it.Next() {
		k := it.Key()
		at := int64(binary.BigEndian.Uint64(k[1:9]))
		idem := string(k[9:])
		_ = b.Delete(k, nil)
		n++
		// Emit holds w.mu while it records a key as pending, so a key
		// re-emitted after its window is never removed here.
		if _, ok := w.pendingByKey[idem]; ok {
			continue
		}
		v, closer, gerr := w.db.Get(idemKey(idem))
		if gerr != nil {
			continue
		}
		ks, derr := decodeKeyState(v)
		closer.Close()
		if derr == nil && ks.state == stateDelivered && ks.atMs == at {
			_ = b.Delete(idemKey(idem), nil)
		}
	}
	if err = it.Close(); err != nil {
		return false
	}
	if n == 0 {
		return false
	}
	// NoSync: a crash forgets an expiry, and the next run redoes it.
	if err = b.Commit(pebble.NoSync); err != nil {
		return false
	}
	return n == chunk
}
