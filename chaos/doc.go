// Package chaos is oncelog's chaos harness: it runs the real broker binary
// behind internal/faultproxy, drives it with real franz-go clients while
// killing, restarting and corrupting it, then reads everything back and
// checks the history for the anomaly classes listed in docs/architecture.md
// ("What a chaos run looks for"). Run is the library entry point;
// cmd/oncelog-chaos is its command line:
//
//	go run ./cmd/oncelog-chaos --duration 60s --producers 8 --seed 1 --tear-tail --porcupine
//
// # Workload
//
//   - Producers: idempotent franz-go clients (acks=all) writing records
//     whose value names the producer and its sequence number, spread over
//     the partitions of the input topic at a fixed rate. Every Produce call
//     and every ack (with its offset) is recorded.
//   - Transform: kgo.GroupTransactSession members in one group reading the
//     input with read_committed and writing each record, tagged with the
//     input partition and offset and the transaction that carries it, to
//     the same partition of the output topic; each poll is one transaction
//     that also commits the consumed offsets. The outcome each member was
//     told (committed, aborted, unknown) is recorded. Members come in two
//     transactional kinds: TV2 (transaction version 2, KIP-890 part 2:
//     Produce v12 adds partitions implicitly, EndTxn v5 bumps the producer
//     epoch at every commit or abort) and TV1 (the last
//     Config.TV1Members members cap Produce, EndTxn and TxnOffsetCommit
//     below those versions, so franz-go keeps AddPartitionsToTxn and one
//     epoch per session, as a Kafka 3.x client does against a TV2 broker).
//   - A monitor samples the group's committed offsets and the input high
//     watermarks.
//
// # Faults
//
// Two seeded random streams drive the faults. Crashes come every
// Config.CrashEvery on average: kill -9, a downtime of up to half a second,
// restart on the same ports and data directory. Some crashes first hold
// produce responses back for a moment, so that batches the broker wrote and
// fsynced are unacknowledged when it dies; their retries must be recognised
// from recovered producer state. Between crashes, proxy windows drop or
// delay produce responses, cut connections right after produce requests
// reach the broker, drop responses of the transaction APIs, of the group
// APIs or of fetches, or cut every connection at once.
//
// With Config.TearTail, some crashes also cut the tail of an input
// partition's last segment while the broker is down. The harness holds back
// every response at the proxy, asks the broker directly for the partition's
// high watermark, lets writes go on for a moment, kills the broker and cuts
// only bytes of batches at or beyond that high watermark, often in the middle
// of a batch. The broker acknowledges acks=all writes and serves fetches only
// below its high watermark (the fsynced offset), so no client learned of
// anything cut and the checker can still demand every acknowledged record:
// a tear is a torn write of data nobody relied on, as a power loss could
// leave. Cutting below the high watermark would test a disk that loses
// fsynced data (kill -9 keeps the page cache), which no broker can survive,
// so the harness does not; a lost acknowledged record in a torn partition is
// reported as a lost write with a note, since it means the broker
// acknowledged beyond its own high watermark. The output topic is never torn:
// the transaction coordinator relies on its markers being durable.
//
// # Checks
//
// After the fault phase the harness stops the faults, lets the producers
// flush, waits until the group has committed the end of the input and every
// output transaction has ended, then reads both topics (read_uncommitted,
// markers included), kill -9s and restarts the broker once more, and reads
// them again (input read_committed, output read_uncommitted and
// read_committed). Check then counts, per observation:
//
//   - lost-write: an acked record missing although later offsets were read
//     (or a transaction reported committed with none of its records visible);
//   - duplicate: a record at more than one offset;
//   - inconsistent-offsets: reads disagree at an offset, an ack names
//     another offset than the read, or the transform read another record
//     at an input offset than the final read;
//   - aborted-read: read_committed returned data of an aborted or open
//     transaction (judged from the markers in the log, and from what the
//     member was told);
//   - torn-transaction: a transaction partly visible to read_committed;
//   - non-monotonic-send: a producer's records out of send order in a
//     partition;
//   - non-monotonic-poll: a consumer's offsets going backwards with no
//     rebalance or rewind in between, or committed output out of input order;
//   - unseen: acked (or committed) but not visible, with nothing read beyond;
//   - output-missing and output-duplicate: an input record transformed into
//     the committed output zero or several times;
//   - bad-group-offset: a committed group offset above the high watermark,
//     going backwards, or short of the end after the transform caught up;
//   - phantom: a record nobody wrote;
//   - not-linearizable: acknowledged appends to a partition whose offsets
//     contradict real time (checked exactly, and with Config.Porcupine also
//     by porcupine on chunks of the history);
//   - epoch-not-bumped: a TV2 member's consecutive committed transactions
//     under one producer id whose records carry the same producer epoch.
//     The report also counts bumped and kept epochs per kind, which shows
//     that each kind really ran its protocol.
//
// The appends' linearizability uses the final read only to place records
// that were stored although their producer never heard back; whether the
// log holds at each offset what the acks said is the other checks' job.
//
// Records whose producer got an error or no answer are indeterminate: they
// may or may not be stored, but never twice. The fault schedule depends on
// the seed only; its interleaving with the traffic depends on timing, so two
// runs with one seed differ in detail. The verdict does not: every check is
// exact, so a correct broker passes every run.
//
// # Diagnosis
//
// Besides the counts, a report names each class's first examples, counts
// franz-go producers that gave up their producer id after the broker
// answered OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID (franz-go then
// renumbers and resends unacknowledged batches, the usual way lost dedup
// state turns into duplicates), and keeps a timeline of faults and client
// symptoms; a failing report shows the timeline before the first such reset
// and the tail of the broker's output.
package chaos
