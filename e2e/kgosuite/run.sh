#!/usr/bin/env bash
# Runs franz-go's own pkg/kgo integration suite (the version go.mod names)
# against a fresh oncelog broker and prints the pass/fail/skip counts; see
# TestKgoIntegrationSuite in e2e/kgosuite_test.go. About five minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
go mod download github.com/twmb/franz-go
ONCELOG_KGO_SUITE=1 exec go test -count=1 -timeout 30m -run '^TestKgoIntegrationSuite$' -v ./e2e/ "$@"
