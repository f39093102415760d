package cli

import (
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/oncelog/oncelog/auth"
	"github.com/oncelog/oncelog/broker"
	"github.com/oncelog/oncelog/console"
	"github.com/oncelog/oncelog/internal/buildinfo"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kgo"
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

// consoleLoginOptions bound the console's login sessions (used when the
// broker has a SASL listener).
type consoleLoginOptions struct {
	maxSessions        int
	maxSessionsPerUser int
	idleTimeout        time.Duration
	maxAge             time.Duration
	secureCookie       bool
}

func addConsoleLoginFlags(f *pflag.FlagSet, o *consoleLoginOptions) {
	f.IntVar(&o.maxSessions, "admin-console-max-sessions", console.DefaultMaxSessions, "most web console login sessions held at once, with a SASL listener (each holds a Kafka client authenticated as its user); a login beyond it is refused with 503 until one logs out or expires (a user who already holds a session gets that user's least recently used one ended instead)")
	f.IntVar(&o.maxSessionsPerUser, "admin-console-max-sessions-per-user", console.DefaultMaxSessionsPerUser, "most web console login sessions one user holds at once: a login beyond it ends that user's least recently used session and closes its client, so one user's repeated logins cannot fill --admin-console-max-sessions")
	f.DurationVar(&o.idleTimeout, "admin-console-session-idle-timeout", console.DefaultIdleTimeout, "a web console login session unused this long ends and its client is closed")
	f.DurationVar(&o.maxAge, "admin-console-session-max-age", console.DefaultMaxAge, "a web console login session ends this long after its login, used or not")
	f.BoolVar(&o.secureCookie, "admin-console-secure-cookie", false, "mark the console's session cookie Secure, for a TLS-terminating proxy in front of the admin listener (the admin listener itself serves plain HTTP; default off)")
}

// startConsole builds the console once the Kafka listeners are bound.
// With a SASL listener, every user logs in and the console acts through a
// client authenticated as that user on that listener (a SASL_PLAINTEXT one
// if there is one: it is local). Without one, its single client talks to
// the first PLAINTEXT listener as the anonymous principal.
func startConsole(o *serveOptions, b *broker.Broker, kafkaLns []net.Listener, ingestLn net.Listener) (*console.Console, error) {
	cfg := console.Config{Gatherer: b.Stats.Registry, Version: strings.SplitN(versionLine(buildinfo.Get()), "\n", 2)[0], Logger: o.logger}
	var saslAddr string
	var saslTLS bool
	for i, l := range o.sec.resolved {
		addr := kafkaLns[i].Addr().String()
		cfg.Listeners = append(cfg.Listeners, console.Listener{Name: l.Name, Protocol: string(l.Protocol), Address: addr,
			Advertise: net.JoinHostPort(l.AdvertisedHost, strconv.Itoa(int(l.AdvertisedPort)))})
		if len(cfg.Brokers) == 0 && !l.Protocol.TLS() && !l.Protocol.SASL() {
			cfg.Brokers = []string{addr}
		}
		if l.Protocol.SASL() && (saslAddr == "" || saslTLS && !l.Protocol.TLS()) {
			saslAddr, saslTLS = addr, l.Protocol.TLS()
		}
	}
	if saslAddr != "" {
		login := &console.Login{Brokers: []string{saslAddr}, MaxSessions: o.consoleLogin.maxSessions,
			MaxSessionsPerUser: o.consoleLogin.maxSessionsPerUser,
			IdleTimeout:        o.consoleLogin.idleTimeout, MaxAge: o.consoleLogin.maxAge, SecureCookie: o.consoleLogin.secureCookie}
		for _, m := range []string{auth.MechanismSCRAM512, auth.MechanismSCRAM256, auth.MechanismPlain} {
			if !slices.Contains(o.wire.SASLMechanisms, m) || m == auth.MechanismPlain && !saslTLS && !o.wire.SASLPlainAllowUnencrypted {
				continue
			}
			login.Mechanisms = append(login.Mechanisms, m)
		}
		if saslTLS {
			// The console dials the broker's own listener: it trusts
			// exactly the certificate that listener serves.
			login.ClientOpts = []kgo.Opt{kgo.DialTLSConfig(o.sec.tlsReloader.SelfClientConfig())}
		}
		cfg.Login = login
	}
	if len(cfg.Brokers) == 0 {
		cfg.Brokers = []string{kafkaLns[0].Addr().String()}
	}
	if ingestLn != nil {
		cfg.KeyLookupURL = "http://" + ingestLn.Addr().String()
		if o.sec.httpTokens != nil {
			// The listener wants a token of --http-token-file; the
			// user's right to the topic is checked by the console.
			cfg.KeyLookupToken = o.sec.httpTokens.Token
		}
	}
	return console.New(cfg)
}
