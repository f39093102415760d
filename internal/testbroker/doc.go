// Package testbroker runs the real oncelog binary as a subprocess, for
// integration and crash tests that need a broker process they can kill,
// stop cleanly and restart on the same ports and data directory.
//
// # Usage
//
//	func TestSurvivesCrash(t *testing.T) {
//		b := testbroker.Start(t, testbroker.Options{})
//		cl, _ := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
//		// ... produce with acks=all ...
//		cl.Close()
//
//		b.Kill()    // SIGKILL: no clean shutdown, like a power cut for the process
//		b.Restart() // same ports, same data dir; returns once the broker answers
//		// ... reconnect and check every acknowledged record is still there ...
//	}
//
// Start builds the binary once per test process (go build of
// github.com/oncelog/oncelog/cmd/oncelog, in the module found by
// `go env GOMOD`), picks three free loopback ports (Kafka listener, admin
// listener, HTTP ingest listener) that the broker keeps across restarts, and
// runs
//
//	oncelog serve --listen 127.0.0.1:P --advertise A --data-dir D \
//	    --admin-listen 127.0.0.1:P2 --http-listen 127.0.0.1:P3 --log-level warn [Options.ExtraArgs...]
//
// It then waits (up to 30 s) until the broker answers an ApiVersions request,
// failing the test with the broker's output if it does not. t.Cleanup kills
// the broker; if the test failed, the tail of the broker's output is logged.
//
// Kill, Stop and Restart call t.Fatal on failure, so call them from the test
// goroutine. Stop fails the test unless the broker exits with status 0 within
// 30 s of SIGTERM: it checks clean shutdown as well as performing it.
//
// # Environment
//
// ONCELOG_TESTBROKER_BINARY, if set, names a prebuilt binary to run instead of
// building one, e.g. a race-enabled build:
//
//	go build -race -o /tmp/oncelog ./cmd/oncelog
//	ONCELOG_TESTBROKER_BINARY=/tmp/oncelog go test ./...
//
// The built binary lives in a temporary directory. To remove it when the
// tests finish, use Run from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testbroker.Run(m)) }
//
// # Behind a fault proxy
//
// Kafka clients connect to the addresses the broker advertises in Metadata,
// so a broker behind internal/faultproxy must advertise the proxy's address:
//
//	proxy, _ := faultproxy.Start("") // target set below
//	b := testbroker.Start(t, testbroker.Options{Advertise: proxy.Addr()})
//	proxy.SetTarget(b.Addr())
//	cl, _ := kgo.NewClient(kgo.SeedBrokers(proxy.Addr()))
package testbroker
