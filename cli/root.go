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
)

// exitError carries a specific process exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

// NewRootCmd builds the command tree.
func NewRootCmd() *cobra.Command {
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
	return root
}

// Execute runs the CLI and returns the process exit code.
func Execute() int {
	root := NewRootCmd()
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		var ee *exitError
		if errors.As(err, &ee) {
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
