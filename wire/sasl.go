package wire

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/oncelog/oncelog/auth"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	saslHandshakeKey    = 17
	saslAuthenticateKey = 36
)

func init() {
	// SaslHandshake v0 is followed by raw SASL tokens (no Kafka header),
	// v1 by SaslAuthenticate requests (KIP-152).
	register(saslHandshakeKey, 0, 1, handleSaslHandshake)
	register(saslAuthenticateKey, 0, 2, handleSaslAuthenticate)
}

// Kafka's defaults for the SASL settings of wire.Config.
const (
	// DefaultSASLServerMaxReceiveSize is sasl.server.max.receive.size:
	// the largest request a SASL connection may send before it is
	// authenticated (an unauthenticated client cannot make the broker
	// buffer socket.request.max.bytes).
	DefaultSASLServerMaxReceiveSize = 524288
	// DefaultFailedAuthenticationDelay is
	// connection.failed.authentication.delay.ms: a failed login is
	// answered (and its connection closed) this much later, which slows
	// password guessing.
	DefaultFailedAuthenticationDelay = 100 * time.Millisecond
)

// saslStage is where a SASL listener's connection is in Kafka's
// SaslServerAuthenticator state machine.
type saslStage uint8

const (
	// saslBegin: only ApiVersions and SaslHandshake are accepted.
	saslBegin saslStage = iota
	// saslAuthenticating: a mechanism was chosen; only its tokens
	// (SaslAuthenticate, or raw frames after a v0 handshake) are accepted.
	saslAuthenticating
	// saslDone: authenticated; every request is served, and a
	// SaslHandshake starts a re-authentication (KIP-368).
	saslDone
)

// saslState is a connection's authentication; only its reader goroutine
// (which runs the handlers' synchronous parts) touches it.
type saslState struct {
	stage     saslStage
	mechanism string
	exchange  auth.Exchange
	// raw: the handshake was v0, so tokens arrive as bare size-prefixed
	// frames rather than in SaslAuthenticate requests.
	raw bool
	// reauth: this exchange re-authenticates a connection authenticated
	// as user; the principal must not change.
	reauth bool
	user   string
	// expires is when the session ends (connections.max.reauth.ms after
	// the last authentication); zero: never.
	expires time.Time
	// failed: the last exchange failed; the reader stops once the failure
	// response is queued and the connection closes after it is written.
	failed bool
}

// Why the broker closed a SASL connection.
var (
	errSASLFailed         = errors.New("SASL authentication failed")
	errSessionExpired     = errors.New("SASL session expired without re-authentication (connections.max.reauth.ms)")
	errUnexpectedBeforeAu = errors.New("request before SASL authentication")
)

// gate applies Kafka's rule for SASL listeners: until the exchange
// completes only ApiVersions, SaslHandshake and then SaslAuthenticate are
// served; anything else closes the connection, as SaslServerAuthenticator
// does. An authenticated session past its lifetime is closed at its next
// request unless that request re-authenticates.
func (c *conn) gate(req *request) error {
	if !c.listener.Protocol.SASL() {
		return nil
	}
	st := &c.sasl
	switch st.stage {
	case saslBegin:
		if req.key == apiVersionsKey || req.key == saslHandshakeKey {
			return nil
		}
		return fmt.Errorf("%w: unexpected %s request during SASL handshake", errUnexpectedBeforeAu, kmsg.NameForKey(req.key))
	case saslAuthenticating:
		if req.key == saslAuthenticateKey {
			return nil
		}
		return fmt.Errorf("%w: unexpected %s request during SASL authentication", errUnexpectedBeforeAu, kmsg.NameForKey(req.key))
	}
	if !st.expires.IsZero() && time.Now().After(st.expires) && req.key != saslHandshakeKey {
		return errSessionExpired
	}
	return nil
}

// maxFrame is the largest frame the connection may send now:
// sasl.server.max.receive.size until a SASL connection is authenticated.
func (c *conn) maxFrame() int32 {
	if c.listener.Protocol.SASL() && c.sasl.stage != saslDone {
		return min(c.s.cfg.SASLServerMaxReceiveSize, c.s.cfg.MaxRequestBytes)
	}
	return c.s.cfg.MaxRequestBytes
}

// mechanismsHere are the mechanisms a client of this listener may use:
// PLAIN sends the password itself, so only over TLS unless allowed.
func (c *conn) mechanismsHere() []string {
	var out []string
	for _, m := range c.s.cfg.SASLMechanisms {
		if m == auth.MechanismPlain && !c.listener.Protocol.TLS() && !c.s.cfg.SASLPlainAllowUnencrypted {
			continue
		}
		out = append(out, m)
	}
	return out
}

func handleSaslHandshake(c *conn, r *request) respond {
	req := r.kreq.(*kmsg.SASLHandshakeRequest)
	resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	st := &c.sasl
	// Kafka answers ILLEGAL_SASL_STATE on a non-SASL listener, and on an
	// authenticated connection that has no session lifetime to renew.
	if !c.listener.Protocol.SASL() || st.stage == saslAuthenticating || (st.stage == saslDone && st.expires.IsZero()) {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		return ready(resp)
	}
	resp.SupportedMechanisms = c.mechanismsHere()
	if !slices.Contains(resp.SupportedMechanisms, req.Mechanism) {
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		c.authFailed(req.Mechanism, "", fmt.Errorf("unsupported mechanism %q (enabled here: %v)", req.Mechanism, resp.SupportedMechanisms))
		return c.delayed(resp)
	}
	if st.stage == saslDone && req.Mechanism != st.mechanism {
		// Kafka re-authenticates only with the mechanism of the first
		// authentication (ReauthInfo.saslMechanismUnchanged).
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		c.authFailed(req.Mechanism, st.user, fmt.Errorf("re-authentication with %s, not the session's %s", req.Mechanism, st.mechanism))
		return c.delayed(resp)
	}
	x, err := auth.NewExchange(req.Mechanism, c.s.b.Users)
	if err != nil { // cannot happen for a listed mechanism
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		c.authFailed(req.Mechanism, "", err)
		return c.delayed(resp)
	}
	st.reauth = st.stage == saslDone
	st.stage, st.mechanism, st.exchange, st.raw = saslAuthenticating, req.Mechanism, x, req.Version == 0
	return ready(resp)
}

func handleSaslAuthenticate(c *conn, r *request) respond {
	req := r.kreq.(*kmsg.SASLAuthenticateRequest)
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	st := &c.sasl
	if !c.listener.Protocol.SASL() || st.stage != saslAuthenticating || st.raw {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		msg := "SaslAuthenticate request received after successful authentication"
		if st.stage != saslDone {
			msg = "SaslAuthenticate request received without a SaslHandshake"
		}
		resp.ErrorMessage = &msg
		return ready(resp)
	}
	reply, err := c.saslStep(req.SASLAuthBytes)
	if err != nil {
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		msg := c.clientMessage(err)
		resp.ErrorMessage = &msg
		return c.delayed(resp)
	}
	resp.SASLAuthBytes = reply
	if st.stage == saslDone && !st.expires.IsZero() {
		resp.SessionLifetimeMillis = time.Until(st.expires).Milliseconds()
	}
	return ready(resp)
}

// saslStep feeds a token to the exchange. On its completion the
// connection's principal is set and its session lifetime starts; on
// failure the connection is marked to close after the answer.
func (c *conn) saslStep(token []byte) ([]byte, error) {
	st := &c.sasl
	reply, done, err := st.exchange.Step(token)
	if err == nil && done && st.reauth && st.exchange.User() != st.user {
		err = &auth.ClientError{Msg: fmt.Sprintf("Cannot change principals during re-authentication from %s: %s",
			auth.UserPrincipal(st.user), auth.UserPrincipal(st.exchange.User()))}
	}
	if err != nil {
		st.failed = true
		c.authFailed(st.mechanism, st.exchange.User(), err)
		return nil, err
	}
	if !done {
		return reply, nil
	}
	st.stage, st.user, st.raw, st.exchange = saslDone, st.exchange.User(), false, nil
	st.expires = time.Time{}
	if d := c.s.cfg.ConnectionsMaxReauth; d > 0 {
		st.expires = time.Now().Add(d)
	}
	c.setPrincipal(auth.UserPrincipal(st.user))
	c.s.b.Stats.Authentications.WithLabelValues(c.listener.Name, st.mechanism).Inc()
	return reply, nil
}

// clientMessage is the error message Kafka sends for a failed exchange:
// the mechanism's own for the failures it reports to clients
// (auth.ClientError), otherwise one that says nothing about whether the
// user exists.
func (c *conn) clientMessage(err error) string {
	if ce, ok := errors.AsType[*auth.ClientError](err); ok {
		return ce.Msg
	}
	what := "authentication"
	if c.sasl.reauth {
		what = "re-authentication"
	}
	return fmt.Sprintf("Authentication failed during %s due to invalid credentials with SASL mechanism %s", what, c.sasl.mechanism)
}

// authFailed counts and logs (rate-limited) a failed exchange and marks
// the connection to close after its answer. Passwords never reach the
// log: the errors of package auth do not carry them.
func (c *conn) authFailed(mechanism, user string, err error) {
	c.sasl.failed = true
	if mechanism == "" || !slices.Contains(c.s.cfg.SASLMechanisms, mechanism) {
		mechanism = "none" // a client-chosen string: not a label value
	}
	c.s.b.Stats.AuthenticationFailed.WithLabelValues(c.listener.Name, mechanism).Inc()
	if ok, suppressed := c.s.warn.allow("auth_failed"); ok {
		attrs := []any{"remote", c.remote, "listener", c.listener.Name, "mechanism", mechanism, "user", user, "err", err, "suppressed", suppressed}
		if errors.Is(err, auth.ErrStore) {
			c.s.logger.Error("SASL authentication failed: cannot read the credential store", attrs...)
		} else {
			c.s.logger.Warn("SASL authentication failed; closing the connection", attrs...)
		}
	}
}

// delayed answers a failed authentication after
// connection.failed.authentication.delay.ms.
func (c *conn) delayed(resp kmsg.Response) respond {
	d := c.s.cfg.FailedAuthenticationDelay
	return func(ctx context.Context) kmsg.Response {
		if d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
		}
		return resp
	}
}
