package wire

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The group APIs' authorization, as KafkaApis: READ on the group to join,
// sync, heartbeat, leave and commit (and READ on each committed topic),
// DESCRIBE on the group (and on each topic) to fetch offsets or describe,
// DELETE on the group to delete it or its offsets.

func authorizedOffsetCommit(c *conn, r *request, ctx context.Context, req *kmsg.OffsetCommitRequest) kmsg.Response {
	if !c.authorize(r.key, opRead, rtGroup, req.Group) {
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, t := range req.Topics {
			resp.Topics = append(resp.Topics, offsetCommitErrorTopic(t, kerr.GroupAuthorizationFailed.Code))
		}
		return resp
	}
	requested := req.Topics
	// v10 names topics by id; Kafka resolves them from its metadata
	// before authorizing by name, and answers an id it does not know
	// (the zero id too) UNKNOWN_TOPIC_ID.
	var unknownIDs []kmsg.OffsetCommitResponseTopic
	if req.Version >= 10 {
		named := make([]kmsg.OffsetCommitRequestTopic, 0, len(req.Topics))
		for _, t := range req.Topics {
			if name, ok := topicNameByID(c.s.b, t.TopicID); ok {
				t.Topic = name
				named = append(named, t)
			} else {
				unknownIDs = append(unknownIDs, offsetCommitErrorTopic(t, kerr.UnknownTopicID.Code))
			}
		}
		req.Topics = named
	}
	var denied []kmsg.OffsetCommitResponseTopic
	allowed := req.Topics[:0:0]
	for _, t := range req.Topics {
		if c.authorize(r.key, opRead, rtTopic, t.Topic) {
			allowed = append(allowed, t)
		} else {
			denied = append(denied, offsetCommitErrorTopic(t, kerr.TopicAuthorizationFailed.Code))
		}
	}
	req.Topics = allowed
	resp := offsetCommit(c.s.b, ctx, req)
	if r, ok := resp.(*kmsg.OffsetCommitResponse); ok {
		r.Topics = append(r.Topics, denied...)
		if req.Version >= 10 {
			r.Topics = append(r.Topics, unknownIDs...)
			for i := range r.Topics {
				if t := &r.Topics[i]; t.TopicID == ([16]byte{}) {
					t.TopicID = topicIDByName(c.s.b, t.Topic)
				}
			}
			inRequestOrder(r.Topics, requested, func(t kmsg.OffsetCommitResponseTopic) [16]byte { return t.TopicID },
				func(t kmsg.OffsetCommitRequestTopic) [16]byte { return t.TopicID })
		}
	}
	return resp
}

func offsetCommitErrorTopic(t kmsg.OffsetCommitRequestTopic, code int16) kmsg.OffsetCommitResponseTopic {
	rt := kmsg.NewOffsetCommitResponseTopic()
	rt.Topic, rt.TopicID = t.Topic, t.TopicID
	for _, p := range t.Partitions {
		rp := kmsg.NewOffsetCommitResponseTopicPartition()
		rp.Partition, rp.ErrorCode = p.Partition, code
		rt.Partitions = append(rt.Partitions, rp)
	}
	return rt
}

func authorizedOffsetFetch(c *conn, r *request, ctx context.Context, req *kmsg.OffsetFetchRequest) kmsg.Response {
	b := c.s.b
	if req.Version <= 7 {
		if !c.authorize(r.key, opDescribe, rtGroup, req.Group) {
			// Kafka's getErrorResponse: every requested partition, and
			// from v2 the top level, carry the error.
			resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
			if req.Version >= 2 {
				resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
			}
			for _, t := range req.Topics {
				rt := kmsg.NewOffsetFetchResponseTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewOffsetFetchResponseTopicPartition()
					rp.Partition, rp.Offset, rp.Metadata, rp.ErrorCode = p, -1, new(string), kerr.GroupAuthorizationFailed.Code
					rt.Partitions = append(rt.Partitions, rp)
				}
				resp.Topics = append(resp.Topics, rt)
			}
			return resp
		}
		resp := b.Groups.OffsetFetch(ctx, req)
		all := req.Version >= 2 && req.Topics == nil
		kept := resp.Topics[:0]
		for _, t := range resp.Topics {
			if c.authorizeQuiet(opDescribe, rtTopic, t.Topic) {
				kept = append(kept, t)
				continue
			}
			if all {
				continue // a full fetch leaves out what the principal may not see
			}
			c.denied(r.key, c.Principal(), opDescribe, rtTopic, t.Topic)
			for i := range t.Partitions {
				p := &t.Partitions[i]
				p.Offset, p.LeaderEpoch, p.Metadata, p.ErrorCode = -1, -1, new(string), kerr.TopicAuthorizationFailed.Code
			}
			kept = append(kept, t)
		}
		resp.Topics = kept
		return resp
	}
	allowedGroups := req.Groups[:0:0]
	deniedGroups := map[string]bool{}
	for _, g := range req.Groups {
		if c.authorize(r.key, opDescribe, rtGroup, g.Group) {
			allowedGroups = append(allowedGroups, g)
		} else {
			deniedGroups[g.Group] = true
		}
	}
	all := map[string]bool{}
	for _, g := range allowedGroups {
		all[g.Group] = g.Topics == nil
	}
	// v10 names topics by id: resolved to names here (an id no topic has
	// is answered UNKNOWN_TOPIC_ID), back to ids below.
	unknownIDs := map[string][]kmsg.OffsetFetchResponseGroupTopic{}
	if req.Version >= 10 {
		resolved := make([]kmsg.OffsetFetchRequestGroup, len(allowedGroups))
		for gi, g := range allowedGroups {
			if g.Topics != nil {
				named := make([]kmsg.OffsetFetchRequestGroupTopic, 0, len(g.Topics))
				for _, t := range g.Topics {
					if name, ok := topicNameByID(b, t.TopicID); ok {
						t.Topic = name
						named = append(named, t)
						continue
					}
					rt := kmsg.NewOffsetFetchResponseGroupTopic()
					rt.TopicID = t.TopicID
					for _, p := range t.Partitions {
						rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
						rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata, rp.ErrorCode = p, -1, -1, new(string), kerr.UnknownTopicID.Code
						rt.Partitions = append(rt.Partitions, rp)
					}
					unknownIDs[g.Group] = append(unknownIDs[g.Group], rt)
				}
				g.Topics = named
			}
			resolved[gi] = g
		}
		allowedGroups = resolved
	}
	sub := *req
	sub.Groups = allowedGroups
	resp := b.Groups.OffsetFetch(ctx, &sub)
	for gi := range resp.Groups {
		g := &resp.Groups[gi]
		kept := g.Topics[:0]
		for _, t := range g.Topics {
			if c.authorizeQuiet(opDescribe, rtTopic, t.Topic) {
				kept = append(kept, t)
				continue
			}
			if all[g.Group] {
				continue
			}
			c.denied(r.key, c.Principal(), opDescribe, rtTopic, t.Topic)
			for i := range t.Partitions {
				p := &t.Partitions[i]
				p.Offset, p.LeaderEpoch, p.Metadata, p.ErrorCode = -1, -1, new(string), kerr.TopicAuthorizationFailed.Code
			}
			kept = append(kept, t)
		}
		g.Topics = kept
		switch {
		case req.Version >= 10 && g.ErrorCode != 0:
			// Measured: Kafka 4.4 answers a group-level error (a stale
			// member epoch, an unknown member) with no topics, the
			// unknown ids' included (e2e TestTopicIDGroupAPIsMatchKafka).
			g.Topics = nil
		case req.Version >= 10:
			g.Topics = offsetFetchTopicIDs(c, g, all[g.Group], unknownIDs[g.Group], requestedTopics(req, g.Group))
		}
	}
	// Answered in request order, as Kafka's.
	out := make([]kmsg.OffsetFetchResponseGroup, 0, len(req.Groups))
	next := 0
	for _, g := range req.Groups {
		if deniedGroups[g.Group] {
			rg := kmsg.NewOffsetFetchResponseGroup()
			rg.Group, rg.ErrorCode = g.Group, kerr.GroupAuthorizationFailed.Code
			out = append(out, rg)
			continue
		}
		if next < len(resp.Groups) {
			out = append(out, resp.Groups[next])
			next++
		}
	}
	resp.Groups = out
	return resp
}

// offsetFetchTopicIDs gives a v10 group answer its topic ids, in the
// order the request named them. A full fetch leaves out offsets of topics
// that no longer exist, which a v10 answer could not name.
func offsetFetchTopicIDs(c *conn, g *kmsg.OffsetFetchResponseGroup, all bool, unknownIDs []kmsg.OffsetFetchResponseGroupTopic, requested []kmsg.OffsetFetchRequestGroupTopic) []kmsg.OffsetFetchResponseGroupTopic {
	out := g.Topics[:0]
	for _, t := range g.Topics {
		if t.TopicID == ([16]byte{}) {
			t.TopicID = topicIDByName(c.s.b, t.Topic)
		}
		if all && t.TopicID == ([16]byte{}) {
			continue
		}
		out = append(out, t)
	}
	out = append(out, unknownIDs...)
	inRequestOrder(out, requested, func(t kmsg.OffsetFetchResponseGroupTopic) [16]byte { return t.TopicID },
		func(t kmsg.OffsetFetchRequestGroupTopic) [16]byte { return t.TopicID })
	return out
}

// requestedTopics are the topics a multi-group OffsetFetch names for a group.
func requestedTopics(req *kmsg.OffsetFetchRequest, group string) []kmsg.OffsetFetchRequestGroupTopic {
	for _, g := range req.Groups {
		if g.Group == group {
			return g.Topics
		}
	}
	return nil
}

func authorizedDescribeGroups(c *conn, r *request, ctx context.Context, req *kmsg.DescribeGroupsRequest) kmsg.Response {
	allowed := req.Groups[:0:0]
	denied := map[string]bool{}
	for _, g := range req.Groups {
		if c.authorize(r.key, opDescribe, rtGroup, g) {
			allowed = append(allowed, g)
		} else {
			denied[g] = true
		}
	}
	sub := *req
	sub.Groups = allowed
	resp := describeGroupsShare(c.s.b, c.s.b.Groups.DescribeGroups(ctx, &sub))
	out := make([]kmsg.DescribeGroupsResponseGroup, 0, len(req.Groups))
	next := 0
	for _, g := range req.Groups {
		if denied[g] {
			dg := kmsg.NewDescribeGroupsResponseGroup()
			dg.Group, dg.ErrorCode = g, kerr.GroupAuthorizationFailed.Code
			out = append(out, dg)
			continue
		}
		if next < len(resp.Groups) {
			dg := resp.Groups[next]
			next++
			if req.Version >= 3 && req.IncludeAuthorizedOperations && dg.ErrorCode == 0 {
				dg.AuthorizedOperations = c.authorizedOps(rtGroup, dg.Group)
			}
			out = append(out, dg)
		}
	}
	resp.Groups = out
	return resp
}

func authorizedDeleteGroups(c *conn, r *request, ctx context.Context, req *kmsg.DeleteGroupsRequest) kmsg.Response {
	allowed := req.Groups[:0:0]
	var denied []kmsg.DeleteGroupsResponseGroup
	// Kafka answers each group once, however often the request names it
	// (its answer is keyed by group id).
	seen := make(map[string]bool, len(req.Groups))
	for _, g := range req.Groups {
		if seen[g] {
			continue
		}
		seen[g] = true
		if c.authorize(r.key, opDelete, rtGroup, g) {
			allowed = append(allowed, g)
			continue
		}
		dg := kmsg.NewDeleteGroupsResponseGroup()
		dg.Group, dg.ErrorCode = g, kerr.GroupAuthorizationFailed.Code
		denied = append(denied, dg)
	}
	sub := *req
	sub.Groups = allowed
	resp := deleteGroupsShare(c.s.b, ctx, &sub)
	if r, ok := resp.(*kmsg.DeleteGroupsResponse); ok {
		r.Groups = append(r.Groups, denied...)
	}
	return resp
}

func authorizedOffsetDelete(c *conn, r *request, ctx context.Context, req *kmsg.OffsetDeleteRequest) kmsg.Response {
	if !c.authorize(r.key, opDelete, rtGroup, req.Group) {
		resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp
	}
	var denied []kmsg.OffsetDeleteResponseTopic
	allowed := req.Topics[:0:0]
	for _, t := range req.Topics {
		if c.authorize(r.key, opRead, rtTopic, t.Topic) {
			allowed = append(allowed, t)
			continue
		}
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, kerr.TopicAuthorizationFailed.Code
			rt.Partitions = append(rt.Partitions, rp)
		}
		denied = append(denied, rt)
	}
	req.Topics = allowed
	resp := offsetDelete(c.s.b, ctx, req)
	if resp.ErrorCode == 0 {
		resp.Topics = append(resp.Topics, denied...)
	}
	return resp
}
