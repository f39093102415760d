package wire

import (
	"github.com/oncelog/oncelog/partition"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ListOffsets v1-v11: -1 latest (the LSO for read_committed), -2 earliest,
// -3 max timestamp (v7), -4 earliest local (v8, = earliest here), -5
// latest tiered (v9, KIP-1005), -6 earliest pending upload (v11,
// KIP-1023), or the first offset whose timestamp is >= the given one. There
// is no tiered storage, so -5 and -6 get what Kafka 4.4's UnifiedLog answers
// for a topic without remote storage: offset -1, leader epoch -1. v10's
// TimeoutMillis (KIP-1075) bounds remote storage lookups, which there are
// none of.
func init() { register(2, 1, 11, handleListOffsets) }

// timestampMinVersion is the first version that may ask for each special
// timestamp (Kafka's ReplicaManager.timestampMinSupportedVersion); any
// other negative timestamp, or one asked for at an older version, is
// UNSUPPORTED_VERSION for that partition.
var timestampMinVersion = map[int64]int16{-1: 1, -2: 1, -3: 7, -4: 8, -5: 9, -6: 11}

func listOffsetsTimestampUnsupported(ts int64, version int16) bool {
	if ts >= 0 {
		return false
	}
	min, ok := timestampMinVersion[ts]
	return !ok || version < min
}

func handleListOffsets(c *conn, r *request) respond {
	b := c.s.b
	req := r.kreq.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		topic := b.Topic(rt.Topic)
		internal := b.InternalTopic(rt.Topic)
		denied := !c.authorize(r.key, opDescribe, rtTopic, rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp, sp.Offset, sp.LeaderEpoch = -1, -1, 0
			if denied {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			if listOffsetsTimestampUnsupported(rp.Timestamp, req.Version) {
				// Kafka 4.4 answers offset, epoch and timestamp -1.
				sp.ErrorCode, sp.LeaderEpoch = kerr.UnsupportedVersion.Code, -1
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			if internal != nil && rp.Partition >= 0 && rp.Partition < internal.Partitions {
				// The internal topics' state lives in pebble: their
				// partitions are empty logs, offset 0 at both ends and no
				// record for any timestamp.
				switch rp.Timestamp {
				case -1, -2, -4:
					sp.Offset = 0
				case -5, -6:
					sp.LeaderEpoch = -1
				}
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			if topic == nil || rp.Partition < 0 || int(rp.Partition) >= len(topic.Partitions) {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			if rp.CurrentLeaderEpoch > 0 {
				sp.ErrorCode = kerr.UnknownLeaderEpoch.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			p := topic.Partitions[rp.Partition]
			iso := partition.ReadUncommitted
			if req.IsolationLevel == 1 {
				iso = partition.ReadCommitted
			}
			switch rp.Timestamp {
			case -1:
				hw, lso := p.Offsets()
				sp.Offset = hw
				if iso == partition.ReadCommitted {
					sp.Offset = lso
				}
			case -2, -4:
				sp.Offset = p.LogStartOffset()
			case -5, -6:
				// No tiered storage: Kafka answers offset -1, epoch -1.
				sp.LeaderEpoch = -1
			case -3:
				r := p.MaxTimestamp()
				sp.Offset, sp.Timestamp = r.Offset, r.Timestamp
			default:
				if r := p.OffsetForTimestamp(rp.Timestamp, iso); r.Found {
					sp.Offset, sp.Timestamp = r.Offset, r.Timestamp
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return ready(resp)
}
