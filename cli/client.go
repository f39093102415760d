package cli

import "github.com/spf13/cobra"

// addClientCommands registers the commands that talk to a broker as a client.
func addClientCommands(root *cobra.Command) {}
