package wire

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"sort"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// updateAPIsDoc rewrites docs/apis.md from the registered handlers:
//
//	go test ./wire -run TestAPIsDoc -update
var updateAPIsDoc = flag.Bool("update", false, "rewrite docs/apis.md from the registered handlers")

// kafka44 is what an Apache Kafka 4.4 broker serves: validVersions of every
// request schema whose listeners include "broker", read from
// common/message/*Request.json in kafka-clients-4.4.0.jar, less a latest
// version the schema marks latestVersionUnstable (InitProducerId v6, KIP-939:
// a default-configured Kafka 4.4 advertises 0-5 and closes the connection on
// v6, see e2e/initproducerid_v6_vs_kafka_test.go). It is here only
// so the table shows where oncelog stands against Kafka; the served ranges
// come from the handlers themselves.
var kafka44 = map[int16][2]int16{
	0: {3, 13}, 1: {4, 18}, 2: {1, 11}, 3: {0, 13}, 8: {2, 10}, 9: {1, 10},
	10: {0, 6}, 11: {0, 9}, 12: {0, 4}, 13: {0, 5}, 14: {0, 5}, 15: {0, 6},
	16: {0, 5}, 17: {0, 1}, 18: {0, 5}, 19: {2, 7}, 20: {1, 6}, 21: {0, 2},
	22: {0, 5}, 23: {2, 4}, 24: {0, 5}, 25: {0, 4}, 26: {0, 5}, 27: {1, 2},
	28: {0, 6}, 29: {1, 3}, 30: {1, 3}, 31: {1, 3}, 32: {1, 4}, 33: {0, 2},
	34: {1, 2}, 35: {1, 5}, 36: {0, 2}, 37: {0, 3}, 38: {1, 3}, 39: {1, 2},
	40: {1, 2}, 41: {1, 3}, 42: {0, 3}, 43: {0, 2}, 44: {0, 1}, 45: {0, 1},
	46: {0, 0}, 47: {0, 0}, 48: {0, 1}, 49: {0, 1}, 50: {0, 0}, 51: {0, 0},
	55: {0, 2}, 57: {0, 2}, 60: {0, 2}, 61: {0, 0}, 64: {0, 0}, 65: {0, 0},
	66: {0, 2}, 68: {0, 1}, 69: {0, 1}, 71: {0, 0}, 72: {0, 0}, 74: {0, 1},
	75: {0, 0}, 76: {1, 1}, 77: {1, 1}, 78: {1, 2}, 79: {1, 2}, 80: {0, 1},
	81: {0, 0}, 83: {0, 0}, 84: {0, 0}, 85: {0, 1}, 86: {0, 0}, 87: {0, 1},
	88: {0, 1}, 89: {0, 1}, 90: {0, 1}, 91: {0, 0}, 92: {0, 0}, 93: {0, 0},
	94: {0, 0},
}

// apisDoc renders the table of every API key either oncelog or Kafka 4.4
// serves.
func apisDoc() []byte {
	keys := map[int16]bool{}
	for k := range handlers {
		keys[k] = true
	}
	for k := range kafka44 {
		keys[k] = true
	}
	sorted := make([]int16, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })

	var b bytes.Buffer
	b.WriteString(`# APIs and versions served

Generated from the handlers the wire package registers (ApiVersions answers
exactly these ranges); do not edit by hand. Regenerate with

    go test ./wire -run TestAPIsDoc -update

and the test fails whenever this file and the code disagree. The Kafka 4.4
column is what an Apache Kafka 4.4 broker serves (the validVersions of its
broker request schemas); "-" means not served.

| Key | API | oncelog | Kafka 4.4 | |
|----:|-----|---------|-----------|-|
`)
	rng := func(v [2]int16, ok bool) string {
		switch {
		case !ok:
			return "-"
		case v[0] == v[1]:
			return fmt.Sprint(v[0])
		}
		return fmt.Sprintf("%d-%d", v[0], v[1])
	}
	served, behind := 0, 0
	for _, k := range sorted {
		h, ok := handlers[k]
		ours := [2]int16{h.min, h.max}
		theirs, kok := kafka44[k]
		note := ""
		switch {
		case ok && !kok:
			note = "not served by Kafka"
		case !ok:
			note = "not served"
		case ours[1] < theirs[1]:
			note = "older max"
			behind++
		case ours[1] > theirs[1]:
			note = "newer max"
		}
		if ok {
			served++
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s |\n", k, kmsg.NameForKey(k), rng(ours, ok), rng(theirs, kok), note)
	}
	fmt.Fprintf(&b, "\n%d APIs served; %d of them below Kafka 4.4's max version.\n", served, behind)
	return b.Bytes()
}

func TestAPIsDoc(t *testing.T) {
	const path = "../docs/apis.md"
	want := apisDoc()
	if *updateAPIsDoc {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./wire -run TestAPIsDoc -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/apis.md differs from the registered handlers; run go test ./wire -run TestAPIsDoc -update and commit it")
	}
}
