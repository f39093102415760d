package wire

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeTopicPartitions v0 (KIP-966): Metadata's topic and partition
// part, paginated. Topics come sorted by name, partitions by index, at most
// ResponsePartitionLimit partitions in all (clamped to [1, 2000], Kafka's
// max.request.partition.size.limit default); NextCursor says where the
// next page starts. An empty topic list is every topic, internal ones
// included; a named unknown topic is UNKNOWN_TOPIC_OR_PARTITION (never
// auto-created). A cursor naming a topic outside an explicit list, or a
// negative partition, fails the request with INVALID_REQUEST, as Kafka's
// DescribeTopicPartitionsRequestHandler does.
func init() { register(75, 0, 0, handleDescribeTopicPartitions) }

const maxDescribePartitions = 2000

func handleDescribeTopicPartitions(c *conn, r *request) respond {
	b := c.s.b
	cfg := b.Config()
	req := r.kreq.(*kmsg.DescribeTopicPartitionsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeTopicPartitionsResponse)

	var cursorTopic string
	var cursorPartition int32
	if req.Cursor != nil {
		cursorTopic, cursorPartition = req.Cursor.Topic, req.Cursor.Partition
	}
	invalid := func() respond {
		for _, rt := range req.Topics {
			st := kmsg.NewDescribeTopicPartitionsResponseTopic()
			st.Topic, st.ErrorCode = strPtr(rt.Topic), kerr.InvalidRequest.Code
			resp.Topics = append(resp.Topics, st)
		}
		return ready(resp)
	}
	if cursorPartition < 0 {
		return invalid()
	}

	var names []string
	if len(req.Topics) == 0 {
		// Only what the principal may describe, as Kafka's.
		for _, t := range b.Topics() {
			if c.authorizeQuiet(opDescribe, rtTopic, t.Name) {
				names = append(names, t.Name)
			}
		}
		for _, t := range b.InternalTopics() {
			if c.authorizeQuiet(opDescribe, rtTopic, t.Name) {
				names = append(names, t.Name)
			}
		}
	} else {
		seen := map[string]bool{}
		for _, rt := range req.Topics {
			if !seen[rt.Topic] {
				seen[rt.Topic] = true
				names = append(names, rt.Topic)
			}
		}
		if cursorTopic != "" && !seen[cursorTopic] {
			return invalid()
		}
	}
	sort.Strings(names)

	limit := min(max(req.ResponsePartitionLimit, 1), maxDescribePartitions)
	left := limit
	partition := func(i int32) kmsg.DescribeTopicPartitionsResponseTopicPartition {
		sp := kmsg.NewDescribeTopicPartitionsResponseTopicPartition()
		sp.Partition, sp.LeaderID, sp.LeaderEpoch = i, cfg.NodeID, 0
		sp.Replicas, sp.ISR = []int32{cfg.NodeID}, []int32{cfg.NodeID}
		sp.EligibleLeaderReplicas, sp.LastKnownELR, sp.OfflineReplicas = []int32{}, []int32{}, []int32{}
		return sp
	}
	for _, name := range names {
		if name < cursorTopic {
			continue
		}
		st := kmsg.NewDescribeTopicPartitionsResponseTopic()
		st.Topic = strPtr(name)
		var count int32
		if len(req.Topics) > 0 && !c.authorize(r.key, opDescribe, rtTopic, name) {
			st.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Topics = append(resp.Topics, st)
			continue
		}
		if t := b.Topic(name); t != nil {
			st.TopicID, count = t.ID, int32(len(t.Partitions))
		} else if it := b.InternalTopic(name); it != nil {
			st.TopicID, st.IsInternal, count = it.ID, true, it.Partitions
		} else {
			st.ErrorCode = kerr.UnknownTopicOrPartition.Code
			resp.Topics = append(resp.Topics, st)
			continue
		}
		st.AuthorizedOperations = c.authorizedOps(rtTopic, name)
		from := int32(0)
		if name == cursorTopic {
			from = cursorPartition
		}
		if left == 0 && from < count {
			resp.NextCursor = &kmsg.DescribeTopicPartitionsResponseNextCursor{Topic: name, Partition: from}
			break
		}
		for i := from; i < count; i++ {
			if left == 0 {
				resp.NextCursor = &kmsg.DescribeTopicPartitionsResponseNextCursor{Topic: name, Partition: i}
				break
			}
			st.Partitions = append(st.Partitions, partition(i))
			left--
		}
		resp.Topics = append(resp.Topics, st)
		if resp.NextCursor != nil {
			break
		}
	}
	return ready(resp)
}
