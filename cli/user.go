package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/oncelog/oncelog/auth"
	"github.com/oncelog/oncelog/broker"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// userOptions are `oncelog user`'s: where the users are (a broker, or a
// data dir no broker is running on) plus the client settings.
type userOptions struct {
	clientOptions
	dataDir string
}

func newUserCmd() *cobra.Command {
	o := &userOptions{}
	cmd := newParentCmd("user", "Create, list and delete SASL/SCRAM users",
		`Manage the SCRAM users SASL listeners authenticate (Kafka's
kafka-configs.sh --entity-type users ... SCRAM-SHA-256/512). Passwords are
stored salted and hashed (RFC 5802), never in the clear.

With --brokers (or $`+brokersEnv+`) the users are changed through a running
broker (AlterUserScramCredentials; connect as an admin with --sasl-user).
With --data-dir they are changed in a data directory directly, with no broker
running on it: this is how the first admin is created before the first start
(like kafka-storage format --add-scram).`)
	o.addClientFlags(cmd.PersistentFlags())
	cmd.PersistentFlags().StringVar(&o.dataDir, "data-dir", "", "change the users of this data directory directly, offline (no broker may be running on it); default: ask the broker of --brokers")
	cmd.AddCommand(newUserCreateCmd(o), newUserListCmd(o), newUserDeleteCmd(o))
	return cmd
}

// offline reports whether to work on a data dir, after checking that the
// user did not ask for both.
func (o *userOptions) offline() (bool, error) {
	if o.dataDir == "" {
		return false, nil
	}
	if f := o.flags.Lookup("brokers"); f != nil && f.Changed {
		return false, usageErrorf("--data-dir and --brokers exclude each other: --data-dir changes a stopped broker's data directory, --brokers asks a running broker")
	}
	return true, nil
}

func (o *userOptions) openUsers() (*broker.Users, error) {
	return broker.OpenUsers(nil, o.dataDir, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func parseSCRAMMechanism(s string) (string, kadm.ScramMechanism, error) {
	switch strings.ToUpper(s) {
	case auth.MechanismSCRAM256:
		return auth.MechanismSCRAM256, kadm.ScramSha256, nil
	case auth.MechanismSCRAM512:
		return auth.MechanismSCRAM512, kadm.ScramSha512, nil
	}
	return "", 0, usageErrorf("--mechanism %q: use SCRAM-SHA-256 or SCRAM-SHA-512", s)
}

// readPassword reads the password from the first line of r (a pipe, a
// file or a terminal); nothing of it is echoed back.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 64<<10)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", usageErrorf("--password-stdin: no password on standard input")
	}
	return pw, nil
}

func newUserCreateCmd(o *userOptions) *cobra.Command {
	var (
		mechanism     string
		passwordStdin bool
		iterations    int
	)
	cmd := &cobra.Command{
		Use:   "create <name>",
		Short: "Create a user, or set its password",
		Long: `Create a SCRAM user, or replace its password for the mechanism. The password
is read from standard input (--password-stdin), never from the command line.
A user may have a credential for each mechanism; create it twice to have both.`,
		Example: `  printf '%s\n' "$ADMIN_PASSWORD" | oncelog user create admin --password-stdin --data-dir /var/lib/oncelog
  oncelog user create alice --mechanism SCRAM-SHA-256 --password-stdin --brokers 127.0.0.1:9094 --tls-ca-file ca.pem --sasl-user admin < alice.pw`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := o.validate(); err != nil {
				return err
			}
			mech, kmech, err := parseSCRAMMechanism(mechanism)
			if err != nil {
				return err
			}
			if !passwordStdin {
				return usageErrorf("give the password on standard input with --password-stdin (a password on the command line shows in ps and shell history)")
			}
			if name == "" {
				return usageErrorf("the user name must not be empty")
			}
			if err := auth.CheckIterations(iterations); err != nil {
				return usageErrorf("--iterations: %v", err)
			}
			password, err := readPassword(cmd.InOrStdin())
			if err != nil {
				return err
			}
			offline, err := o.offline()
			if err != nil {
				return err
			}
			if offline {
				users, err := o.openUsers()
				if err != nil {
					return err
				}
				defer users.Close()
				cred, err := auth.NewCredential(mech, password, iterations)
				if err != nil {
					return err
				}
				if err := users.PutSCRAMCredential(name, cred); err != nil {
					return err
				}
			} else {
				err := o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
					res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: name, Mechanism: kmech, Iterations: int32(iterations), Password: password}})
					if err != nil {
						return err
					}
					return withMessage(res[name].Err, res[name].ErrMessage)
				})
				if err != nil {
					return o.explain(err, "")
				}
			}
			if o.json() {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"user": name, "mechanism": mech, "iterations": iterations})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "user %s: %s credential set (%d iterations)\n", name, mech, iterations)
			return nil
		},
	}
	cmd.Flags().StringVar(&mechanism, "mechanism", auth.MechanismSCRAM512, "SCRAM mechanism of the credential: SCRAM-SHA-256 or SCRAM-SHA-512")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of standard input (required)")
	cmd.Flags().IntVar(&iterations, "iterations", auth.DefaultIterations, "PBKDF2 iterations of the salted password, 4096 to 16384")
	return cmd
}

// userRow is a user's credential in `user list`.
type userRow struct {
	User       string `json:"user"`
	Mechanism  string `json:"mechanism"`
	Iterations int    `json:"iterations"`
}

// listUsers returns the users' credentials from the data dir or the broker.
func (o *userOptions) listUsers(ctx context.Context, names ...string) ([]userRow, error) {
	offline, err := o.offline()
	if err != nil {
		return nil, err
	}
	var rows []userRow
	if offline {
		users, err := o.openUsers()
		if err != nil {
			return nil, err
		}
		defer users.Close()
		all, err := users.List()
		if err != nil {
			return nil, err
		}
		for _, u := range all {
			if len(names) == 0 || u.User == names[0] {
				rows = append(rows, userRow{u.User, u.Mechanism, u.Iterations})
			}
		}
		return rows, nil
	}
	err = o.withAdmin(ctx, func(ctx context.Context, adm *kadm.Client) error {
		desc, err := adm.DescribeUserSCRAMs(ctx, names...)
		if err != nil {
			return err
		}
		for _, d := range desc.Sorted() {
			if errors.Is(d.Err, kerr.ResourceNotFound) {
				continue
			}
			if d.Err != nil {
				return withMessage(d.Err, d.ErrMessage)
			}
			for _, ci := range d.CredInfos {
				rows = append(rows, userRow{d.User, ci.Mechanism.String(), int(ci.Iterations)})
			}
		}
		return nil
	})
	return rows, o.explain(err, "")
}

func newUserListCmd(o *userOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List users and their SCRAM mechanisms",
		Long:  `List the SCRAM users, one line per user and mechanism, with the iteration count (never salts or keys).`,
		Example: `  oncelog user list --data-dir /var/lib/oncelog
  oncelog user list --brokers 127.0.0.1:9094 --tls-ca-file ca.pem --sasl-user admin --output json`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			rows, err := o.listUsers(cmd.Context())
			if err != nil {
				return err
			}
			if o.json() {
				if rows == nil {
					rows = []userRow{}
				}
				return writeJSON(cmd.OutOrStdout(), rows)
			}
			tw := newTable(cmd.OutOrStdout())
			fmt.Fprintln(tw, "USER\tMECHANISM\tITERATIONS")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%d\n", r.User, r.Mechanism, r.Iterations)
			}
			return tw.Flush()
		},
	}
}

func newUserDeleteCmd(o *userOptions) *cobra.Command {
	var mechanism string
	cmd := &cobra.Command{
		Use:   "delete <name>",
		Short: "Delete a user's credentials",
		Long: `Delete a user's SCRAM credentials: all of them, or the one of --mechanism.
Connections already authenticated as the user stay open until they close or,
with --connections-max-reauth-ms, until their session ends.`,
		Example: `  oncelog user delete alice --brokers 127.0.0.1:9094 --tls-ca-file ca.pem --sasl-user admin
  oncelog user delete alice --mechanism SCRAM-SHA-256 --data-dir /var/lib/oncelog`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := o.validate(); err != nil {
				return err
			}
			var mechs []string
			if mechanism != "" {
				m, _, err := parseSCRAMMechanism(mechanism)
				if err != nil {
					return err
				}
				mechs = []string{m}
			} else {
				rows, err := o.listUsers(cmd.Context(), name)
				if err != nil {
					return err
				}
				for _, r := range rows {
					mechs = append(mechs, r.Mechanism)
				}
			}
			deleted, err := o.deleteUser(cmd.Context(), name, mechs)
			if err != nil {
				return err
			}
			if len(deleted) == 0 {
				return &exitError{code: 1, err: fmt.Errorf("user %q has no SCRAM credential to delete", name)}
			}
			if o.json() {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"user": name, "deleted": deleted})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "user %s: deleted %s\n", name, strings.Join(deleted, ", "))
			return nil
		},
	}
	cmd.Flags().StringVar(&mechanism, "mechanism", "", "delete only this mechanism's credential (default: all of the user's)")
	return cmd
}

// deleteUser deletes name's credentials of mechs (one request each: Kafka
// refuses a user named twice in one request), returning those that existed.
func (o *userOptions) deleteUser(ctx context.Context, name string, mechs []string) ([]string, error) {
	var deleted []string
	offline, err := o.offline()
	if err != nil {
		return nil, err
	}
	if offline {
		users, err := o.openUsers()
		if err != nil {
			return nil, err
		}
		defer users.Close()
		for _, m := range mechs {
			ok, err := users.DeleteSCRAMCredential(name, m)
			if err != nil {
				return deleted, err
			}
			if ok {
				deleted = append(deleted, m)
			}
		}
		return deleted, nil
	}
	err = o.withAdmin(ctx, func(ctx context.Context, adm *kadm.Client) error {
		for _, m := range mechs {
			_, km, _ := parseSCRAMMechanism(m)
			res, err := adm.AlterUserSCRAMs(ctx, []kadm.DeleteSCRAM{{User: name, Mechanism: km}}, nil)
			if err != nil {
				return err
			}
			switch r := res[name]; {
			case errors.Is(r.Err, kerr.ResourceNotFound):
			case r.Err != nil:
				return withMessage(r.Err, r.ErrMessage)
			default:
				deleted = append(deleted, m)
			}
		}
		return nil
	})
	return deleted, o.explain(err, "")
}
