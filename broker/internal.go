package broker

import (
	"crypto/sha256"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Kafka's internal topics. oncelog keeps consumer group state and
// transaction state in pebble (the group and txn packages), not in logs,
// but clients expect both topics to exist and to be marked internal:
// Metadata lists them with is_internal (consumers subscribing by regex
// skip internal topics by that flag, and admin tools hide them), and a
// client may not produce to, delete or create them. Their partitions
// are always empty here.
const (
	ConsumerOffsetsTopic  = "__consumer_offsets"
	TransactionStateTopic = "__transaction_state"

	// Kafka's offsets.topic.num.partitions and
	// transaction.state.log.num.partitions defaults.
	consumerOffsetsPartitions  = 50
	transactionStatePartitions = 50
)

// InternalTopic is one of Kafka's internal topics as oncelog presents it.
type InternalTopic struct {
	Name       string
	ID         [16]byte
	Partitions int32
	// Configs are the overrides Kafka creates the topic with.
	Configs map[string]string
}

// internalTopics are built per broker: their ids derive from the cluster
// id, so that they are stable across restarts without being stored, and
// differ between clusters as Kafka's random ids do.
func newInternalTopics(clusterID string) map[string]*InternalTopic {
	mk := func(name string, partitions int32) *InternalTopic {
		sum := sha256.Sum256([]byte(clusterID + "/" + name))
		var id [16]byte
		copy(id[:], sum[:16])
		id[6] = id[6]&0x0f | 0x40 // a version-4 shaped UUID, as Kafka's
		id[8] = id[8]&0x3f | 0x80
		return &InternalTopic{Name: name, ID: id, Partitions: partitions, Configs: map[string]string{
			"cleanup.policy": "compact",
			"segment.bytes":  "104857600",
		}}
	}
	return map[string]*InternalTopic{
		ConsumerOffsetsTopic:  mk(ConsumerOffsetsTopic, consumerOffsetsPartitions),
		TransactionStateTopic: mk(TransactionStateTopic, transactionStatePartitions),
	}
}

// IsInternalTopic reports whether name is one of Kafka's internal topics
// (Kafka's Topic.isInternal).
func IsInternalTopic(name string) bool {
	return name == ConsumerOffsetsTopic || name == TransactionStateTopic
}

// InternalTopic returns an internal topic by name, or nil.
func (b *Broker) InternalTopic(name string) *InternalTopic { return b.internal[name] }

// InternalTopicByID returns an internal topic by id, or nil.
func (b *Broker) InternalTopicByID(id [16]byte) *InternalTopic {
	for _, t := range b.internal {
		if t.ID == id {
			return t
		}
	}
	return nil
}

// InternalTopics returns the internal topics, sorted by name.
func (b *Broker) InternalTopics() []*InternalTopic {
	return []*InternalTopic{b.internal[ConsumerOffsetsTopic], b.internal[TransactionStateTopic]}
}

// internalTopicErr is Kafka's answer to a client changing an internal
// topic: INVALID_TOPIC_EXCEPTION, as its ReplicaManager answers a produce
// to one and DeleteRecords on one.
func internalTopicErr(name, what string) *TopicError {
	return topicErr(kerr.InvalidTopicException.Code, "%s", fmt.Sprintf("cannot %s internal topic %s", what, name))
}
