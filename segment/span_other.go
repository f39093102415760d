//go:build !unix

package segment

import (
	"os"

	"github.com/oncelog/oncelog/internal/fsx"
)

// dupFile: without dup(2) every read copies its bytes.
func dupFile(fsx.File, string) (*os.File, bool) { return nil, false }
