package broker

import "github.com/oncelog/oncelog/group"

// consumerGroupTopics lists the topics a KIP-848 consumer group may
// subscribe to, by name or regex: every topic the broker serves. Kafka's
// internal topics hold no partitions here and are never assigned (Kafka
// excludes them from regex subscriptions too).
func (b *Broker) consumerGroupTopics() []group.TopicInfo {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]group.TopicInfo, 0, len(b.topics))
	for _, t := range b.topics {
		out = append(out, group.TopicInfo{Name: t.Name, ID: t.ID, Partitions: int32(len(t.Partitions))})
	}
	return out
}
