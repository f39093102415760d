package broker

import (
	"strings"

	"github.com/oncelog/oncelog/group"
)

// splitList splits a Kafka list setting ("a,b"), dropping empty entries.
func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// consumerGroupTopics lists the topics a KIP-848 consumer group may
// subscribe to, by name or regex: every topic in the cluster's metadata,
// Kafka's internal topics included. Kafka resolves subscription regexes
// over every topic of its metadata image, so a regex that matches
// __consumer_offsets gets it assigned (clients skip internal topics on
// their side, and kgo adopts one the broker assigned).
func (b *Broker) consumerGroupTopics() []group.TopicInfo {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]group.TopicInfo, 0, len(b.topics)+len(b.internal))
	for _, t := range b.topics {
		out = append(out, group.TopicInfo{Name: t.Name, ID: t.ID, Partitions: int32(len(t.Partitions))})
	}
	for _, t := range b.internal {
		out = append(out, group.TopicInfo{Name: t.Name, ID: t.ID, Partitions: t.Partitions})
	}
	return out
}

// ValidConsumerAssignors reports whether a group.consumer.assignors list
// names one or more assignors, all of which the broker has.
func ValidConsumerAssignors(list string) bool {
	names := splitList(list)
	for _, a := range names {
		if group.AssignorByName(a) == "" {
			return false
		}
	}
	return len(names) > 0
}
