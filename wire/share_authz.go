package wire

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// KafkaApis' authorization of the share-group APIs (KIP-932). The group
// check fails the whole request (GROUP_AUTHORIZATION_FAILED); a topic the
// principal may not use is left out of what the coordinator sees and
// answered TOPIC_AUTHORIZATION_FAILED in its own entry, so one denied
// topic neither fails nor leaks the others.

// shareTopicAllowed reports whether op on the topic with this id is
// allowed. An id no topic has is left to the coordinator
// (UNKNOWN_TOPIC_ID), as Kafka resolves ids before authorizing names.
func (c *conn) shareTopicAllowed(api int16, op kmsg.ACLOperation, id [16]byte) bool {
	if !c.aclEnabled() {
		return true
	}
	t := c.s.b.TopicByID(id)
	if t == nil {
		return true
	}
	return c.authorize(api, op, rtTopic, t.Name)
}

func strOrEmpty(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// authorizeShareHeartbeat: READ on the group, DESCRIBE on every
// subscribed topic (TOPIC_AUTHORIZATION_FAILED if any is denied).
func authorizeShareHeartbeat(c *conn, api int16, req *kmsg.ShareGroupHeartbeatRequest) *kmsg.ShareGroupHeartbeatResponse {
	code := int16(0)
	if !c.authorize(api, opRead, rtGroup, req.GroupID) {
		code = kerr.GroupAuthorizationFailed.Code
	} else {
		for _, t := range req.SubscribedTopicNames {
			if !c.authorize(api, opDescribe, rtTopic, t) {
				code = kerr.TopicAuthorizationFailed.Code
				break
			}
		}
	}
	if code == 0 {
		return nil
	}
	resp := req.ResponseKind().(*kmsg.ShareGroupHeartbeatResponse)
	resp.ErrorCode = code
	return resp
}

// shareFetchAuthorized answers ShareFetch with READ on the group and READ
// on each topic it fetches or acknowledges; forgotten topics need none.
func shareFetchAuthorized(c *conn, api int16, req *kmsg.ShareFetchRequest, serve func(*kmsg.ShareFetchRequest) *kmsg.ShareFetchResponse) *kmsg.ShareFetchResponse {
	if !c.authorize(api, opRead, rtGroup, strOrEmpty(req.GroupID)) {
		resp := req.ResponseKind().(*kmsg.ShareFetchResponse)
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp
	}
	allowed, denied := splitAuthorized(req.Topics, func(t kmsg.ShareFetchRequestTopic) bool { return c.shareTopicAllowed(api, opRead, t.TopicID) })
	if len(denied) == 0 {
		return serve(req)
	}
	sub := *req
	sub.Topics = allowed
	resp := serve(&sub)
	for _, t := range denied {
		rt := kmsg.NewShareFetchResponseTopic()
		rt.TopicID = t.TopicID
		for _, p := range t.Partitions {
			rp := kmsg.NewShareFetchResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, kerr.TopicAuthorizationFailed.Code
			if len(p.AcknowledgementBatches) > 0 {
				rp.AcknowledgeErrorCode = kerr.TopicAuthorizationFailed.Code
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// shareAcknowledgeAuthorized: READ on the group and on each topic.
func shareAcknowledgeAuthorized(c *conn, api int16, req *kmsg.ShareAcknowledgeRequest, serve func(*kmsg.ShareAcknowledgeRequest) *kmsg.ShareAcknowledgeResponse) *kmsg.ShareAcknowledgeResponse {
	if !c.authorize(api, opRead, rtGroup, strOrEmpty(req.GroupID)) {
		resp := req.ResponseKind().(*kmsg.ShareAcknowledgeResponse)
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp
	}
	allowed, denied := splitAuthorized(req.Topics, func(t kmsg.ShareAcknowledgeRequestTopic) bool { return c.shareTopicAllowed(api, opRead, t.TopicID) })
	if len(denied) == 0 {
		return serve(req)
	}
	sub := *req
	sub.Topics = allowed
	resp := serve(&sub)
	for _, t := range denied {
		rt := kmsg.NewShareAcknowledgeResponseTopic()
		rt.TopicID = t.TopicID
		for _, p := range t.Partitions {
			rp := kmsg.NewShareAcknowledgeResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, kerr.TopicAuthorizationFailed.Code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// shareDescribeAuthorized: DESCRIBE on each group; a denied group is
// answered GROUP_AUTHORIZATION_FAILED in its own entry.
func shareDescribeAuthorized(c *conn, api int16, req *kmsg.ShareGroupDescribeRequest, serve func(*kmsg.ShareGroupDescribeRequest) *kmsg.ShareGroupDescribeResponse) *kmsg.ShareGroupDescribeResponse {
	allowed, denied := splitAuthorized(req.GroupIDs, func(g string) bool { return c.authorize(api, opDescribe, rtGroup, g) })
	sub := *req
	sub.GroupIDs = allowed
	resp := serve(&sub)
	for _, g := range denied {
		dg := kmsg.NewShareGroupDescribeResponseGroup()
		dg.GroupID, dg.ErrorCode = g, kerr.GroupAuthorizationFailed.Code
		resp.Groups = append(resp.Groups, dg)
	}
	if c.aclEnabled() && req.IncludeAuthorizedOperations {
		for i := range resp.Groups {
			if g := &resp.Groups[i]; g.ErrorCode == 0 {
				g.AuthorizedOperations = c.authorizedOps(rtGroup, g.GroupID)
			}
		}
	}
	return resp
}

// shareDescribeOffsetsAuthorized: DESCRIBE on each group, DESCRIBE on each
// topic named (TOPIC_AUTHORIZATION_FAILED per partition); asked for all
// of a group's topics, the undescribable ones are left out.
func shareDescribeOffsetsAuthorized(c *conn, api int16, req *kmsg.DescribeShareGroupOffsetsRequest, serve func(*kmsg.DescribeShareGroupOffsetsRequest) *kmsg.DescribeShareGroupOffsetsResponse) *kmsg.DescribeShareGroupOffsetsResponse {
	if !c.aclEnabled() {
		return serve(req)
	}
	resp := req.ResponseKind().(*kmsg.DescribeShareGroupOffsetsResponse)
	for _, rg := range req.Groups {
		if !c.authorize(api, opDescribe, rtGroup, rg.GroupID) {
			og := kmsg.NewDescribeShareGroupOffsetsResponseGroup()
			og.GroupID, og.ErrorCode = rg.GroupID, kerr.GroupAuthorizationFailed.Code
			resp.Groups = append(resp.Groups, og)
			continue
		}
		var denied []kmsg.DescribeShareGroupOffsetsRequestGroupTopic
		one := *req
		g := rg
		if rg.Topics != nil {
			g.Topics, denied = splitAuthorized(rg.Topics, func(t kmsg.DescribeShareGroupOffsetsRequestGroupTopic) bool {
				return c.authorize(api, opDescribe, rtTopic, t.Topic)
			})
		}
		one.Groups = []kmsg.DescribeShareGroupOffsetsRequestGroup{g}
		got := serve(&one).Groups
		for i := range got {
			og := &got[i]
			if rg.Topics == nil {
				kept := og.Topics[:0]
				for _, t := range og.Topics {
					if c.authorizeQuiet(opDescribe, rtTopic, t.Topic) {
						kept = append(kept, t)
					}
				}
				og.Topics = kept
			}
			for _, t := range denied {
				ot := kmsg.NewDescribeShareGroupOffsetsResponseGroupTopic()
				ot.Topic = t.Topic
				for _, p := range t.Partitions {
					op := kmsg.NewDescribeShareGroupOffsetsResponseGroupTopicPartition()
					op.Partition, op.ErrorCode = p, kerr.TopicAuthorizationFailed.Code
					op.StartOffset, op.LeaderEpoch, op.Lag = -1, -1, -1
					ot.Partitions = append(ot.Partitions, op)
				}
				og.Topics = append(og.Topics, ot)
			}
		}
		resp.Groups = append(resp.Groups, got...)
	}
	return resp
}

// shareAlterOffsetsAuthorized: READ on the group (top level), READ on
// each topic (TOPIC_AUTHORIZATION_FAILED per partition).
func shareAlterOffsetsAuthorized(c *conn, api int16, req *kmsg.AlterShareGroupOffsetsRequest, serve func(*kmsg.AlterShareGroupOffsetsRequest) *kmsg.AlterShareGroupOffsetsResponse) *kmsg.AlterShareGroupOffsetsResponse {
	if !c.authorize(api, opRead, rtGroup, req.GroupID) {
		resp := req.ResponseKind().(*kmsg.AlterShareGroupOffsetsResponse)
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp
	}
	allowed, denied := splitAuthorized(req.Topics, func(t kmsg.AlterShareGroupOffsetsRequestTopic) bool {
		return c.authorize(api, opRead, rtTopic, t.Topic)
	})
	if len(denied) == 0 {
		return serve(req)
	}
	sub := *req
	sub.Topics = allowed
	resp := serve(&sub)
	for _, t := range denied {
		rt := kmsg.NewAlterShareGroupOffsetsResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewAlterShareGroupOffsetsResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, kerr.TopicAuthorizationFailed.Code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// shareDeleteOffsetsAuthorized: DELETE on the group (top level), READ on
// each topic (TOPIC_AUTHORIZATION_FAILED per topic).
func shareDeleteOffsetsAuthorized(c *conn, api int16, req *kmsg.DeleteShareGroupOffsetsRequest, serve func(*kmsg.DeleteShareGroupOffsetsRequest) *kmsg.DeleteShareGroupOffsetsResponse) *kmsg.DeleteShareGroupOffsetsResponse {
	if !c.authorize(api, opDelete, rtGroup, req.GroupID) {
		resp := req.ResponseKind().(*kmsg.DeleteShareGroupOffsetsResponse)
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp
	}
	allowed, denied := splitAuthorized(req.Topics, func(t kmsg.DeleteShareGroupOffsetsRequestTopic) bool {
		return c.authorize(api, opRead, rtTopic, t.Topic)
	})
	if len(denied) == 0 {
		return serve(req)
	}
	sub := *req
	sub.Topics = allowed
	resp := serve(&sub)
	for _, t := range denied {
		rt := kmsg.NewDeleteShareGroupOffsetsResponseTopic()
		rt.Topic, rt.ErrorCode = t.Topic, kerr.TopicAuthorizationFailed.Code
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}
