// Package cli holds oncelog's cobra commands: `serve` runs the broker; the
// client commands talk to any Kafka-compatible broker through franz-go.
package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/oncelog/oncelog/internal/buildinfo"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// exitError carries a specific process exit code.
type exitError struct {
	code int
	err  error
	// reported: the error was already written (as serve's last JSON log
	// line), so Execute does not print it again.
	reported bool
}

func (e *exitError) Error() string { return e.err.Error() }

// NewRootCmd builds the command tree.
func NewRootCmd() *cobra.Command {
	root, _ := newRootCmd()
	return root
}

// helpMistake remembers a usage error found while printing help: cobra
// answers `--help` before it validates arguments, so `oncelog group reset
// --help` would print the group's help and exit 0 as if "reset" existed.
type helpMistake struct{ err error }

func newRootCmd() (*cobra.Command, *helpMistake) {
	root := &cobra.Command{
		Use:   "oncelog",
		Short: "A Kafka-compatible event broker that never stores a retried write twice",
		Long: `oncelog is a single-binary event streaming broker that speaks the Kafka wire
protocol. It keeps a durable segmented log on local disk and implements Kafka's
idempotent producers, so a producer that retries never creates a duplicate.

Start a broker:      oncelog serve
Use any Kafka client (franz-go, sarama, librdkafka/kcat, Java) against it.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// --version prints the same line as `oncelog version`.
	root.Version = buildinfo.Get().Version
	root.SetVersionTemplate("{{versionLine}}\n")
	root.AddCommand(newServeCmd(), newVersionCmd())
	addClientCommands(root)
	mistake := &helpMistake{}
	defaultHelp := root.HelpFunc()
	root.SetHelpFunc(func(c *cobra.Command, args []string) {
		if name := mistypedSubcommand(c, args); name != "" {
			mistake.err = unknownSubcommand(c, name)
			return
		}
		defaultHelp(c, args)
	})
	return root, mistake
}

// mistypedSubcommand returns the word after c's path in args (the whole
// command line) when c groups subcommands and that word names none of them.
func mistypedSubcommand(c *cobra.Command, args []string) string {
	if !c.HasSubCommands() {
		return ""
	}
	depth := len(strings.Fields(c.CommandPath())) - 1 // words after "oncelog"
	var words []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if strings.HasPrefix(a, "-") {
			// A flag's separate value ("--brokers h:9092") is not a word.
			if !strings.Contains(a, "=") && flagTakesValue(c, a) {
				i++
			}
			continue
		}
		words = append(words, a)
	}
	if len(words) <= depth {
		return ""
	}
	name := words[depth]
	for _, sub := range c.Commands() {
		if sub.Name() == name || sub.HasAlias(name) {
			return ""
		}
	}
	if name == "help" {
		return ""
	}
	return name
}

func flagTakesValue(c *cobra.Command, arg string) bool {
	var f *pflag.Flag
	if name, ok := strings.CutPrefix(arg, "--"); ok {
		f = c.Flags().Lookup(name)
	} else if len(arg) == 2 {
		f = c.Flags().ShorthandLookup(arg[1:])
	}
	return f != nil && f.NoOptDefVal == ""
}

// Execute runs the CLI and returns the process exit code.
func Execute() int {
	root, mistake := newRootCmd()
	err := root.Execute()
	if err == nil {
		err = mistake.err
	}
	if err != nil {
		var ee *exitError
		if !errors.As(err, &ee) || !ee.reported {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
		if ee != nil {
			return ee.code
		}
		// cobra's own usage errors are untyped; they are bad usage too.
		if msg := err.Error(); strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") ||
			strings.HasPrefix(msg, "unknown shorthand flag") || strings.HasPrefix(msg, "invalid argument") {
			return 2
		}
		return 1
	}
	return 0
}

// cobra's template functions are one process-wide map, so the function the
// --version template uses is registered once, not by every NewRootCmd (tests
// build root commands concurrently).
func init() {
	cobra.AddTemplateFunc("versionLine", func() string { return versionLine(buildinfo.Get()) })
}
