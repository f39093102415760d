package cli

import (
	"strings"
	"testing"
)

func TestIntegrationClusterInfo(t *testing.T) {
	out, _ := cli(t, "", "cluster", "info", "--output", "json")
	info := decodeJSON[clusterInfo](t, out)
	if info.ClusterID == "" || len(info.Brokers) == 0 || info.Brokers[0].Host == "" || info.Brokers[0].Port <= 0 {
		t.Fatalf("cluster info: %s", out)
	}
	if !strings.Contains(testBrokers(t), ":") {
		t.Fatal("test broker without a port")
	}
	controllerListed := false
	for _, b := range info.Brokers {
		controllerListed = controllerListed || b.NodeID == info.Controller
	}
	if !controllerListed {
		t.Errorf("controller %d is not among the brokers: %s", info.Controller, out)
	}
	var tv *clusterFeat
	for i, f := range info.Features {
		if f.Name == "transaction.version" {
			tv = &info.Features[i]
		}
	}
	// oncelog and Kafka 4.x both finalize transaction.version.
	if tv == nil || tv.FinalizedLevel < 0 || tv.MaxSupported < tv.FinalizedLevel {
		t.Errorf("transaction.version: %+v in %s", tv, out)
	}
	text, _ := cli(t, "", "cluster", "info")
	for _, want := range []string{"CLUSTER-ID   " + info.ClusterID, "transaction.version", "NODE-ID"} {
		if !strings.Contains(text, want) {
			t.Errorf("text cluster info lacks %q:\n%s", want, text)
		}
	}
}

func TestIntegrationTopicAddPartitions(t *testing.T) {
	topic := createTopic(t, 1)
	out, _ := cli(t, "", "topic", "add-partitions", topic, "-p", "2", "--output", "json")
	if g := decodeJSON[grownTopic](t, out); g.Before != 1 || g.Partitions != 3 {
		t.Errorf("add-partitions -p 2: %s", out)
	}
	if out, _ = cli(t, "", "topic", "add-partitions", topic, "--total", "5"); !strings.Contains(out, "3 -> 5 partitions") {
		t.Errorf("add-partitions --total 5: %q", out)
	}
	out, _ = cli(t, "", "topic", "describe", topic, "--output", "json")
	if !strings.Contains(out, `"partition": 4`) {
		t.Errorf("describe after growing to 5 partitions:\n%s", out)
	}
	cli(t, "e\n", "produce", topic, "-p", "4")
	if got := values(consumeJSON(t, topic, "-p", "4")); strings.Join(got, ",") != "e" {
		t.Errorf("consume the new partition 4: %q", got)
	}

	_, _, err := cliErr(t, nil, "topic", "add-partitions", topic, "--total", "5")
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "already has 5 partitions") {
		t.Errorf("--total at the current count: %v", err)
	}
	for _, args := range [][]string{{}, {"-p", "0"}, {"-p", "1", "--total", "9"}} {
		_, _, err := cliErr(t, nil, append([]string{"topic", "add-partitions", topic}, args...)...)
		if exitCode(err) != 2 {
			t.Errorf("add-partitions %v: %v, want exit 2", args, err)
		}
	}
	missing := uniqueName(t, "missing")
	_, _, err = cliErr(t, nil, "topic", "add-partitions", missing, "-p", "1")
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("add-partitions to a missing topic: %v", err)
	}
}
