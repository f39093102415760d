package writer

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Mode is how the sender makes a re-send after a crash harmless.
type Mode string

const (
	// ModeKeyWindow relies on the broker dropping a record whose
	// Idempotency-Key it already stored (oncelog's key window).
	ModeKeyWindow Mode = "key-window"
	// ModeTransactional writes each batch of entries in a transaction
	// together with the outbox position; works on any Kafka broker.
	ModeTransactional Mode = "transactional"
)

// HeaderIdempotencyKey is the record header that carries an event's key.
const HeaderIdempotencyKey = "Idempotency-Key"

// Defaults, named after the Kafka producer settings they resemble.
const (
	// DefaultMaxOutboxBytes bounds the bytes of undelivered entries, like
	// the producer's buffer.memory, but on disk.
	DefaultMaxOutboxBytes = 256 << 20
	// DefaultMaxOutboxEntries bounds the number of undelivered entries.
	DefaultMaxOutboxEntries = 1_000_000
	// DefaultMaxBlock is how long Emit waits for space (max.block.ms).
	DefaultMaxBlock = 60 * time.Second
	// DefaultKeyWindow is how long a delivered key is remembered; the same
	// default as oncelog.dedup.window.ms (7 days).
	DefaultKeyWindow = 7 * 24 * time.Hour
	// DefaultMaxKeyBytes bounds an idempotency key.
	DefaultMaxKeyBytes = 1024
	// DefaultMaxEventBytes bounds one event (key, value and headers), like
	// the producer's max.request.size.
	DefaultMaxEventBytes = 1 << 20
	// DefaultTxnMaxEntries bounds the entries of one transaction.
	DefaultTxnMaxEntries = 5000
)

// Config configures a Writer. Brokers and Dir are required.
type Config struct {
	// Brokers are the seed brokers (host:port).
	Brokers []string
	// Dir is the outbox directory; created if missing. One process at a
	// time: Open fails with ErrLocked while another holds it.
	Dir string
	// Mode is ModeKeyWindow (default) or ModeTransactional.
	Mode Mode
	// TransactionalID is the stable transactional.id of ModeTransactional.
	// It must be the same on every start of this outbox and unique to it;
	// default "oncelog-outbox-<outbox id>" (the outbox id is generated when
	// the directory is first used and stored in it).
	TransactionalID string
	// MaxOutboxBytes and MaxOutboxEntries bound undelivered entries; when
	// either is reached Emit blocks for up to MaxBlock (or until its
	// context ends), then fails with ErrOutboxFull. A negative MaxBlock
	// fails at once.
	MaxOutboxBytes   int64
	MaxOutboxEntries int
	MaxBlock         time.Duration
	// MaxEventBytes bounds one event; a larger one is refused with
	// ErrEventTooLarge.
	MaxEventBytes int
	// KeyWindow is how long a delivered key is remembered: an Emit of it
	// within the window is a no-op returning the original delivery.
	KeyWindow time.Duration
	// TxnMaxEntries bounds the entries per transaction (ModeTransactional).
	TxnMaxEntries int
	// ClientOpts are added to the franz-go client (TLS, SASL, logging,
	// linger...). The writer sets the seeds, acks=all, idempotence and, in
	// ModeTransactional, the transactional id.
	ClientOpts []kgo.Opt
	// Hooks receive measurements; any may be nil.
	Hooks Hooks
	// Logger logs the sender's retries; default slog.Default().
	Logger *slog.Logger
}

// Hooks are metrics callbacks. They run on the writer's goroutines and must
// not block.
type Hooks struct {
	// OnEmit is called after each Emit: how long it took to make the event
	// durable (zero for a duplicate), and whether the key was a duplicate.
	OnEmit func(durable time.Duration, duplicate bool)
	// OnCommit is called after each synced outbox commit (one fsync)
	// with the number of Emit/EmitBatch calls it made durable and their
	// new events: concurrent callers share a commit (group commit).
	OnCommit func(emits, events int)
	// OnDelivered is called after a group of entries was acknowledged by
	// the broker and removed from the outbox.
	OnDelivered func(entries int)
	// OnSendError is called when the sender must retry (broker outage,
	// aborted transaction).
	OnSendError func(err error)
	// OnOutbox reports the undelivered entries and bytes after each change.
	OnOutbox func(entries int, bytes int64)
}

// Errors.
var (
	// ErrLocked: the outbox directory is held by another process.
	ErrLocked = errors.New("writer: outbox directory is locked by another process")
	// ErrOutboxFull: no space within MaxBlock.
	ErrOutboxFull = errors.New("writer: outbox full (max outbox bytes/entries reached)")
	// ErrEventTooLarge: the event exceeds MaxEventBytes.
	ErrEventTooLarge = errors.New("writer: event larger than max event bytes")
	// ErrClosed: the writer was closed.
	ErrClosed = errors.New("writer: closed")
	// ErrKeyConflict: the key is known with a different event (topic,
	// record key, value or headers). Like oncelog's key window, a reused
	// key with other content is a bug in the caller, not a duplicate.
	ErrKeyConflict = errors.New("writer: idempotency key reused for a different event")
)

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if len(cfg.Brokers) == 0 {
		return cfg, errors.New("writer: Config.Brokers is empty")
	}
	if cfg.Dir == "" {
		return cfg, errors.New("writer: Config.Dir is empty")
	}
	switch cfg.Mode {
	case "":
		cfg.Mode = ModeKeyWindow
	case ModeKeyWindow, ModeTransactional:
	default:
		return cfg, fmt.Errorf("writer: unknown mode %q (want %q or %q)", cfg.Mode, ModeKeyWindow, ModeTransactional)
	}
	if cfg.MaxOutboxBytes == 0 {
		cfg.MaxOutboxBytes = DefaultMaxOutboxBytes
	}
	if cfg.MaxOutboxEntries == 0 {
		cfg.MaxOutboxEntries = DefaultMaxOutboxEntries
	}
	if cfg.MaxBlock == 0 {
		cfg.MaxBlock = DefaultMaxBlock
	}
	if cfg.MaxEventBytes == 0 {
		cfg.MaxEventBytes = DefaultMaxEventBytes
	}
	if cfg.KeyWindow == 0 {
		cfg.KeyWindow = DefaultKeyWindow
	}
	if cfg.TxnMaxEntries == 0 {
		cfg.TxnMaxEntries = DefaultTxnMaxEntries
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}
