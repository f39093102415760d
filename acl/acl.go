// Package acl is oncelog's authorizer: Kafka's ACL bindings (resource
// pattern + principal, host, operation, permission), their filters, and the
// StandardAuthorizer's decision rules (deny wins, implied operations, the
// User:* and "*" wildcards, literal and prefixed patterns, super users,
// allow.everyone.if.no.acl.found). It uses kmsg's enums so the numbers on
// the wire are the numbers stored and matched.
package acl

import (
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// ClusterName is the name of the one cluster resource (Kafka's
// CLUSTER_NAME).
const ClusterName = "kafka-cluster"

// Wildcards with Kafka's spelling: a literal resource named "*" matches
// every resource of its type, "User:*" every principal, host "*" every
// client address.
const (
	WildcardResource  = "*"
	WildcardPrincipal = "User:*"
	WildcardHost      = "*"
)

// Anonymous is the principal of an unauthenticated connection.
const Anonymous = "User:ANONYMOUS"

// Binding is one ACL: Kafka's AclBinding flattened.
type Binding struct {
	ResourceType kmsg.ACLResourceType        `json:"rt"`
	ResourceName string                      `json:"name"`
	PatternType  kmsg.ACLResourcePatternType `json:"pattern"`
	Principal    string                      `json:"principal"`
	Host         string                      `json:"host"`
	Operation    kmsg.ACLOperation           `json:"op"`
	Permission   kmsg.ACLPermissionType      `json:"perm"`
}

func (b Binding) String() string {
	return fmt.Sprintf("(principal=%s, host=%s, operation=%s, permission=%s) on %s:%s:%s",
		b.Principal, b.Host, b.Operation, b.Permission, b.ResourceType, b.PatternType, b.ResourceName)
}

// ErrInvalid marks a binding or filter Kafka answers with INVALID_REQUEST.
var ErrInvalid = errors.New("invalid ACL")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Validate applies the checks Kafka makes before storing an ACL (AclApis
// and AclControlManager.validateNewAcl). Delegation-token and user
// resources are refused: oncelog has no delegation tokens, so such ACLs
// could never grant anything.
func (b Binding) Validate() error {
	switch b.ResourceType {
	case kmsg.ACLResourceTypeTopic, kmsg.ACLResourceTypeGroup, kmsg.ACLResourceTypeCluster, kmsg.ACLResourceTypeTransactionalId:
	case kmsg.ACLResourceTypeDelegationToken, kmsg.ACLResourceTypeUser:
		return invalid("resource type %s is not supported: oncelog has no delegation tokens", b.ResourceType)
	default:
		return invalid("Invalid resourceType %s", b.ResourceType)
	}
	switch b.PatternType {
	case kmsg.ACLResourcePatternTypeLiteral, kmsg.ACLResourcePatternTypePrefixed:
	default:
		return invalid("Invalid patternType %s", b.PatternType)
	}
	switch b.Operation {
	case kmsg.ACLOperationUnknown, kmsg.ACLOperationAny:
		return invalid("Invalid operation %s", b.Operation)
	}
	if b.Operation < kmsg.ACLOperationAll || b.Operation > OperationTwoPhaseCommit {
		return invalid("Invalid operation %d", int8(b.Operation))
	}
	switch b.Permission {
	case kmsg.ACLPermissionTypeAllow, kmsg.ACLPermissionTypeDeny:
	default:
		return invalid("Invalid permissionType %s", b.Permission)
	}
	if b.ResourceName == "" {
		return invalid("Invalid empty resource name")
	}
	if b.ResourceType == kmsg.ACLResourceTypeCluster && b.ResourceName != ClusterName {
		return invalid("The only valid name for the CLUSTER resource is %s", ClusterName)
	}
	if !strings.Contains(b.Principal, ":") {
		return invalid("Could not parse principal from `%s` (no colon is present separating the principal type from the principal name)", b.Principal)
	}
	if b.Host == "" {
		return invalid("Invalid empty host")
	}
	return nil
}

// Filter selects bindings, as Kafka's AclBindingFilter: nil strings and the
// ANY enums match everything; pattern type MATCH selects the literal and
// prefixed bindings that would apply to the named resource.
type Filter struct {
	ResourceType kmsg.ACLResourceType
	ResourceName *string
	PatternType  kmsg.ACLResourcePatternType
	Principal    *string
	Host         *string
	Operation    kmsg.ACLOperation
	Permission   kmsg.ACLPermissionType
}

// AnyFilter matches every binding.
var AnyFilter = Filter{
	ResourceType: kmsg.ACLResourceTypeAny,
	PatternType:  kmsg.ACLResourcePatternTypeAny,
	Operation:    kmsg.ACLOperationAny,
	Permission:   kmsg.ACLPermissionTypeAny,
}

// Validate refuses what Kafka refuses in a describe or delete filter: an
// UNKNOWN (or out-of-range) element.
func (f Filter) Validate() error {
	if f.ResourceType <= kmsg.ACLResourceTypeUnknown || f.ResourceType > kmsg.ACLResourceTypeUser {
		return invalid("Unknown resourceType %s", f.ResourceType)
	}
	if f.PatternType <= kmsg.ACLResourcePatternTypeUnknown || f.PatternType > kmsg.ACLResourcePatternTypePrefixed {
		return invalid("Unknown patternType %s", f.PatternType)
	}
	if f.Operation <= kmsg.ACLOperationUnknown || f.Operation > OperationTwoPhaseCommit {
		return invalid("Unknown operation %s", f.Operation)
	}
	if f.Permission <= kmsg.ACLPermissionTypeUnknown || f.Permission > kmsg.ACLPermissionTypeAllow {
		return invalid("Unknown permissionType %s", f.Permission)
	}
	return nil
}

// Matches is Kafka's AclBindingFilter.matches: the resource part by
// ResourcePatternFilter.matches, the entry part by exact equality.
func (f Filter) Matches(b Binding) bool {
	if f.ResourceType != kmsg.ACLResourceTypeAny && f.ResourceType != b.ResourceType {
		return false
	}
	if f.PatternType != kmsg.ACLResourcePatternTypeAny && f.PatternType != kmsg.ACLResourcePatternTypeMatch && f.PatternType != b.PatternType {
		return false
	}
	if f.ResourceName != nil {
		name := *f.ResourceName
		if f.PatternType == kmsg.ACLResourcePatternTypeMatch {
			switch b.PatternType {
			case kmsg.ACLResourcePatternTypeLiteral:
				if b.ResourceName != name && b.ResourceName != WildcardResource {
					return false
				}
			case kmsg.ACLResourcePatternTypePrefixed:
				if !strings.HasPrefix(name, b.ResourceName) {
					return false
				}
			default:
				return false
			}
		} else if name != b.ResourceName {
			return false
		}
	}
	if f.Principal != nil && *f.Principal != b.Principal {
		return false
	}
	if f.Host != nil && *f.Host != b.Host {
		return false
	}
	if f.Operation != kmsg.ACLOperationAny && f.Operation != b.Operation {
		return false
	}
	if f.Permission != kmsg.ACLPermissionTypeAny && f.Permission != b.Permission {
		return false
	}
	return true
}

// Operations each resource type supports (Kafka's AclEntry.supportedOperations),
// in the order of their numbers: the bits of the "authorized operations"
// fields of Metadata, DescribeGroups, DescribeCluster and
// DescribeTopicPartitions.
var supportedOps = map[kmsg.ACLResourceType][]kmsg.ACLOperation{
	kmsg.ACLResourceTypeTopic: {kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationCreate,
		kmsg.ACLOperationDelete, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribe,
		kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationAlterConfigs},
	kmsg.ACLResourceTypeGroup: {kmsg.ACLOperationRead, kmsg.ACLOperationDelete, kmsg.ACLOperationDescribe,
		kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationAlterConfigs},
	kmsg.ACLResourceTypeCluster: {kmsg.ACLOperationCreate, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribe,
		kmsg.ACLOperationClusterAction, kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationAlterConfigs,
		kmsg.ACLOperationIdempotentWrite},
	kmsg.ACLResourceTypeTransactionalId: {kmsg.ACLOperationWrite, kmsg.ACLOperationDescribe, OperationTwoPhaseCommit},
}

// OperationTwoPhaseCommit is Kafka's AclOperation TWO_PHASE_COMMIT (KIP-939,
// code 15; kmsg v1.15.1 stops at DESCRIBE_TOKENS). Kafka 4.4 supports it on
// the TransactionalId resource only, and accepts bindings of it in CreateAcls
// whether or not transaction.two.phase.commit.enable is on. oncelog stores
// and lists such bindings like any other; it grants nothing yet, as oncelog
// serves InitProducerId up to v5 only, as Kafka 4.4 does by default (v6, the
// 2PC version, is unstable there).
const OperationTwoPhaseCommit kmsg.ACLOperation = 15

// AllOperations is the authorized-operations bitfield of every operation a
// resource type supports: the answer when no authorizer is configured.
func AllOperations(rt kmsg.ACLResourceType) int32 {
	var bits int32
	for _, op := range supportedOps[rt] {
		bits |= 1 << uint(op)
	}
	return bits
}

// implies reports whether an ALLOW binding for have grants want (Kafka's
// StandardAuthorizerData.findResult): READ, WRITE, DELETE and ALTER imply
// DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS. DENY bindings deny only
// their own operation (or ALL).
func implies(have, want kmsg.ACLOperation) bool {
	if have == kmsg.ACLOperationAll || have == want {
		return true
	}
	switch want {
	case kmsg.ACLOperationDescribe:
		switch have {
		case kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationDelete, kmsg.ACLOperationAlter:
			return true
		}
	case kmsg.ACLOperationDescribeConfigs:
		return have == kmsg.ACLOperationAlterConfigs
	}
	return false
}
