package cli

import (
	"fmt"
	"io"

	"github.com/oncelog/oncelog/internal/buildinfo"
	"github.com/spf13/cobra"
)

// versionLine is the one-line form shared by `oncelog version` and
// `oncelog --version`.
func versionLine(i buildinfo.Info) string {
	line := fmt.Sprintf("oncelog %s (commit %s", i.Version, i.ShortCommit())
	if i.CommitTime != "unknown" {
		line += ", " + i.CommitTime
	}
	line += fmt.Sprintf(", %s, %s)", i.GoVersion, i.Platform)
	if i.Commit == "unknown" {
		// go run and go test stamp no VCS data; say how to get it.
		line += "\nno VCS information: built by go run or go test, with -buildvcs=false (check `go env GOFLAGS`), or outside a git clone (Go does not detect git worktrees); `go install -buildvcs=true ./cmd/oncelog` in a clone records the commit"
	}
	return line
}

func newVersionCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print oncelog's version, commit and Go version",
		Long: `Print the version the Go toolchain stamped into this binary: the module
version (a tag, a pseudo-version, or "(devel)"), the VCS commit and its time
("+dirty" when the work tree had uncommitted changes), the Go version and
the platform. The broker exports the same as the oncelog_build_info metric.`,
		Example: `  oncelog version
  oncelog --version
  oncelog version --output json | jq -r .commit`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runVersion(cmd.OutOrStdout(), output, buildinfo.Get())
		},
	}
	cmd.Flags().StringVar(&output, "output", "text", "output format: text for people, json for scripts")
	return cmd
}

func runVersion(out io.Writer, output string, info buildinfo.Info) error {
	switch output {
	case "json":
		return writeJSON(out, info)
	case "text":
		_, err := fmt.Fprintln(out, versionLine(info))
		return err
	}
	return usageErrorf("--output %q: use text or json", output)
}
