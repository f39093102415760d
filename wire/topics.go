package wire

import (
	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(19, 0, 7, handleCreateTopics)
	register(20, 0, 6, handleDeleteTopics)
	register(37, 0, 3, handleCreatePartitions)
	register(21, 0, 2, handleDeleteRecords)
}

func strPtr(s string) *string { return &s }

func handleCreateTopics(c *conn, r *request) respond {
	b := c.s.b
	req := r.kreq.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	seen := map[string]int{}
	total := 0
	for _, rt := range req.Topics {
		seen[rt.Topic]++
		switch {
		case len(rt.ReplicaAssignment) > 0:
			total += len(rt.ReplicaAssignment)
		case rt.NumPartitions == -1:
			total += int(b.Config().DefaultPartitions)
		case rt.NumPartitions > 0:
			total += int(rt.NumPartitions)
		}
	}
	// Kafka's controller refuses such a request whole, before any topic
	// is created (ReplicationControlManager.validateTotalNumberOfPartitions).
	tooMany := total > broker.MaxPartitionsPerRequest-len(req.Topics)
	for _, rt := range req.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		st.NumPartitions, st.ReplicationFactor = -1, -1
		fail := func(code int16, msg string) {
			st.ErrorCode = code
			if req.Version >= 1 && msg != "" {
				st.ErrorMessage = strPtr(msg)
			}
			resp.Topics = append(resp.Topics, st)
		}
		if seen[rt.Topic] > 1 {
			fail(kerr.InvalidRequest.Code, "topic named more than once in the request")
			continue
		}
		// Kafka: CREATE on the cluster or on the topic.
		if !c.mayCreateTopic(rt.Topic) {
			c.denied(r.key, c.Principal(), opCreate, rtTopic, rt.Topic)
			fail(kerr.TopicAuthorizationFailed.Code, "")
			continue
		}
		if tooMany {
			fail(kerr.PolicyViolation.Code, broker.ExcessivePartitionsMessage)
			continue
		}
		partitions, rf := rt.NumPartitions, rt.ReplicationFactor
		if len(rt.ReplicaAssignment) > 0 {
			if partitions != -1 || rf != -1 {
				fail(kerr.InvalidRequest.Code, "both a replica assignment and a partition count or replication factor")
				continue
			}
			ok := true
			for i, a := range rt.ReplicaAssignment {
				if a.Partition != int32(i) || len(a.Replicas) != 1 || a.Replicas[0] != b.Config().NodeID {
					ok = false
				}
			}
			if !ok {
				fail(kerr.InvalidReplicaAssignment.Code, "replica assignments must name only this broker, for partitions 0..n-1")
				continue
			}
			partitions, rf = int32(len(rt.ReplicaAssignment)), 1
		}
		configs := map[string]string{}
		for _, cfg := range rt.Configs {
			if cfg.Value != nil {
				configs[cfg.Name] = *cfg.Value
			}
		}
		if len(configs) == 0 {
			configs = nil
		}
		t, terr := b.CreateTopic(rt.Topic, partitions, rf, configs, req.ValidateOnly)
		if terr != nil {
			fail(terr.Code, terr.Message)
			continue
		}
		st.TopicID = t.ID
		if partitions <= 0 {
			partitions = b.Config().DefaultPartitions
		}
		st.NumPartitions, st.ReplicationFactor = partitions, 1
		if !c.authorizeQuiet(opDescribeConfigs, rtTopic, rt.Topic) {
			// Kafka: the configs only to who may describe them.
			st.ConfigErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Topics = append(resp.Topics, st)
			continue
		}
		for _, e := range b.Config().EffectiveTopicConfigs(configs) {
			ce := kmsg.NewCreateTopicsResponseTopicConfig()
			ce.Name, ce.Value, ce.Source = e.Name, strPtr(e.Value), e.Source
			st.Configs = append(st.Configs, ce)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return ready(resp)
}

func handleDeleteTopics(c *conn, r *request) respond {
	b := c.s.b
	req := r.kreq.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	type target struct {
		name *string
		id   [16]byte
	}
	var targets []target
	for _, n := range req.TopicNames {
		targets = append(targets, target{name: strPtr(n)})
	}
	for _, t := range req.Topics {
		targets = append(targets, target{name: t.Topic, id: t.TopicID})
	}
	for _, tg := range targets {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.Topic, st.TopicID = tg.name, tg.id
		var t *broker.Topic
		if tg.name != nil {
			t = b.Topic(*tg.name)
		} else {
			t = b.TopicByID(tg.id)
		}
		internal := tg.name != nil && broker.IsInternalTopic(*tg.name)
		if it := b.InternalTopicByID(tg.id); tg.name == nil && it != nil {
			st.Topic, internal = strPtr(it.Name), true
		}
		// Kafka: DESCRIBE to learn a topic id's name, DELETE to delete.
		if t != nil && tg.name == nil && !c.authorize(r.key, opDescribe, rtTopic, t.Name) {
			st.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Topics = append(resp.Topics, st)
			continue
		}
		if name := st.Topic; name != nil && !c.authorize(r.key, opDelete, rtTopic, *name) {
			st.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Topics = append(resp.Topics, st)
			continue
		}
		if t != nil && tg.name == nil && !c.authorize(r.key, opDelete, rtTopic, t.Name) {
			st.Topic, st.ErrorCode = strPtr(t.Name), kerr.TopicAuthorizationFailed.Code
			resp.Topics = append(resp.Topics, st)
			continue
		}
		if internal {
			st.ErrorCode = kerr.InvalidTopicException.Code
			if req.Version >= 5 {
				st.ErrorMessage = strPtr("cannot delete internal topic " + *st.Topic)
			}
			resp.Topics = append(resp.Topics, st)
			continue
		}
		if t == nil {
			if tg.name == nil {
				st.ErrorCode = kerr.UnknownTopicID.Code
			} else {
				st.ErrorCode = kerr.UnknownTopicOrPartition.Code
			}
			resp.Topics = append(resp.Topics, st)
			continue
		}
		st.Topic, st.TopicID = strPtr(t.Name), t.ID
		if terr := b.DeleteTopic(t.Name); terr != nil {
			st.ErrorCode = terr.Code
			if req.Version >= 5 {
				st.ErrorMessage = strPtr(terr.Message)
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	return ready(resp)
}

func handleCreatePartitions(c *conn, r *request) respond {
	b := c.s.b
	req := r.kreq.(*kmsg.CreatePartitionsRequest)
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	added := 0
	for _, rt := range req.Topics {
		if t := b.Topic(rt.Topic); t != nil && int(rt.Count) > len(t.Partitions) {
			added += int(rt.Count) - len(t.Partitions)
		}
	}
	for _, rt := range req.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		if !c.authorize(r.key, opAlter, rtTopic, rt.Topic) {
			st.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Topics = append(resp.Topics, st)
			continue
		}
		if added > broker.MaxPartitionsPerRequest {
			st.ErrorCode, st.ErrorMessage = kerr.PolicyViolation.Code, strPtr(broker.ExcessivePartitionsMessage)
			resp.Topics = append(resp.Topics, st)
			continue
		}
		if terr := b.CreatePartitions(rt.Topic, rt.Count, req.ValidateOnly); terr != nil {
			st.ErrorCode = terr.Code
			st.ErrorMessage = strPtr(terr.Message)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return ready(resp)
}

func handleDeleteRecords(c *conn, r *request) respond {
	b := c.s.b
	req := r.kreq.(*kmsg.DeleteRecordsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		denied := !c.authorize(r.key, opDelete, rtTopic, rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LowWatermark = -1
			p := b.Partition(rt.Topic, rp.Partition)
			switch {
			case denied:
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			case broker.IsInternalTopic(rt.Topic):
				// Kafka's ReplicaManager refuses DeleteRecords on them.
				sp.ErrorCode = kerr.InvalidTopicException.Code
			case p == nil:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			default:
				off := rp.Offset
				if off == -1 {
					off = p.HighWatermark()
				}
				if off < 0 || off > p.HighWatermark() {
					sp.ErrorCode = kerr.OffsetOutOfRange.Code
					break
				}
				if err := p.DeleteRecordsBefore(off); err != nil {
					sp.ErrorCode = kerr.KafkaStorageError.Code
					break
				}
				sp.LowWatermark = p.LogStartOffset()
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return ready(resp)
}
