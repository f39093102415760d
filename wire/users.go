package wire

import (
	"fmt"

	"github.com/oncelog/oncelog/auth"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(50, 0, 0, handleDescribeUserScramCredentials)
	register(51, 0, 0, handleAlterUserScramCredentials)
}

// Kafka's ScramMechanism type ids, as DescribeUserScramCredentials and
// AlterUserScramCredentials carry them.
func mechanismName(id int8) (string, bool) {
	switch id {
	case 1:
		return auth.MechanismSCRAM256, true
	case 2:
		return auth.MechanismSCRAM512, true
	}
	return "", false
}

func mechanismID(name string) int8 {
	switch name {
	case auth.MechanismSCRAM256:
		return 1
	case auth.MechanismSCRAM512:
		return 2
	}
	return 0
}

// handleDescribeUserScramCredentials: the users asked for (null: all) with
// their mechanisms and iteration counts, never salts or keys; the errors
// and messages are Kafka's.
func handleDescribeUserScramCredentials(c *conn, r *request) respond {
	req := r.kreq.(*kmsg.DescribeUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeUserSCRAMCredentialsResponse)
	if !c.authorizeCluster(r.key, opDescribe) { // Kafka: DESCRIBE on the cluster
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return ready(resp)
	}
	all, err := c.s.b.Users.List()
	if err != nil {
		resp.ErrorCode = kerr.UnknownServerError.Code
		msg := "cannot read the credential store"
		resp.ErrorMessage = &msg
		c.s.logger.Error("DescribeUserScramCredentials: reading the credential store failed", "err", err)
		return ready(resp)
	}
	byUser := map[string][]kmsg.DescribeUserSCRAMCredentialsResponseResultCredentialInfo{}
	var order []string
	for _, u := range all {
		if _, ok := byUser[u.User]; !ok {
			order = append(order, u.User)
		}
		ci := kmsg.NewDescribeUserSCRAMCredentialsResponseResultCredentialInfo()
		ci.Mechanism, ci.Iterations = mechanismID(u.Mechanism), int32(u.Iterations)
		byUser[u.User] = append(byUser[u.User], ci)
	}
	result := func(user string, code int16, msg string) {
		sr := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
		sr.User, sr.ErrorCode = user, code
		if msg != "" {
			sr.ErrorMessage = &msg
		}
		if code == 0 {
			sr.CredentialInfos = byUser[user]
		}
		resp.Results = append(resp.Results, sr)
	}
	if req.Users == nil {
		for _, u := range order {
			result(u, 0, "")
		}
		return ready(resp)
	}
	count := map[string]int{}
	for _, u := range req.Users {
		count[u.Name]++
	}
	answered := map[string]bool{}
	for _, u := range req.Users {
		if answered[u.Name] {
			continue
		}
		answered[u.Name] = true
		switch {
		case count[u.Name] > 1:
			result(u.Name, kerr.DuplicateResource.Code, "Cannot describe SCRAM credentials for the same user twice in a single request: "+u.Name)
		case len(byUser[u.Name]) == 0:
			result(u.Name, kerr.ResourceNotFound.Code, "Attempt to describe a user credential that does not exist: "+u.Name)
		default:
			result(u.Name, 0, "")
		}
	}
	return ready(resp)
}

// handleAlterUserScramCredentials applies deletions and upsertions. The
// client sends the salted password, so the password itself never reaches
// the broker. A user named twice in one request is refused whole, as in
// Kafka; everything else is validated and applied per user.
func handleAlterUserScramCredentials(c *conn, r *request) respond {
	req := r.kreq.(*kmsg.AlterUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)
	users := c.s.b.Users
	count := map[string]int{}
	for _, d := range req.Deletions {
		count[d.Name]++
	}
	for _, u := range req.Upsertions {
		count[u.Name]++
	}
	answered := map[string]bool{}
	result := func(user string, code int16, msg string) {
		if answered[user] {
			return
		}
		answered[user] = true
		sr := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
		sr.User, sr.ErrorCode = user, code
		if msg != "" {
			sr.ErrorMessage = &msg
		}
		resp.Results = append(resp.Results, sr)
	}
	if !c.authorizeCluster(r.key, opAlter) { // Kafka: ALTER on the cluster, every user refused
		for _, d := range req.Deletions {
			result(d.Name, kerr.ClusterAuthorizationFailed.Code, "")
		}
		for _, u := range req.Upsertions {
			result(u.Name, kerr.ClusterAuthorizationFailed.Code, "")
		}
		return ready(resp)
	}
	// check is the validation both kinds of change share.
	check := func(name string, mech int8) (string, bool) {
		mechanism, known := mechanismName(mech)
		switch {
		case name == "":
			result(name, kerr.UnacceptableCredential.Code, "Username must not be empty")
		case count[name] > 1:
			result(name, kerr.DuplicateResource.Code, "A user credential cannot be altered twice in the same request")
		case !known:
			result(name, kerr.UnsupportedSaslMechanism.Code, "Unknown SCRAM mechanism")
		default:
			return mechanism, true
		}
		return "", false
	}
	storeFailed := func(name string, err error) {
		c.s.logger.Error("AlterUserScramCredentials: writing the credential store failed", "user", name, "err", err)
		result(name, kerr.UnknownServerError.Code, "cannot write the credential store")
	}
	for _, d := range req.Deletions {
		mechanism, ok := check(d.Name, d.Mechanism)
		if !ok {
			continue
		}
		existed, err := users.DeleteSCRAMCredential(d.Name, mechanism)
		switch {
		case err != nil:
			storeFailed(d.Name, err)
		case !existed:
			result(d.Name, kerr.ResourceNotFound.Code, "Attempt to delete a user credential that does not exist")
		default:
			c.s.logger.Info("SCRAM credential deleted", "user", d.Name, "mechanism", mechanism, "by", c.Principal(), "remote", c.remote)
			result(d.Name, 0, "")
		}
	}
	for _, u := range req.Upsertions {
		mechanism, ok := check(u.Name, u.Mechanism)
		if !ok {
			continue
		}
		if err := auth.CheckIterations(int(u.Iterations)); err != nil {
			msg := "Too few iterations"
			if u.Iterations > auth.MaxIterations {
				msg = "Too many iterations"
			}
			result(u.Name, kerr.UnacceptableCredential.Code, msg)
			continue
		}
		cred, err := auth.CredentialFromSaltedPassword(mechanism, u.Salt, u.SaltedPassword, int(u.Iterations))
		if err != nil {
			result(u.Name, kerr.UnacceptableCredential.Code, fmt.Sprint(err))
			continue
		}
		if err := users.PutSCRAMCredential(u.Name, cred); err != nil {
			storeFailed(u.Name, err)
			continue
		}
		c.s.logger.Info("SCRAM credential set", "user", u.Name, "mechanism", mechanism, "iterations", u.Iterations, "by", c.Principal(), "remote", c.remote)
		result(u.Name, 0, "")
	}
	return ready(resp)
}
