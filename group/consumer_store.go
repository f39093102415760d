package group

import (
	"encoding/binary"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The durable records of KIP-848 consumer groups (see store.go for the
// key layout). Kafka writes the same state to __consumer_offsets as
// ConsumerGroupMetadata, ConsumerGroupPartitionMetadata,
// ConsumerGroupTargetAssignmentMetadata (the 'c' record here) and, per
// member, ConsumerGroupMemberMetadata, ConsumerGroupTargetAssignmentMember
// and ConsumerGroupCurrentMemberAssignment (the 'm' record), so that after
// a restart members carry on in their epochs; only session deadlines are
// not kept: every member gets a fresh session at load, as Kafka's onLoaded
// schedules them.
const (
	prefixConsumerGroup  = 'c'
	prefixConsumerMember = 'm'
)

// consumerGroupRecord is a consumer group's record.
type consumerGroupRecord struct {
	epoch           int32
	assignmentEpoch int32
	emptySinceMs    int64 // -1 while the group has members
	subscription    []assignorTopic
}

func consumerGroupKey(group string) []byte {
	return append([]byte{prefixConsumerGroup}, group...)
}

func consumerMemberKey(group, member string) []byte {
	b := appendString([]byte{prefixConsumerMember}, group)
	return append(b, member...)
}

func decodeConsumerMemberKey(b []byte) (group, member string, err error) {
	d := decoder{b: b}
	group = d.string()
	if d.bad {
		return "", "", errCorruptKey
	}
	return group, string(d.b), nil
}

func encodeConsumerGroupRecord(g *group) []byte {
	cg := g.consumer
	b := []byte{recordVersion}
	b = binary.AppendVarint(b, int64(cg.epoch))
	b = binary.AppendVarint(b, int64(cg.assignmentEpoch))
	emptySince := int64(-1)
	if len(cg.members) == 0 {
		emptySince = g.stateSince.UnixMilli()
	}
	b = binary.AppendVarint(b, emptySince)
	b = binary.AppendUvarint(b, uint64(len(cg.subscription)))
	for _, t := range cg.subscription {
		b = appendString(b, t.name)
		b = append(b, t.id[:]...)
		b = binary.AppendVarint(b, int64(t.partitions))
	}
	return b
}

func decodeConsumerGroupRecord(b []byte) (*consumerGroupRecord, error) {
	d := decoder{b: b}
	if d.byte() != recordVersion {
		return nil, errCorruptRecord
	}
	r := &consumerGroupRecord{}
	r.epoch = int32(d.varint())
	r.assignmentEpoch = int32(d.varint())
	r.emptySinceMs = d.varint()
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		return nil, errCorruptRecord
	}
	for range n {
		var t assignorTopic
		t.name = d.string()
		t.id = d.uuid()
		t.partitions = int32(d.varint())
		r.subscription = append(r.subscription, t)
	}
	return r, d.err()
}

func (d *decoder) uuid() topicID {
	var u topicID
	if d.bad || len(d.b) < len(u) {
		d.bad = true
		return u
	}
	copy(u[:], d.b)
	d.b = d.b[len(u):]
	return u
}

func appendOptString(b []byte, s *string) []byte {
	if s == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	return appendString(b, *s)
}

func (d *decoder) optString() *string {
	switch d.byte() {
	case 0:
		return nil
	case 1:
		s := d.string()
		return &s
	default:
		d.bad = true
		return nil
	}
}

func appendAssignment(b []byte, a assignment) []byte {
	b = binary.AppendUvarint(b, uint64(len(a)))
	for _, t := range a.sortedTopics() {
		b = append(b, t[:]...)
		b = binary.AppendUvarint(b, uint64(len(a[t])))
		for _, p := range a[t] {
			b = binary.AppendVarint(b, int64(p))
		}
	}
	return b
}

func (d *decoder) assignment() assignment {
	a := make(assignment)
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad = true
		return a
	}
	for range n {
		t := d.uuid()
		np := d.uvarint()
		if np > uint64(len(d.b)) {
			d.bad = true
			return a
		}
		for range np {
			a.add(t, int32(d.varint()))
		}
		if d.bad {
			return a
		}
	}
	return a
}

func encodeConsumerMember(m *consumerMember) []byte {
	b := []byte{recordVersion}
	b = appendOptString(b, m.instanceID)
	b = appendOptString(b, m.rackID)
	b = appendString(b, m.clientID)
	b = appendString(b, m.clientHost)
	b = binary.AppendUvarint(b, uint64(len(m.topicNames)))
	for _, n := range m.topicNames {
		b = appendString(b, n)
	}
	b = appendString(b, m.regex)
	b = appendString(b, m.serverAssignor)
	b = binary.AppendVarint(b, m.rebalanceTimeout.Milliseconds())
	b = binary.AppendVarint(b, int64(m.epoch))
	b = binary.AppendVarint(b, int64(m.previousEpoch))
	b = append(b, byte(m.state))
	b = appendAssignment(b, m.assigned)
	b = appendAssignment(b, m.pending)
	b = appendAssignment(b, m.target)
	// The assignment epoch of each assigned partition, in the order of
	// the assigned partitions above.
	for _, t := range m.assigned.sortedTopics() {
		for _, p := range m.assigned[t] {
			e, ok := m.assignedAt[t][p]
			if !ok {
				e = m.epoch
			}
			b = binary.AppendVarint(b, int64(e))
		}
	}
	// A classic member (migration.go): its session timeout and
	// protocols. Records of consumer protocol members end above, as
	// records written before online migration existed do.
	if m.classic != nil {
		b = append(b, 1)
		b = binary.AppendVarint(b, m.classic.sessionTimeout.Milliseconds())
		b = binary.AppendUvarint(b, uint64(len(m.classic.protocols)))
		for _, p := range m.classic.protocols {
			b = appendString(b, p.Name)
			b = appendString(b, string(p.Metadata))
		}
	}
	return b
}

func decodeConsumerMember(id string, b []byte) (*consumerMember, error) {
	d := decoder{b: b}
	if d.byte() != recordVersion {
		return nil, errCorruptRecord
	}
	m := &consumerMember{id: id}
	m.instanceID = d.optString()
	m.rackID = d.optString()
	m.clientID = d.string()
	m.clientHost = d.string()
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		return nil, errCorruptRecord
	}
	for range n {
		m.topicNames = append(m.topicNames, d.string())
	}
	m.regex = d.string()
	m.serverAssignor = d.string()
	m.rebalanceTimeout = time.Duration(d.varint()) * time.Millisecond
	m.epoch = int32(d.varint())
	m.previousEpoch = int32(d.varint())
	m.state = memberState(d.byte())
	if m.state > memberUnreleasedPartitions {
		return nil, errCorruptRecord
	}
	m.assigned = d.assignment()
	m.pending = d.assignment()
	m.target = d.assignment()
	m.assignedAt = make(map[topicID]map[int32]int32, len(m.assigned))
	for _, t := range m.assigned.sortedTopics() {
		byP := make(map[int32]int32, len(m.assigned[t]))
		for _, p := range m.assigned[t] {
			byP[p] = int32(d.varint())
		}
		m.assignedAt[t] = byP
	}
	if len(d.b) > 0 && !d.bad {
		if d.byte() != 1 {
			return nil, errCorruptRecord
		}
		cm := &classicMember{sessionTimeout: time.Duration(d.varint()) * time.Millisecond}
		n := d.uvarint()
		if n > uint64(len(d.b)) {
			return nil, errCorruptRecord
		}
		for range n {
			name := d.string()
			meta := d.string()
			cm.protocols = append(cm.protocols, kmsg.JoinGroupRequestProtocol{Name: name, Metadata: []byte(meta)})
		}
		m.classic = cm
	}
	if err := d.err(); err != nil {
		return nil, err
	}
	slices.Sort(m.topicNames)
	return m, nil
}

// restoreConsumerGroups rebuilds the consumer groups loaded from the store
// and starts every member's session (and, for members revoking
// partitions, its rebalance timeout) afresh.
func (c *Coordinator) restoreConsumerGroups(l *loaded, now time.Time) {
	for name, rec := range l.consumerGroups {
		g := newGroup(name, now)
		g.protocolType = consumerProtocolType
		cg := newConsumerGroup()
		cg.epoch, cg.assignmentEpoch = rec.epoch, rec.assignmentEpoch
		cg.subscription = rec.subscription
		g.consumer = cg
		if rec.emptySinceMs >= 0 {
			g.stateSince = time.UnixMilli(rec.emptySinceMs)
		}
		for _, m := range l.consumerMembers[name] {
			cg.setMember(m, nil, nil)
		}
		c.groups[name] = g
		for _, id := range cg.sortedMemberIDs() {
			m := cg.members[id]
			c.scheduleConsumerSession(g, m)
			if m.state == memberUnrevokedPartitions && m.classic == nil {
				c.scheduleConsumerRebalanceTimeout(g, m)
			}
		}
	}
}
