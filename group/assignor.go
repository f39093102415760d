package group

import (
	"bytes"
	"slices"
)

// topicID is a Kafka topic id (UUID). KIP-848 assignments name topics by id.
type topicID = [16]byte

// assignment is a set of partitions by topic id: partition lists are sorted
// and free of duplicates, and no topic maps to an empty list.
type assignment map[topicID][]int32

func (a assignment) contains(t topicID, p int32) bool {
	_, ok := slices.BinarySearch(a[t], p)
	return ok
}

func (a assignment) add(t topicID, p int32) {
	ps := a[t]
	i, ok := slices.BinarySearch(ps, p)
	if !ok {
		a[t] = slices.Insert(ps, i, p)
	}
}

func (a assignment) remove(t topicID, p int32) {
	ps := a[t]
	i, ok := slices.BinarySearch(ps, p)
	if !ok {
		return
	}
	ps = slices.Delete(ps, i, i+1)
	if len(ps) == 0 {
		delete(a, t)
	} else {
		a[t] = ps
	}
}

func (a assignment) size() int {
	n := 0
	for _, ps := range a {
		n += len(ps)
	}
	return n
}

func (a assignment) clone() assignment {
	out := make(assignment, len(a))
	for t, ps := range a {
		out[t] = slices.Clone(ps)
	}
	return out
}

func (a assignment) equal(b assignment) bool {
	if len(a) != len(b) {
		return false
	}
	for t, ps := range a {
		if !slices.Equal(ps, b[t]) {
			return false
		}
	}
	return true
}

// sortedTopics returns the topic ids in byte order, for deterministic
// iteration (responses, records).
func (a assignment) sortedTopics() []topicID {
	ids := make([]topicID, 0, len(a))
	for t := range a {
		ids = append(ids, t)
	}
	slices.SortFunc(ids, func(x, y topicID) int { return bytes.Compare(x[:], y[:]) })
	return ids
}

// assignorTopic is a subscribed topic as the assignor sees it.
type assignorTopic struct {
	id         topicID
	name       string
	partitions int32
}

// assignorMember is one member's input to an assignor: the topics it
// subscribes to (resolved to ids, existing topics only) and its current
// target assignment, which a sticky assignor keeps as far as it can.
type assignorMember struct {
	id      string
	topics  map[topicID]bool
	current assignment
}

// partitionAssignor is a server-side assignor (Kafka's
// ConsumerGroupPartitionAssignor). Members are sorted by id; topics by
// name. The result has an entry, possibly empty, for every member.
type partitionAssignor interface {
	name() string
	assign(members []assignorMember, topics []assignorTopic) map[string]assignment
}

// Assignor names as Kafka's group.consumer.assignors accepts them: the
// short names clients send as ServerAssignor, and the class names Kafka's
// default configuration lists.
const (
	UniformAssignorName = "uniform"
	RangeAssignorName   = "range"

	uniformAssignorClass = "org.apache.kafka.coordinator.group.assignor.UniformAssignor"
	rangeAssignorClass   = "org.apache.kafka.coordinator.group.assignor.RangeAssignor"
)

// DefaultConsumerAssignors is group.consumer.assignors' default: uniform
// first (the default assignor), then range.
var DefaultConsumerAssignors = []string{UniformAssignorName, RangeAssignorName}

// AssignorByName resolves a group.consumer.assignors entry (short or class
// name) to the short name, or "" if oncelog has no such assignor.
func AssignorByName(name string) string {
	switch name {
	case UniformAssignorName, uniformAssignorClass:
		return UniformAssignorName
	case RangeAssignorName, rangeAssignorClass:
		return RangeAssignorName
	}
	return ""
}

func newAssignor(name string) partitionAssignor {
	if name == RangeAssignorName {
		return rangeAssignor{}
	}
	return uniformAssignor{}
}

// uniformAssignor spreads every subscribed partition over the members
// subscribed to its topic so that member partition counts differ by at
// most one wherever the subscriptions allow it, and moves as few
// partitions as possible away from their current member (Kafka's
// UniformAssignor: balanced first, sticky second). Racks are not used.
type uniformAssignor struct{}

func (uniformAssignor) name() string { return UniformAssignorName }

func (uniformAssignor) assign(members []assignorMember, topics []assignorTopic) map[string]assignment {
	out := make(map[string]assignment, len(members))
	counts := make(map[string]int, len(members))
	for _, m := range members {
		out[m.id] = make(assignment)
	}
	if len(members) == 0 {
		return out
	}
	// eligible lists, per topic, the members subscribed to it (sorted).
	eligible := make(map[topicID][]string, len(topics))
	for _, t := range topics {
		for _, m := range members {
			if m.topics[t.id] {
				eligible[t.id] = append(eligible[t.id], m.id)
			}
		}
	}
	owner := make(map[topicID]map[int32]string, len(topics))
	for _, t := range topics {
		owner[t.id] = make(map[int32]string)
	}
	partitionsOf := make(map[topicID]int32, len(topics))
	for _, t := range topics {
		partitionsOf[t.id] = t.partitions
	}

	// 1. Stickiness: every member keeps what it has that is still valid.
	for _, m := range members {
		for _, t := range m.current.sortedTopics() {
			n, ok := partitionsOf[t]
			if !ok || !m.topics[t] {
				continue
			}
			for _, p := range m.current[t] {
				if p < n && owner[t][p] == "" {
					owner[t][p] = m.id
					out[m.id].add(t, p)
					counts[m.id]++
				}
			}
		}
	}

	// 2. Every unowned partition goes to the least loaded eligible member.
	leastLoaded := func(ids []string, except string) string {
		best := ""
		for _, id := range ids {
			if id == except {
				continue
			}
			if best == "" || counts[id] < counts[best] {
				best = id
			}
		}
		return best
	}
	for _, t := range topics {
		ids := eligible[t.id]
		if len(ids) == 0 {
			continue
		}
		for p := range t.partitions {
			if owner[t.id][p] != "" {
				continue
			}
			to := leastLoaded(ids, "")
			owner[t.id][p] = to
			out[to].add(t.id, p)
			counts[to]++
		}
	}

	// 3. Balance: move a partition from a member to an eligible member
	// that has at least two fewer, until no such move exists. Each move
	// lowers the sum of squared counts, so this ends. Only the heaviest
	// members give while they can (so a join moves just what the new
	// member needs); when they cannot, any member may. Highest
	// partitions move first, so the result is deterministic.
	maxCount := func() int {
		hi := 0
		for _, n := range counts {
			hi = max(hi, n)
		}
		return hi
	}
	pass := func(heaviestOnly bool) bool {
		moved := false
		order := make([]string, 0, len(members))
		for _, m := range members {
			order = append(order, m.id)
		}
		slices.SortStableFunc(order, func(a, b string) int { return counts[b] - counts[a] })
		for _, from := range order {
			a := out[from]
			for _, t := range slices.Backward(a.sortedTopics()) {
				for _, p := range slices.Backward(slices.Clone(a[t])) {
					if heaviestOnly && counts[from] < maxCount() {
						break
					}
					to := leastLoaded(eligible[t], from)
					if to == "" || counts[from]-counts[to] < 2 {
						continue
					}
					a.remove(t, p)
					out[to].add(t, p)
					owner[t][p] = to
					counts[from]--
					counts[to]++
					moved = true
				}
			}
		}
		return moved
	}
	for {
		if pass(true) {
			continue
		}
		if !pass(false) {
			break
		}
	}
	return out
}

// rangeAssignor gives each member, per topic, a contiguous range of the
// topic's partitions: with N subscribed members (sorted by id) and P
// partitions, the first P%N members get P/N+1 partitions and the rest
// P/N, so members subscribed to co-partitioned topics get the same
// partition numbers of each (Kafka's RangeAssignor).
type rangeAssignor struct{}

func (rangeAssignor) name() string { return RangeAssignorName }

func (rangeAssignor) assign(members []assignorMember, topics []assignorTopic) map[string]assignment {
	out := make(map[string]assignment, len(members))
	for _, m := range members {
		out[m.id] = make(assignment)
	}
	for _, t := range topics {
		var ids []string
		for _, m := range members {
			if m.topics[t.id] {
				ids = append(ids, m.id)
			}
		}
		if len(ids) == 0 {
			continue
		}
		n := int32(len(ids))
		per, extra := t.partitions/n, t.partitions%n
		next := int32(0)
		for i, id := range ids {
			count := per
			if int32(i) < extra {
				count++
			}
			for p := next; p < next+count; p++ {
				out[id].add(t.id, p)
			}
			next += count
		}
	}
	return out
}
