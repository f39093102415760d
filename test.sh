#!/usr/bin/env bash
# The project's test command: the Go suite, then the JVM suites (e2e/jvm, e2e/flink), which
# runs every Java-client test against oncelog built from this checkout AND
# against a real Apache Kafka started from the Maven Central jars.
# Outside CI, a machine without mvn or java skips the JVM part with a message;
# in CI (CI set) a missing mvn or java is an error.
set -euo pipefail
cd "$(dirname "$0")"

# gotestsum (pinned in go.mod as a tool) runs `go test -json` and ends with a
# list of every skipped test and its reason, so a client missing on this
# machine shows without -v; failures print their output as usual.
go tool gotestsum --format pkgname-and-test-fails --format-hide-empty-pkg \
  --hide-summary output -- -p 1 -timeout 30m "$@" ./...

if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
  if [ -n "${CI:-}" ]; then
    echo "test.sh: mvn and java are required in CI for the JVM suite (e2e/jvm)" >&2
    exit 1
  fi
  echo "test.sh: SKIPPING the JVM suite (e2e/jvm): mvn or java not found; install Java 17+ and Maven to run it" >&2
  exit 0
fi
# e2e/pom.xml builds e2e/jvm, then e2e/flink (Flink's Kafka connector needs its own
# kafka-clients; it reuses e2e/jvm's broker fixtures through e2e/jvm's test-jar).
mvn -B -f e2e verify
