package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Dynamic shell completion (cobra's `oncelog completion bash|zsh|fish`):
// topic and group arguments complete from the broker the command line (or
// the environment, or the profile) points at.

// completionTimeout bounds the broker round trip behind one <TAB>.
const completionTimeout = 3 * time.Second

// argCompletions says which commands take topic or group names, and how many.
var argCompletions = map[string]struct {
	kind string // "topic" or "group"
	many bool   // every argument, not only the first
}{
	"oncelog topic describe":       {"topic", false},
	"oncelog topic delete":         {"topic", true},
	"oncelog topic alter-config":   {"topic", false},
	"oncelog topic add-partitions": {"topic", false},
	"oncelog produce":              {"topic", false},
	"oncelog consume":              {"topic", false},
	"oncelog producers":            {"topic", false},
	"oncelog verify":               {"topic", false},
	"oncelog key get":              {"topic", false},
	"oncelog group describe":       {"group", false},
	"oncelog group delete":         {"group", true},
	"oncelog group reset-offsets":  {"group", false},
}

// addCompletions walks the command tree and sets the argument completion
// of every command named in argCompletions, and --topic/--group flags.
func addCompletions(cmd *cobra.Command) {
	if c, ok := argCompletions[cmd.CommandPath()]; ok {
		kind, many := c.kind, c.many
		cmd.ValidArgsFunction = func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 && !many {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return brokerNames(cmd, kind), cobra.ShellCompDirectiveNoFileComp
		}
	}
	for flag, kind := range map[string]string{"topic": "topic", "group": "group"} {
		if cmd.LocalFlags().Lookup(flag) != nil {
			cmd.RegisterFlagCompletionFunc(flag, func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
				return brokerNames(cmd, kind), cobra.ShellCompDirectiveNoFileComp
			})
		}
	}
	for _, sub := range cmd.Commands() {
		addCompletions(sub)
	}
}

// brokerNames lists topic or group names with the connection settings on
// the command line being completed. Any failure completes nothing: a shell
// completion must never print an error in the middle of a line.
func brokerNames(cmd *cobra.Command, kind string) []string {
	o := clientOptionsFrom(cmd.Flags())
	if o == nil || o.validate() != nil {
		return nil
	}
	o.timeout = completionTimeout
	ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
	defer cancel()
	cl, adm, err := o.admin(ctx)
	if err != nil {
		return nil
	}
	defer cl.Close()
	switch kind {
	case "topic":
		topics, err := adm.ListTopics(ctx)
		if err != nil {
			return nil
		}
		return topics.Names()
	default:
		groups, err := adm.ListGroups(ctx)
		if err != nil {
			return nil
		}
		return groups.Groups()
	}
}

// clientOptionsFrom reads the shared client flags of a parsed command, the
// profile's settings applied first (they are written into the flags).
func clientOptionsFrom(fs *pflag.FlagSet) *clientOptions {
	if fs.Lookup("brokers") == nil || applyProfile(fs) != nil {
		return nil
	}
	o := &clientOptions{flags: fs, output: "text"}
	o.brokers, _ = fs.GetStringSlice("brokers")
	o.sec.mechanism, _ = fs.GetString("sasl-mechanism")
	o.sec.user, _ = fs.GetString("sasl-user")
	o.sec.password, _ = fs.GetString("sasl-password")
	o.sec.tls, _ = fs.GetBool("tls")
	o.sec.caFile, _ = fs.GetString("tls-ca-file")
	o.sec.certFile, _ = fs.GetString("tls-cert-file")
	o.sec.keyFile, _ = fs.GetString("tls-key-file")
	o.timeout = completionTimeout
	return o
}
