package wire

import (
	"github.com/oncelog/oncelog/acl"
	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Metadata v13 (KIP-1102) only adds a top-level error code, which Kafka
// sets to REBOOTSTRAP_REQUIRED when it wants a client to start over from
// its bootstrap servers; a single broker never does, so it stays 0.
func init() { register(3, 0, 13, handleMetadata) }

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
	// Topics the principal may not DESCRIBE are left out of a full
	// listing and answer TOPIC_AUTHORIZATION_FAILED when named (by id:
	// with the id and no name), as Kafka's.
	all := req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0)
	mayDescribe := func(name string) bool { return c.authorizeQuiet(opDescribe, rtTopic, name) }
	denied := func(name *string, id [16]byte) {
		n := ""
		if name != nil {
			n = *name
		}
		c.denied(r.key, c.Principal(), opDescribe, rtTopic, n)
		addError(name, id, kerr.TopicAuthorizationFailed.Code)
	}
	if all {
		for _, t := range b.Topics() {
			if mayDescribe(t.Name) {
				addTopic(t)
			}
		}
		// Kafka lists its internal topics too; consumers and tools tell
		// them apart by IsInternal.
		for _, t := range b.InternalTopics() {
			if mayDescribe(t.Name) {
				addInternal(t)
			}
		}
		setAuthorizedOperations(c, req, resp)
		return ready(resp)
	}
	autoCreate := req.Version < 4 || req.AllowAutoTopicCreation
	for _, rt := range req.Topics {
		if rt.Topic == nil || *rt.Topic == "" {
			if t := b.TopicByID(rt.TopicID); t != nil {
				if !mayDescribe(t.Name) {
					denied(nil, t.ID)
					continue
				}
				addTopic(t)
			} else if t := b.InternalTopicByID(rt.TopicID); t != nil {
				if !mayDescribe(t.Name) {
					denied(nil, t.ID)
					continue
				}
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
		if !mayDescribe(name) {
			denied(rt.Topic, [16]byte{})
			continue
		}
		if it := b.InternalTopic(name); it != nil {
			addInternal(it)
			continue
		}
		t := b.Topic(name)
		if t == nil && autoCreate && b.Config().AutoCreateTopics {
			if !c.mayCreateTopic(name) {
				// Kafka: a topic the principal may describe but not
				// create answers TOPIC_AUTHORIZATION_FAILED.
				c.denied(r.key, c.Principal(), opCreate, rtTopic, name)
				addError(rt.Topic, [16]byte{}, kerr.TopicAuthorizationFailed.Code)
				continue
			}
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
	setAuthorizedOperations(c, req, resp)
	return ready(resp)
}

// setAuthorizedOperations fills the v8+ authorized-operations fields the
// request asked for, as Kafka: every listed topic's (when
// IncludeTopicAuthorizedOperations), and on v8-v10 the cluster's (when
// IncludeClusterAuthorizedOperations: 0 without DESCRIBE on the cluster).
// Fields not asked for keep the schema default, Int32 min.
func setAuthorizedOperations(c *conn, req *kmsg.MetadataRequest, resp *kmsg.MetadataResponse) {
	if req.Version < 8 {
		return
	}
	if req.Version <= 10 && req.IncludeClusterAuthorizedOperations {
		resp.AuthorizedOperations = 0
		if c.authorizeQuiet(opDescribe, rtCluster, acl.ClusterName) {
			resp.AuthorizedOperations = c.authorizedOps(rtCluster, acl.ClusterName)
		}
	}
	if req.IncludeTopicAuthorizedOperations {
		for i := range resp.Topics {
			if t := resp.Topics[i]; t.Topic != nil {
				resp.Topics[i].AuthorizedOperations = c.authorizedOps(rtTopic, *t.Topic)
			}
		}
	}
}

// advertisedBroker is this broker as the client's listener advertises it.
func (c *conn) advertisedBroker() kmsg.MetadataResponseBroker {
	br := kmsg.NewMetadataResponseBroker()
	br.NodeID = c.s.b.Config().NodeID
	br.Host, br.Port = c.advertised()
	return br
}
