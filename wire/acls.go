package wire

import (
	"errors"

	"github.com/oncelog/oncelog/acl"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeAcls, CreateAcls and DeleteAcls v1-v3: the versions Kafka 4.x
// serves (KIP-896 removed v0). They need DESCRIBE (describe) or ALTER
// (create, delete) on the cluster; with --authorizer none they answer
// SECURITY_DISABLED, as a Kafka broker without an authorizer does.
func init() {
	register(29, 1, 3, handleDescribeACLs)
	register(30, 1, 3, handleCreateACLs)
	register(31, 1, 3, handleDeleteACLs)
}

const noAuthorizerMessage = "No Authorizer is configured."

// aclErrorCode maps an authorizer error to its Kafka code.
func aclErrorCode(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, acl.ErrInvalid):
		return kerr.InvalidRequest.Code
	case errors.Is(err, acl.ErrTooMany):
		return kerr.PolicyViolation.Code
	default:
		return kerr.KafkaStorageError.Code
	}
}

func handleDescribeACLs(c *conn, r *request) respond {
	req := r.kreq.(*kmsg.DescribeACLsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
	fail := func(code int16, msg string) respond {
		resp.ErrorCode, resp.ErrorMessage = code, &msg
		return ready(resp)
	}
	if !c.authorizeCluster(r.key, opDescribe) {
		return fail(kerr.ClusterAuthorizationFailed.Code, "")
	}
	a := c.s.b.ACL
	if a == nil {
		return fail(kerr.SecurityDisabled.Code, noAuthorizerMessage)
	}
	bs, err := a.Describe(acl.Filter{ResourceType: req.ResourceType, ResourceName: req.ResourceName, PatternType: req.ResourcePatternType,
		Principal: req.Principal, Host: req.Host, Operation: req.Operation, Permission: req.PermissionType})
	if err != nil {
		return fail(aclErrorCode(err), err.Error())
	}
	// Describe sorts by resource: one entry per resource pattern.
	for i, b := range bs {
		if i == 0 || b.ResourceType != bs[i-1].ResourceType || b.PatternType != bs[i-1].PatternType || b.ResourceName != bs[i-1].ResourceName {
			res := kmsg.NewDescribeACLsResponseResource()
			res.ResourceType, res.ResourceName, res.ResourcePatternType = b.ResourceType, b.ResourceName, b.PatternType
			resp.Resources = append(resp.Resources, res)
		}
		e := kmsg.NewDescribeACLsResponseResourceACL()
		e.Principal, e.Host, e.Operation, e.PermissionType = b.Principal, b.Host, b.Operation, b.Permission
		res := &resp.Resources[len(resp.Resources)-1]
		res.ACLs = append(res.ACLs, e)
	}
	return ready(resp)
}

func handleCreateACLs(c *conn, r *request) respond {
	req := r.kreq.(*kmsg.CreateACLsRequest)
	resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
	failAll := func(code int16, msg string) respond {
		for range req.Creations {
			res := kmsg.NewCreateACLsResponseResult()
			res.ErrorCode = code
			if msg != "" {
				res.ErrorMessage = &msg
			}
			resp.Results = append(resp.Results, res)
		}
		return ready(resp)
	}
	if !c.authorizeCluster(r.key, opAlter) {
		return failAll(kerr.ClusterAuthorizationFailed.Code, "")
	}
	a := c.s.b.ACL
	if a == nil {
		return failAll(kerr.SecurityDisabled.Code, noAuthorizerMessage)
	}
	bs := make([]acl.Binding, len(req.Creations))
	for i, cr := range req.Creations {
		bs[i] = acl.Binding{ResourceType: cr.ResourceType, ResourceName: cr.ResourceName, PatternType: cr.ResourcePatternType,
			Principal: cr.Principal, Host: cr.Host, Operation: cr.Operation, Permission: cr.PermissionType}
	}
	for i, err := range a.Create(bs) {
		res := kmsg.NewCreateACLsResponseResult()
		if err != nil {
			msg := err.Error()
			res.ErrorCode, res.ErrorMessage = aclErrorCode(err), &msg
		} else {
			c.s.logger.Info("ACL created", "by", c.Principal(), "acl", bs[i].String())
		}
		resp.Results = append(resp.Results, res)
	}
	return ready(resp)
}

func handleDeleteACLs(c *conn, r *request) respond {
	req := r.kreq.(*kmsg.DeleteACLsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
	failAll := func(code int16, msg string) respond {
		for range req.Filters {
			res := kmsg.NewDeleteACLsResponseResult()
			res.ErrorCode = code
			if msg != "" {
				res.ErrorMessage = &msg
			}
			resp.Results = append(resp.Results, res)
		}
		return ready(resp)
	}
	if !c.authorizeCluster(r.key, opAlter) {
		return failAll(kerr.ClusterAuthorizationFailed.Code, "")
	}
	a := c.s.b.ACL
	if a == nil {
		return failAll(kerr.SecurityDisabled.Code, noAuthorizerMessage)
	}
	fs := make([]acl.Filter, len(req.Filters))
	for i, f := range req.Filters {
		fs[i] = acl.Filter{ResourceType: f.ResourceType, ResourceName: f.ResourceName, PatternType: f.ResourcePatternType,
			Principal: f.Principal, Host: f.Host, Operation: f.Operation, Permission: f.PermissionType}
	}
	deleted, errs := a.Delete(fs)
	for i := range fs {
		res := kmsg.NewDeleteACLsResponseResult()
		if errs[i] != nil {
			msg := errs[i].Error()
			res.ErrorCode, res.ErrorMessage = aclErrorCode(errs[i]), &msg
		}
		for _, b := range deleted[i] {
			m := kmsg.NewDeleteACLsResponseResultMatchingACL()
			m.ResourceType, m.ResourceName, m.ResourcePatternType = b.ResourceType, b.ResourceName, b.PatternType
			m.Principal, m.Host, m.Operation, m.PermissionType = b.Principal, b.Host, b.Operation, b.Permission
			res.MatchingACLs = append(res.MatchingACLs, m)
			c.s.logger.Info("ACL deleted", "by", c.Principal(), "acl", b.String())
		}
		resp.Results = append(resp.Results, res)
	}
	return ready(resp)
}
