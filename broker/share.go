package broker

import "github.com/oncelog/oncelog/share"

// shareTopics is the broker's topics as the share-group coordinator sees
// them.
type shareTopics struct{ b *Broker }

func (s shareTopics) TopicByName(name string) (share.Topic, bool) {
	t := s.b.Topic(name)
	if t == nil {
		return share.Topic{}, false
	}
	return share.Topic{Name: t.Name, ID: t.ID, Partitions: t.Partitions}, true
}

func (s shareTopics) TopicByID(id [16]byte) (share.Topic, bool) {
	t := s.b.TopicByID(id)
	if t == nil {
		return share.Topic{}, false
	}
	return share.Topic{Name: t.Name, ID: t.ID, Partitions: t.Partitions}, true
}
