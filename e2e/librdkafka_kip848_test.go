package e2e

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// ck848Python finds a python with confluent_kafka whose librdkafka speaks
// KIP-848 (group.protocol=consumer is generally available from librdkafka
// 2.12): $ONCELOG_CK848_PYTHON (.ci/run makes one with the PyPI wheel, which
// bundles librdkafka), else the system python3.
func ck848Python(t *testing.T) string {
	t.Helper()
	var why []string
	for _, py := range []string{os.Getenv("ONCELOG_CK848_PYTHON"), "/usr/bin/python3"} {
		if py == "" {
			continue
		}
		out, err := exec.Command(py, "-c", "import confluent_kafka; print(confluent_kafka.libversion()[1])").Output()
		if err != nil {
			why = append(why, py+": no confluent_kafka")
			continue
		}
		// libversion's int is 0xMMmmrrpp.
		v, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		if v < 0x020c0000 {
			why = append(why, py+": librdkafka "+strconv.FormatInt(v>>24, 10)+"."+strconv.FormatInt(v>>16&0xff, 10)+" predates KIP-848 (2.12)")
			continue
		}
		return py
	}
	t.Skipf("no confluent_kafka with librdkafka >= 2.12 (%s); .ci/run installs one from PyPI into a venv and sets ONCELOG_CK848_PYTHON", strings.Join(why, "; "))
	return ""
}

// TestLibrdkafkaKIP848Group: librdkafka consumers with group.protocol=consumer
// share a group while one joins and one leaves; every record is consumed
// and the committed offsets reach the end.
func TestLibrdkafkaKIP848Group(t *testing.T) {
	python := ck848Python(t)
	b := startBroker(t)
	const topic, n = "py848", 2000
	createTopic(t, b.Addr(), topic, 4, nil)
	produceValues(t, b.Addr(), topic, "r", n)
	out, err := exec.Command(python, "testdata/librdkafka_kip848.py", b.Addr(), topic, "py848-group", strconv.Itoa(n)).CombinedOutput()
	if err != nil {
		t.Fatalf("librdkafka KIP-848 consumers: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
