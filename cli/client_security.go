package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// saslPasswordEnv holds the SASL password, so that it is neither typed on
// a command line (where ps shows it) nor echoed.
const saslPasswordEnv = "ONCELOG_SASL_PASSWORD"

// clientSecurity are the client commands' TLS and SASL settings.
type clientSecurity struct {
	mechanism, user, password string
	tls                       bool
	caFile, certFile, keyFile string
}

func (s *clientSecurity) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&s.mechanism, "sasl-mechanism", "", "SASL mechanism: SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN (env ONCELOG_SASL_MECHANISM; default: SCRAM-SHA-512 when --sasl-user is set, else no SASL)")
	fs.StringVar(&s.user, "sasl-user", "", "SASL user name (env ONCELOG_SASL_USER)")
	fs.StringVar(&s.password, "sasl-password", "", "SASL password; prefer the environment variable "+saslPasswordEnv+", which ps does not show")
	fs.BoolVar(&s.tls, "tls", false, "connect with TLS (for SSL and SASL_SSL listeners); implied by the other --tls-* flags")
	fs.StringVar(&s.caFile, "tls-ca-file", "", "PEM CA certificates to verify the broker with (default: the system's)")
	fs.StringVar(&s.certFile, "tls-cert-file", "", "PEM client certificate, for brokers that ask for one (mTLS)")
	fs.StringVar(&s.keyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
}

// resolve reads the environment defaults and checks the combination.
func (s *clientSecurity) resolve(fs *pflag.FlagSet) error {
	for flag, env := range map[string]string{"sasl-mechanism": "ONCELOG_SASL_MECHANISM", "sasl-user": "ONCELOG_SASL_USER", "sasl-password": saslPasswordEnv} {
		if f := fs.Lookup(flag); f != nil && !f.Changed {
			if v, ok := os.LookupEnv(env); ok {
				_ = f.Value.Set(v)
			}
		}
	}
	s.mechanism = strings.ToUpper(strings.TrimSpace(s.mechanism))
	if s.mechanism == "" && s.user != "" {
		s.mechanism = "SCRAM-SHA-512"
	}
	switch s.mechanism {
	case "":
		// A password from the environment alone is ignored (it may be
		// set for other commands); one on the command line is a mistake.
		if f := fs.Lookup("sasl-password"); f != nil && f.Changed {
			return usageErrorf("--sasl-password is set but no --sasl-user")
		}
	case "SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN":
		if s.user == "" {
			return usageErrorf("--sasl-mechanism %s needs --sasl-user", s.mechanism)
		}
		if s.password == "" {
			return usageErrorf("--sasl-user %s needs a password: set %s (or --sasl-password)", s.user, saslPasswordEnv)
		}
	default:
		return usageErrorf("--sasl-mechanism %q: use SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN", s.mechanism)
	}
	if (s.certFile == "") != (s.keyFile == "") {
		return usageErrorf("--tls-cert-file and --tls-key-file go together")
	}
	if s.caFile != "" || s.certFile != "" {
		s.tls = true
	}
	return nil
}

// opts are the franz-go options for these settings.
func (s *clientSecurity) opts() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	switch s.mechanism {
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: s.user, Pass: s.password}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: s.user, Pass: s.password}.AsSha512Mechanism()))
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: s.user, Pass: s.password}.AsMechanism()))
	}
	if !s.tls {
		return opts, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.caFile != "" {
		pem, err := os.ReadFile(s.caFile)
		if err != nil {
			return nil, usageErrorf("--tls-ca-file: %v", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, usageErrorf("--tls-ca-file %s holds no PEM certificate", s.caFile)
		}
	}
	if s.certFile != "" {
		cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
		if err != nil {
			return nil, usageErrorf("--tls-cert-file/--tls-key-file: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	// kgo.DialTLSConfig sets ServerName per broker from the address it dials.
	return append(opts, kgo.DialTLSConfig(cfg)), nil
}

// describe says how the client connects, for error messages: never the password.
func (s *clientSecurity) describe() string {
	var parts []string
	if s.tls {
		parts = append(parts, "TLS")
	}
	if s.mechanism != "" {
		parts = append(parts, fmt.Sprintf("SASL %s as %s", s.mechanism, s.user))
	}
	if len(parts) == 0 {
		return "plaintext"
	}
	return strings.Join(parts, ", ")
}

// authFailed explains a connection refused for its credentials or its
// security protocol; nil if err is something else.
func (s *clientSecurity) authFailed(brokers string, err error) error {
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return fmt.Errorf("broker at %s refused the login (%s): check the user and password (%w)", brokers, s.describe(), err)
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		return fmt.Errorf("broker at %s does not offer SASL %s on this listener (its --sasl-mechanisms; PLAIN needs SASL_SSL): %w", brokers, s.mechanism, err)
	case errors.Is(err, kerr.IllegalSaslState):
		return fmt.Errorf("broker at %s: this listener does not use SASL; drop --sasl-user or connect to its SASL listener (%w)", brokers, err)
	}
	var certErr *tls.CertificateVerificationError
	var rhe tls.RecordHeaderError
	switch {
	case errors.As(err, &certErr):
		return fmt.Errorf("broker at %s: its TLS certificate is not trusted: set --tls-ca-file to the CA that signed it (%w)", brokers, err)
	case errors.As(err, &rhe):
		return fmt.Errorf("broker at %s did not answer TLS: is this an SSL or SASL_SSL listener? (%w)", brokers, err)
	}
	return nil
}
