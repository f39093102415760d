package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/oncelog/oncelog/auth"
	"github.com/oncelog/oncelog/wire"
	"github.com/spf13/pflag"
)

// securityOptions are serve's listener and authentication settings.
type securityOptions struct {
	listeners           string
	advertisedListeners string
	protocolMap         string
	saslMechanisms      string
	reauthMs            int64
	failedAuthDelayMs   int64
	tls                 auth.TLSFiles
	adminTokenFile      string
	httpTokenFile       string
	// httpTokens guard the HTTP ingest listener (nil: open).
	httpTokens *auth.BearerTokens
	admin      adminSecurity // set by resolveListeners

	// tlsReloader serves the certificate of SSL and SASL_SSL listeners
	// (nil without them); runServe reloads it on SIGHUP and file changes.
	tlsReloader *auth.TLSReloader

	// Set by resolveListeners: what runServe binds, in order.
	resolved []boundListener
}

// boundListener is a listener to bind: its address and how it is served.
type boundListener struct {
	addr string
	wire.Listener
}

func addSecurityFlags(f *pflag.FlagSet, o *serveOptions) {
	s := &o.sec
	f.StringVar(&s.listeners, "listeners", "", "Kafka listeners to bind, NAME://host:port comma-separated, NAME a security protocol (PLAINTEXT, SASL_PLAINTEXT, SSL, SASL_SSL) or a name of --listener-security-protocol-map, e.g. 'PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9094' (listeners); replaces --listen and --advertise (default: the one PLAINTEXT listener of --listen)")
	f.StringVar(&s.advertisedListeners, "advertised-listeners", "", "what clients of each listener are told to connect to, NAME://host:port comma-separated (advertised.listeners); a listener not named advertises its own address (default: --listeners)")
	f.StringVar(&s.protocolMap, "listener-security-protocol-map", "", "security protocol of custom listener names, NAME:PROTOCOL comma-separated, e.g. 'INTERNAL:SASL_PLAINTEXT,EXTERNAL:SASL_SSL' (listener.security.protocol.map; default: listener names are protocols)")
	f.StringVar(&s.tls.CertFile, "tls-cert-file", "", "PEM certificate (chain) of SSL and SASL_SSL listeners; reloaded on SIGHUP and when the file changes (ssl.keystore.location; default none, needed by SSL and SASL_SSL listeners)")
	f.StringVar(&s.tls.KeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file (default none, needed with --tls-cert-file)")
	f.StringVar(&s.tls.ClientCAFile, "tls-client-ca-file", "", "PEM CA certificates client certificates are verified against, for --tls-client-auth requested or required (ssl.truststore.location; default none)")
	f.StringVar(&s.tls.ClientAuth, "tls-client-auth", "none", "client certificates on SSL and SASL_SSL listeners: none, requested (verified if sent) or required (ssl.client.auth); on SSL listeners a client certificate's subject is the principal, User:CN=...,O=... (see docs/security.md)")
	f.BoolVar(&s.admin.pprof, "admin-pprof", false, "serve Go profiles at /debug/pprof/ on the admin listener, the mutex and block profiles sampled (default off: profiles expose memory contents and cost CPU)")
	f.StringVar(&s.adminTokenFile, "admin-token-file", "", "file of bearer tokens, one per line, that /metrics and /debug/pprof on the admin listener require (Authorization: Bearer <token>; /healthz and /readyz stay open); reloaded on SIGHUP (default none: no token needed)")
	f.StringVar(&s.httpTokenFile, "http-token-file", "", "file of bearer tokens, one per line, that every request to the HTTP ingest listener must carry (Authorization: Bearer <token>); reloaded on SIGHUP (default none: the HTTP listener is open)")
	f.StringVar(&s.saslMechanisms, "sasl-mechanisms", auth.DefaultMechanisms, "SASL mechanisms of SASL_PLAINTEXT and SASL_SSL listeners: SCRAM-SHA-256, SCRAM-SHA-512, PLAIN, checked against the users of `oncelog user` (sasl.enabled.mechanisms)")
	f.BoolVar(&o.wire.SASLPlainAllowUnencrypted, "sasl-plain-allow-unencrypted", false, "allow SASL PLAIN, which sends the password itself, on SASL_PLAINTEXT listeners too (default: PLAIN only over SASL_SSL)")
	f.Int64Var(&s.reauthMs, "connections-max-reauth-ms", 0, "SASL session lifetime in milliseconds: clients must re-authenticate within it or their connection is closed at its next request (connections.max.reauth.ms, KIP-368; default 0: sessions do not expire)")
	f.Int32Var(&o.wire.SASLServerMaxReceiveSize, "sasl-server-max-receive-size", wire.DefaultSASLServerMaxReceiveSize, "largest request, in bytes, a SASL connection may send before it has authenticated (sasl.server.max.receive.size)")
	f.Int64Var(&s.failedAuthDelayMs, "connection-failed-authentication-delay-ms", wire.DefaultFailedAuthenticationDelay.Milliseconds(), "delay, in milliseconds, before a failed authentication is answered and its connection closed; slows password guessing (connection.failed.authentication.delay.ms)")
}

// resolveListeners checks the listener and SASL settings and decides what
// to bind. The first listener's advertised address is the broker config's.
func (o *serveOptions) resolveListeners(fs *pflag.FlagSet, logger *slog.Logger) error {
	s := &o.sec
	s.admin.tokens = nil
	if s.adminTokenFile != "" {
		tokens, err := auth.LoadBearerTokens(s.adminTokenFile)
		if err != nil {
			return fmt.Errorf("--admin-token-file: %w", err)
		}
		s.admin.tokens = tokens
	}
	s.httpTokens = nil
	if s.httpTokenFile != "" {
		tokens, err := auth.LoadBearerTokens(s.httpTokenFile)
		if err != nil {
			return fmt.Errorf("--http-token-file: %w", err)
		}
		s.httpTokens = tokens
	}
	mechs, err := auth.ParseMechanisms(s.saslMechanisms)
	if err != nil {
		return fmt.Errorf("--sasl-mechanisms: %w", err)
	}
	o.wire.SASLMechanisms = mechs
	if s.reauthMs < 0 {
		return fmt.Errorf("--connections-max-reauth-ms must be 0 (no expiry) or positive")
	}
	if s.failedAuthDelayMs < 0 {
		return fmt.Errorf("--connection-failed-authentication-delay-ms must not be negative")
	}
	if o.wire.SASLServerMaxReceiveSize < 8 {
		return fmt.Errorf("--sasl-server-max-receive-size must be at least 8")
	}
	o.wire.ConnectionsMaxReauth = time.Duration(s.reauthMs) * time.Millisecond
	o.wire.FailedAuthenticationDelay = time.Duration(s.failedAuthDelayMs) * time.Millisecond

	if s.listeners == "" && (s.tls.CertFile != "" || s.tls.KeyFile != "" || s.tls.ClientCAFile != "" || s.tls.ClientAuth != "none") {
		return fmt.Errorf("--tls-* settings need an SSL or SASL_SSL listener in --listeners")
	}
	if s.listeners == "" {
		if s.advertisedListeners != "" {
			return fmt.Errorf("--advertised-listeners needs --listeners; with --listen, use --advertise")
		}
		// --listen first: --advertise defaults to the --listen address,
		// and a mistake there must be blamed on --listen.
		listen, advertise, advertiseFlag := o.listen, o.advertise, "--advertise"
		if _, _, err := net.SplitHostPort(listen); err != nil {
			return fmt.Errorf("--listen %q must be host:port: %w", listen, err)
		}
		if advertise == "" {
			advertise, advertiseFlag = listen, "--listen"
		}
		host, port, err := splitAdvertise(advertiseFlag, advertise, logger)
		if err != nil {
			return err
		}
		o.cfg.AdvertisedHost, o.cfg.AdvertisedPort = host, port
		l := wire.PlaintextListener
		l.AdvertisedHost, l.AdvertisedPort = host, port
		s.resolved = []boundListener{{addr: listen, Listener: l}}
		return nil
	}
	if fs.Changed("listen") || fs.Changed("advertise") || o.listen != fs.Lookup("listen").DefValue || o.advertise != "" {
		return fmt.Errorf("--listen and --advertise are the shorthand for one PLAINTEXT listener: with --listeners, put every listener in --listeners (e.g. PLAINTEXT://%s) and their addresses for clients in --advertised-listeners", o.listen)
	}
	protocols := map[string]wire.SecurityProtocol{}
	if s.protocolMap != "" {
		for _, item := range strings.Split(s.protocolMap, ",") {
			name, proto, ok := strings.Cut(strings.TrimSpace(item), ":")
			if !ok || name == "" {
				return fmt.Errorf("--listener-security-protocol-map: %q is not NAME:PROTOCOL", item)
			}
			p, err := wire.ParseSecurityProtocol(proto)
			if err != nil {
				return fmt.Errorf("--listener-security-protocol-map: %w", err)
			}
			protocols[strings.ToUpper(name)] = p
		}
	}
	specs, err := wire.ParseListeners("--listeners", s.listeners, true)
	if err != nil {
		return err
	}
	advertised := map[string]wire.ListenerSpec{}
	if s.advertisedListeners != "" {
		adv, err := wire.ParseListeners("--advertised-listeners", s.advertisedListeners, false)
		if err != nil {
			return err
		}
		for _, a := range adv {
			advertised[a.Name] = a
		}
	}
	s.resolved = nil
	for _, spec := range specs {
		proto, ok := protocols[spec.Name]
		if !ok {
			if proto, err = wire.ParseSecurityProtocol(spec.Name); err != nil {
				return fmt.Errorf("--listeners: listener %s: not a security protocol and not in --listener-security-protocol-map", spec.Name)
			}
		}
		var tlsConfig *tls.Config
		if proto.TLS() {
			if s.tlsReloader == nil {
				if s.tls.CertFile == "" || s.tls.KeyFile == "" {
					return fmt.Errorf("--listeners: listener %s is %s: it needs --tls-cert-file and --tls-key-file", spec.Name, proto)
				}
				if s.tlsReloader, err = auth.NewTLSReloader(s.tls, logger); err != nil {
					return err
				}
			}
			tlsConfig = s.tlsReloader.Config()
		}
		adv, ok := advertised[spec.Name]
		if !ok {
			adv = spec
		}
		delete(advertised, spec.Name)
		if adv.Port == 0 {
			return fmt.Errorf("--listeners: listener %s binds port 0 (any); name its address in --advertised-listeners", spec.Name)
		}
		host, port, err := splitAdvertise("--advertised-listeners "+spec.Name, adv.Addr(), logger)
		if err != nil {
			return err
		}
		s.resolved = append(s.resolved, boundListener{addr: spec.Addr(), Listener: wire.Listener{
			Name: spec.Name, Protocol: proto, AdvertisedHost: host, AdvertisedPort: port, TLS: tlsConfig,
		}})
	}
	if s.tlsReloader == nil && (s.tls.CertFile != "" || s.tls.KeyFile != "" || s.tls.ClientCAFile != "" || s.tls.ClientAuth != "none") {
		return fmt.Errorf("--tls-* settings need an SSL or SASL_SSL listener in --listeners")
	}
	if _, err := auth.ParseClientAuth(s.tls.ClientAuth); err != nil {
		return err
	}
	for name := range advertised {
		return fmt.Errorf("--advertised-listeners: %s is not a listener of --listeners", name)
	}
	first := s.resolved[0]
	o.cfg.AdvertisedHost, o.cfg.AdvertisedPort = first.AdvertisedHost, first.AdvertisedPort
	return nil
}

// splitAdvertise parses an advertised host:port; an all-interfaces host is
// advertised as 127.0.0.1, with a warning.
func splitAdvertise(flag, addr string, logger *slog.Logger) (string, int32, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q must be host:port: %w", flag, addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("%s %q: the port must be 1-65535", flag, addr)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
		logger.Warn("listening on all interfaces but advertising 127.0.0.1; set --advertise (or --advertised-listeners) to an address clients can reach", "listener_address", addr)
	}
	return host, int32(port), nil
}

// tlsWatchInterval is how often the TLS files are checked for changes:
// certificate renewal tools replace them days before expiry, so a few
// seconds late is fine, and a stat per file is cheap.
const tlsWatchInterval = 10 * time.Second

// watchTLS reloads the TLS certificate on SIGHUP and when its files
// change, and the admin and HTTP tokens on SIGHUP, until ctx ends.
func (s *securityOptions) watchTLS(ctx context.Context, logger *slog.Logger) {
	if s.tlsReloader == nil && s.admin.tokens == nil && s.httpTokens == nil {
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				logger.Info("SIGHUP: reloading the TLS certificate and token files")
				if s.tlsReloader != nil {
					_ = s.tlsReloader.Reload()
				}
				for name, tokens := range map[string]*auth.BearerTokens{"--admin-token-file": s.admin.tokens, "--http-token-file": s.httpTokens} {
					if tokens == nil {
						continue
					}
					if err := tokens.Reload(); err != nil {
						logger.Error("token file reload failed; the previous tokens stay", "flag", name, "err", err)
					}
				}
			}
		}
	}()
	if s.tlsReloader != nil {
		go s.tlsReloader.Watch(ctx, tlsWatchInterval)
	}
}
