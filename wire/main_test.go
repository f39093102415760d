package wire

import (
	"os"
	"testing"

	"github.com/oncelog/oncelog/internal/testbroker"
)

// TestMain removes the broker binary that subprocess tests build.
func TestMain(m *testing.M) { os.Exit(testbroker.Run(m)) }
