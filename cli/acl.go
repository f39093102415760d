package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// aclFlags are kafka-acls.sh's resource and entry flags.
type aclFlags struct {
	allowPrincipals, denyPrincipals []string
	allowHosts, denyHosts           []string
	principals                      []string // list only: a filter
	operations                      []string
	topics, groups, txnIDs          []string
	cluster                         bool
	patternType                     string
}

func (f *aclFlags) addResourceFlags(fs *pflag.FlagSet, defaultPattern, patternHelp string) {
	fs.StringArrayVar(&f.topics, "topic", nil, "topic name (or prefix, with --resource-pattern-type prefixed; * for every topic); repeatable")
	fs.StringArrayVar(&f.groups, "group", nil, "consumer group id (or prefix); repeatable")
	fs.StringArrayVar(&f.txnIDs, "transactional-id", nil, "transactional id (or prefix); repeatable")
	fs.BoolVar(&f.cluster, "cluster", false, "the cluster resource (kafka-cluster); default: not the cluster")
	fs.StringVar(&f.patternType, "resource-pattern-type", defaultPattern, patternHelp)
	fs.StringArrayVar(&f.operations, "operation", nil, "operation: Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite or All; repeatable (default: All)")
}

func (f *aclFlags) addEntryFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.allowPrincipals, "allow-principal", nil, "principal to allow, as Type:Name (User:alice, User:* for everyone); repeatable")
	fs.StringArrayVar(&f.denyPrincipals, "deny-principal", nil, "principal to deny; repeatable")
	fs.StringArrayVar(&f.allowHosts, "allow-host", nil, "client IP address the --allow-principal ACLs apply to; repeatable (default: * when --allow-principal is given)")
	fs.StringArrayVar(&f.denyHosts, "deny-host", nil, "client IP address the --deny-principal ACLs apply to; repeatable (default: * when --deny-principal is given)")
}

func parsePattern(s string) (kadm.ACLPattern, error) {
	p, err := kmsg.ParseACLResourcePatternType(s)
	if err != nil || p == kmsg.ACLResourcePatternTypeUnknown {
		return 0, usageErrorf("--resource-pattern-type %q: use literal, prefixed, match or any", s)
	}
	return p, nil
}

func (f *aclFlags) ops() ([]kadm.ACLOperation, error) {
	if len(f.operations) == 0 {
		return []kadm.ACLOperation{kmsg.ACLOperationAll}, nil
	}
	var out []kadm.ACLOperation
	for _, s := range f.operations {
		op, err := kmsg.ParseACLOperation(s)
		if err != nil || op == kmsg.ACLOperationUnknown {
			return nil, usageErrorf("--operation %q: use Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite or All", s)
		}
		out = append(out, op)
	}
	return out, nil
}

func (f *aclFlags) hasResource() bool {
	return len(f.topics) > 0 || len(f.groups) > 0 || len(f.txnIDs) > 0 || f.cluster
}

// resources sets the builder's resources from the flags.
func (f *aclFlags) resources(b *kadm.ACLBuilder) *kadm.ACLBuilder {
	if len(f.topics) > 0 {
		b.Topics(f.topics...)
	}
	if len(f.groups) > 0 {
		b.Groups(f.groups...)
	}
	if len(f.txnIDs) > 0 {
		b.TransactionalIDs(f.txnIDs...)
	}
	if f.cluster {
		b.Clusters()
	}
	return b
}

// entries builds the exact ACLs create and delete name: hosts default to *.
func (f *aclFlags) entries(verb string) (*kadm.ACLBuilder, error) {
	if len(f.allowPrincipals) == 0 && len(f.denyPrincipals) == 0 {
		return nil, usageErrorf("acl %s needs --allow-principal or --deny-principal", verb)
	}
	if !f.hasResource() {
		return nil, usageErrorf("acl %s needs a resource: --topic, --group, --transactional-id or --cluster", verb)
	}
	for _, p := range append(append([]string(nil), f.allowPrincipals...), f.denyPrincipals...) {
		if !strings.Contains(p, ":") {
			return nil, usageErrorf("principal %q: write it as Type:Name, e.g. User:%s", p, p)
		}
	}
	ops, err := f.ops()
	if err != nil {
		return nil, err
	}
	pattern, err := parsePattern(f.patternType)
	if err != nil {
		return nil, err
	}
	b := f.resources(kadm.NewACLs()).Operations(ops...).ResourcePatternType(pattern)
	hosts := func(h []string) []string {
		if len(h) == 0 {
			return []string{"*"}
		}
		return h
	}
	if len(f.allowPrincipals) > 0 {
		b.MaybeAllow(f.allowPrincipals...).MaybeAllowHosts(hosts(f.allowHosts)...)
	}
	if len(f.denyPrincipals) > 0 {
		b.MaybeDeny(f.denyPrincipals...).MaybeDenyHosts(hosts(f.denyHosts)...)
	}
	return b, nil
}

func newACLCmd() *cobra.Command {
	o := &clientOptions{}
	cmd := newParentCmd("acl", "Create, list and delete Kafka ACLs",
		`Manage the ACLs of any Kafka-compatible broker (CreateAcls, DescribeAcls,
DeleteAcls), with kafka-acls.sh's flags. On oncelog they take effect with
`+"`oncelog serve --authorizer acl`"+` (see docs/security.md); changing them
needs ALTER on the cluster (listing: DESCRIBE), which a --super-users
principal has.

Every subcommand takes --brokers (default `+defaultBrokers+`, or $`+brokersEnv+`)
and --output json for scripts.`)
	o.addClientFlags(cmd.PersistentFlags())
	cmd.AddCommand(newACLCreateCmd(o), newACLListCmd(o), newACLDeleteCmd(o))
	return cmd
}

func newACLCreateCmd(o *clientOptions) *cobra.Command {
	f := &aclFlags{}
	cmd := &cobra.Command{
		Use:     "create",
		Aliases: []string{"add"},
		Short:   "Create ACLs (kafka-acls.sh --add)",
		Long: `Create one ACL for every combination of principal, host, operation and
resource given. An ACL that exists already is left as it is.`,
		Example: `  oncelog acl create --allow-principal User:alice --operation Write --operation Describe --topic orders- --resource-pattern-type prefixed
  oncelog acl create --allow-principal User:billing --operation Read --group billing --topic orders
  oncelog acl create --deny-principal User:bob --deny-host 10.0.0.7 --operation All --topic payments
  oncelog acl create --allow-principal User:app --operation Write --transactional-id app- --resource-pattern-type prefixed`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			b, err := f.entries("create")
			if err != nil {
				return err
			}
			if b.ValidateCreate() != nil || f.patternType == "match" || f.patternType == "any" {
				return usageErrorf("acl create: --resource-pattern-type must be literal or prefixed")
			}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				res, err := adm.CreateACLs(ctx, b)
				if err != nil {
					return o.explain(err, "")
				}
				var out []aclRow
				var failed []error
				for _, r := range res {
					row := aclRow{Principal: r.Principal, Host: r.Host, Operation: r.Operation.String(), Permission: r.Permission.String(),
						ResourceType: r.Type.String(), PatternType: r.Pattern.String(), Name: r.Name}
					if r.Err != nil {
						e := explainACLError(withMessage(r.Err, r.ErrMessage))
						row.Error = e.Error()
						failed = append(failed, fmt.Errorf("create %s: %w", row, e))
					}
					out = append(out, row)
				}
				if err := printACLs(cmd.OutOrStdout(), o, out, "created"); err != nil {
					return err
				}
				return errors.Join(failed...)
			})
		},
	}
	f.addEntryFlags(cmd.Flags())
	f.addResourceFlags(cmd.Flags(), "literal", "literal (the name exactly, or * for all) or prefixed (every name starting with it)")
	return cmd
}

func newACLListCmd(o *clientOptions) *cobra.Command {
	f := &aclFlags{}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List ACLs (kafka-acls.sh --list)",
		Long: `List the ACLs matching the filter: by default every ACL. A resource flag
narrows it; --resource-pattern-type match lists every ACL that applies to the
named resource (literal, * and prefixed ones).`,
		Example: `  oncelog acl list
  oncelog acl list --topic orders-eu --resource-pattern-type match
  oncelog acl list --principal User:alice --output json`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			ops := []kadm.ACLOperation{kmsg.ACLOperationAny}
			if len(f.operations) > 0 {
				var err error
				if ops, err = f.ops(); err != nil {
					return err
				}
			}
			pattern, err := parsePattern(f.patternType)
			if err != nil {
				return err
			}
			b := kadm.NewACLs().Operations(ops...).ResourcePatternType(pattern)
			if f.hasResource() {
				f.resources(b)
			} else {
				b.AnyResource()
			}
			if len(f.principals) > 0 {
				b.MaybeAllow(f.principals...).MaybeDeny(f.principals...)
			} else {
				b.Allow().Deny()
			}
			b.AllowHosts().DenyHosts()
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				res, err := adm.DescribeACLs(ctx, b)
				if err != nil {
					return o.explain(err, "")
				}
				seen := map[aclRow]bool{}
				var out []aclRow
				for _, r := range res {
					if r.Err != nil {
						return explainACLError(withMessage(r.Err, r.ErrMessage))
					}
					for _, d := range r.Described {
						row := aclRow{Principal: d.Principal, Host: d.Host, Operation: d.Operation.String(), Permission: d.Permission.String(),
							ResourceType: d.Type.String(), PatternType: d.Pattern.String(), Name: d.Name}
						if !seen[row] {
							seen[row] = true
							out = append(out, row)
						}
					}
				}
				return printACLs(cmd.OutOrStdout(), o, out, "")
			})
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVar(&f.principals, "principal", nil, "list only the ACLs of this principal (Type:Name); repeatable (default: every principal)")
	f.addResourceFlags(fs, "any", "literal, prefixed, match (every ACL that applies to the named resource) or any")
	return cmd
}

func newACLDeleteCmd(o *clientOptions) *cobra.Command {
	f := &aclFlags{}
	cmd := &cobra.Command{
		Use:     "delete",
		Aliases: []string{"remove"},
		Short:   "Delete ACLs (kafka-acls.sh --remove)",
		Long: `Delete the ACLs the flags name: the same flags as create (hosts default to
*, operations to All). With --resource-pattern-type match or any the flags are
filters and every ACL they match is deleted; the deleted ACLs are printed.`,
		Example: `  oncelog acl delete --allow-principal User:alice --operation Write --topic orders- --resource-pattern-type prefixed`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			b, err := f.entries("delete")
			if err != nil {
				return err
			}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				res, err := adm.DeleteACLs(ctx, b)
				if err != nil {
					return o.explain(err, "")
				}
				var out []aclRow
				var failed []error
				for _, r := range res {
					if r.Err != nil {
						failed = append(failed, explainACLError(withMessage(r.Err, r.ErrMessage)))
						continue
					}
					for _, d := range r.Deleted {
						out = append(out, aclRow{Principal: d.Principal, Host: d.Host, Operation: d.Operation.String(), Permission: d.Permission.String(),
							ResourceType: d.Type.String(), PatternType: d.Pattern.String(), Name: d.Name})
					}
				}
				if err := printACLs(cmd.OutOrStdout(), o, out, "deleted"); err != nil {
					return err
				}
				return errors.Join(failed...)
			})
		},
	}
	f.addEntryFlags(cmd.Flags())
	f.addResourceFlags(cmd.Flags(), "literal", "literal, prefixed, match or any")
	return cmd
}

// aclRow is one ACL as printed (and in --output json).
type aclRow struct {
	Principal    string `json:"principal"`
	Host         string `json:"host"`
	Operation    string `json:"operation"`
	Permission   string `json:"permission"`
	ResourceType string `json:"resource_type"`
	PatternType  string `json:"pattern_type"`
	Name         string `json:"name"`
	Error        string `json:"error,omitempty"`
}

func (r aclRow) String() string {
	return fmt.Sprintf("%s %s %s from %s on %s %s:%s", r.Permission, r.Principal, r.Operation, r.Host, r.ResourceType, r.PatternType, r.Name)
}

func printACLs(w io.Writer, o *clientOptions, rows []aclRow, verb string) error {
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.ResourceType != b.ResourceType {
			return a.ResourceType < b.ResourceType
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.String() < b.String()
	})
	if o.json() {
		if rows == nil {
			rows = []aclRow{}
		}
		return writeJSON(w, rows)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "RESOURCE\tPATTERN\tNAME\tPRINCIPAL\tHOST\tOPERATION\tPERMISSION")
	for _, r := range rows {
		if r.Error != "" {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ResourceType, r.PatternType, r.Name, r.Principal, r.Host, r.Operation, r.Permission)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if verb != "" {
		n := 0
		for _, r := range rows {
			if r.Error == "" {
				n++
			}
		}
		fmt.Fprintf(w, "%d ACLs %s\n", n, verb)
	}
	return nil
}

// explainACLError adds what to do to the errors an ACL request gets.
func explainACLError(err error) error {
	switch {
	case errors.Is(err, kerr.SecurityDisabled):
		return fmt.Errorf("%w (the broker has no authorizer: on oncelog, start it with --authorizer acl)", err)
	case errors.Is(err, kerr.ClusterAuthorizationFailed):
		return fmt.Errorf("%w (managing ACLs needs ALTER on the cluster, listing them DESCRIBE: connect as a --super-users principal or one granted them)", err)
	}
	return err
}
