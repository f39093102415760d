package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
)

func newClusterCmd() *cobra.Command {
	o := &clientOptions{}
	cmd := newParentCmd("cluster", "Show the cluster's id, controller, brokers and features",
		`Inspect the cluster on any Kafka-compatible broker.

Every subcommand takes --brokers (default `+defaultBrokers+`, or $`+brokersEnv+`)
and --output json for scripts.`)
	o.addClientFlags(cmd.PersistentFlags())
	cmd.AddCommand(newClusterInfoCmd(o))
	return cmd
}

func newClusterInfoCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Show the cluster id, controller, brokers with listeners, and finalized features",
		Long: `Show the cluster id and controller (Metadata), every broker with the address it
advertises, its rack and, where the broker reports them in its configs,
listeners and advertised.listeners (DescribeConfigs); and the feature
levels the cluster has finalized, such as transaction.version (2: KIP-890
transactions), with the range each broker supports (ApiVersions).`,
		Example: `  oncelog cluster info
  oncelog cluster info --output json | jq '.features[] | select(.name == "transaction.version")'`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				return runClusterInfo(ctx, o, adm, cmd.OutOrStdout())
			})
		},
	}
}

// clusterInfo is the --output json result of `cluster info`.
type clusterInfo struct {
	ClusterID  string          `json:"cluster_id"`
	Controller int32           `json:"controller"` // -1: unknown
	Brokers    []clusterBroker `json:"brokers"`
	Features   []clusterFeat   `json:"features"`
}

type clusterBroker struct {
	NodeID              int32   `json:"node_id"`
	Host                string  `json:"host"`
	Port                int32   `json:"port"`
	Rack                *string `json:"rack"`
	Listeners           string  `json:"listeners,omitempty"`
	AdvertisedListeners string  `json:"advertised_listeners,omitempty"`
	Error               string  `json:"error,omitempty"`
}

type clusterFeat struct {
	Name string `json:"name"`
	// FinalizedLevel is the level in force cluster-wide, -1 when not finalized.
	FinalizedLevel int16 `json:"finalized_level"`
	MinSupported   int16 `json:"min_supported"`
	MaxSupported   int16 `json:"max_supported"`
}

func runClusterInfo(ctx context.Context, o *clientOptions, adm *kadm.Client, out io.Writer) error {
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return o.explain(err, "")
	}
	info := clusterInfo{ClusterID: md.Cluster, Controller: md.Controller, Brokers: []clusterBroker{}, Features: []clusterFeat{}}
	byNode := map[int32]int{}
	for _, b := range md.Brokers {
		byNode[b.NodeID] = len(info.Brokers)
		info.Brokers = append(info.Brokers, clusterBroker{NodeID: b.NodeID, Host: b.Host, Port: b.Port, Rack: b.Rack})
	}
	sort.Slice(info.Brokers, func(i, j int) bool { return info.Brokers[i].NodeID < info.Brokers[j].NodeID })
	for i, b := range info.Brokers {
		byNode[b.NodeID] = i
	}

	// Listeners: only some brokers (Kafka) report them as configs; an
	// error here leaves the fields empty rather than failing the command.
	if configs, err := adm.DescribeBrokerConfigs(ctx, md.Brokers.NodeIDs()...); err == nil {
		for _, rc := range configs {
			i, ok := byNode[parseNodeID(rc.Name)]
			if !ok || rc.Err != nil {
				continue
			}
			for _, c := range rc.Configs {
				switch {
				case c.Value == nil:
				case c.Key == "listeners":
					info.Brokers[i].Listeners = *c.Value
				case c.Key == "advertised.listeners":
					info.Brokers[i].AdvertisedListeners = *c.Value
				}
			}
		}
	}

	versions, err := adm.ApiVersions(ctx)
	if err != nil {
		return o.explain(err, "")
	}
	features := map[string]*clusterFeat{}
	for _, v := range versions.Sorted() {
		i, known := byNode[v.NodeID]
		if v.Err != nil {
			if known {
				info.Brokers[i].Error = v.Err.Error()
			}
			continue
		}
		raw := v.Raw()
		for _, sf := range raw.SupportedFeatures {
			f, ok := features[sf.Name]
			if !ok {
				f = &clusterFeat{Name: sf.Name, FinalizedLevel: -1, MinSupported: sf.MinVersion, MaxSupported: sf.MaxVersion}
				features[sf.Name] = f
			}
			// The range every broker supports.
			f.MinSupported, f.MaxSupported = max(f.MinSupported, sf.MinVersion), min(f.MaxSupported, sf.MaxVersion)
		}
		for _, ff := range raw.FinalizedFeatures {
			f, ok := features[ff.Name]
			if !ok {
				f = &clusterFeat{Name: ff.Name, FinalizedLevel: -1, MinSupported: -1, MaxSupported: -1}
				features[ff.Name] = f
			}
			f.FinalizedLevel = max(f.FinalizedLevel, ff.MaxVersionLevel)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(features)) {
		info.Features = append(info.Features, *features[name])
	}

	if o.json() {
		return writeJSON(out, info)
	}
	fmt.Fprintf(out, "CLUSTER-ID   %s\n", info.ClusterID)
	fmt.Fprintf(out, "CONTROLLER   %s\n", offsetOrDash(int64(info.Controller)))
	fmt.Fprintf(out, "BROKERS      %d\n\n", len(info.Brokers))
	tw := newTable(out)
	fmt.Fprintln(tw, "NODE-ID\tADDRESS\tRACK\tLISTENERS\tADVERTISED-LISTENERS\tERROR")
	for _, b := range info.Brokers {
		rack := "-"
		if b.Rack != nil {
			rack = *b.Rack
		}
		fmt.Fprintf(tw, "%d\t%s:%d\t%s\t%s\t%s\t%s\n", b.NodeID, b.Host, b.Port, rack, orDash(b.Listeners), orDash(b.AdvertisedListeners), b.Error)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(info.Features) == 0 {
		return nil
	}
	fmt.Fprintln(out)
	tw = newTable(out)
	fmt.Fprintln(tw, "FEATURE\tFINALIZED-LEVEL\tSUPPORTED")
	for _, f := range info.Features {
		supported := "-"
		if f.MaxSupported >= 0 {
			supported = fmt.Sprintf("%d-%d", f.MinSupported, f.MaxSupported)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Name, offsetOrDash(int64(f.FinalizedLevel)), supported)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

// parseNodeID parses a broker config resource name; -1 if it is none.
func parseNodeID(s string) int32 {
	var n int32
	if _, err := fmt.Sscan(s, &n); err != nil {
		return -1
	}
	return n
}
