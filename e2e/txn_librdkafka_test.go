package e2e

import (
	"os"
	"os/exec"
	"testing"
)

// TestLibrdkafkaTransactions runs confluent_kafka (librdkafka) transactions
// against oncelog: commit and abort alternate, read_committed must see
// exactly the committed records.
func TestLibrdkafkaTransactions(t *testing.T) {
	python := "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import confluent_kafka").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3-confluent-kafka is not installed; .ci/run installs it with apt-get")
		}
		t.Skip("python3-confluent-kafka not installed (apt-get install python3-confluent-kafka)")
	}
	b := startBroker(t)
	createTopic(t, b.Addr(), "py-txn", 1, nil)
	out, err := exec.Command(python, "testdata/librdkafka_txn.py", b.Addr(), "py-txn").CombinedOutput()
	if err != nil {
		t.Fatalf("librdkafka transactions: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
