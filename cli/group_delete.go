package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func newGroupDeleteCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "delete <group>...",
		Short: "Delete consumer groups and their committed offsets",
		Long: `Delete consumer groups (DeleteGroups, as kafka-consumer-groups.sh --delete):
the group and every offset it committed are gone; a consumer that joins it
again starts from its auto.offset.reset position. A group with active
members is not deleted (NON_EMPTY_GROUP): stop its consumers first.`,
		Example: `  oncelog group delete billing
  oncelog group delete billing audit --output json`,
		Args: usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				return runGroupDelete(ctx, o, adm, cmd.OutOrStdout(), slices.Compact(slices.Sorted(slices.Values(args))))
			})
		},
	}
}

// deletedGroup is one element of the --output json result of `group delete`.
type deletedGroup struct {
	Group string `json:"group"`
	Error string `json:"error,omitempty"`
}

func runGroupDelete(ctx context.Context, o *clientOptions, adm *kadm.Client, out io.Writer, groups []string) error {
	resps, err := adm.DeleteGroups(ctx, groups...)
	if err != nil && len(resps) == 0 {
		return o.explain(err, "")
	}
	return reportDeletions(o, out, "group", groups, func(group string) error {
		r, ok := resps[group]
		switch {
		case !ok:
			return errors.New("missing from the broker's response")
		case errors.Is(r.Err, kerr.GroupIDNotFound):
			return errors.New("group does not exist (see `oncelog group list`)")
		case errors.Is(r.Err, kerr.NonEmptyGroup):
			return fmt.Errorf("group has active members: stop its consumers first (see `oncelog group describe %s`) (%w)", group, r.Err)
		case r.Err != nil:
			return o.explain(withMessage(r.Err, r.ErrMessage), "")
		}
		return nil
	}, func(group, errText string) deletedGroup { return deletedGroup{Group: group, Error: errText} })
}
