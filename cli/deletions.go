package cli

import (
	"errors"
	"fmt"
	"io"
)

// reportDeletions ends a delete command (`topic delete`, `group delete`):
// failure(name) says why name was not deleted (nil when it was), result
// makes the --output json element, the text output lists what was
// deleted, and the returned error joins every failure so the exit code
// says some deletion failed.
func reportDeletions[R any](o *clientOptions, out io.Writer, kind string, names []string, failure func(name string) error, result func(name, errText string) R) error {
	results := make([]R, 0, len(names))
	var failed []error
	var deleted []string
	for _, name := range names {
		err := failure(name)
		results = append(results, result(name, errorString(err)))
		if err != nil {
			failed = append(failed, fmt.Errorf("delete %s %q: %w", kind, name, err))
		} else {
			deleted = append(deleted, name)
		}
	}
	if o.json() {
		if err := writeJSON(out, results); err != nil {
			return err
		}
	} else {
		for _, name := range deleted {
			fmt.Fprintf(out, "deleted %s %q\n", kind, name)
		}
	}
	return errors.Join(failed...)
}
