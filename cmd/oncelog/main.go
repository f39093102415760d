// Command oncelog is a single-binary, Kafka-compatible event broker that
// never stores a retried write twice. See `oncelog --help`.
package main

import (
	"os"

	"github.com/oncelog/oncelog/cli"
)

func main() { os.Exit(cli.Execute()) }
