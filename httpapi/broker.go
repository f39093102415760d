package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/oncelog/oncelog/acl"
	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ForBroker is the Backend of a running broker.
func ForBroker(b *broker.Broker) Backend { return brokerBackend{b} }

type brokerBackend struct{ b *broker.Broker }

func (bb brokerBackend) Topic(name string) (TopicInfo, *Error) {
	b := bb.b
	if broker.IsInternalTopic(name) {
		// As Kafka's ReplicaManager: clients may not append to internal topics.
		return TopicInfo{}, &Error{Code: kerr.InvalidTopicException.Code, Message: "cannot append to internal topic " + name}
	}
	if !bb.authorized(kmsg.ACLOperationWrite, name) {
		return TopicInfo{}, &Error{Code: kerr.TopicAuthorizationFailed.Code, Message: "HTTP ingest writes as " + acl.Anonymous + ", which may not write topic " + name}
	}
	t := b.Topic(name)
	if t == nil && b.Config().AutoCreateTopics && bb.authorized(kmsg.ACLOperationCreate, name) {
		var terr *broker.TopicError
		if t, terr = b.AutoCreate(name); terr != nil {
			return TopicInfo{}, &Error{Code: terr.Code, Message: terr.Message}
		}
	}
	if t == nil || len(t.Partitions) == 0 {
		return TopicInfo{}, &Error{Code: kerr.UnknownTopicOrPartition.Code, Message: "topic " + name + " does not exist"}
	}
	return TopicInfo{Partitions: len(t.Partitions), MaxMessageBytes: int(t.Partitions[0].Config().MaxMessageBytes)}, nil
}

// Produce goes through broker.Produce, the entry point the Kafka Produce
// handler uses too: the same validation, key window and durability rules.
func (bb brokerBackend) Produce(ctx context.Context, topic string, p int32, records []byte) (Produced, *Error) {
	res := bb.b.Produce(broker.ProduceRequest{Topic: topic, Partition: p, Records: records, Version: broker.ProduceVersionLatest})
	if !res.WaitDurable(ctx) {
		return Produced{}, &Error{Code: res.ErrorCode, Message: res.ErrorMessage}
	}
	for _, d := range res.Duplicates {
		if d.Index == 0 { // the batch's one record
			return Produced{Partition: d.Partition, Offset: d.Offset, Duplicate: true}, nil
		}
	}
	return Produced{Partition: p, Offset: res.BaseOffset}, nil
}

func (bb brokerBackend) LookupKey(topic string, key []byte) (KeyEntry, bool, *Error) {
	if !bb.authorized(kmsg.ACLOperationRead, topic) {
		return KeyEntry{}, false, &Error{Code: kerr.TopicAuthorizationFailed.Code, Message: "HTTP requests run as " + acl.Anonymous + ", which may not read topic " + topic}
	}
	e, found, err := bb.b.LookupKey(topic, key)
	switch {
	case errors.Is(err, broker.ErrUnknownTopic):
		return KeyEntry{}, false, &Error{Code: kerr.UnknownTopicOrPartition.Code, Message: "topic " + topic + " does not exist"}
	case errors.Is(err, broker.ErrNoKeyWindow):
		// No window holds the key: 404, saying why.
		return KeyEntry{}, false, &Error{Status: http.StatusNotFound, Message: "topic " + topic + " has no key window (oncelog.dedup.key is none)"}
	case err != nil:
		return KeyEntry{}, false, &Error{Code: kerr.KafkaStorageError.Code, Message: err.Error()}
	}
	return KeyEntry{Partition: e.Partition, Offset: e.Offset, Timestamp: e.Timestamp, Digest: e.Digest}, found, nil
}

// authorized applies the broker's ACLs (with --authorizer acl) to an HTTP
// request: the HTTP listener does not authenticate, so it acts as
// User:ANONYMOUS, and with no client address an ACL must allow host "*".
// Creating a topic needs CREATE on the cluster or the topic, as in Kafka.
func (bb brokerBackend) authorized(op kmsg.ACLOperation, topic string) bool {
	a := bb.b.ACL
	if a == nil {
		return true
	}
	if op == kmsg.ACLOperationCreate && a.Authorize(acl.Anonymous, "", op, kmsg.ACLResourceTypeCluster, acl.ClusterName) {
		return true
	}
	return a.Authorize(acl.Anonymous, "", op, kmsg.ACLResourceTypeTopic, topic)
}
