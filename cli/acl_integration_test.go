package cli

import (
	"strings"
	"testing"

	"github.com/oncelog/oncelog/internal/testbroker"
)

// oncelog acl against a broker with --authorizer acl (the CLI connects as
// User:ANONYMOUS, made a super user here): create, list with filters,
// kill -9 and restart (the ACLs are still there), delete.
func TestACLCommands(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{ExtraArgs: []string{"--authorizer", "acl", "--super-users", "User:ANONYMOUS"}})
	run := func(args ...string) string {
		t.Helper()
		out, errOut, err := runCLI(nil, append(args, "--brokers", b.Addr(), "--timeout", "20s")...)
		if err != nil {
			t.Fatalf("oncelog %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		return out
	}
	out := run("acl", "create", "--allow-principal", "User:alice", "--operation", "Write", "--operation", "Describe",
		"--topic", "orders-", "--resource-pattern-type", "prefixed")
	if !strings.Contains(out, "2 ACLs created") {
		t.Fatalf("create: %s", out)
	}
	run("acl", "create", "--deny-principal", "User:bob", "--deny-host", "10.0.0.7", "--topic", "orders-eu")
	run("acl", "create", "--allow-principal", "User:alice", "--operation", "read", "--group", "billing")

	rows := decodeJSON[[]aclRow](t, run("acl", "list", "--output", "json"))
	if len(rows) != 4 {
		t.Fatalf("list: %+v", rows)
	}
	rows = decodeJSON[[]aclRow](t, run("acl", "list", "--topic", "orders-eu", "--resource-pattern-type", "match", "--output", "json"))
	if len(rows) != 3 {
		t.Fatalf("list --topic orders-eu match: %+v", rows)
	}
	for _, r := range rows {
		if r.ResourceType != "TOPIC" {
			t.Fatalf("match listed %+v", r)
		}
	}
	rows = decodeJSON[[]aclRow](t, run("acl", "list", "--principal", "User:bob", "--output", "json"))
	if len(rows) != 1 || rows[0].Permission != "DENY" || rows[0].Host != "10.0.0.7" || rows[0].Operation != "ALL" || rows[0].PatternType != "LITERAL" {
		t.Fatalf("bob's ACLs: %+v", rows)
	}

	b.Kill()
	b.Restart()
	if rows = decodeJSON[[]aclRow](t, run("acl", "list", "--output", "json")); len(rows) != 4 {
		t.Fatalf("after kill -9: %+v", rows)
	}

	out = run("acl", "delete", "--allow-principal", "User:alice", "--operation", "Write", "--topic", "orders-", "--resource-pattern-type", "prefixed")
	if !strings.Contains(out, "1 ACLs deleted") {
		t.Fatalf("delete: %s", out)
	}
	if rows = decodeJSON[[]aclRow](t, run("acl", "list", "--output", "json")); len(rows) != 3 {
		t.Fatalf("after delete: %+v", rows)
	}
	if text := run("acl", "list"); !strings.Contains(text, "User:alice") || !strings.Contains(text, "PRINCIPAL") {
		t.Fatalf("text list: %s", text)
	}

	// Usage errors exit 2 before any request.
	if _, _, err := runCLI(nil, "acl", "create", "--allow-principal", "alice", "--topic", "t", "--brokers", b.Addr()); err == nil || !strings.Contains(err.Error(), "Type:Name") {
		t.Fatalf("a principal without a type: %v", err)
	}
}

// Without --authorizer acl the broker says so, and the CLI says what to do.
func TestACLCommandsWithoutAuthorizer(t *testing.T) {
	_, _, err := runCLI(nil, "acl", "list", "--brokers", testBrokers(t), "--timeout", "20s")
	if err == nil || !strings.Contains(err.Error(), "--authorizer acl") {
		t.Fatalf("acl list without an authorizer: %v", err)
	}
}
