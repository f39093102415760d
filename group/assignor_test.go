package group

import (
	"fmt"
	"testing"
)

func tid(b byte) topicID { return topicID{b} }

func members(subs map[string][]topicID, current map[string]assignment) []assignorMember {
	var out []assignorMember
	for _, id := range sortedKeys(subs) {
		m := assignorMember{id: id, topics: map[topicID]bool{}, current: current[id]}
		for _, t := range subs[id] {
			m.topics[t] = true
		}
		if m.current == nil {
			m.current = make(assignment)
		}
		out = append(out, m)
	}
	return out
}

// checkComplete fails unless every partition of every topic some member
// subscribes to is assigned exactly once, to a subscriber.
func checkComplete(t *testing.T, ms []assignorMember, topics []assignorTopic, got map[string]assignment) {
	t.Helper()
	owner := map[string]string{}
	for id, a := range got {
		var m assignorMember
		for _, x := range ms {
			if x.id == id {
				m = x
			}
		}
		for tp, ps := range a {
			if !m.topics[tp] {
				t.Fatalf("%s got topic %x it does not subscribe to", id, tp[:1])
			}
			for _, p := range ps {
				k := fmt.Sprintf("%x/%d", tp[:1], p)
				if o, ok := owner[k]; ok {
					t.Fatalf("%s assigned to %s and %s", k, o, id)
				}
				owner[k] = id
			}
		}
	}
	for _, tp := range topics {
		subscribed := false
		for _, m := range ms {
			subscribed = subscribed || m.topics[tp.id]
		}
		for p := range tp.partitions {
			if _, ok := owner[fmt.Sprintf("%x/%d", tp.id[:1], p)]; subscribed && !ok {
				t.Fatalf("%x/%d unassigned", tp.id[:1], p)
			}
		}
	}
}

func spread(got map[string]assignment) (lo, hi int) {
	lo = 1 << 30
	for _, a := range got {
		lo, hi = min(lo, a.size()), max(hi, a.size())
	}
	return lo, hi
}

func TestUniformAssignorBalancedAndSticky(t *testing.T) {
	topics := []assignorTopic{{id: tid(1), name: "a", partitions: 7}, {id: tid(2), name: "b", partitions: 5}}
	subs := map[string][]topicID{"m1": {tid(1), tid(2)}, "m2": {tid(1), tid(2)}, "m3": {tid(1), tid(2)}}
	ms := members(subs, nil)
	got := uniformAssignor{}.assign(ms, topics)
	checkComplete(t, ms, topics, got)
	if lo, hi := spread(got); hi-lo > 1 {
		t.Fatalf("unbalanced: %d..%d", lo, hi)
	}
	// A fourth member joins: only what it needs moves to it.
	subs["m4"] = []topicID{tid(1), tid(2)}
	ms2 := members(subs, got)
	got2 := uniformAssignor{}.assign(ms2, topics)
	checkComplete(t, ms2, topics, got2)
	if lo, hi := spread(got2); hi-lo > 1 {
		t.Fatalf("unbalanced after a join: %d..%d", lo, hi)
	}
	moved := 0
	for _, id := range []string{"m1", "m2", "m3"} {
		for tp, ps := range got[id] {
			for _, p := range ps {
				if !got2[id].contains(tp, p) {
					moved++
				}
			}
		}
	}
	if moved != got2["m4"].size() || moved != 3 {
		t.Fatalf("moved %d partitions, m4 has %d; want exactly the 3 m4 needs", moved, got2["m4"].size())
	}
	// Same input, same output.
	if again := (uniformAssignor{}).assign(members(subs, got), topics); !again["m4"].equal(got2["m4"]) {
		t.Fatal("not deterministic")
	}
}

func TestUniformAssignorHeterogeneous(t *testing.T) {
	topics := []assignorTopic{{id: tid(1), name: "a", partitions: 6}, {id: tid(2), name: "b", partitions: 2}}
	// m1 reads only a; m2 and m3 read both: balance as far as allowed.
	subs := map[string][]topicID{"m1": {tid(1)}, "m2": {tid(1), tid(2)}, "m3": {tid(1), tid(2)}}
	ms := members(subs, nil)
	got := uniformAssignor{}.assign(ms, topics)
	checkComplete(t, ms, topics, got)
	if lo, hi := spread(got); hi-lo > 1 {
		t.Fatalf("unbalanced: %d..%d (%v)", lo, hi, got)
	}
	// A member subscribed to nothing that exists gets nothing.
	subs["m0"] = []topicID{tid(9)}
	ms = members(subs, got)
	got = uniformAssignor{}.assign(ms, topics)
	checkComplete(t, ms, topics, got)
	if got["m0"].size() != 0 {
		t.Fatalf("m0 got %v", got["m0"])
	}
}

func TestRangeAssignor(t *testing.T) {
	topics := []assignorTopic{{id: tid(1), name: "a", partitions: 5}, {id: tid(2), name: "b", partitions: 5}}
	subs := map[string][]topicID{"m1": {tid(1), tid(2)}, "m2": {tid(1), tid(2)}}
	ms := members(subs, nil)
	got := rangeAssignor{}.assign(ms, topics)
	checkComplete(t, ms, topics, got)
	// Co-partitioned: each member has the same partition numbers of a and b.
	for _, id := range []string{"m1", "m2"} {
		a, b := got[id][tid(1)], got[id][tid(2)]
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("%s: a %v b %v", id, a, b)
		}
	}
	if fmt.Sprint(got["m1"][tid(1)]) != "[0 1 2]" || fmt.Sprint(got["m2"][tid(1)]) != "[3 4]" {
		t.Fatalf("ranges: %v", got)
	}
}

func TestAssignorByName(t *testing.T) {
	for in, want := range map[string]string{
		"uniform": "uniform", "range": "range", uniformAssignorClass: "uniform", rangeAssignorClass: "range", "sticky": "",
	} {
		if got := AssignorByName(in); got != want {
			t.Errorf("AssignorByName(%q) = %q, want %q", in, got, want)
		}
	}
}
