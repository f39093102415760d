package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/oncelog/oncelog/acl"
	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/console"
	"github.com/oncelog/oncelog/group"
	"github.com/oncelog/oncelog/httpapi"
	"github.com/oncelog/oncelog/internal/fdlimit"
	"github.com/oncelog/oncelog/wire"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type serveOptions struct {
	listen, advertise, adminListen string
	httpListen                     string
	adminConsole                   bool
	consoleLogin                   consoleLoginOptions
	http                           httpapi.Config
	httpRequestTimeoutMs           int64
	configFile                     string
	logLevel, logFormat            string
	cfg                            broker.Config
	wire                           wire.Config
	idleMs, requestReadTimeoutMs   int64
	sec                            securityOptions
	superUsers                     string

	// Set by resolve.
	logger   *slog.Logger
	settings []any // slog attributes: the settings that differ from their defaults
}

// httpDrainTimeout bounds how long shutdown waits for HTTP ingest requests
// in flight.
const httpDrainTimeout = 5 * time.Second

func newServeCmd() *cobra.Command { return newServeCommand(runServe) }

// newServeCommand builds `oncelog serve`; run is called with the resolved
// options (tests pass a stub to check configuration without starting a broker).
func newServeCommand(run func(context.Context, *serveOptions) error) *cobra.Command {
	o := &serveOptions{cfg: broker.DefaultConfig(), wire: wire.DefaultConfig(), http: httpapi.DefaultConfig()}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the broker",
		Long: `Run an oncelog broker: a Kafka-protocol listener over a durable log in --data-dir.

Settings come from, highest precedence first:
  1. flags                 --data-dir /var/lib/oncelog
  2. environment variables ONCELOG_DATA_DIR=/var/lib/oncelog
                           (ONCELOG_ + the flag name in upper case, '-' as '_')
  3. the YAML config file  data-dir: /var/lib/oncelog
                           (--config or ONCELOG_CONFIG; keys are the flag names,
                           see oncelog.example.yaml)
  4. the defaults shown below.
A bad value, or an unknown key in the config file, stops the broker with exit
status 2 before it touches the data directory.

Durability: acks=-1 (all) produces are answered only after the batch is
fsynced; concurrent producers share fsyncs (group commit). acks=1 produces are
answered after the write to the OS page cache, before the fsync: a machine
crash (not a process crash) in that window can lose them. Consumers only ever
see fsynced records.

Operations: the admin listener serves Prometheus metrics at /metrics, liveness
at /healthz and readiness at /readyz (503 until recovery has finished). Logs go
to stderr, one line per notable event. SIGTERM or SIGINT shuts down cleanly
(the next start skips recovery); a second signal exits at once. See
docs/operations.md.`,
		Example: `  oncelog serve
  oncelog serve --listen 0.0.0.0:9092 --advertise broker1.example.com:9092 --data-dir /var/lib/oncelog
  ONCELOG_LOG_LEVEL=debug oncelog serve --config oncelog.yaml`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnvAndFile(cmd.Flags(), o.configFile); err != nil {
				return &exitError{code: 2, err: err}
			}
			if err := o.resolve(cmd.Flags(), cmd.ErrOrStderr()); err != nil {
				return o.logFinalError(&exitError{code: 2, err: err})
			}
			return o.logFinalError(run(cmd.Context(), o))
		},
	}
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErrorf("%v\nsee `%s --help`", err, c.CommandPath())
	})
	f := cmd.Flags()
	f.SortFlags = false // keep related settings together, in this order
	c := &o.cfg

	f.StringVar(&o.configFile, "config", "", "YAML file of settings whose keys are these flag names (env ONCELOG_CONFIG; default: none)")
	f.StringVar(&o.listen, "listen", "127.0.0.1:9092", "host:port the Kafka protocol listener binds; 0.0.0.0:9092 for all interfaces")
	f.StringVar(&o.advertise, "advertise", "", "host:port clients are told to connect to (advertised.listeners); set it when clients reach the broker by another name (default: the --listen address)")
	addSecurityFlags(f, o)
	f.StringVar(&o.adminListen, "admin-listen", "127.0.0.1:9644", "host:port of the HTTP listener for /metrics, /healthz and /readyz; empty turns it off")
	f.BoolVar(&o.adminConsole, "admin-console", true, "serve the web console at / on the admin listener (topics, records, producers, transactions, groups, key window, live charts; docs/console.md): with a SASL listener every user logs in and the broker's ACLs decide what the console shows and does for them; without one, anyone who can reach the admin listener gets the broker's full rights through it")
	addConsoleLoginFlags(f, &o.consoleLogin)
	f.StringVar(&o.httpListen, "http-listen", "127.0.0.1:8082", "host:port of the HTTP ingest listener (POST /v1/topics/{topic}/records with Idempotency-Key, GET /v1/topics/{topic}/keys/{key}; docs/http.md); empty turns it off")
	f.IntVar(&o.http.MaxConcurrentRequests, "http-max-concurrent-requests", o.http.MaxConcurrentRequests, "most HTTP ingest requests served at once; one more is answered 503 with Retry-After at once")
	f.Int64Var(&o.httpRequestTimeoutMs, "http-request-timeout-ms", o.http.RequestTimeout.Milliseconds(), "bound on reading an HTTP ingest request and on waiting for its record to be fsynced, in milliseconds (as the producer's request.timeout.ms); idle keep-alive connections close after --connections-max-idle-ms")
	f.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for partition logs, producer state, consumer offsets and metadata; created if missing")
	f.Int32Var(&c.NodeID, "node-id", c.NodeID, "broker id reported to clients (node.id)")
	f.StringVar(&o.logLevel, "log-level", "info", "least severe log level written: debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "log line format on stderr: text (key=value) or json")

	f.BoolVar(&c.AutoCreateTopics, "auto-create-topics", c.AutoCreateTopics, "create unknown topics when a client asks for their metadata or produces to them (auto.create.topics.enable)")
	f.Int32Var(&c.DefaultPartitions, "default-partitions", c.DefaultPartitions, "partitions of auto-created topics and of topics created without a count (num.partitions)")
	f.Int32Var(&c.MaxMessageBytes, "message-max-bytes", c.MaxMessageBytes, "largest record batch accepted, in bytes (message.max.bytes; topic override max.message.bytes)")
	f.Int32Var(&c.FetchMaxBytes, "fetch-max-bytes", c.FetchMaxBytes, "most record bytes one Fetch response carries, whatever the consumer asks for; the first batch is returned whole even if bigger (fetch.max.bytes)")
	f.Int64Var(&c.MessageTimestampBeforeMaxMs, "log-message-timestamp-before-max-ms", c.MessageTimestampBeforeMaxMs, "refuse CreateTime records whose timestamp is more than this many milliseconds behind the broker's clock, with INVALID_TIMESTAMP (log.message.timestamp.before.max.ms; topic override message.timestamp.before.max.ms)")
	f.Int64Var(&c.MessageTimestampAfterMaxMs, "log-message-timestamp-after-max-ms", c.MessageTimestampAfterMaxMs, "refuse CreateTime records whose timestamp is more than this many milliseconds ahead of the broker's clock, with INVALID_TIMESTAMP (log.message.timestamp.after.max.ms; topic override message.timestamp.after.max.ms)")
	f.IntVar(&c.MaxDecompressedBatchBytes, "max-decompressed-batch-bytes", c.MaxDecompressedBatchBytes, "largest size a compressed produced batch may decompress to while the broker validates its records; a bigger one is refused with MESSAGE_TOO_LARGE (decompression-bomb guard)")
	f.Int32Var(&o.wire.MaxRequestBytes, "socket-request-max-bytes", o.wire.MaxRequestBytes, "largest request accepted, in bytes; a bigger one closes the connection (socket.request.max.bytes)")
	f.Int64Var(&o.wire.QueuedMaxRequestBytes, "queued-max-request-bytes", o.wire.QueuedMaxRequestBytes, "bytes of requests being read or waiting to be processed, over all connections, before the broker stops reading more; -1 for no limit (queued.max.request.bytes; Kafka's default is -1)")
	f.IntVar(&o.wire.MaxConnections, "max-connections", o.wire.MaxConnections, "most client connections; new ones over it are closed at once (max.connections; Kafka's default is unlimited)")
	f.IntVar(&o.wire.MaxConnectionsPerIP, "max-connections-per-ip", o.wire.MaxConnectionsPerIP, "most client connections from one IP address; new ones over it are closed at once (max.connections.per.ip; default 0: no limit, as in Kafka)")
	f.Int64Var(&o.idleMs, "connections-max-idle-ms", o.wire.ConnectionsMaxIdle.Milliseconds(), "close a connection that has no request in flight and has sent and received nothing for this many milliseconds (connections.max.idle.ms)")
	f.Int64Var(&o.requestReadTimeoutMs, "request-read-timeout-ms", o.wire.RequestReadTimeout.Milliseconds(), "close a connection whose request has not fully arrived this many milliseconds after its first byte (slow senders); not a Kafka setting")
	f.Int64Var(&c.SegmentBytes, "log-segment-bytes", c.SegmentBytes, "roll a partition's active segment file at this size, in bytes (log.segment.bytes; topic override segment.bytes)")
	f.IntVar(&c.MaxPartitions, "max-partitions", c.MaxPartitions, "most partitions of all topics together; a CreateTopics or CreatePartitions beyond it gets POLICY_VIOLATION (each partition holds two open files)")
	f.IntVar(&c.MaxOpenSegmentFiles, "max-open-segment-files", c.MaxOpenSegmentFiles, "most closed segment files kept open, over all partitions; colder ones are closed and reopened when read (the active segments are always open and not counted)")
	f.Int64Var(&c.SegmentMs, "log-segment-ms", c.SegmentMs, "roll the active segment this many milliseconds after its first append (log.roll.ms; topic override segment.ms)")
	f.Int64Var(&c.RetentionMs, "log-retention-ms", c.RetentionMs, "delete closed segments whose newest record is older than this many milliseconds; -1 keeps them forever (log.retention.ms; topic override retention.ms)")
	f.Int64Var(&c.RetentionBytes, "log-retention-bytes", c.RetentionBytes, "delete a partition's oldest segments while it is larger than this many bytes; -1 for no limit (log.retention.bytes; topic override retention.bytes)")
	f.DurationVar(&c.RetentionCheckInterval, "log-retention-check-interval", c.RetentionCheckInterval, "how often retention and producer-id expiry run (log.retention.check.interval.ms)")
	f.DurationVar(&c.RecoveryPointInterval, "log-flush-offset-checkpoint-interval", c.RecoveryPointInterval, "how often a partition written to since its last recovery point writes a new one with a producer snapshot, so that a restart after a crash scans and replays only what came after (log.flush.offset.checkpoint.interval.ms)")
	f.Int64Var(&c.RecoveryPointBytes, "log-recovery-point-bytes", c.RecoveryPointBytes, "write a partition's recovery point sooner, once its log grew this many bytes past the last one: bounds the scan after a crash however fast the partition is written; not a Kafka setting")
	f.IntVar(&c.RecoveryThreads, "num-recovery-threads", c.RecoveryThreads, "how many partitions are opened and recovered at once at start (num.recovery.threads.per.data.dir)")

	f.StringVar(&c.CleanupPolicy, "log-cleanup-policy", c.CleanupPolicy, "what happens to old records of topics without their own cleanup.policy: delete (retention), compact (keep the newest record of every key) or compact,delete (log.cleanup.policy; topic override cleanup.policy)")
	f.BoolVar(&c.CleanerEnable, "log-cleaner-enable", c.CleanerEnable, "run the log cleaner that compacts topics with cleanup.policy=compact (log.cleaner.enable)")
	f.IntVar(&c.CleanerThreads, "log-cleaner-threads", c.CleanerThreads, "how many partitions the log cleaner compacts at once (log.cleaner.threads)")
	f.Int64Var(&c.CleanerBackoffMs, "log-cleaner-backoff-ms", c.CleanerBackoffMs, "how long the log cleaner sleeps when no partition needs compacting, in milliseconds (log.cleaner.backoff.ms)")
	f.Int64Var(&c.CleanerDedupeBufferSize, "log-cleaner-dedupe-buffer-size", c.CleanerDedupeBufferSize, "memory for the log cleaner's key maps, in bytes, shared by its threads; a partition whose keys do not fit is compacted in several passes (log.cleaner.dedupe.buffer.size)")
	f.Float64Var(&c.CleanerIOMaxBytesPerSecond, "log-cleaner-io-max-bytes-per-second", c.CleanerIOMaxBytesPerSecond, "most bytes per second the log cleaner reads plus writes, over all its threads (log.cleaner.io.max.bytes.per.second)")
	f.Float64Var(&c.CleanerMinCleanableRatio, "log-cleaner-min-cleanable-ratio", c.CleanerMinCleanableRatio, "compact a partition once this share of its log has not been compacted yet (log.cleaner.min.cleanable.ratio; topic override min.cleanable.dirty.ratio)")
	f.Int64Var(&c.CleanerMinCompactionLagMs, "log-cleaner-min-compaction-lag-ms", c.CleanerMinCompactionLagMs, "never compact records younger than this many milliseconds; the default 0 lets any record in a closed segment be compacted (log.cleaner.min.compaction.lag.ms; topic override min.compaction.lag.ms)")
	f.Int64Var(&c.CleanerMaxCompactionLagMs, "log-cleaner-max-compaction-lag-ms", c.CleanerMaxCompactionLagMs, "compact records older than this many milliseconds whatever the dirty ratio (log.cleaner.max.compaction.lag.ms; topic override max.compaction.lag.ms)")
	f.Int64Var(&c.CleanerDeleteRetentionMs, "log-cleaner-delete-retention-ms", c.CleanerDeleteRetentionMs, "how long tombstones and transaction markers stay in a compacted log after its first compaction that kept them, in milliseconds (log.cleaner.delete.retention.ms; topic override delete.retention.ms)")

	f.Int64Var(&c.ProducerIDExpirationMs, "producer-id-expiration-ms", c.ProducerIDExpirationMs, "forget an idempotent producer's sequence numbers after it has been idle this many milliseconds (producer.id.expiration.ms)")
	f.IntVar(&c.MaxProducersPerPartition, "max-producers-per-partition", c.MaxProducersPerPartition, "most producer ids kept in memory per partition; beyond it the least recently used one is spilled to disk (still deduplicated)")
	f.IntVar(&c.MaxProducers, "max-producers", c.MaxProducers, "most producer ids kept in memory by the whole broker; beyond it the least recently used one is spilled to disk (still deduplicated)")

	f.Int32Var(&c.TransactionMaxTimeoutMs, "transaction-max-timeout-ms", c.TransactionMaxTimeoutMs, "largest transaction.timeout.ms a transactional producer may ask for, in milliseconds (transaction.max.timeout.ms)")
	f.DurationVar(&c.TransactionSweepInterval, "transaction-timeout-check-interval", c.TransactionSweepInterval, "how often transactions past their timeout are aborted (transaction.abort.timed.out.transaction.cleanup.interval.ms)")
	f.Int16Var(&c.TransactionVersion, "transaction-version", c.TransactionVersion, "transaction.version feature level a new data directory starts with: 2 is KIP-890 part 2 (an epoch bump per transaction, partitions added by Produce), 0 or 1 the earlier protocol; clients use what ApiVersions finalizes, and UpdateFeatures (kafka-features.sh) changes it durably later (Kafka: kafka-storage format --feature transaction.version)")
	f.DurationVar(&c.TransactionalIDExpiration, "transactional-id-expiration", c.TransactionalIDExpiration, "how long a transactional id with no transaction in progress is kept without use; after it, its next InitProducerId gets a new producer id (transactional.id.expiration.ms)")

	f.DurationVar(&c.GroupInitialRebalanceDelay, "group-initial-rebalance-delay", c.GroupInitialRebalanceDelay, "how long an empty consumer group waits for more members before its first rebalance (group.initial.rebalance.delay.ms)")
	f.DurationVar(&c.GroupMinSessionTimeout, "group-min-session-timeout", c.GroupMinSessionTimeout, "smallest consumer session timeout accepted (group.min.session.timeout.ms)")
	f.DurationVar(&c.GroupMaxSessionTimeout, "group-max-session-timeout", c.GroupMaxSessionTimeout, "largest consumer session timeout accepted (group.max.session.timeout.ms)")
	f.IntVar(&c.GroupMaxSize, "group-max-size", c.GroupMaxSize, "most members of one consumer group; a JoinGroup beyond it gets GROUP_MAX_SIZE_REACHED (group.max.size; Kafka's default is unlimited)")

	f.DurationVar(&c.ShareSessionTimeout, "group-share-session-timeout", c.ShareSessionTimeout, "a share-group member that sends no ShareGroupHeartbeat for this long is removed and its record locks released (group.share.session.timeout.ms; a group's share.session.timeout.ms overrides it)")
	f.DurationVar(&c.ShareHeartbeatInterval, "group-share-heartbeat-interval", c.ShareHeartbeatInterval, "how often share-group members are told to heartbeat (group.share.heartbeat.interval.ms)")
	f.IntVar(&c.ShareMaxSize, "group-share-max-size", c.ShareMaxSize, "most members of one share group; a join beyond it gets GROUP_MAX_SIZE_REACHED (group.share.max.size)")
	f.DurationVar(&c.ShareRecordLockDuration, "group-share-record-lock-duration", c.ShareRecordLockDuration, "how long a share consumer holds a record it fetched before it is delivered to another (group.share.record.lock.duration.ms; a group's share.record.lock.duration.ms overrides it)")
	f.IntVar(&c.ShareDeliveryCountLimit, "group-share-delivery-count-limit", c.ShareDeliveryCountLimit, "deliveries of one record to a share group before it is archived and never delivered again (group.share.delivery.count.limit)")
	f.IntVar(&c.SharePartitionMaxRecordLocks, "group-share-partition-max-record-locks", c.SharePartitionMaxRecordLocks, "most records in flight (fetched, not yet acknowledged) per share-group partition; fetches get nothing new past it (group.share.partition.max.record.locks)")
	f.IntVar(&c.ShareMaxShareSessions, "group-share-max-share-sessions", c.ShareMaxShareSessions, "most share sessions the broker holds; a ShareFetch opening one more gets SHARE_SESSION_LIMIT_REACHED (group.share.max.share.sessions)")

	f.DurationVar(&c.GroupConsumerSessionTimeout, "group-consumer-session-timeout", c.GroupConsumerSessionTimeout, "a KIP-848 consumer group member that sends no ConsumerGroupHeartbeat for this long is fenced and its partitions reassigned (group.consumer.session.timeout.ms)")
	f.DurationVar(&c.GroupConsumerMinSessionTimeout, "group-consumer-min-session-timeout", c.GroupConsumerMinSessionTimeout, "smallest --group-consumer-session-timeout allowed (group.consumer.min.session.timeout.ms)")
	f.DurationVar(&c.GroupConsumerMaxSessionTimeout, "group-consumer-max-session-timeout", c.GroupConsumerMaxSessionTimeout, "largest --group-consumer-session-timeout allowed (group.consumer.max.session.timeout.ms)")
	f.DurationVar(&c.GroupConsumerHeartbeatInterval, "group-consumer-heartbeat-interval", c.GroupConsumerHeartbeatInterval, "how often KIP-848 consumer group members are told to heartbeat (group.consumer.heartbeat.interval.ms)")
	f.DurationVar(&c.GroupConsumerMinHeartbeatInterval, "group-consumer-min-heartbeat-interval", c.GroupConsumerMinHeartbeatInterval, "smallest --group-consumer-heartbeat-interval allowed (group.consumer.min.heartbeat.interval.ms)")
	f.DurationVar(&c.GroupConsumerMaxHeartbeatInterval, "group-consumer-max-heartbeat-interval", c.GroupConsumerMaxHeartbeatInterval, "largest --group-consumer-heartbeat-interval allowed (group.consumer.max.heartbeat.interval.ms)")
	f.IntVar(&c.GroupConsumerMaxSize, "group-consumer-max-size", c.GroupConsumerMaxSize, "most members of one KIP-848 consumer group; a join beyond it gets GROUP_MAX_SIZE_REACHED (group.consumer.max.size; Kafka's default is unlimited)")
	f.StringVar(&c.GroupConsumerAssignors, "group-consumer-assignors", c.GroupConsumerAssignors, "server-side assignors of KIP-848 consumer groups, comma-separated, the first the default: uniform and range, or Kafka's class names of them (group.consumer.assignors)")
	f.StringVar(&c.GroupConsumerMigrationPolicy, "group-consumer-migration-policy", c.GroupConsumerMigrationPolicy, "which online conversions of a consumer group with members between the classic and the KIP-848 protocol are allowed: bidirectional, upgrade, downgrade or disabled (group.consumer.migration.policy)")
	f.StringVar(&c.Authorizer, "authorizer", broker.AuthorizerNone, "who may do what: none lets every client that can reach the listener do anything; acl lets Kafka ACLs (CreateAcls, kafka-acls.sh, oncelog acl) decide every request with Kafka's StandardAuthorizer semantics (authorizer.class.name)")
	f.StringVar(&o.superUsers, "super-users", "", "principals allowed everything whatever the ACLs say, separated by ';' (super.users), e.g. 'User:admin;User:ops' (default: none)")
	f.BoolVar(&c.AllowEveryoneIfNoACLFound, "allow-everyone-if-no-acl-found", c.AllowEveryoneIfNoACLFound, "with --authorizer acl, let everyone use a resource no ACL applies to (allow.everyone.if.no.acl.found; default: such a resource is closed)")
	return cmd
}

// resolve validates the settings, builds the logger and fills in the
// advertised address, so that every configuration mistake is reported
// before the broker opens its data directory.
func (o *serveOptions) resolve(fs *pflag.FlagSet, stderr io.Writer) error {
	logger, err := newLogger(o.logLevel, o.logFormat, stderr)
	if err != nil {
		return err
	}
	o.logger = logger
	c := &o.cfg
	segErr := broker.ValidateSegmentBytes(strconv.FormatInt(c.SegmentBytes, 10))
	for _, check := range []struct {
		bad bool
		msg string
	}{
		{c.DefaultPartitions < 1, "--default-partitions must be at least 1"},
		{c.MaxMessageBytes < 0, "--message-max-bytes must not be negative"},
		{c.FetchMaxBytes < 1024, "--fetch-max-bytes must be at least 1024"},
		{c.MessageTimestampBeforeMaxMs < 0, "--log-message-timestamp-before-max-ms must not be negative"},
		{c.MessageTimestampAfterMaxMs < 0, "--log-message-timestamp-after-max-ms must not be negative"},
		{c.MaxDecompressedBatchBytes < 1, "--max-decompressed-batch-bytes must be at least 1"},
		{o.wire.MaxRequestBytes < 8, "--socket-request-max-bytes must be at least 8"},
		{o.wire.QueuedMaxRequestBytes != -1 && o.wire.QueuedMaxRequestBytes < int64(o.wire.MaxRequestBytes), "--queued-max-request-bytes must be -1 (no limit) or at least --socket-request-max-bytes"},
		{o.wire.MaxConnections < 1, "--max-connections must be at least 1"},
		{o.wire.MaxConnectionsPerIP < 0, "--max-connections-per-ip must be 0 (no limit) or more"},
		{o.idleMs < 1, "--connections-max-idle-ms must be positive"},
		{o.requestReadTimeoutMs < 1, "--request-read-timeout-ms must be positive"},
		{o.http.MaxConcurrentRequests < 1, "--http-max-concurrent-requests must be at least 1"},
		{o.httpRequestTimeoutMs < 1, "--http-request-timeout-ms must be positive"},
		{o.consoleLogin.maxSessions < 1, "--admin-console-max-sessions must be at least 1"},
		{o.consoleLogin.maxSessionsPerUser < 1, "--admin-console-max-sessions-per-user must be at least 1"},
		{o.consoleLogin.idleTimeout <= 0, "--admin-console-session-idle-timeout must be positive"},
		{o.consoleLogin.maxAge <= 0, "--admin-console-session-max-age must be positive"},
		{segErr != nil, fmt.Sprintf("--log-segment-bytes %d: %v (log.segment.bytes; 1 MiB is Kafka 4.0's minimum)", c.SegmentBytes, segErr)},
		{c.SegmentMs < broker.MinSegmentMs, "--log-segment-ms must be at least 1"},
		{c.MaxPartitions < 1, "--max-partitions must be at least 1"},
		{c.MaxOpenSegmentFiles < 1, "--max-open-segment-files must be at least 1"},
		{c.RetentionMs < -1, "--log-retention-ms must be -1 (forever) or more"},
		{c.RetentionBytes < -1, "--log-retention-bytes must be -1 (no limit) or more"},
		{c.RetentionCheckInterval <= 0, "--log-retention-check-interval must be positive"},
		{c.RecoveryPointInterval <= 0, "--log-flush-offset-checkpoint-interval must be positive"},
		{c.RecoveryPointBytes < 1, "--log-recovery-point-bytes must be positive"},
		{c.RecoveryThreads < 1, "--num-recovery-threads must be at least 1"},
		{broker.ValidateCleanupPolicy(c.CleanupPolicy) != nil, "--log-cleanup-policy must be delete, compact or compact,delete"},
		{c.CleanerThreads < 1, "--log-cleaner-threads must be at least 1"},
		{c.CleanerBackoffMs < 1, "--log-cleaner-backoff-ms must be positive"},
		{c.CleanerDedupeBufferSize < 1<<16, "--log-cleaner-dedupe-buffer-size must be at least 65536"},
		{!(c.CleanerIOMaxBytesPerSecond > 0), "--log-cleaner-io-max-bytes-per-second must be positive"},
		{!(c.CleanerMinCleanableRatio >= 0 && c.CleanerMinCleanableRatio <= 1), "--log-cleaner-min-cleanable-ratio must be between 0 and 1"},
		{c.CleanerMinCompactionLagMs < 0, "--log-cleaner-min-compaction-lag-ms must not be negative"},
		{c.CleanerMaxCompactionLagMs < 1, "--log-cleaner-max-compaction-lag-ms must be positive"},
		{c.CleanerDeleteRetentionMs < 0, "--log-cleaner-delete-retention-ms must not be negative"},
		{c.ProducerIDExpirationMs < 1, "--producer-id-expiration-ms must be positive"},
		{c.MaxProducersPerPartition < 1, "--max-producers-per-partition must be at least 1"},
		{c.MaxProducers < 1, "--max-producers must be at least 1"},
		{c.TransactionMaxTimeoutMs < 1, "--transaction-max-timeout-ms must be positive"},
		{c.TransactionSweepInterval <= 0, "--transaction-timeout-check-interval must be positive"},
		{c.TransactionalIDExpiration <= 0, "--transactional-id-expiration must be positive"},
		{c.TransactionVersion < 0 || c.TransactionVersion > 2, "--transaction-version must be 0, 1 or 2"},
		{c.GroupInitialRebalanceDelay < 0, "--group-initial-rebalance-delay must not be negative"},
		{c.GroupMaxSize < 1, "--group-max-size must be at least 1"},
		{c.ShareSessionTimeout <= 0 || c.ShareHeartbeatInterval <= 0 || c.ShareRecordLockDuration <= 0, "--group-share-session-timeout, --group-share-heartbeat-interval and --group-share-record-lock-duration must be positive"},
		{c.ShareHeartbeatInterval >= c.ShareSessionTimeout, "--group-share-heartbeat-interval must be less than --group-share-session-timeout"},
		{c.ShareMaxSize < 1 || c.SharePartitionMaxRecordLocks < 1 || c.ShareMaxShareSessions < 1, "--group-share-max-size, --group-share-partition-max-record-locks and --group-share-max-share-sessions must be at least 1"},
		{c.ShareDeliveryCountLimit < 2 || c.ShareDeliveryCountLimit > 10, "--group-share-delivery-count-limit must be between 2 and 10 (as Kafka)"},
		{c.GroupMinSessionTimeout > c.GroupMaxSessionTimeout, "--group-min-session-timeout must not exceed --group-max-session-timeout"},
		{c.GroupConsumerSessionTimeout < c.GroupConsumerMinSessionTimeout || c.GroupConsumerSessionTimeout > c.GroupConsumerMaxSessionTimeout,
			"--group-consumer-session-timeout must be between --group-consumer-min-session-timeout and --group-consumer-max-session-timeout"},
		{c.GroupConsumerHeartbeatInterval < c.GroupConsumerMinHeartbeatInterval || c.GroupConsumerHeartbeatInterval > c.GroupConsumerMaxHeartbeatInterval,
			"--group-consumer-heartbeat-interval must be between --group-consumer-min-heartbeat-interval and --group-consumer-max-heartbeat-interval"},
		{c.GroupConsumerMinHeartbeatInterval <= 0 || c.GroupConsumerHeartbeatInterval >= c.GroupConsumerSessionTimeout,
			"--group-consumer-heartbeat-interval must be positive and less than --group-consumer-session-timeout"},
		{c.GroupConsumerMaxSize < 1, "--group-consumer-max-size must be at least 1"},
		{!broker.ValidConsumerAssignors(c.GroupConsumerAssignors), "--group-consumer-assignors must list one or more of uniform and range"},
		{!group.ValidMigrationPolicy(c.GroupConsumerMigrationPolicy), "--group-consumer-migration-policy must be bidirectional, upgrade, downgrade or disabled"},
		{c.DataDir == "", "--data-dir must not be empty"},
		{c.Authorizer != broker.AuthorizerNone && c.Authorizer != broker.AuthorizerACL, "--authorizer must be none or acl"},
	} {
		if check.bad {
			return fmt.Errorf("%s", check.msg)
		}
	}

	if c.SuperUsers, err = acl.ParseSuperUsers(o.superUsers); err != nil {
		return fmt.Errorf("--super-users: %w", err)
	}
	if c.Authorizer == broker.AuthorizerNone && (len(c.SuperUsers) > 0 || c.AllowEveryoneIfNoACLFound) {
		logger.Warn("--super-users and --allow-everyone-if-no-acl-found have no effect without --authorizer acl")
	}
	o.wire.ConnectionsMaxIdle = time.Duration(o.idleMs) * time.Millisecond
	o.wire.RequestReadTimeout = time.Duration(o.requestReadTimeoutMs) * time.Millisecond
	o.http.RequestTimeout = time.Duration(o.httpRequestTimeoutMs) * time.Millisecond
	o.http.IdleTimeout = o.wire.ConnectionsMaxIdle

	if err := o.resolveListeners(fs, logger); err != nil {
		return err
	}

	o.settings = nil
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" && f.Value.String() != f.DefValue {
			o.settings = append(o.settings, slog.String(f.Name, f.Value.String()))
		}
	})
	return nil
}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

// logFinalError writes the error that ends `serve` as the last log line, so
// that with --log-format json every line on stderr is JSON (a log shipper
// otherwise drops or mangles the one line that says why the broker
// stopped). The error is then marked reported: Execute only sets the exit code.
func (o *serveOptions) logFinalError(err error) error {
	if err == nil || o.logger == nil || o.logFormat != "json" {
		return err
	}
	o.logger.Error("oncelog serve stopped", "err", err.Error())
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	return &exitError{code: code, err: err, reported: true}
}

// processStart is about when the process started (package initialisation),
// for the restart timings in the "oncelog ready" log line.
var processStart = time.Now()

func runServe(ctx context.Context, o *serveOptions) error {
	logger := o.logger
	if len(o.settings) > 0 {
		logger.Info("settings changed from their defaults", o.settings...)
	}

	ctx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	// The admin listener starts first, so that /healthz answers and /readyz
	// says 503 while recovery runs.
	var ready atomic.Bool
	var stats atomic.Pointer[broker.Stats]
	var brk atomic.Pointer[broker.Broker]
	var cons atomic.Pointer[console.Console]
	if o.adminListen != "" {
		adminLn, err := net.Listen("tcp", o.adminListen)
		if err != nil {
			return fmt.Errorf("admin listener on %s: %w (is another oncelog running? use --admin-listen)", o.adminListen, err)
		}
		handler := adminHandlerWith(o.sec.admin, &ready, &stats, &brk)
		if o.adminConsole {
			handler = withConsole(handler, o.sec.admin.tokens.Require(consoleHandler(&cons)))
		}
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(adminLn)
		defer srv.Close()
	}

	// Bind every port before recovery, which can take a while: a port in
	// use is reported at once, not after the log has been scanned.
	// Connections wait in the backlog until the broker serves them.
	var kafkaLns []net.Listener
	closeLns := func() {
		for _, ln := range kafkaLns {
			ln.Close()
		}
	}
	for _, l := range o.sec.resolved {
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			closeLns()
			return fmt.Errorf("listen on %s (listener %s): %w (is another broker running? use --listen or --listeners)", l.addr, l.Name, err)
		}
		kafkaLns = append(kafkaLns, ln)
	}
	var ingestLn net.Listener
	if o.httpListen != "" {
		var err error
		if ingestLn, err = net.Listen("tcp", o.httpListen); err != nil {
			closeLns()
			return fmt.Errorf("HTTP ingest listener on %s: %w (is another oncelog running? use --http-listen, empty to turn it off)", o.httpListen, err)
		}
		defer ingestLn.Close()
	}
	soft, hard, limErr := fdlimit.Raise()
	b, err := openBroker(ctx, o.cfg, logger)
	if err != nil {
		closeLns()
		return err
	}
	logFDLimit(logger, soft, hard, limErr, o, b.PartitionCount())
	stats.Store(b.Stats)
	brk.Store(b)
	o.sec.watchTLS(ctx, logger)
	server := wire.NewServer(b, o.wire, logger)
	serveErr := make(chan error, len(o.sec.resolved)+1)
	var bound []any
	var firstAddr string
	for i, l := range o.sec.resolved {
		ln := kafkaLns[i]
		if firstAddr == "" {
			firstAddr = ln.Addr().String()
		}
		go func() { serveErr <- server.ServeListener(ln, l.Listener) }()
		bound = append(bound, slog.Group(l.Name, "listen", ln.Addr().String(), "protocol", string(l.Protocol),
			"advertise", net.JoinHostPort(l.AdvertisedHost, strconv.Itoa(int(l.AdvertisedPort)))))
	}
	var ingest *httpapi.Server
	if ingestLn != nil {
		hc := o.http
		hc.Registerer, hc.Logger = b.Stats.Registry, logger
		if o.sec.httpTokens != nil {
			hc.Wrap = o.sec.httpTokens.Require
		}
		ingest = httpapi.New(httpapi.ForBroker(b), hc)
		go func() {
			if err := ingest.Serve(ingestLn); err != nil {
				serveErr <- err
			}
		}()
	}
	if o.adminListen != "" && o.adminConsole {
		c, err := startConsole(o, b, kafkaLns, ingestLn)
		if err != nil {
			logger.Warn("web console not started", "err", err)
		} else {
			cons.Store(c)
			defer c.Close()
		}
	}
	ready.Store(true)
	logger.Info("oncelog ready", append([]any{"listen", firstAddr,
		"advertise", net.JoinHostPort(o.cfg.AdvertisedHost, strconv.Itoa(int(o.cfg.AdvertisedPort))),
		"data_dir", o.cfg.DataDir, "admin", o.adminListen, "http", o.httpListen,
		"since_start", time.Since(processStart).Round(time.Millisecond).String()}, bound...)...)

	select {
	case <-ctx.Done():
		// Restore default signal handling: a second signal kills the
		// process if the clean shutdown hangs.
		stopSignals()
		logger.Info("shutting down")
	case err = <-serveErr:
		logger.Error("listener failed", "err", err)
	case <-b.StoreFailed():
		// A metadata store cannot continue (see broker.storeFatal):
		// stop serving, close what can be closed, exit non-zero.
		err = b.StoreErr()
		logger.Error("stopping: a metadata store failed", "err", err)
	}
	ready.Store(false)
	if ingest != nil {
		// Let posts in flight be answered (their records are appended and
		// waiting for the fsync) before the broker closes under them; a
		// few seconds, so a stuck client cannot hold up the shutdown.
		shutdownCtx, cancel := context.WithTimeout(context.Background(), httpDrainTimeout)
		ingest.Close(shutdownCtx)
		cancel()
	}
	server.Close()
	if cerr := b.Close(); cerr != nil {
		logger.Error("clean shutdown incomplete; the next start will run recovery", "err", cerr)
		return cerr
	}
	logger.Info("shutdown complete")
	return err
}

// logFDLimit logs the file-descriptor limit and warns when it is low for
// what the settings allow: --max-partitions, --max-open-segment-files and
// --max-connections together. Running out of descriptors fails creates,
// rolls and accepts (each with an error, not a crash), so the warning says
// which number to raise.
func logFDLimit(logger *slog.Logger, soft, hard uint64, err error, o *serveOptions, partitions int) {
	if err != nil {
		logger.Warn("cannot read the file-descriptor limit (RLIMIT_NOFILE)", "err", err)
		return
	}
	need := fdlimit.Needed(o.cfg.MaxPartitions, o.cfg.MaxOpenSegmentFiles, o.wire.MaxConnections)
	attrs := []any{"limit", soft, "hard_limit", hard, "partitions", partitions, "needed_at_the_limits", need,
		"max_partitions", o.cfg.MaxPartitions, "max_open_segment_files", o.cfg.MaxOpenSegmentFiles, "max_connections", o.wire.MaxConnections}
	if soft < need {
		logger.Warn("the file-descriptor limit is low for --max-partitions, --max-open-segment-files and --max-connections; raise it (LimitNOFILE= in a systemd unit, ulimit -n) or lower those", attrs...)
		return
	}
	logger.Info("file-descriptor limit", attrs...)
}

// openBroker runs broker.Open, which recovers every log and store and cannot
// be interrupted, but gives up waiting for it on SIGTERM/SIGINT: a signal
// during a long (or, on a broken disk, endless) recovery then ends the
// process as it asked instead of being swallowed. Stopping mid-recovery is
// as safe as a crash, which is what recovery is for.
func openBroker(ctx context.Context, cfg broker.Config, logger *slog.Logger) (*broker.Broker, error) {
	type opened struct {
		b   *broker.Broker
		err error
	}
	done := make(chan opened, 1)
	go func() {
		b, err := broker.Open(cfg, logger)
		done <- opened{b, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("start broker: %w", r.err)
		}
		return r.b, nil
	case <-ctx.Done():
		logger.Warn("signal during recovery: exiting without waiting for it; the next start recovers again")
		return nil, errors.New("stopped by a signal during recovery")
	}
}
