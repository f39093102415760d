package share

import (
	"context"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Exists reports whether id is a share group.
func (c *Coordinator) Exists(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.liveGroup(id) != nil
}

// Listed is a share group as ListGroups shows it.
type Listed struct{ ID, State string }

// List returns every share group, sorted by id.
func (c *Coordinator) List() []Listed {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Listed, 0, len(c.groups))
	for id, g := range c.groups {
		if !g.live {
			continue
		}
		out = append(out, Listed{id, groupState(g)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Delete removes an empty share group and all its state (DeleteGroups). It
// returns GROUP_ID_NOT_FOUND when id is no share group, NON_EMPTY_GROUP
// while it has members.
func (c *Coordinator) Delete(ctx context.Context, id string) int16 {
	c.mu.Lock()
	g := c.liveGroup(id)
	switch {
	case g == nil:
		c.mu.Unlock()
		return kerr.GroupIDNotFound.Code
	case len(g.members) > 0:
		c.mu.Unlock()
		return kerr.NonEmptyGroup.Code
	}
	delete(c.groups, id)
	for k := range c.sessions {
		if k.group == id {
			delete(c.sessions, k)
		}
	}
	ops := []writeOp{{Key: groupKey(id), Delete: true}}
	for k := range g.parts {
		ops = append(ops, writeOp{Key: partitionKey(id, k.id, k.p), Delete: true})
	}
	done := c.store.enqueue(ops)
	c.mu.Unlock()
	if err := waitDurable(ctx, done); err != nil {
		return kerr.CoordinatorNotAvailable.Code
	}
	return 0
}

// DescribeOffsets answers DescribeShareGroupOffsets: each partition's
// start offset (SPSO) and lag, -1 for a partition the group has no state
// for.
func (c *Coordinator) DescribeOffsets(req *kmsg.DescribeShareGroupOffsetsRequest) *kmsg.DescribeShareGroupOffsetsResponse {
	resp := req.ResponseKind().(*kmsg.DescribeShareGroupOffsetsResponse)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rg := range req.Groups {
		g := c.liveGroup(rg.GroupID)
		og := kmsg.NewDescribeShareGroupOffsetsResponseGroup()
		og.GroupID = rg.GroupID
		topics := rg.Topics
		if topics == nil && g != nil {
			// All the group's partitions.
			byName := map[string][]int32{}
			for k := range g.parts {
				if t, ok := c.cfg.Topics.TopicByID(k.id); ok {
					byName[t.Name] = append(byName[t.Name], k.p)
				}
			}
			for name, ps := range byName {
				sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
				t := kmsg.NewDescribeShareGroupOffsetsRequestGroupTopic()
				t.Topic, t.Partitions = name, ps
				topics = append(topics, t)
			}
			sort.Slice(topics, func(i, j int) bool { return topics[i].Topic < topics[j].Topic })
		}
		for _, rt := range topics {
			ot := kmsg.NewDescribeShareGroupOffsetsResponseGroupTopic()
			ot.Topic = rt.Topic
			t, ok := c.cfg.Topics.TopicByName(rt.Topic)
			if ok {
				ot.TopicID = t.ID
			}
			for _, p := range rt.Partitions {
				op := kmsg.NewDescribeShareGroupOffsetsResponseGroupTopicPartition()
				op.Partition, op.StartOffset, op.Lag = p, -1, -1
				switch {
				case !ok || p < 0 || int(p) >= len(t.Partitions):
					op.ErrorCode = kerr.UnknownTopicOrPartition.Code
				case g != nil && g.parts[tp{t.ID, p}] != nil:
					sp := g.parts[tp{t.ID, p}]
					hw := t.Partitions[p].HighWatermark()
					op.StartOffset = sp.start
					op.Lag = max(0, hw-sp.start-sp.finishedBelow(hw))
				}
				ot.Partitions = append(ot.Partitions, op)
			}
			og.Topics = append(og.Topics, ot)
		}
		resp.Groups = append(resp.Groups, og)
	}
	return resp
}

// AlterOffsets answers AlterShareGroupOffsets: the group must have no
// members; each named partition starts over at the given offset.
func (c *Coordinator) AlterOffsets(ctx context.Context, req *kmsg.AlterShareGroupOffsetsRequest) *kmsg.AlterShareGroupOffsetsResponse {
	resp := req.ResponseKind().(*kmsg.AlterShareGroupOffsetsResponse)
	if strings.TrimSpace(req.GroupID) == "" {
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp
	}
	if c.cfg.ClassicGroup(req.GroupID) {
		resp.ErrorCode, resp.ErrorMessage = kerr.GroupIDNotFound.Code, strp("Group "+req.GroupID+" is not a share group.")
		return resp
	}
	c.mu.Lock()
	g := c.groups[req.GroupID]
	if g != nil && len(g.members) > 0 {
		c.mu.Unlock()
		resp.ErrorCode, resp.ErrorMessage = kerr.NonEmptyGroup.Code, strp("The group has active members; stop them first.")
		return resp
	}
	g = c.makeLiveLocked(req.GroupID)
	ops := []writeOp{{Key: groupKey(g.id), Value: c.encodeGroupLocked(g)}}
	for _, rt := range req.Topics {
		ot := kmsg.NewAlterShareGroupOffsetsResponseTopic()
		ot.Topic = rt.Topic
		t, ok := c.cfg.Topics.TopicByName(rt.Topic)
		if ok {
			ot.TopicID = t.ID
		}
		for _, rp := range rt.Partitions {
			op := kmsg.NewAlterShareGroupOffsetsResponseTopicPartition()
			op.Partition = rp.Partition
			switch {
			case !ok || rp.Partition < 0 || int(rp.Partition) >= len(t.Partitions):
				op.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case rp.StartOffset < -1:
				op.ErrorCode = kerr.InvalidRequest.Code
			default:
				p := t.Partitions[rp.Partition]
				start := rp.StartOffset
				if start == -1 {
					start = p.HighWatermark() // -1 is "latest"
				}
				start = min(max(start, p.LogStartOffset()), p.HighWatermark())
				k := tp{t.ID, rp.Partition}
				sp := g.parts[k]
				if sp == nil {
					sp = newSharePartition(start)
					g.parts[k] = sp
				}
				sp.reset(start)
				ops = append(ops, writeOp{Key: partitionKey(g.id, k.id, k.p), Value: sp.encode()})
			}
			ot.Partitions = append(ot.Partitions, op)
		}
		resp.Topics = append(resp.Topics, ot)
	}
	done := c.store.enqueue(ops)
	c.mu.Unlock()
	if err := waitDurable(ctx, done); err != nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
	}
	return resp
}

// DeleteOffsets answers DeleteShareGroupOffsets: the group must have no
// members; the named topics' state is dropped, so they start over by
// share.auto.offset.reset.
func (c *Coordinator) DeleteOffsets(ctx context.Context, req *kmsg.DeleteShareGroupOffsetsRequest) *kmsg.DeleteShareGroupOffsetsResponse {
	resp := req.ResponseKind().(*kmsg.DeleteShareGroupOffsetsResponse)
	c.mu.Lock()
	g := c.liveGroup(req.GroupID)
	switch {
	case g == nil:
		c.mu.Unlock()
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return resp
	case len(g.members) > 0:
		c.mu.Unlock()
		resp.ErrorCode, resp.ErrorMessage = kerr.NonEmptyGroup.Code, strp("The group has active members; stop them first.")
		return resp
	}
	var ops []writeOp
	for _, rt := range req.Topics {
		ot := kmsg.NewDeleteShareGroupOffsetsResponseTopic()
		ot.Topic = rt.Topic
		t, ok := c.cfg.Topics.TopicByName(rt.Topic)
		if !ok {
			ot.ErrorCode = kerr.UnknownTopicOrPartition.Code
			resp.Topics = append(resp.Topics, ot)
			continue
		}
		ot.TopicID = t.ID
		for k := range g.parts {
			if k.id == t.ID {
				delete(g.parts, k)
				ops = append(ops, writeOp{Key: partitionKey(g.id, k.id, k.p), Delete: true})
			}
		}
		resp.Topics = append(resp.Topics, ot)
	}
	done := c.store.enqueue(ops)
	c.mu.Unlock()
	if err := waitDurable(ctx, done); err != nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
	}
	return resp
}
