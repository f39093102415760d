//go:build race

package soak

// raceEnabled: this test binary, and in CI the broker it runs (see .ci/run:
// ONCELOG_TESTBROKER_BINARY is a -race build), carry the race detector.
const raceEnabled = true
