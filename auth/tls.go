package auth

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// TLSFiles are the server's TLS settings: PEM files and the client
// certificate policy (Kafka's ssl.client.auth).
type TLSFiles struct {
	CertFile     string
	KeyFile      string
	ClientCAFile string
	// ClientAuth is none, requested or required.
	ClientAuth string
}

// TLSReloader serves a TLS configuration loaded from files and reloaded
// when asked (SIGHUP) or when the files change (Watch): a renewed
// certificate takes effect for new connections without a restart. A
// reload that fails (a half-written or mismatched file) keeps the
// configuration in use and is logged.
type TLSReloader struct {
	files   TLSFiles
	logger  *slog.Logger
	current atomic.Pointer[tls.Config]
	stamp   atomic.Value // fileStamp of the loaded files
}

// ParseClientAuth maps Kafka's ssl.client.auth values to crypto/tls's:
// requested verifies a certificate if the client sends one.
func ParseClientAuth(s string) (tls.ClientAuthType, error) {
	switch s {
	case "", "none":
		return tls.NoClientCert, nil
	case "requested":
		return tls.VerifyClientCertIfGiven, nil
	case "required":
		return tls.RequireAndVerifyClientCert, nil
	}
	return 0, fmt.Errorf("--tls-client-auth %q: use none, requested or required", s)
}

// NewTLSReloader loads files; an error says which file is wrong.
func NewTLSReloader(files TLSFiles, logger *slog.Logger) (*TLSReloader, error) {
	r := &TLSReloader{files: files, logger: logger}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *TLSReloader) load() error {
	f := r.files
	if f.CertFile == "" || f.KeyFile == "" {
		return errors.New("TLS needs --tls-cert-file and --tls-key-file")
	}
	stamp := stampOf(f)
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return fmt.Errorf("load --tls-cert-file %s / --tls-key-file %s: %w", f.CertFile, f.KeyFile, err)
	}
	auth, err := ParseClientAuth(f.ClientAuth)
	if err != nil {
		return err
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   auth,
	}
	if auth != tls.NoClientCert {
		if f.ClientCAFile == "" {
			return fmt.Errorf("--tls-client-auth %s needs --tls-client-ca-file (the CA client certificates are verified against)", f.ClientAuth)
		}
	}
	if f.ClientCAFile != "" {
		pem, err := os.ReadFile(f.ClientCAFile)
		if err != nil {
			return fmt.Errorf("read --tls-client-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--tls-client-ca-file %s holds no PEM certificate", f.ClientCAFile)
		}
		cfg.ClientCAs = pool
	}
	r.current.Store(cfg)
	r.stamp.Store(stamp)
	return nil
}

// Config is the server configuration to give crypto/tls: each handshake
// uses the latest loaded files.
func (r *TLSReloader) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.current.Load(), nil
		},
	}
}

// SelfClientConfig is a client configuration for dialing this server's
// own listeners (the web console does): it trusts exactly the certificate
// the server serves at the time of the handshake, whatever its issuer and
// names, and nothing else.
func (r *TLSReloader) SelfClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verified below, against the served certificate itself.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			cfg := r.current.Load()
			if len(raw) == 0 || len(cfg.Certificates) == 0 || len(cfg.Certificates[0].Certificate) == 0 {
				return errors.New("no certificate to compare")
			}
			if !bytes.Equal(raw[0], cfg.Certificates[0].Certificate[0]) {
				return errors.New("the peer's certificate is not the one this broker serves")
			}
			return nil
		},
	}
}

// Reload reads the files again; on error the previous configuration stays.
func (r *TLSReloader) Reload() error {
	if err := r.load(); err != nil {
		r.logger.Error("TLS reload failed; still serving the previous certificate", "err", err)
		return err
	}
	r.logger.Info("TLS certificate reloaded", "cert_file", r.files.CertFile, "not_after", r.notAfter())
	return nil
}

func (r *TLSReloader) notAfter() string {
	cfg := r.current.Load()
	if len(cfg.Certificates) == 0 || cfg.Certificates[0].Leaf == nil {
		return ""
	}
	return cfg.Certificates[0].Leaf.NotAfter.UTC().Format(time.RFC3339)
}

// Watch reloads when the files' size or modification time changes,
// checking every interval until ctx ends.
func (r *TLSReloader) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now := stampOf(r.files); now != r.stamp.Load().(fileStamp) {
			if r.Reload() != nil {
				// Not again until the files change once more.
				r.stamp.Store(now)
			}
		}
	}
}

type fileStamp [3]struct {
	size  int64
	mtime int64
}

func stampOf(f TLSFiles) fileStamp {
	var s fileStamp
	for i, name := range []string{f.CertFile, f.KeyFile, f.ClientCAFile} {
		if name == "" {
			continue
		}
		if fi, err := os.Stat(name); err == nil {
			s[i].size, s[i].mtime = fi.Size(), fi.ModTime().UnixNano()
		}
	}
	return s
}

// CertificatePrincipal is the Kafka principal of a TLS client certificate
// under Kafka's default ssl.principal.mapping.rules (DEFAULT): "User:"
// and the subject's distinguished name in RFC 2253 form, most specific
// attribute first, e.g. "User:CN=alice,OU=eng,O=Acme,C=US" (what Java's
// X500Principal.getName() gives; attributes Java does not name, like
// SERIALNUMBER, are spelled differently).
func CertificatePrincipal(cert *x509.Certificate) string {
	var rdn pkix.RDNSequence
	if rest, err := asn1.Unmarshal(cert.RawSubject, &rdn); err != nil || len(rest) > 0 {
		return UserPrincipal(cert.Subject.String())
	}
	return UserPrincipal(rdn.String())
}
