// Package soak runs a bounded adversarial soak against a real oncelog broker
// subprocess: normal traffic (idempotent acks=all franz-go producers whose
// record values name their writer and sequence number, and a consumer group
// reading them) side by side with hostile and careless raw-frame clients
// (kmsg over TCP) that try what docs/operations.md's limits exist for:
// slowloris frames, pipelined large requests, idle connection floods past
// --max-connections, poison-pill batches (lying record counts, undecodable
// gzip/zstd, a zstd decompression bomb, future timestamps), a Fetch naming
// one partition 1,000 times with MaxBytes 2^31-1, JoinGroup floods with
// large metadata past --group-max-size, ids too long for old response
// versions, DeleteTopics racing auto-create of the same name, and
// CreateTopics asking for absurd partition counts.
//
// When the time is up it checks, and Report.OK requires, that:
//   - every acknowledged record of the normal producers is read back exactly
//     once, where its ack said, in send order (chaos.Check on a full read:
//     no lost write, duplicate, reordering or phantom), and the consumer
//     group saw every one of them;
//   - the broker process never exited and never logged a panic, and stops
//     cleanly on SIGTERM at the end;
//   - its peak resident memory (VmHWM of /proc/<pid>/status) stayed under
//     Config.MaxRSSBytes;
//   - every hostile request was answered with one of the Kafka error codes
//     expected for it, or its connection was closed (counted per kind), and
//     no poison batch was stored.
//
// It also reports the p99 produce latency of the normal traffic, to show
// what the hostile clients cost the well-behaved ones. Everything runs on
// loopback, bounded in time and in the number of connections and bytes
// each hostile kind uses. cmd/oncelog-soak is the command line.
package soak
