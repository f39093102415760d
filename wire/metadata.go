package wire

import (
	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(3, 0, 12, handleMetadata) }

func handleMetadata(c *conn, r *request) respond {
	b := c.s.b
	cfg := b.Config()
	req := r.kreq.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)

	resp.Brokers = []kmsg.MetadataResponseBroker{c.advertisedBroker()}
	clusterID := b.ClusterID
	resp.ClusterID = &clusterID
	resp.ControllerID = cfg.NodeID

	addTopic := func(t *broker.Topic) {
		rt := kmsg.NewMetadataResponseTopic()
		name := t.Name
		rt.Topic = &name
		rt.TopicID = t.ID
		rt.AuthorizedOperations = allTopicOperations
		for _, p := range t.Partitions {
			rp := kmsg.NewMetadataResponseTopicPartition()
			rp.Partition = p.Index
			rp.Leader = cfg.NodeID
			rp.LeaderEpoch = 0
			rp.Replicas = []int32{cfg.NodeID}
			rp.ISR = []int32{cfg.NodeID}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	addInternal := func(t *broker.InternalTopic) {
		rt := kmsg.NewMetadataResponseTopic()
		name := t.Name
		rt.Topic = &name
		rt.TopicID = t.ID
		rt.IsInternal = true
		rt.AuthorizedOperations = allTopicOperations
		for i := int32(0); i < t.Partitions; i++ {
			rp := kmsg.NewMetadataResponseTopicPartition()
			rp.Partition = i
			rp.Leader = cfg.NodeID
			rp.LeaderEpoch = 0
			rp.Replicas = []int32{cfg.NodeID}
			rp.ISR = []int32{cfg.NodeID}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	addError := func(name *string, id [16]byte, code int16) {
		rt := kmsg.NewMetadataResponseTopic()
		rt.Topic = name
		rt.TopicID = id
		rt.ErrorCode = code
		resp.Topics = append(resp.Topics, rt)
	}

	// v0 asks for every topic with an empty list; v1+ with a null list.
	all := req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0)
	if all {
		for _, t := range b.Topics() {
			addTopic(t)
		}
		// Kafka lists its internal topics too; consumers and tools tell
		// them apart by IsInternal.
		for _, t := range b.InternalTopics() {
			addInternal(t)
		}
		return ready(resp)
	}
	autoCreate := req.Version < 4 || req.AllowAutoTopicCreation
	for _, rt := range req.Topics {
		if rt.Topic == nil || *rt.Topic == "" {
			if t := b.TopicByID(rt.TopicID); t != nil {
				addTopic(t)
			} else if t := b.InternalTopicByID(rt.TopicID); t != nil {
				addInternal(t)
			} else {
				addError(nil, rt.TopicID, kerr.UnknownTopicID.Code)
			}
			continue
		}
		name := *rt.Topic
		if err := broker.ValidTopicName(name); err != nil {
			addError(rt.Topic, [16]byte{}, kerr.InvalidTopicException.Code)
			continue
		}
		if it := b.InternalTopic(name); it != nil {
			addInternal(it)
			continue
		}
		t := b.Topic(name)
		if t == nil && autoCreate {
			var terr *broker.TopicError
			t, terr = b.AutoCreate(name)
			if terr != nil {
				addError(rt.Topic, [16]byte{}, terr.Code)
				continue
			}
		}
		if t == nil {
			addError(rt.Topic, [16]byte{}, kerr.UnknownTopicOrPartition.Code)
			continue
		}
		addTopic(t)
	}
	return ready(resp)
}

// allTopicOperations is the bitfield of ACL operations on a topic: with no
// authorizer every operation is allowed (READ..DESCRIBE_CONFIGS, ALTER_CONFIGS).
const allTopicOperations = 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8 | 1<<10 | 1<<11

// advertisedBroker is this broker as the client's listener advertises it.
func (c *conn) advertisedBroker() kmsg.MetadataResponseBroker {
	br := kmsg.NewMetadataResponseBroker()
	br.NodeID = c.s.b.Config().NodeID
	br.Host, br.Port = c.advertised()
	return br
}
