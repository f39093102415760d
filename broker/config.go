package broker

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/fsx"
	"github.com/oncelog/oncelog/partition"
	"github.com/oncelog/oncelog/producer"
	"github.com/oncelog/oncelog/segment"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Config is the broker's configuration (what `oncelog serve` flags set).
type Config struct {
	NodeID  int32
	DataDir string
	// FS is the filesystem the data directory lives on: nil is the
	// operating system's. Tests inject disk faults and power loss through
	// it (see internal/fsx).
	FS                fsx.FS
	AdvertisedHost    string
	AdvertisedPort    int32
	AutoCreateTopics  bool
	DefaultPartitions int32
	// MaxPartitions bounds the partitions of all topics together
	// (--max-partitions; Kafka has no such limit, KIP-578 proposed one):
	// every partition holds open files and memory, so a client creating
	// topics can no longer run the broker out of file descriptors.
	MaxPartitions int
	// MaxOpenSegmentFiles bounds the closed segments that keep their file
	// open, over all partitions (--max-open-segment-files; Kafka keeps
	// every segment open). See segment.SetMaxOpenFiles.
	MaxOpenSegmentFiles int

	// Topic defaults (Kafka's log.* broker settings).
	SegmentBytes    int64
	SegmentMs       int64
	RetentionMs     int64
	RetentionBytes  int64
	MaxMessageBytes int32
	// Timestamp bounds for CreateTime records (log.message.timestamp.*).
	MessageTimestampBeforeMaxMs int64
	MessageTimestampAfterMaxMs  int64
	// MaxDecompressedBatchBytes bounds what one compressed produced batch
	// may decompress to while it is validated.
	MaxDecompressedBatchBytes int

	// Producer state.
	ProducerIDExpirationMs   int64
	MaxProducersPerPartition int
	MaxProducers             int

	// FetchMaxBytes is fetch.max.bytes: the most record bytes one Fetch
	// response carries, whatever the request asks for (its MaxBytes can
	// only lower it); the first batch is still returned whole (KIP-74).
	FetchMaxBytes int32

	// RetentionCheckInterval is log.retention.check.interval.ms.
	RetentionCheckInterval time.Duration

	// Crash recovery (partition/recoverypoint.go). RecoveryPointInterval
	// is log.flush.offset.checkpoint.interval.ms; RecoveryPointBytes
	// (oncelog's own) writes a partition's recovery point sooner once its
	// log grew this much past the last one, bounding the scan after a
	// crash; RecoveryThreads is num.recovery.threads.per.data.dir, how
	// many partitions are opened (and recovered) at once at start.
	RecoveryPointInterval time.Duration
	RecoveryPointBytes    int64
	RecoveryThreads       int

	// Log compaction (Kafka's log.cleaner.* settings). The ratio, lags and
	// delete retention are the defaults of the topic configs
	// min.cleanable.dirty.ratio, min.compaction.lag.ms,
	// max.compaction.lag.ms and delete.retention.ms.
	CleanupPolicy              string // log.cleanup.policy
	CleanerEnable              bool
	CleanerThreads             int
	CleanerBackoffMs           int64
	CleanerDedupeBufferSize    int64
	CleanerIOMaxBytesPerSecond float64
	CleanerMinCleanableRatio   float64
	CleanerMinCompactionLagMs  int64
	CleanerMaxCompactionLagMs  int64
	CleanerDeleteRetentionMs   int64

	// Transactions.
	TransactionMaxTimeoutMs   int32
	TransactionSweepInterval  time.Duration
	TransactionalIDExpiration time.Duration
	// TransactionVersion is the transaction.version feature level a new
	// data directory starts with (Kafka 4.x formats new clusters at 2);
	// UpdateFeatures changes it later. 2 is KIP-890 part 2.
	TransactionVersion int16

	// Groups.
	GroupInitialRebalanceDelay time.Duration
	GroupMinSessionTimeout     time.Duration
	GroupMaxSessionTimeout     time.Duration
	// GroupMaxSize is group.max.size.
	GroupMaxSize int

	// Share groups (KIP-932), Kafka's group.share.* settings.
	ShareSessionTimeout          time.Duration // group.share.session.timeout.ms
	ShareHeartbeatInterval       time.Duration // group.share.heartbeat.interval.ms
	ShareMaxSize                 int           // group.share.max.size
	ShareRecordLockDuration      time.Duration // group.share.record.lock.duration.ms
	ShareDeliveryCountLimit      int           // group.share.delivery.count.limit
	SharePartitionMaxRecordLocks int           // group.share.partition.max.record.locks
	ShareMaxShareSessions        int           // group.share.max.share.sessions

	// KIP-848 consumer groups, Kafka's group.consumer.* settings. The
	// min/max bounds are checked against the values at start, as Kafka
	// does; assignors is a comma-separated list, the first the default.
	GroupConsumerSessionTimeout       time.Duration // group.consumer.session.timeout.ms
	GroupConsumerMinSessionTimeout    time.Duration // group.consumer.min.session.timeout.ms
	GroupConsumerMaxSessionTimeout    time.Duration // group.consumer.max.session.timeout.ms
	GroupConsumerHeartbeatInterval    time.Duration // group.consumer.heartbeat.interval.ms
	GroupConsumerMinHeartbeatInterval time.Duration // group.consumer.min.heartbeat.interval.ms
	GroupConsumerMaxHeartbeatInterval time.Duration // group.consumer.max.heartbeat.interval.ms
	GroupConsumerMaxSize              int           // group.consumer.max.size
	GroupConsumerAssignors            string        // group.consumer.assignors
	GroupConsumerMigrationPolicy      string        // group.consumer.migration.policy

	// Authorization (authorizer.class.name, super.users,
	// allow.everyone.if.no.acl.found): Authorizer "acl" enforces the ACLs
	// of package acl; "none" (or "") lets every client do anything.
	Authorizer                string
	SuperUsers                []string
	AllowEveryoneIfNoACLFound bool
}

// DefaultMaxPartitions is --max-partitions' default. Each partition keeps
// two files open (its active segment and its aborted-transaction index), so
// 10,000 need about 20,000 descriptors besides the segment file cache and
// the connections: well inside the limit most systems raise to (the
// broker raises its soft limit to the hard one at start), and 2.5 times
// Kafka's long-standing advice of 4,000 partitions per broker.
const DefaultMaxPartitions = 10000

// DefaultConfig returns Kafka's defaults where Kafka has one.
func DefaultConfig() Config {
	return Config{
		NodeID:              1,
		DataDir:             "./data",
		AdvertisedHost:      "127.0.0.1",
		AdvertisedPort:      9092,
		AutoCreateTopics:    true,
		DefaultPartitions:   1,
		MaxPartitions:       DefaultMaxPartitions,
		MaxOpenSegmentFiles: segment.DefaultMaxOpenFiles,
		SegmentBytes:        1 << 30,
		SegmentMs:           7 * 24 * 3600 * 1000,
		RetentionMs:         7 * 24 * 3600 * 1000,
		RetentionBytes:      -1,
		MaxMessageBytes:     1048588,
		// Kafka 4.0's defaults (KIP-937, KIP-1030): any age, at most an
		// hour in the future.
		MessageTimestampBeforeMaxMs: math.MaxInt64,
		MessageTimestampAfterMaxMs:  3600000,
		MaxDecompressedBatchBytes:   batch.DefaultMaxDecompressedBytes,
		FetchMaxBytes:               55 << 20,
		ProducerIDExpirationMs:      86400000,
		MaxProducersPerPartition:    100000,
		MaxProducers:                1000000,
		RetentionCheckInterval:      5 * time.Minute,
		RecoveryPointInterval:       time.Minute,
		RecoveryPointBytes:          64 << 20,
		RecoveryThreads:             2, // Kafka 4.0's default (KIP-1030)
		CleanupPolicy:               "delete",
		CleanerEnable:               true,
		CleanerThreads:              1,
		CleanerBackoffMs:            15000,
		CleanerDedupeBufferSize:     128 << 20,
		CleanerIOMaxBytesPerSecond:  math.MaxFloat64,
		CleanerMinCleanableRatio:    0.5,
		CleanerMinCompactionLagMs:   0,
		CleanerMaxCompactionLagMs:   math.MaxInt64,
		CleanerDeleteRetentionMs:    86400000,
		TransactionMaxTimeoutMs:     900000,
		TransactionSweepInterval:    10 * time.Second,
		TransactionalIDExpiration:   7 * 24 * time.Hour,
		TransactionVersion:          2,
		GroupInitialRebalanceDelay:  3 * time.Second,
		GroupMinSessionTimeout:      6 * time.Second,
		GroupMaxSessionTimeout:      30 * time.Minute,
		// Kafka's classic-group default is Int.MaxValue; its newer
		// consumer groups (KIP-848) default to 200. 1,000 bounds what one
		// group holds (with the coordinator's 100 MiB bound on members'
		// metadata) while leaving room for the largest groups in practice.
		GroupMaxSize: 1000,
		// Kafka 4.4's share-group defaults.
		ShareSessionTimeout:          45 * time.Second,
		ShareHeartbeatInterval:       5 * time.Second,
		ShareMaxSize:                 200,
		ShareRecordLockDuration:      30 * time.Second,
		ShareDeliveryCountLimit:      5,
		SharePartitionMaxRecordLocks: 2000,
		ShareMaxShareSessions:        2000,

		GroupConsumerSessionTimeout:       45 * time.Second,
		GroupConsumerMinSessionTimeout:    45 * time.Second,
		GroupConsumerMaxSessionTimeout:    60 * time.Second,
		GroupConsumerHeartbeatInterval:    5 * time.Second,
		GroupConsumerMinHeartbeatInterval: 5 * time.Second,
		GroupConsumerMaxHeartbeatInterval: 15 * time.Second,
		GroupConsumerMaxSize:              1000,
		GroupConsumerAssignors:            "uniform,range",
		GroupConsumerMigrationPolicy:      "bidirectional",
	}
}

// ConfigSource values as in DescribeConfigs.
const (
	SourceTopic   int8 = 1
	SourceStatic  int8 = 4
	SourceDefault int8 = 5
)

// topicConfigKey describes a topic-level config we support.
type topicConfigKey struct {
	name      string
	valueType int8 // DescribeConfigs ConfigType: 1 bool, 2 string, 3 int, 4 short, 5 long, 6 double, 7 list
	doc       string
	def       func(Config) string
	validate  func(string) error
	// brokerName is the broker setting that supplies the default (Kafka's
	// synonym), when a flag sets it; the default's source is then
	// STATIC_BROKER_CONFIG if the flag moved it from Kafka's default.
	brokerName string
}

func longValue(min int64) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", v)
		}
		if n < min {
			return fmt.Errorf("must be at least %d", min)
		}
		return nil
	}
}

// MinSegmentMs is segment.ms' (and log.roll.ms') floor: Kafka 4.x still
// accepts 1 ms (KIP-1030 raises it to one minute only in 5.0).
const MinSegmentMs = 1

// minSegmentBytes is segment.bytes' (and log.segment.bytes') floor: 1 MiB
// since Kafka 4.0 (KIP-1030; it was 14 bytes), so no client can make the
// broker roll a segment per batch by size. Tests that need many segments
// lower it: in-process by assigning it, in a broker subprocess through
// testMinSegmentBytesEnv, never through the protocol (Kafka's tests use
// its internal.segment.bytes the same way).
var minSegmentBytes int64 = loadMinSegmentBytes()

// testMinSegmentBytesEnv, set in a broker's environment, lowers
// minSegmentBytes; for tests only, hence undocumented for operators.
const testMinSegmentBytesEnv = "ONCELOG_TEST_MIN_SEGMENT_BYTES"

func loadMinSegmentBytes() int64 {
	if v, err := strconv.ParseInt(os.Getenv(testMinSegmentBytesEnv), 10, 64); err == nil && v >= 14 {
		return v
	}
	return 1 << 20
}

// ValidateSegmentBytes checks a segment.bytes value: Kafka's INT type (at
// most 2^31-1, which the segment indexes' 32-bit positions also need) and
// at least 1 MiB.
func ValidateSegmentBytes(v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not a number", v)
	}
	if n < minSegmentBytes || n > math.MaxInt32 {
		return fmt.Errorf("must be between %d and %d", minSegmentBytes, math.MaxInt32)
	}
	return nil
}

func oneOf(values ...string) func(string) error {
	return func(v string) error {
		for _, ok := range values {
			if v == ok {
				return nil
			}
		}
		return fmt.Errorf("must be one of %s", strings.Join(values, ", "))
	}
}

func ratioValue(v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return fmt.Errorf("%q is not a number", v)
	}
	if f < 0 || f > 1 {
		return fmt.Errorf("must be between 0 and 1")
	}
	return nil
}

// ValidateCleanupPolicy accepts Kafka's list values: delete, compact or
// both.
func ValidateCleanupPolicy(v string) error {
	items := strings.Split(v, ",")
	for _, it := range items {
		if it = strings.TrimSpace(it); it != "delete" && it != "compact" {
			return fmt.Errorf("%q is not a cleanup policy: use delete, compact or compact,delete", it)
		}
	}
	return nil
}

// CleanupPolicyHas reports whether a cleanup.policy value lists policy.
func CleanupPolicyHas(value, policy string) bool {
	for _, it := range strings.Split(value, ",") {
		if strings.TrimSpace(it) == policy {
			return true
		}
	}
	return false
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// topicConfigKeys lists the topic configs oncelog honours. Unknown keys are
// rejected with INVALID_CONFIG, as Kafka does, rather than silently ignored.
var topicConfigKeys = []topicConfigKey{
	{"cleanup.policy", 7, "delete: remove old segments by retention.ms/retention.bytes; compact: keep the newest record of every key (log compaction); compact,delete: both.", func(c Config) string { return c.CleanupPolicy }, ValidateCleanupPolicy, "log.cleanup.policy"},
	{"delete.retention.ms", 5, "How long tombstones and transaction markers stay in a compacted log after the cleaner first saw them.", func(c Config) string { return itoa(c.CleanerDeleteRetentionMs) }, longValue(0), "log.cleaner.delete.retention.ms"},
	{"max.compaction.lag.ms", 5, "Longest time a record stays ineligible for compaction.", func(c Config) string { return itoa(c.CleanerMaxCompactionLagMs) }, longValue(1), "log.cleaner.max.compaction.lag.ms"},
	{"min.cleanable.dirty.ratio", 6, "Share of the log not yet compacted above which the cleaner compacts it.", func(c Config) string { return ftoa(c.CleanerMinCleanableRatio) }, ratioValue, "log.cleaner.min.cleanable.ratio"},
	{"min.compaction.lag.ms", 5, "Shortest time a record stays uncompacted in the log.", func(c Config) string { return itoa(c.CleanerMinCompactionLagMs) }, longValue(0), "log.cleaner.min.compaction.lag.ms"},
	{"compression.type", 2, "Batches are stored as the producer compressed them.", func(Config) string { return "producer" }, oneOf("producer"), ""},
	{"max.message.bytes", 3, "Largest record batch accepted.", func(c Config) string { return itoa(int64(c.MaxMessageBytes)) }, longValue(0), "message.max.bytes"},
	{"message.timestamp.after.max.ms", 5, "Largest amount a CreateTime record's timestamp may lie ahead of the broker's clock; later ones are refused with INVALID_TIMESTAMP.", func(c Config) string { return itoa(c.MessageTimestampAfterMaxMs) }, longValue(0), "log.message.timestamp.after.max.ms"},
	{"message.timestamp.before.max.ms", 5, "Largest amount a CreateTime record's timestamp may lie behind the broker's clock; older ones are refused with INVALID_TIMESTAMP.", func(c Config) string { return itoa(c.MessageTimestampBeforeMaxMs) }, longValue(0), "log.message.timestamp.before.max.ms"},
	{"message.timestamp.type", 2, "CreateTime or LogAppendTime.", func(Config) string { return "CreateTime" }, oneOf("CreateTime", "LogAppendTime"), ""},
	{"min.insync.replicas", 3, "Single node: always 1.", func(Config) string { return "1" }, oneOf("1"), ""},
	{"retention.bytes", 5, "Delete old segments when a partition exceeds this (-1: no limit).", func(c Config) string { return itoa(c.RetentionBytes) }, longValue(-1), "log.retention.bytes"},
	{"retention.ms", 5, "Delete segments older than this (-1: keep forever).", func(c Config) string { return itoa(c.RetentionMs) }, longValue(-1), "log.retention.ms"},
	{"segment.bytes", 3, "Roll a new segment at this size.", func(c Config) string { return itoa(c.SegmentBytes) }, ValidateSegmentBytes, "log.segment.bytes"},
	{"segment.ms", 5, "Roll a new segment after this long.", func(c Config) string { return itoa(c.SegmentMs) }, longValue(MinSegmentMs), "log.roll.ms"},
	{DedupKeyConfig, 2, "oncelog only: the idempotency key of the topic's records: none, record-key or header:<name>. A keyed record whose key was written to the topic (any partition) within oncelog.dedup.window.ms is not stored again (same content) or rejects its batch with INVALID_RECORD (other content).", func(Config) string { return "none" }, ValidateDedupKey, ""},
	{DedupWindowConfig, 5, "oncelog only: how long an idempotency key stays in the topic's key window, in milliseconds.", func(Config) string { return itoa(DefaultDedupWindowMs) }, longValue(1), ""},
	{"index.interval.bytes", 3, "Bytes between offset index entries.", func(Config) string { return "4096" }, longValue(0), ""},
}

func lookupTopicConfig(name string) (topicConfigKey, bool) {
	for _, k := range topicConfigKeys {
		if k.name == name {
			return k, true
		}
	}
	return topicConfigKey{}, false
}

// ValidateTopicConfigs checks overrides; it returns a Kafka error code and a
// message for the first bad one.
func ValidateTopicConfigs(configs map[string]string) (int16, string) {
	for name, v := range configs {
		k, ok := lookupTopicConfig(name)
		if !ok {
			return kerr.InvalidConfig.Code, fmt.Sprintf("unknown topic config %q", name)
		}
		if err := k.validate(v); err != nil {
			return kerr.InvalidConfig.Code, fmt.Sprintf("invalid value %q for %s: %v", v, name, err)
		}
	}
	return 0, ""
}

// ConfigEntry is one effective topic config.
type ConfigEntry struct {
	Name      string
	Value     string
	Source    int8
	ValueType int8
	Doc       string
	// Synonyms are where the value could come from, most specific first
	// (DescribeConfigs IncludeSynonyms): the topic override, the broker
	// setting, Kafka's default.
	Synonyms []ConfigSynonym
}

// ConfigSynonym is one DescribeConfigs synonym.
type ConfigSynonym struct {
	Name   string
	Value  string
	Source int8
}

// kafkaBrokerDefaultUnset are the broker configs that have no default of
// their own in Kafka: the value comes from a coarser synonym
// (log.retention.hours=168, log.roll.hours=168). Kafka lists a
// DEFAULT_CONFIG synonym only for a broker config with a default, so for
// retention.ms and segment.ms it lists none (kafka-configs --describe
// prints just the topic override), and oncelog does the same.
var kafkaBrokerDefaultUnset = map[string]bool{"log.retention.ms": true, "log.roll.ms": true}

// EffectiveTopicConfigs merges defaults and overrides, sorted by name.
func (c Config) EffectiveTopicConfigs(overrides map[string]string) []ConfigEntry {
	out := make([]ConfigEntry, 0, len(topicConfigKeys))
	kafka := DefaultConfig()
	for _, k := range topicConfigKeys {
		def, kafkaDef := k.def(c), k.def(kafka)
		e := ConfigEntry{Name: k.name, Value: def, Source: SourceDefault, ValueType: k.valueType, Doc: k.doc}
		if v, ok := overrides[k.name]; ok {
			e.Value, e.Source = v, SourceTopic
			e.Synonyms = append(e.Synonyms, ConfigSynonym{k.name, v, SourceTopic})
		}
		if k.brokerName != "" && def != kafkaDef {
			if e.Source == SourceDefault {
				e.Source = SourceStatic
			}
			e.Synonyms = append(e.Synonyms, ConfigSynonym{k.brokerName, def, SourceStatic})
		}
		name := k.brokerName
		if name == "" {
			name = k.name
		}
		if !kafkaBrokerDefaultUnset[name] {
			e.Synonyms = append(e.Synonyms, ConfigSynonym{name, kafkaDef, SourceDefault})
		}
		out = append(out, e)
	}
	return out
}

// partitionConfig turns a topic's effective configs into a partition.Config.
func (c Config) partitionConfig(overrides map[string]string) partition.Config {
	get := func(name string) string {
		if v, ok := overrides[name]; ok {
			return v
		}
		k, _ := lookupTopicConfig(name)
		return k.def(c)
	}
	num := func(name string) int64 {
		n, _ := strconv.ParseInt(get(name), 10, 64)
		return n
	}
	seg := segment.DefaultConfig()
	seg.SegmentBytes = num("segment.bytes")
	seg.SegmentMs = num("segment.ms")
	seg.RetentionMs = num("retention.ms")
	seg.RetentionBytes = num("retention.bytes")
	seg.IndexIntervalBytes = int(num("index.interval.bytes"))
	policy := get("cleanup.policy")
	if !CleanupPolicyHas(policy, "delete") {
		// Kafka deletes segments by time or size only under the delete
		// policy; a compact-only log keeps every key's newest record.
		seg.RetentionMs, seg.RetentionBytes = -1, -1
	}
	ratio, _ := strconv.ParseFloat(get("min.cleanable.dirty.ratio"), 64)
	return partition.Config{
		Segment: seg,
		Compaction: partition.CompactionConfig{
			Compact:            CleanupPolicyHas(policy, "compact"),
			MinCleanableRatio:  ratio,
			MinCompactionLagMs: num("min.compaction.lag.ms"),
			MaxCompactionLagMs: num("max.compaction.lag.ms"),
			DeleteRetentionMs:  num("delete.retention.ms"),
		},
		MaxMessageBytes:      int32(num("max.message.bytes")),
		LogAppendTime:        get("message.timestamp.type") == "LogAppendTime",
		TimestampBeforeMaxMs: num("message.timestamp.before.max.ms"),
		TimestampAfterMaxMs:  num("message.timestamp.after.max.ms"),
		MaxDecompressedBytes: c.MaxDecompressedBatchBytes,
		Producer: producer.Config{
			ExpirationMs:    c.ProducerIDExpirationMs,
			MaxPerPartition: c.MaxProducersPerPartition,
			// Over the caps, idle ids go to disk, not away: a
			// returning producer is still deduplicated.
			Spill: true,
		},
	}
}
