package broker

import (
	"fmt"
	"strconv"
	"strings"
	"time"

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

	// Topic defaults (Kafka's log.* broker settings).
	SegmentBytes    int64
	SegmentMs       int64
	RetentionMs     int64
	RetentionBytes  int64
	MaxMessageBytes int32

	// Producer state.
	ProducerIDExpirationMs   int64
	MaxProducersPerPartition int
	MaxProducers             int

	// RetentionCheckInterval is log.retention.check.interval.ms.
	RetentionCheckInterval time.Duration

	// Transactions.
	TransactionMaxTimeoutMs   int32
	TransactionSweepInterval  time.Duration
	TransactionalIDExpiration time.Duration

	// Groups.
	GroupInitialRebalanceDelay time.Duration
	GroupMinSessionTimeout     time.Duration
	GroupMaxSessionTimeout     time.Duration
}

// DefaultConfig returns Kafka's defaults where Kafka has one.
func DefaultConfig() Config {
	return Config{
		NodeID:                     1,
		DataDir:                    "./data",
		AdvertisedHost:             "127.0.0.1",
		AdvertisedPort:             9092,
		AutoCreateTopics:           true,
		DefaultPartitions:          1,
		SegmentBytes:               1 << 30,
		SegmentMs:                  7 * 24 * 3600 * 1000,
		RetentionMs:                7 * 24 * 3600 * 1000,
		RetentionBytes:             -1,
		MaxMessageBytes:            1048588,
		ProducerIDExpirationMs:     86400000,
		MaxProducersPerPartition:   100000,
		MaxProducers:               1000000,
		RetentionCheckInterval:     5 * time.Minute,
		TransactionMaxTimeoutMs:    900000,
		TransactionSweepInterval:   10 * time.Second,
		TransactionalIDExpiration:  7 * 24 * time.Hour,
		GroupInitialRebalanceDelay: 3 * time.Second,
		GroupMinSessionTimeout:     6 * time.Second,
		GroupMaxSessionTimeout:     30 * time.Minute,
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
	valueType int8 // DescribeConfigs ConfigType: 1 bool, 2 string, 3 int, 4 short, 5 long, 7 list
	doc       string
	def       func(Config) string
	validate  func(string) error
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

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// topicConfigKeys lists the topic configs oncelog honours. Unknown keys are
// rejected with INVALID_CONFIG, as Kafka does, rather than silently ignored.
var topicConfigKeys = []topicConfigKey{
	{"cleanup.policy", 7, "Only delete is supported; compaction is not implemented.", func(Config) string { return "delete" }, oneOf("delete")},
	{"compression.type", 2, "Batches are stored as the producer compressed them.", func(Config) string { return "producer" }, oneOf("producer")},
	{"max.message.bytes", 3, "Largest record batch accepted.", func(c Config) string { return itoa(int64(c.MaxMessageBytes)) }, longValue(0)},
	{"message.timestamp.type", 2, "CreateTime or LogAppendTime.", func(Config) string { return "CreateTime" }, oneOf("CreateTime", "LogAppendTime")},
	{"min.insync.replicas", 3, "Single node: always 1.", func(Config) string { return "1" }, oneOf("1")},
	{"retention.bytes", 5, "Delete old segments when a partition exceeds this (-1: no limit).", func(c Config) string { return itoa(c.RetentionBytes) }, longValue(-1)},
	{"retention.ms", 5, "Delete segments older than this (-1: keep forever).", func(c Config) string { return itoa(c.RetentionMs) }, longValue(-1)},
	{"segment.bytes", 3, "Roll a new segment at this size.", func(c Config) string { return itoa(c.SegmentBytes) }, longValue(14)},
	{"segment.ms", 5, "Roll a new segment after this long.", func(c Config) string { return itoa(c.SegmentMs) }, longValue(1)},
	{"index.interval.bytes", 3, "Bytes between offset index entries.", func(Config) string { return "4096" }, longValue(0)},
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
}

// EffectiveTopicConfigs merges defaults and overrides, sorted by name.
func (c Config) EffectiveTopicConfigs(overrides map[string]string) []ConfigEntry {
	out := make([]ConfigEntry, 0, len(topicConfigKeys))
	for _, k := range topicConfigKeys {
		e := ConfigEntry{Name: k.name, Value: k.def(c), Source: SourceDefault, ValueType: k.valueType, Doc: k.doc}
		if v, ok := overrides[k.name]; ok {
			e.Value, e.Source = v, SourceTopic
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
	return partition.Config{
		Segment:         seg,
		MaxMessageBytes: int32(num("max.message.bytes")),
		LogAppendTime:   get("message.timestamp.type") == "LogAppendTime",
		Producer: producer.Config{
			ExpirationMs:    c.ProducerIDExpirationMs,
			MaxPerPartition: c.MaxProducersPerPartition,
		},
	}
}
