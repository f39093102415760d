package writer

import (
	"fmt"
)

// Group commit. An Emit does not commit to the store itself: under w.mu it
// numbers its entries and queues them (commitQ, in seq order), and one
// committer goroutine writes everything queued since its last commit in one
// log write with one fdatasync, then answers every Emit of the group.
// While it waits for an fsync the next group gathers, so with many
// concurrent callers a group holds as many Emits as arrive in one fsync.
// Because groups commit one at a time and in seq order, durableHi is the
// last seq of the last committed group, and the key-window sender gets the
// committed entries from memory (sendQ) instead of reading them back.

// commitReq is one Emit's entries waiting for the committer.
type commitReq struct {
	es   []*entry
	done chan error // cap 1
}

const (
	// A group is cut at these sizes (the rest waits for the next fsync),
	// so one log write stays a few MB.
	groupMaxEntries = 16384
	groupMaxBytes   = 16 << 20
	// sendQ bounds: past them the sender reads the entries back from the
	// store (a sender behind its broker needs no faster hand-off).
	sendQMaxEntries = 16384
	sendQMaxBytes   = 16 << 20
)

// queueCommitLocked queues es (numbered, in seq order after everything
// queued before) for the committer.
func (w *Writer) queueCommitLocked(es []*entry) *commitReq {
	r := &commitReq{es: es, done: make(chan error, 1)}
	w.cmu.Lock()
	w.commitQ = append(w.commitQ, r)
	w.cmu.Unlock()
	select {
	case w.commitWake <- struct{}{}:
	default:
	}
	return r
}

// runCommitter commits queued Emits until Close stops it (after every Emit
// returned, so nothing is left queued).
func (w *Writer) runCommitter() {
	defer close(w.committerDone)
	for {
		select {
		case <-w.commitWake:
		case <-w.commitStop:
			return
		}
		for {
			w.cmu.Lock()
			group := w.takeGroupLocked()
			w.cmu.Unlock()
			if len(group) == 0 {
				break
			}
			w.commitGroup(group)
		}
	}
}

// takeGroupLocked removes the next group from commitQ: every queued Emit,
// cut at the group bounds (always at least one).
func (w *Writer) takeGroupLocked() []*commitReq {
	n, entries, bytes := 0, 0, int64(0)
	for n < len(w.commitQ) {
		r := w.commitQ[n]
		for _, e := range r.es {
			bytes += e.size()
		}
		entries += len(r.es)
		if n > 0 && (entries > groupMaxEntries || bytes > groupMaxBytes) {
			break
		}
		n++
	}
	group := w.commitQ[:n:n]
	w.commitQ = w.commitQ[n:]
	if len(w.commitQ) == 0 {
		w.commitQ = nil
	}
	return group
}

func (w *Writer) commitGroup(group []*commitReq) {
	err := w.logErr
	if err == nil {
		if err = w.writeGroup(group); err != nil {
			w.logErr = fmt.Errorf("writer: outbox write failed: %w", err)
			err = w.logErr
		}
	}
	entries := 0
	if err == nil {
		w.cmu.Lock()
		last := group[len(group)-1].es
		w.durableHi = last[len(last)-1].seq
		for _, r := range group {
			entries += len(r.es)
			w.queueSendLocked(r.es)
		}
		w.cmu.Unlock()
		w.notify()
		if w.cfg.Hooks.OnCommit != nil {
			w.cfg.Hooks.OnCommit(len(group), entries)
		}
	} else {
		// The log is suspect after a failed write or fdatasync (the
		// kernel may have dropped the dirty pages): fail this group and
		// every later Emit; the next Open re-reads and repairs the log.
		w.mu.Lock()
		if w.failed == nil {
			w.failed = err
		}
		w.mu.Unlock()
	}
	for _, r := range group {
		r.done <- err
	}
}

// writeGroup appends the entries of group to the outbox log in one write
// and one fdatasync. Their keys are not written anywhere else: at Open the
// log's undelivered entries rebuild pendingByKey.
func (w *Writer) writeGroup(group []*commitReq) error {
	var es []*entry
	if len(group) == 1 {
		es = group[0].es
	} else {
		n := 0
		for _, r := range group {
			n += len(r.es)
		}
		es = make([]*entry, 0, n)
		for _, r := range group {
			es = append(es, r.es...)
		}
	}
	return w.log.append(es)
}

// queueSendLocked hands committed entries to the key-window sender, while
// sendQ stays within its bounds and contiguous (the sender reads whatever
// is missing back from the store).
func (w *Writer) queueSendLocked(es []*entry) {
	if w.cfg.Mode != ModeKeyWindow || len(es) == 0 {
		return
	}
	if n := len(w.sendQ); n > 0 && w.sendQ[n-1].seq+1 != es[0].seq {
		return
	}
	var bytes int64
	for _, e := range es {
		bytes += e.size()
	}
	if len(w.sendQ)+len(es) > sendQMaxEntries || w.sendQBytes+bytes > sendQMaxBytes {
		return
	}
	w.sendQ = append(w.sendQ, es...)
	w.sendQBytes += bytes
}

// takeSendQ returns the highest durable seq and the committed entries
// queued for the sender since the last call (contiguous, at most up to it).
func (w *Writer) takeSendQ() (uint64, []*entry) {
	w.cmu.Lock()
	defer w.cmu.Unlock()
	q := w.sendQ
	w.sendQ, w.sendQBytes = nil, 0
	return w.durableHi, q
}
