package wire

import (
	"context"
	"crypto/tls"
	"errors"

	"github.com/oncelog/oncelog/auth"
)

// handshakeTLS runs the TLS handshake of an SSL or SASL_SSL connection
// within the request read timeout. On an SSL listener a verified client
// certificate names the principal (auth.CertificatePrincipal); on SASL_SSL
// SASL does, as in Kafka. It reports whether the connection may go on.
func (c *conn) handshakeTLS(tc *tls.Conn) bool {
	ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.RequestReadTimeout)
	defer cancel()
	err := tc.HandshakeContext(ctx)
	if err != nil {
		if c.ctx.Err() != nil {
			return false
		}
		c.s.b.Stats.AuthenticationFailed.WithLabelValues(c.listener.Name, "TLS").Inc()
		msg := "TLS handshake failed; closing the connection"
		var rhe tls.RecordHeaderError
		if errors.As(err, &rhe) {
			// A Kafka frame where a ClientHello should be: the client
			// does not use TLS.
			msg = "plaintext (non-TLS) client on a TLS listener: the client must use security.protocol SSL or SASL_SSL; closing the connection"
		}
		if ok, suppressed := c.s.warn.allow("tls_handshake"); ok {
			c.s.logger.Warn(msg, "remote", c.remote, "listener", c.listener.Name, "err", err, "suppressed", suppressed)
		}
		return false
	}
	if c.listener.Protocol == SSL {
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			c.setPrincipal(auth.CertificatePrincipal(certs[0]))
		}
	}
	return true
}
