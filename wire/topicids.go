package wire

import (
	"sort"

	"github.com/oncelog/oncelog/broker"
)

// The group APIs that name topics by id (OffsetCommit v10, OffsetFetch v10,
// TxnOffsetCommit v6) are answered by the same code as their by-name
// versions: the ids are resolved to names on the way in and back to ids on
// the way out, as Kafka's request layer does from its metadata cache.

// topicNameByID is the name of the topic with this id; false for an id no
// topic has (the zero id included), which these APIs answer
// UNKNOWN_TOPIC_ID.
func topicNameByID(b *broker.Broker, id [16]byte) (string, bool) {
	if id == ([16]byte{}) {
		return "", false
	}
	t := b.TopicByID(id)
	if t == nil {
		return "", false
	}
	return t.Name, true
}

// topicIDByName is the id of the named topic, or the zero id when there is
// no such topic (any more).
func topicIDByName(b *broker.Broker, name string) [16]byte {
	if t := b.Topic(name); t != nil {
		return t.ID
	}
	return [16]byte{}
}

// inRequestOrder sorts answered topics into the order the request named
// their ids, as Kafka's answers come; ids the request did not name keep
// their relative order after the rest.
func inRequestOrder[A, R any](answered []A, requested []R, answerID func(A) [16]byte, requestID func(R) [16]byte) {
	index := make(map[[16]byte]int, len(requested))
	for i, t := range requested {
		if _, dup := index[requestID(t)]; !dup {
			index[requestID(t)] = i
		}
	}
	rank := func(a A) int {
		if i, ok := index[answerID(a)]; ok {
			return i
		}
		return len(requested)
	}
	sort.SliceStable(answered, func(i, j int) bool { return rank(answered[i]) < rank(answered[j]) })
}
