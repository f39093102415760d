package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// defaultBrokers is where the client commands look for a broker when neither
// --brokers nor ONCELOG_BROKERS says otherwise: `oncelog serve`'s default.
const defaultBrokers = "127.0.0.1:9092"

// brokersEnv names the environment variable that replaces the default --brokers.
const brokersEnv = "ONCELOG_BROKERS"

// addClientCommands registers the commands that talk to a broker as a client.
func addClientCommands(root *cobra.Command) {
	for _, cmd := range []*cobra.Command{
		newTopicCmd(),
		newProduceCmd(),
		newConsumeCmd(),
		newGroupCmd(),
		newProducersCmd(),
		newTxnCmd(),
		newClusterCmd(),
		newVerifyCmd(),
		newKeyCmd(),
		newACLCmd(),
		newUserCmd(),
		newProfileCmd(),
	} {
		// Flag mistakes are usage errors (exit 2), like wrong arguments.
		cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
			return usageErrorf("%v\nsee `%s --help`", err, c.CommandPath())
		})
		root.AddCommand(cmd)
		addCompletions(cmd)
	}
}

// clientOptions are the connection and output settings every client command shares.
type clientOptions struct {
	brokers []string
	output  string
	timeout time.Duration
	sec     clientSecurity
	profile string

	// flags is where the options were registered, to tell an explicit
	// --brokers from the default.
	flags *pflag.FlagSet
}

// addClientFlags registers --brokers, --output and --timeout on fs.
func (o *clientOptions) addClientFlags(fs *pflag.FlagSet) {
	o.flags = fs
	fs.StringSliceVar(&o.brokers, "brokers", []string{defaultBrokers}, "comma-separated host:port seed brokers (env "+brokersEnv+")")
	fs.StringVar(&o.output, "output", "text", "output format: text for people, json for scripts")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "time limit for an admin command, for connecting and for delivering each produced record")
	fs.StringVar(&o.profile, "profile", "", "connection profile to use (env "+profileEnv+"; default: the current one, see `oncelog profile`)")
	o.sec.addFlags(fs)
}

// validate resolves the environment default for --brokers and checks the
// shared flags, returning a usage error for bad values.
func (o *clientOptions) validate() error {
	if err := applyProfile(o.flags); err != nil {
		return err
	}
	if f := o.flags.Lookup("brokers"); f != nil && !f.Changed {
		if env := strings.TrimSpace(os.Getenv(brokersEnv)); env != "" {
			o.brokers = splitList(env)
		}
	}
	o.brokers = splitList(strings.Join(o.brokers, ","))
	if len(o.brokers) == 0 {
		return usageErrorf("--brokers is empty: give at least one host:port")
	}
	switch o.output {
	case "text", "json":
	default:
		return usageErrorf("--output %q: use text or json", o.output)
	}
	if o.timeout <= 0 {
		return usageErrorf("--timeout must be positive, got %s", o.timeout)
	}
	return o.sec.resolve(o.flags)
}

func (o *clientOptions) json() bool { return o.output == "json" }

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// connect builds a franz-go client for the seed brokers and checks that one of
// them answers, so that an unreachable broker fails fast with advice instead
// of retrying for the client's whole retry budget.
func (o *clientOptions) connect(ctx context.Context, extra ...kgo.Opt) (*kgo.Client, error) {
	secOpts, err := o.sec.opts()
	if err != nil {
		return nil, err
	}
	opts := append(append([]kgo.Opt{
		kgo.SeedBrokers(o.brokers...),
		kgo.ClientID("oncelog-cli"),
		kgo.DialTimeout(5 * time.Second),
	}, secOpts...), extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, usageErrorf("invalid client settings: %v", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := cl.Ping(pingCtx); err != nil {
		cl.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, o.unreachable(err)
	}
	return cl, nil
}

// admin connects and wraps the client for admin requests. The caller closes
// the returned kgo client.
func (o *clientOptions) admin(ctx context.Context) (*kgo.Client, *kadm.Client, error) {
	cl, err := o.connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	adm := kadm.NewClient(cl)
	adm.SetTimeoutMillis(int32(min(o.timeout, time.Hour) / time.Millisecond))
	return cl, adm, nil
}

// withAdmin connects and runs an admin command's fn; the whole command,
// connecting included, may take at most --timeout.
func (o *clientOptions) withAdmin(ctx context.Context, fn func(ctx context.Context, adm *kadm.Client) error) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	cl, adm, err := o.admin(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	return fn(ctx, adm)
}

// unreachable explains a failure to talk to any seed broker.
func (o *clientOptions) unreachable(err error) error {
	addr := strings.Join(o.brokers, ",")
	if authErr := o.sec.authFailed(addr, err); authErr != nil {
		return authErr
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer from broker at %s within %s: is `oncelog serve` running there? set --brokers or %s, or raise --timeout (%w)", addr, o.timeout, brokersEnv, err)
	}
	return fmt.Errorf("cannot reach broker at %s: is `oncelog serve` running? set --brokers or %s (%w)", addr, brokersEnv, err)
}

// explain adds advice to errors that have an obvious remedy. topic names the
// topic the command was about, if any.
func (o *clientOptions) explain(err error, topic string) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	var opErr *net.OpError
	switch {
	case errors.As(err, &opErr) && opErr.Op == "dial", errors.Is(err, syscall.ECONNREFUSED):
		// The seed answered (connect pings it) but a broker address from
		// the metadata did not: usually a wrong advertised address.
		where := "an advertised broker address"
		if opErr != nil && opErr.Addr != nil {
			where = opErr.Addr.String()
		}
		return fmt.Errorf("cannot reach %s (learned from the metadata of %s): check the broker's --advertise setting (%w)", where, strings.Join(o.brokers, ","), err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer from the broker within %s: raise --timeout or check the broker (%w)", o.timeout, err)
	case errors.Is(err, kerr.UnknownTopicOrPartition) && topic != "":
		return fmt.Errorf("topic %q does not exist: create it with `oncelog topic create %s` (%w)", topic, topic, err)
	case errors.Is(err, kerr.TopicAlreadyExists) && topic != "":
		return fmt.Errorf("topic %q already exists: use --if-not-exists to ignore this (%w)", topic, err)
	case errors.Is(err, kerr.UnsupportedVersion):
		return fmt.Errorf("the broker does not support this request: %w", err)
	}
	return err
}

// withMessage appends a broker-supplied error message, which often names
// the bad setting, to err.
func withMessage(err error, msg string) error {
	if err == nil || msg == "" || strings.Contains(err.Error(), msg) {
		return err
	}
	return fmt.Errorf("%w: %s", err, msg)
}

// usageErrorf reports a command-line mistake: exit code 2.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

// usageArgs turns cobra's argument errors into usage errors (exit 2).
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageErrorf("%v\nsee `%s --help`", err, cmd.CommandPath())
		}
		return nil
	}
}

// newParentCmd builds a command that only groups subcommands: alone it
// prints help; with an unknown subcommand it is a usage error.
func newParentCmd(use, short, long string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		// cobra defaults the distance for the root only.
		SuggestionsMinimumDistance: 2,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownSubcommand(cmd, args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
}

// unknownSubcommand is the usage error for `oncelog group reset`: the
// parent's subcommands closest to the mistyped name, as cobra suggests for
// the root command only.
func unknownSubcommand(cmd *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, cmd.CommandPath())
	if suggestions := cmd.SuggestionsFor(name); len(suggestions) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(suggestions, "\n\t")
	}
	return usageErrorf("%s\nsee `%s --help`", msg, cmd.CommandPath())
}

// writeJSON writes v as indented JSON, the --output json form of a command's result.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newTable returns a writer that aligns tab-separated columns; call Flush.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// isTerminal reports whether stream (a reader or writer) is an interactive
// terminal, where progress lines and hints are useful rather than noise.
func isTerminal(stream any) bool {
	f, ok := stream.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// errorString is nil-safe err.Error() for JSON output.
func errorString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
