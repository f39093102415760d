package broker

import (
	"testing"

	"github.com/oncelog/oncelog/meta"
	"github.com/twmb/franz-go/pkg/kerr"
)

// TestInternalTopicIDsStableAcrossRestarts: the internal topics are not
// stored, yet a client that cached their ids must find them again.
func TestInternalTopicIDsStableAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	b := openBrokerAt(t, dir)
	before := map[string][16]byte{}
	for _, it := range b.InternalTopics() {
		before[it.Name] = it.ID
		if b.InternalTopicByID(it.ID) != it {
			t.Fatalf("%s not found by its id", it.Name)
		}
	}
	if before[ConsumerOffsetsTopic] == before[TransactionStateTopic] {
		t.Fatal("the internal topics share an id")
	}
	b.Close()
	b = openBrokerAt(t, dir)
	defer b.Close()
	for _, it := range b.InternalTopics() {
		if it.ID != before[it.Name] {
			t.Fatalf("%s changed id across a restart", it.Name)
		}
	}
}

// TestStoredTopicNamedInternalNotServed: a data directory from before
// internal topics existed may hold a real topic an auto-creating client
// made under an internal name; the internal topic wins and the stored one
// is left alone, not deleted.
func TestStoredTopicNamedInternalNotServed(t *testing.T) {
	dir := t.TempDir()
	b := openBrokerAt(t, dir)
	if err := b.meta.PutTopic(meta.Topic{Name: ConsumerOffsetsTopic, ID: meta.NewUUID(), Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b = openBrokerAt(t, dir)
	defer b.Close()
	if b.Topic(ConsumerOffsetsTopic) != nil {
		t.Fatal("a stored topic shadows the internal topic")
	}
	if _, terr := b.CreateTopic(ConsumerOffsetsTopic, 1, -1, nil, false); terr == nil || terr.Code != kerr.TopicAlreadyExists.Code {
		t.Fatalf("CreateTopic(%s) = %v, want TOPIC_ALREADY_EXISTS", ConsumerOffsetsTopic, terr)
	}
	if terr := b.DeleteTopic(ConsumerOffsetsTopic); terr == nil || terr.Code != kerr.InvalidTopicException.Code {
		t.Fatalf("DeleteTopic(%s) = %v, want INVALID_TOPIC_EXCEPTION", ConsumerOffsetsTopic, terr)
	}
	stored, err := b.meta.Topics()
	if err != nil || len(stored) != 1 {
		t.Fatalf("stored topics %v, %v: the old entry must be kept", stored, err)
	}
}
