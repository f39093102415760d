// Package writer emits events to a Kafka-compatible broker exactly once
// from inside the application's own process: Emit returns once the event is
// durable in a local outbox (a pebble store, fsynced, group-committed across
// concurrent callers), and a background sender delivers it with a franz-go
// producer and removes it from the outbox after the broker's acknowledgement.
//
// The duplicate this package exists for is the one Kafka's idempotent
// producer cannot catch: the application crashes after deciding to emit and
// before it knows the event was stored, restarts, re-processes its input and
// emits the same events again. Every event therefore carries an idempotency
// key (WithIdempotencyKey, or one generated and stored with the event), sent
// as the Idempotency-Key header, and the outbox keeps a durable index of the
// keys it holds or delivered within Config.KeyWindow: emitting such a key
// again is a no-op that returns the original result.
//
// Two delivery modes close the window between "the broker stored it" and
// "the outbox knows":
//
//   - ModeKeyWindow: for oncelog with the topic config
//     oncelog.dedup.key=header:Idempotency-Key. An entry re-sent after a
//     crash is dropped by the broker's key window; any broker error other
//     than a rejection of the record itself is retried, since a re-send is
//     always safe. Sends are pipelined: the fastest mode.
//   - ModeTransactional: for any Kafka broker (no key window). The sender
//     writes outbox entries in transactions with a stable transactional.id
//     and commits its outbox position in the same transaction (a
//     TxnOffsetCommit for the group "oncelog-outbox-<transactional.id>"),
//     so after a restart it reads the committed position and resumes exactly
//     after the last committed entry. One transaction at a time: slower, and
//     consumers must read read_committed.
//
// The outbox directory is locked (flock) while open; a second process gets
// ErrLocked. A torn tail after kill -9 is pebble's write-ahead-log recovery:
// a record whose write did not complete is discarded at open, and no Emit of
// it had returned (the fsync had not completed).
package writer
