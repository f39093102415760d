package wire

import (
	"github.com/oncelog/oncelog/acl"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// authorize reports whether the connection may perform op on (rt, name),
// as KafkaApis' authHelper.authorize does; a denial is counted and logged
// (rate-limited) against api. With --authorizer none everything is
// allowed.
func (c *conn) authorize(api int16, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool {
	a := c.s.b.ACL
	if a == nil {
		return true
	}
	p := c.Principal()
	if a.Authorize(p, c.clientHost, op, rt, name) {
		return true
	}
	c.denied(api, p, op, rt, name)
	return false
}

// authorizeQuiet is authorize for filtering (Metadata's topic list,
// ListGroups): what the principal may not see is left out, not counted
// as a denial (Kafka's logIfDenied = false).
func (c *conn) authorizeQuiet(op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool {
	a := c.s.b.ACL
	return a == nil || a.Authorize(c.Principal(), c.clientHost, op, rt, name)
}

// authorizeCluster authorizes op on the cluster resource.
func (c *conn) authorizeCluster(api int16, op kmsg.ACLOperation) bool {
	return c.authorize(api, op, kmsg.ACLResourceTypeCluster, acl.ClusterName)
}

// authorizedOps is the "authorized operations" bitfield of (rt, name) for
// this connection: every supported operation with no authorizer.
func (c *conn) authorizedOps(rt kmsg.ACLResourceType, name string) int32 {
	a := c.s.b.ACL
	if a == nil {
		return acl.AllOperations(rt)
	}
	return a.AuthorizedOperations(c.Principal(), c.clientHost, rt, name)
}

// aclEnabled reports whether an authorizer is configured.
func (c *conn) aclEnabled() bool { return c.s.b.ACL != nil }

func (c *conn) denied(api int16, principal string, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) {
	apiName := kmsg.NameForKey(api)
	c.s.b.Stats.AuthorizationDenied.Inc(principal, apiName)
	if ok, suppressed := c.s.warn.allow("authorization"); ok {
		c.s.logger.Warn("authorization denied", "principal", principal, "host", c.clientHost, "api", apiName,
			"operation", op.String(), "resource_type", rt.String(), "resource", name, "suppressed", suppressed)
	}
}

// Resource shorthands.
const (
	rtTopic   = kmsg.ACLResourceTypeTopic
	rtGroup   = kmsg.ACLResourceTypeGroup
	rtTxnID   = kmsg.ACLResourceTypeTransactionalId
	rtCluster = kmsg.ACLResourceTypeCluster

	opRead            = kmsg.ACLOperationRead
	opWrite           = kmsg.ACLOperationWrite
	opCreate          = kmsg.ACLOperationCreate
	opDelete          = kmsg.ACLOperationDelete
	opAlter           = kmsg.ACLOperationAlter
	opDescribe        = kmsg.ACLOperationDescribe
	opClusterAction   = kmsg.ACLOperationClusterAction
	opDescribeConfigs = kmsg.ACLOperationDescribeConfigs
	opAlterConfigs    = kmsg.ACLOperationAlterConfigs
	opIdempotentWrite = kmsg.ACLOperationIdempotentWrite
)

// mayCreateTopic is Kafka's rule for creating a topic (CreateTopics, and
// auto-creation by Metadata): CREATE on the cluster or on the topic.
func (c *conn) mayCreateTopic(name string) bool {
	return c.authorizeQuiet(opCreate, rtCluster, acl.ClusterName) || c.authorizeQuiet(opCreate, rtTopic, name)
}

// enforcesACLs lists the APIs whose handlers make KafkaApis' authorization
// checks (or, like ApiVersions and the SASL exchange, need none). With an
// authorizer configured, a request of any other API closes its
// connection: a new handler is refused until it checks ACLs and is added
// here.
var enforcesACLs = map[int16]bool{
	0: true, 1: true, 2: true, 3: true, 8: true, 9: true, 10: true, 11: true, 12: true, 13: true,
	14: true, 15: true, 16: true,
	17: true, // SaslHandshake: before authentication, as Kafka
	18: true, // ApiVersions: never authorized
	19: true, 20: true, 21: true, 22: true, 23: true, 24: true, 25: true, 26: true, 27: true, 28: true,
	29: true, 30: true, 31: true, 32: true, 33: true,
	36: true, // SaslAuthenticate
	37: true, 42: true, 44: true, 47: true,
	50: true, 51: true, // Describe/AlterUserScramCredentials: DESCRIBE/ALTER on the cluster
	57: true, 60: true, 61: true, 65: true, 66: true,
	68: true, 69: true, // ConsumerGroupHeartbeat, ConsumerGroupDescribe (KIP-848)
	75: true,
	76: true, 77: true, 78: true, 79: true, // share groups (KIP-932): wire/share_authz.go
	90: true, 91: true, 92: true, // share-group offsets
}

// splitAuthorized splits a request's items into those the principal may use
// and those it may not, in order. kept starts as items[:0:0], so a
// non-nil list whose items are all denied stays an empty, non-nil list.
func splitAuthorized[T any](items []T, allowed func(T) bool) (kept, denied []T) {
	kept = items[:0:0]
	for _, it := range items {
		if allowed(it) {
			kept = append(kept, it)
		} else {
			denied = append(denied, it)
		}
	}
	return kept, denied
}
