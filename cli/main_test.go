package cli

import (
	"os"
	"testing"

	"github.com/oncelog/oncelog/internal/testbroker"
)

func TestMain(m *testing.M) { os.Exit(testbroker.Run(m)) }
