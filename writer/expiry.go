package writer

import (
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/oncelog/oncelog/internal/pebblestore"
)

// runExpiry forgets delivered keys older than the key window, so the key
// index holds at most one window (and a slice) of keys. Lookups ignore an
// older key anyway (exact to the millisecond); this only reclaims the disk
// and the filter's memory.
func (w *Writer) runExpiry() {
	every := min(w.cfg.KeyWindow/8, time.Minute)
	for {
		w.expireSlices(time.Now().UnixMilli())
		if !w.sleep(every) {
			return
		}
	}
}

// expireSlices drops the slices delivered entirely before nowMs - window:
// one range deletion each in the key index. No key is added to such a
// slice any more (deliveries go to the current one), and a key emitted
// again after its window is delivered into the current slice.
func (w *Writer) expireSlices(nowMs int64) {
	for _, slice := range w.filter.expire(nowMs) {
		err := func() (err error) {
			defer pebblestore.Guard(&err)
			// NoSync: a crash forgets the deletion; Open rebuilds the
			// slice's filter from its keys and the next run redoes it.
			return w.db.DeleteRange(slicePrefix(slice), slicePrefix(slice+1), pebble.NoSync)
		}()
		if err != nil {
			w.cfg.Logger.Warn("writer: key expiry failed", "err", err)
			return
		}
	}
}
