package httpapi

import (
	"context"
	"errors"
	"time"

	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/partition"
	"github.com/twmb/franz-go/pkg/kerr"
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
	t := b.Topic(name)
	if t == nil && b.Config().AutoCreateTopics {
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

func (bb brokerBackend) Produce(ctx context.Context, topic string, p int32, records []byte) (Produced, *Error) {
	part := bb.b.Partition(topic, p)
	if part == nil {
		return Produced{}, &Error{Code: kerr.UnknownTopicOrPartition.Code, Message: "topic " + topic + " has no partition"}
	}
	res := part.Append(records, time.Now())
	if res.ErrorCode != 0 {
		return Produced{}, &Error{Code: res.ErrorCode, Message: res.ErrorMessage}
	}
	if err := part.WaitDurable(ctx, res.DurableAt); err != nil {
		code := kerr.KafkaStorageError.Code
		switch {
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			code = kerr.RequestTimedOut.Code
		case errors.Is(err, partition.ErrClosed):
			code = kerr.UnknownTopicOrPartition.Code
		}
		return Produced{}, &Error{Code: code, Message: err.Error()}
	}
	return Produced{Partition: p, Offset: res.BaseOffset}, nil
}

func (bb brokerBackend) LookupKey(topic string, key []byte) (KeyEntry, bool, *Error) {
	if bb.b.Topic(topic) == nil {
		return KeyEntry{}, false, &Error{Code: kerr.UnknownTopicOrPartition.Code, Message: "topic " + topic + " does not exist"}
	}
	return KeyEntry{}, false, nil
}
