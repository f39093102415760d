package cli

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/console"
	"github.com/oncelog/oncelog/internal/buildinfo"
)

// withConsole puts the web console beside the admin endpoints: /healthz,
// /readyz, /metrics and /debug/ stay the admin handler's, everything else
// is the console's.
func withConsole(admin, console http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/healthz", p == "/readyz", p == "/metrics", strings.HasPrefix(p, "/debug/"):
			admin.ServeHTTP(w, r)
			return
		}
		console.ServeHTTP(w, r)
	})
}

// consoleHandler serves the console once it exists (503 until the broker
// has opened).
func consoleHandler(cons *atomic.Pointer[console.Console]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := cons.Load()
		if c == nil {
			http.Error(w, "the console starts once recovery has finished; /readyz says when", http.StatusServiceUnavailable)
			return
		}
		c.Handler().ServeHTTP(w, r)
	})
}

// startConsole builds the console once the Kafka listeners are bound: its
// client talks to the first PLAINTEXT listener (the console acts with the
// broker's full rights, so it needs no credentials of a user).
func startConsole(o *serveOptions, b *broker.Broker, kafkaLns []net.Listener, ingestLn net.Listener) (*console.Console, error) {
	cfg := console.Config{Gatherer: b.Stats.Registry, Version: strings.SplitN(versionLine(buildinfo.Get()), "\n", 2)[0], Logger: o.logger}
	for i, l := range o.sec.resolved {
		addr := kafkaLns[i].Addr().String()
		cfg.Listeners = append(cfg.Listeners, console.Listener{Name: l.Name, Protocol: string(l.Protocol), Address: addr,
			Advertise: net.JoinHostPort(l.AdvertisedHost, strconv.Itoa(int(l.AdvertisedPort)))})
		if len(cfg.Brokers) == 0 && !l.Protocol.TLS() && !l.Protocol.SASL() {
			cfg.Brokers = []string{addr}
		}
	}
	if len(cfg.Brokers) == 0 {
		// Only authenticated listeners: the console still serves its page
		// and says why every call fails.
		cfg.Brokers = []string{kafkaLns[0].Addr().String()}
	}
	if ingestLn != nil {
		cfg.KeyLookupURL = "http://" + ingestLn.Addr().String()
	}
	return console.New(cfg)
}
