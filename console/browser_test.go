package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// requireBrowserTools skips when Chromium, node or the console's npm
// packages are missing, except in CI (CI set), where .ci/run installs them
// and a skip would hide a broken console.
func requireBrowserTools(t *testing.T) (node, chromium string) {
	t.Helper()
	missing := func(what string) {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s: .ci/run installs it; CI must run the console's browser test", what)
		}
		t.Skip(what)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node not installed")
	}
	chromium = os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		missing("Debian's chromium not installed (apt-get install chromium)")
	}
	if _, err := os.Stat("web/node_modules/playwright-core"); err != nil {
		missing("the console's npm packages are not installed (cd console/web && npm ci)")
	}
	return node, chromium
}

// TestConsoleInChromium drives the web console of a real broker in
// headless Chromium (console/web/e2e/console.e2e.mjs): every page, a config
// edit, the record browser with read_committed, transactions, a group's lag,
// a key lookup and the live charts. Screenshots are kept in
// $CONSOLE_SCREENSHOT_DIR (default: a test temp dir, listed in the log).
func TestConsoleInChromium(t *testing.T) {
	node, chromium := requireBrowserTools(t)
	b := testbroker.Start(t, testbroker.Options{ExtraArgs: []string{"--group-initial-rebalance-delay", "0s"}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	const topic, keyTopic, group, txnID = "orders", "payments", "billing", "console-txn"
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	dedup := "header:Idempotency-Key"
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"oncelog.dedup.key": &dedup}, keyTopic); err != nil {
		t.Fatal(err)
	}
	// A retried idempotent batch on partition 0, for the producers tab's
	// duplicates per partition.
	newRawProducer(ctx, t, b.Addr()).sendRetried(ctx, t, topic, 0, 2, 1)
	hdr := []kgo.RecordHeader{{Key: "src", Value: []byte("console-test")}}
	for i := range 3 {
		r := &kgo.Record{Topic: topic, Partition: 1, Key: []byte(fmt.Sprint("k", i)), Value: []byte(fmt.Sprint("plain-", i)), Headers: hdr}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// One committed and one aborted transaction on partition 1.
	txn, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.TransactionalID(txnID), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	for _, commit := range []bool{true, false} {
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		value := "committed-value"
		if !commit {
			value = "aborted-value"
		}
		if err := txn.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 1, Value: []byte(value), Headers: hdr}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := txn.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: topic, Partition: 1, At: 2})
	if _, err := adm.CommitOffsets(ctx, group, offs); err != nil {
		t.Fatal(err)
	}
	// A key written through HTTP ingest, for the key lookup.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+b.HTTPAddr()+"/v1/topics/"+keyTopic+"/records", strings.NewReader("pay 10"))
	req.Header.Set("Idempotency-Key", "order-42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var posted struct {
		Partition int32 `json:"partition"`
		Offset    int64 `json:"offset"`
	}
	json.NewDecoder(resp.Body).Decode(&posted)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("HTTP ingest answered %d", resp.StatusCode)
	}

	// A KIP-848 consumer and a share consumer, for the groups pages.
	const topic848, group848, shareGroup = "events", "billing-848", "billing-share"
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic848); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic848, Value: []byte("e")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	startKIP848AndShareConsumers(ctx, t, b.Addr(), topic848, group848, shareGroup)

	// Keep producing while the charts page samples the rate.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 2, Value: []byte("tick")})
			}
		}
	}()

	shots := os.Getenv("CONSOLE_SCREENSHOT_DIR")
	if shots == "" {
		shots = filepath.Join(t.TempDir(), "screenshots")
	}
	seed, _ := json.Marshal(map[string]any{
		"topic": topic, "partition": 1, "retriedPartition": 0, "group": group,
		"group848": group848, "shareGroup": shareGroup, "topic848": topic848, "transactionalId": txnID,
		"committedValue": "committed-value", "abortedValue": "aborted-value",
		"keyTopic": keyTopic, "key": "order-42", "keyPartition": posted.Partition, "keyOffset": posted.Offset,
	})
	cmd := exec.CommandContext(ctx, node, "e2e/console.e2e.mjs")
	cmd.Dir = "web"
	cmd.Env = append(os.Environ(), "CONSOLE_URL=http://"+b.AdminAddr(), "CHROMIUM="+chromium,
		"SCREENSHOT_DIR="+shots, "SEED="+string(seed))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("console e2e (screenshots in %s):\n%s", shots, out.String())
	if err != nil {
		t.Fatalf("console e2e failed: %v", err)
	}
}

// TestConsoleLoginInChromium drives the login of a broker with a SASL
// listener and ACLs in headless Chromium (console/web/e2e/login.e2e.mjs):
// the login form, a wrong password, alice's session cookie, her topics, a
// config edit allowed and one refused by the broker, logout, then bob's
// topics. Screenshots go to $CONSOLE_SCREENSHOT_DIR as for
// TestConsoleInChromium.
func TestConsoleLoginInChromium(t *testing.T) {
	node, chromium := requireBrowserTools(t)
	dir := t.TempDir()
	bin := testbroker.BinaryPath(t)
	for _, u := range []string{"admin", "alice", "bob"} {
		cmd := exec.Command(bin, "user", "create", u, "--password-stdin", "--data-dir", dir)
		cmd.Stdin = strings.NewReader(u + "-password\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("user create %s: %v\n%s", u, err, out)
		}
	}
	b := testbroker.Start(t, testbroker.Options{DataDir: dir, Protocol: "SASL_PLAINTEXT",
		ExtraArgs: []string{"--authorizer", "acl", "--super-users", "User:admin"}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.SASL(scram.Auth{User: "admin", Pass: "admin-password"}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	const aliceTopic, bobTopic, sharedTopic = "alice-orders", "bob-events", "shared"
	for _, topic := range []string{aliceTopic, bobTopic, sharedTopic} {
		if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []*kadm.ACLBuilder{
		kadm.NewACLs().Allow("User:alice").AllowHosts().Topics(aliceTopic).Operations(kadm.OpDescribe, kadm.OpDescribeConfigs, kadm.OpAlterConfigs),
		kadm.NewACLs().Allow("User:alice", "User:bob").AllowHosts().Topics(sharedTopic).Operations(kadm.OpDescribe, kadm.OpDescribeConfigs),
		kadm.NewACLs().Allow("User:bob").AllowHosts().Topics(bobTopic).Operations(kadm.OpDescribe, kadm.OpDescribeConfigs),
	} {
		if res, err := adm.CreateACLs(ctx, a); err != nil || res[0].Err != nil {
			t.Fatalf("CreateAcls: %+v %v", res, err)
		}
	}
	shots := os.Getenv("CONSOLE_SCREENSHOT_DIR")
	if shots == "" {
		shots = filepath.Join(t.TempDir(), "screenshots")
	}
	seed, _ := json.Marshal(map[string]string{"aliceTopic": aliceTopic, "bobTopic": bobTopic, "sharedTopic": sharedTopic})
	cmd := exec.CommandContext(ctx, node, "e2e/login.e2e.mjs")
	cmd.Dir = "web"
	cmd.Env = append(os.Environ(), "CONSOLE_URL=http://"+b.AdminAddr(), "CHROMIUM="+chromium,
		"SCREENSHOT_DIR="+shots, "SEED="+string(seed))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("console login e2e (screenshots in %s):\n%s", shots, out.String())
	if err != nil {
		t.Fatalf("console login e2e failed: %v", err)
	}
}
