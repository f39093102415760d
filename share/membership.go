package share

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/oncelog/oncelog/partition"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Group configs a share group may override (IncrementalAlterConfigs on a
// GROUP resource), Kafka's GroupConfig names.
const (
	cfgAutoOffsetReset   = "share.auto.offset.reset"
	cfgIsolationLevel    = "share.isolation.level"
	cfgLockDuration      = "share.record.lock.duration.ms"
	cfgSessionTimeout    = "share.session.timeout.ms"
	cfgHeartbeatInterval = "share.heartbeat.interval.ms"
	cfgDeliveryLimit     = "share.delivery.count.limit"
	cfgMaxRecordLocks    = "share.partition.max.record.locks"
)

// GroupConfigNames lists the group configs served, sorted.
var GroupConfigNames = []string{cfgDeliveryLimit, cfgHeartbeatInterval, cfgAutoOffsetReset, cfgIsolationLevel, cfgMaxRecordLocks, cfgLockDuration, cfgSessionTimeout}

func (c *Coordinator) groupConfig(g *group, name string) string {
	if g != nil {
		if v, ok := g.configs[name]; ok {
			return v
		}
	}
	switch name {
	case cfgAutoOffsetReset:
		return "latest"
	case cfgIsolationLevel:
		return "read_uncommitted"
	case cfgLockDuration:
		return strconv.FormatInt(c.cfg.RecordLockDuration.Milliseconds(), 10)
	case cfgSessionTimeout:
		return strconv.FormatInt(c.cfg.SessionTimeout.Milliseconds(), 10)
	case cfgHeartbeatInterval:
		return strconv.FormatInt(c.cfg.HeartbeatInterval.Milliseconds(), 10)
	case cfgDeliveryLimit:
		return strconv.Itoa(c.cfg.DeliveryCountLimit)
	case cfgMaxRecordLocks:
		return strconv.Itoa(c.cfg.PartitionMaxRecordLocks)
	}
	return ""
}

func (c *Coordinator) groupMillis(g *group, name string) time.Duration {
	n, _ := strconv.ParseInt(c.groupConfig(g, name), 10, 64)
	return time.Duration(n) * time.Millisecond
}

func (c *Coordinator) lockDuration(g *group) time.Duration { return c.groupMillis(g, cfgLockDuration) }
func (c *Coordinator) sessionTimeout(g *group) time.Duration {
	return c.groupMillis(g, cfgSessionTimeout)
}

func (c *Coordinator) deliveryLimit(g *group) int16 {
	n, _ := strconv.Atoi(c.groupConfig(g, cfgDeliveryLimit))
	return int16(n)
}

func (c *Coordinator) maxRecordLocks(g *group) int {
	n, _ := strconv.Atoi(c.groupConfig(g, cfgMaxRecordLocks))
	return n
}

func (c *Coordinator) isolation(g *group) partition.Isolation {
	if c.groupConfig(g, cfgIsolationLevel) == "read_committed" {
		return partition.ReadCommitted
	}
	return partition.ReadUncommitted
}

// validGroupConfig checks a value the way Kafka's GroupConfig does (the
// ranges of the broker's min/max bounds are Kafka's defaults).
func validGroupConfig(name, value string) error {
	intIn := func(lo, hi int64) error {
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("invalid value %q for %s: must be an integer in [%d, %d]", value, name, lo, hi)
		}
		return nil
	}
	switch name {
	case cfgAutoOffsetReset:
		if value != "latest" && value != "earliest" {
			return fmt.Errorf("invalid value %q for %s: must be latest or earliest", value, name)
		}
	case cfgIsolationLevel:
		if value != "read_committed" && value != "read_uncommitted" {
			return fmt.Errorf("invalid value %q for %s: must be read_committed or read_uncommitted", value, name)
		}
	case cfgLockDuration:
		return intIn(1000, 3600000)
	case cfgSessionTimeout, cfgHeartbeatInterval:
		return intIn(1000, 3600000)
	case cfgDeliveryLimit:
		return intIn(2, 10)
	case cfgMaxRecordLocks:
		// Kafka: at most group.share.max.partition.max.record.locks.
		return intIn(100, 10000)
	default:
		return fmt.Errorf("unknown group config %s", name)
	}
	return nil
}

// GroupConfigs returns a group's effective share configs (defaults for an
// unknown group, as Kafka describes any group id), and which are set.
func (c *Coordinator) GroupConfigs(id string) (values map[string]string, set map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[id]
	values, set = map[string]string{}, map[string]bool{}
	for _, n := range GroupConfigNames {
		values[n] = c.groupConfig(g, n)
		if g != nil {
			_, set[n] = g.configs[n]
		}
	}
	return values, set
}

// ConfigChange is one IncrementalAlterConfigs entry: Delete reverts to the
// default.
type ConfigChange struct {
	Name, Value string
	Delete      bool
}

// AlterGroupConfigs applies changes to a share group's configs, all or
// none, creating the group (as Kafka lets configs be set before the group
// exists). It returns a Kafka error code and message.
func (c *Coordinator) AlterGroupConfigs(ctx context.Context, id string, changes []ConfigChange, validateOnly bool) (int16, string) {
	for _, ch := range changes {
		if ch.Delete {
			if !slices.Contains(GroupConfigNames, ch.Name) {
				return kerr.InvalidConfig.Code, "unknown group config " + ch.Name
			}
			continue
		}
		if err := validGroupConfig(ch.Name, ch.Value); err != nil {
			return kerr.InvalidConfig.Code, err.Error()
		}
	}
	if c.cfg.ClassicGroup(id) {
		return kerr.InvalidConfig.Code, "group " + id + " is a consumer group; share configs apply to share groups"
	}
	if validateOnly {
		return 0, ""
	}
	c.mu.Lock()
	g := c.groups[id]
	if g == nil {
		g = c.newGroup(id)
	}
	for _, ch := range changes {
		if ch.Delete {
			delete(g.configs, ch.Name)
		} else {
			g.configs[ch.Name] = ch.Value
		}
	}
	done := c.store.enqueue([]writeOp{{Key: groupKey(id), Value: c.encodeGroupLocked(g)}})
	c.mu.Unlock()
	if err := waitDurable(ctx, done); err != nil {
		return kerr.CoordinatorNotAvailable.Code, err.Error()
	}
	return 0, ""
}

// ClientInfo is who sent a request (for describe).
type ClientInfo struct{ ClientID, Host string }

// Heartbeat answers ShareGroupHeartbeat: epoch 0 joins, -1 leaves, any
// other is a heartbeat at the member's epoch (or its previous one, when the
// response that bumped it was lost), as Kafka's GroupMetadataManager.
func (c *Coordinator) Heartbeat(ctx context.Context, req *kmsg.ShareGroupHeartbeatRequest, who ClientInfo) *kmsg.ShareGroupHeartbeatResponse {
	resp := req.ResponseKind().(*kmsg.ShareGroupHeartbeatResponse)
	fail := func(e *kerr.Error, msg string) *kmsg.ShareGroupHeartbeatResponse {
		resp.ErrorCode, resp.ErrorMessage = e.Code, &msg
		return resp
	}
	switch {
	case strings.TrimSpace(req.GroupID) == "":
		return fail(kerr.InvalidRequest, "GroupId can't be empty.")
	case req.MemberID == "" || len(req.MemberID) > 36:
		return fail(kerr.InvalidRequest, "MemberId must be a non-empty string of at most 36 characters.")
	case req.MemberEpoch < -1:
		return fail(kerr.InvalidRequest, "MemberEpoch is invalid.")
	case req.RackID != nil && strings.TrimSpace(*req.RackID) == "":
		return fail(kerr.InvalidRequest, "RackId can't be empty.")
	case req.MemberEpoch == 0 && len(req.SubscribedTopicNames) == 0:
		return fail(kerr.InvalidRequest, "SubscribedTopicNames must be set in first request.")
	}
	if c.cfg.ClassicGroup(req.GroupID) {
		return fail(kerr.GroupIDNotFound, "Group "+req.GroupID+" is not a share group.")
	}
	c.mu.Lock()
	g := c.liveGroup(req.GroupID)
	if g == nil && req.MemberEpoch != 0 {
		c.mu.Unlock()
		return fail(kerr.GroupIDNotFound, "Group "+req.GroupID+" not found.")
	}
	g = c.makeLiveLocked(req.GroupID)
	resp.HeartbeatIntervalMillis = int32(c.groupMillis(g, cfgHeartbeatInterval).Milliseconds())
	var ops []writeOp
	assignChanged := false
	m := g.members[req.MemberID]
	switch {
	case req.MemberEpoch == -1:
		if m == nil {
			c.mu.Unlock()
			return fail(kerr.UnknownMemberID, "Member "+req.MemberID+" is not in group "+req.GroupID+".")
		}
		ops = c.removeMemberLocked(g, m.id)
		c.wakeLocked()
		resp.MemberID, resp.MemberEpoch = &req.MemberID, -1
		c.store.enqueue(ops)
		c.mu.Unlock()
		return resp
	case req.MemberEpoch == 0 && m == nil:
		if len(g.members) >= c.cfg.MaxSize {
			c.mu.Unlock()
			return fail(kerr.GroupMaxSizeReached, fmt.Sprintf("The share group has reached its maximum capacity of %d members.", c.cfg.MaxSize))
		}
		m = &member{id: req.MemberID, assign: map[[16]byte][]int32{}, topics: sortedTopics(req.SubscribedTopicNames)}
		g.members[m.id] = m
		g.epoch++
		assignChanged = true
		ops = append(ops, writeOp{Key: groupKey(g.id), Value: c.encodeGroupLocked(g)})
	case m == nil:
		c.mu.Unlock()
		return fail(kerr.UnknownMemberID, "Member "+req.MemberID+" is not in group "+req.GroupID+".")
	case req.MemberEpoch != 0 && req.MemberEpoch != m.epoch && req.MemberEpoch != m.prevEpoch:
		c.mu.Unlock()
		return fail(kerr.FencedMemberEpoch, "The share group member has an invalid epoch.")
	}
	m.clientID, m.host, m.last = who.ClientID, who.Host, time.Now()
	if req.RackID != nil {
		m.rack = req.RackID
	}
	if req.SubscribedTopicNames != nil {
		if t := sortedTopics(req.SubscribedTopicNames); !slices.Equal(t, m.topics) {
			m.topics = t
			g.epoch++
			assignChanged = true
			ops = append(ops, writeOp{Key: groupKey(g.id), Value: c.encodeGroupLocked(g)})
		}
	}
	if sig := c.subscriptionSignature(g); sig != g.subscribed {
		if g.subscribed != "" && !assignChanged {
			g.epoch++
			ops = append(ops, writeOp{Key: groupKey(g.id), Value: c.encodeGroupLocked(g)})
		}
		assignChanged = true
	}
	if assignChanged || req.MemberEpoch == 0 {
		c.assignLocked(g)
	}
	before := m.epoch
	if m.epoch != g.epoch {
		m.prevEpoch, m.epoch = m.epoch, g.epoch
	}
	resp.MemberID, resp.MemberEpoch = &req.MemberID, m.epoch
	// As Kafka: the assignment goes to a full request (one naming the
	// subscription) or when this heartbeat moved the member's epoch.
	if req.SubscribedTopicNames != nil || m.epoch != before {
		resp.Assignment = assignmentOf(m)
	}
	c.store.enqueue(ops)
	c.mu.Unlock()
	return resp
}

func assignmentOf(m *member) *kmsg.ShareGroupHeartbeatResponseAssignment {
	a := new(kmsg.ShareGroupHeartbeatResponseAssignment)
	ids := make([][16]byte, 0, len(m.assign))
	for id := range m.assign {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return string(ids[i][:]) < string(ids[j][:]) })
	for _, id := range ids {
		t := kmsg.NewShareGroupHeartbeatResponseAssignmentTopicPartition()
		t.TopicID, t.Partitions = id, append([]int32(nil), m.assign[id]...)
		a.TopicPartitions = append(a.TopicPartitions, t)
	}
	return a
}

// subscriptionSignature names the metadata of every subscribed topic (id
// and partition count): the assignment is recomputed when it changes.
func (c *Coordinator) subscriptionSignature(g *group) string {
	var names []string
	for _, m := range g.members {
		names = append(names, m.topics...)
	}
	names = sortedTopics(names)
	var b strings.Builder
	for _, n := range names {
		t, ok := c.cfg.Topics.TopicByName(n)
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "%s/%x/%d;", n, t.ID, len(t.Partitions))
	}
	return b.String()
}

// assignLocked computes every member's partitions with Kafka's share
// SimpleAssignor idea, as franz-go's kfake does it: every partition of a
// subscribed topic goes to at least one member, partitions are shared
// only when there are more members than partitions, each member gets an
// even share, and existing assignments are kept where balance allows.
func (c *Coordinator) assignLocked(g *group) {
	g.subscribed = c.subscriptionSignature(g)
	ids := make([]string, 0, len(g.members))
	for id := range g.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	subs := map[string][]string{}
	for _, id := range ids {
		for _, t := range g.members[id].topics {
			subs[t] = append(subs[t], id)
		}
	}
	type pk struct {
		id [16]byte
		p  int32
	}
	owners := map[pk]map[string]bool{}
	// Keep what is still valid.
	for _, id := range ids {
		m := g.members[id]
		kept := map[[16]byte][]int32{}
		for tid, parts := range m.assign {
			t, ok := c.cfg.Topics.TopicByID(tid)
			if !ok {
				continue
			}
			if _, sub := slices.BinarySearch(m.topics, t.Name); !sub {
				continue
			}
			for _, p := range parts {
				if int(p) >= len(t.Partitions) {
					continue
				}
				k := pk{tid, p}
				if owners[k] == nil {
					owners[k] = map[string]bool{}
				}
				owners[k][id] = true
				kept[tid] = append(kept[tid], p)
			}
		}
		m.assign = kept
	}
	topics := make([]string, 0, len(subs))
	for t := range subs {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	for _, name := range topics {
		members := subs[name]
		t, ok := c.cfg.Topics.TopicByName(name)
		if !ok || len(t.Partitions) == 0 {
			continue
		}
		tid, np, nm := t.ID, len(t.Partitions), len(members)
		sharing := (nm + np - 1) / np
		slots := sharing * np
		desired := map[string]int{}
		cum := 0
		for i, id := range members {
			target := ((i+1)*slots + nm - 1) / nm
			desired[id] = target - cum
			cum = target
		}
		// Revoke from members over their share.
		for _, id := range members {
			m := g.members[id]
			if parts := m.assign[tid]; len(parts) > desired[id] {
				for _, p := range parts[desired[id]:] {
					delete(owners[pk{tid, p}], id)
				}
				m.assign[tid] = parts[:desired[id]]
			}
		}
		// Revoke partitions shared more than needed.
		for p := range int32(np) {
			o := owners[pk{tid, p}]
			for excess := len(o) - sharing; excess > 0; excess-- {
				var worst string
				for id := range o {
					if worst == "" || len(g.members[id].assign[tid]) > len(g.members[worst].assign[tid]) ||
						len(g.members[id].assign[tid]) == len(g.members[worst].assign[tid]) && id < worst {
						worst = id
					}
				}
				delete(o, worst)
				m := g.members[worst]
				m.assign[tid] = slices.DeleteFunc(m.assign[tid], func(v int32) bool { return v == p })
			}
		}
		// Fill members under their share, least-shared partitions first.
		for _, id := range members {
			m := g.members[id]
			for len(m.assign[tid]) < desired[id] {
				best, bestN := int32(-1), 0
				for p := range int32(np) {
					o := owners[pk{tid, p}]
					if o[id] {
						continue
					}
					if best < 0 || len(o) < bestN {
						best, bestN = p, len(o)
					}
				}
				if best < 0 {
					break
				}
				k := pk{tid, best}
				if owners[k] == nil {
					owners[k] = map[string]bool{}
				}
				owners[k][id] = true
				m.assign[tid] = append(m.assign[tid], best)
			}
		}
	}
	for _, m := range g.members {
		for tid, parts := range m.assign {
			if len(parts) == 0 {
				delete(m.assign, tid)
				continue
			}
			slices.Sort(parts)
		}
	}
}

// Describe answers ShareGroupDescribe.
func (c *Coordinator) Describe(req *kmsg.ShareGroupDescribeRequest) *kmsg.ShareGroupDescribeResponse {
	resp := req.ResponseKind().(*kmsg.ShareGroupDescribeResponse)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range req.GroupIDs {
		rg := kmsg.NewShareGroupDescribeResponseGroup()
		rg.GroupID = id
		g := c.liveGroup(id)
		if g == nil {
			rg.ErrorCode = kerr.GroupIDNotFound.Code
			msg := "Group " + id + " not found."
			if c.cfg.ClassicGroup(id) {
				msg = "Group " + id + " is not a share group."
			}
			rg.ErrorMessage = &msg
			resp.Groups = append(resp.Groups, rg)
			continue
		}
		rg.GroupState = groupState(g)
		rg.GroupEpoch, rg.AssignmentEpoch, rg.Assignor = g.epoch, g.epoch, "simple"
		ids := make([]string, 0, len(g.members))
		for mid := range g.members {
			ids = append(ids, mid)
		}
		sort.Strings(ids)
		for _, mid := range ids {
			m := g.members[mid]
			sm := kmsg.NewShareGroupDescribeResponseGroupMember()
			sm.MemberID, sm.RackID, sm.MemberEpoch = m.id, m.rack, m.epoch
			sm.ClientID, sm.ClientHost = m.clientID, m.host
			sm.SubscribedTopicNames = append([]string{}, m.topics...)
			for _, at := range assignmentOf(m).TopicPartitions {
				tp := kmsg.NewShareGroupDescribeResponseGroupMemberAssignmentTopicPartition()
				tp.TopicID, tp.Partitions = at.TopicID, at.Partitions
				if t, ok := c.cfg.Topics.TopicByID(at.TopicID); ok {
					tp.Topic = t.Name
				}
				sm.Assignment.TopicPartitions = append(sm.Assignment.TopicPartitions, tp)
			}
			rg.Members = append(rg.Members, sm)
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

func groupState(g *group) string {
	if len(g.members) == 0 {
		return "Empty"
	}
	return "Stable"
}
