package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"strings"

	"github.com/xdg-go/scram"
)

// Kafka's bounds on SCRAM iterations (ScramMechanism.minIterations and
// maxIterations): fewer make a stolen credential cheap to brute-force,
// more make every login slow enough to be a denial of service.
const (
	MinIterations = 4096
	MaxIterations = 16384
	// DefaultIterations is what `oncelog user create` uses: twice
	// kafka-configs.sh's 4096, still a few milliseconds per login.
	DefaultIterations = 8192
	saltBytes         = 32
)

// Credential is what the broker stores for a user and a SCRAM mechanism:
// never the password, only the salt, the iteration count and the two keys
// derived from the salted password (RFC 5802 section 3). A stolen
// credential does not let its holder log in (the client proof needs
// ClientKey, which StoredKey is a hash of).
type Credential struct {
	Mechanism  string
	Iterations int
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
}

func hashFor(mechanism string) (func() hash.Hash, error) {
	switch mechanism {
	case MechanismSCRAM256:
		return sha256.New, nil
	case MechanismSCRAM512:
		return sha512.New, nil
	}
	return nil, fmt.Errorf("unknown SCRAM mechanism %q", mechanism)
}

// IsSCRAM reports whether mechanism is one of the SCRAM mechanisms.
func IsSCRAM(mechanism string) bool {
	_, err := hashFor(mechanism)
	return err == nil
}

// CheckIterations applies Kafka's bounds to a requested iteration count.
func CheckIterations(iterations int) error {
	if iterations < MinIterations {
		return fmt.Errorf("too few iterations: %d is below the minimum %d", iterations, MinIterations)
	}
	if iterations > MaxIterations {
		return fmt.Errorf("too many iterations: %d is above the maximum %d", iterations, MaxIterations)
	}
	return nil
}

// NewCredential salts and hashes password with a fresh random salt.
func NewCredential(mechanism, password string, iterations int) (Credential, error) {
	if err := CheckIterations(iterations); err != nil {
		return Credential{}, err
	}
	h, err := hashFor(mechanism)
	if err != nil {
		return Credential{}, err
	}
	salt := make([]byte, saltBytes)
	_, _ = rand.Read(salt)
	salted, err := pbkdf2.Key(h, password, salt, iterations, h().Size())
	if err != nil {
		return Credential{}, err
	}
	return CredentialFromSaltedPassword(mechanism, salt, salted, iterations)
}

// CredentialFromSaltedPassword derives the stored credential from a salted
// password, as AlterUserScramCredentials sends it (the client salts, so
// the password never reaches the broker).
func CredentialFromSaltedPassword(mechanism string, salt, salted []byte, iterations int) (Credential, error) {
	h, err := hashFor(mechanism)
	if err != nil {
		return Credential{}, err
	}
	if len(salt) == 0 {
		return Credential{}, errors.New("the salt must not be empty")
	}
	if len(salted) == 0 {
		return Credential{}, errors.New("the salted password must not be empty")
	}
	mac := func(key []byte, msg string) []byte {
		m := hmac.New(h, key)
		m.Write([]byte(msg))
		return m.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	sh := h()
	sh.Write(clientKey)
	return Credential{
		Mechanism:  mechanism,
		Iterations: iterations,
		Salt:       append([]byte(nil), salt...),
		StoredKey:  sh.Sum(nil),
		ServerKey:  mac(salted, "Server Key"),
	}, nil
}

// verifyPassword reports whether password is the one cred was made from.
func verifyPassword(cred Credential, password string) bool {
	h, err := hashFor(cred.Mechanism)
	if err != nil {
		return false
	}
	salted, err := pbkdf2.Key(h, password, cred.Salt, cred.Iterations, h().Size())
	if err != nil {
		return false
	}
	again, err := CredentialFromSaltedPassword(cred.Mechanism, cred.Salt, salted, cred.Iterations)
	return err == nil && hmac.Equal(again.StoredKey, cred.StoredKey)
}

// Credentials looks up a user's stored credential for a SCRAM mechanism;
// ok is false when the user has none.
type Credentials interface {
	SCRAMCredential(user, mechanism string) (cred Credential, ok bool, err error)
}

// Exchange is the server side of one SASL authentication: the client's
// tokens go into Step, its answers go back. A new exchange is needed for
// every (re-)authentication.
type Exchange interface {
	// Step consumes the client's next token. It returns the token to send
	// back and done once the client is authenticated. An error ends the
	// exchange: the client is not authenticated.
	Step(token []byte) (reply []byte, done bool, err error)
	// User is the user name the client gave (for logs); it is
	// authenticated only once Step reported done.
	User() string
}

// ClientError is an authentication failure whose message Kafka sends to
// the client as is (SaslAuthenticationException). Other errors are
// answered with a generic message: they may say whether a user exists.
type ClientError struct{ Msg string }

func (e *ClientError) Error() string { return e.Msg }

// NewExchange starts an exchange for mechanism against creds.
func NewExchange(mechanism string, creds Credentials) (Exchange, error) {
	switch mechanism {
	case MechanismPlain:
		return &plainExchange{creds: creds}, nil
	case MechanismSCRAM256, MechanismSCRAM512:
		gen := scram.SHA256
		if mechanism == MechanismSCRAM512 {
			gen = scram.SHA512
		}
		x := &scramExchange{mechanism: mechanism, creds: creds}
		srv, err := gen.NewServer(x.lookup)
		if err != nil {
			return nil, err
		}
		x.conv = srv.NewConversation()
		return x, nil
	}
	return nil, fmt.Errorf("unsupported SASL mechanism %q", mechanism)
}

// scramExchange is SCRAM's two round trips (RFC 5802 section 5). The
// message parsing, nonce and proof checks are github.com/xdg-go/scram's
// server conversation (the SCRAM implementation of the MongoDB Go driver,
// and the one franz-go's Kafka peers test against); here are only
// Kafka's additions: an authorization id must equal the user name, and
// the delegation-token extension is refused (oncelog has no tokens).
type scramExchange struct {
	mechanism string
	creds     Credentials
	conv      *scram.ServerConversation
	step      int
	user      string
	lookupErr error
}

func (x *scramExchange) lookup(user string) (scram.StoredCredentials, error) {
	cred, ok, err := x.creds.SCRAMCredential(user, x.mechanism)
	if err != nil {
		x.lookupErr = err
		return scram.StoredCredentials{}, err
	}
	if !ok {
		return scram.StoredCredentials{}, fmt.Errorf("no %s credential for user %q", x.mechanism, user)
	}
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(cred.Salt), Iters: cred.Iterations},
		StoredKey:  cred.StoredKey,
		ServerKey:  cred.ServerKey,
	}, nil
}

// ErrStore marks a failure to read the credential store (not the
// client's fault); the wire answers it like a failed login but logs it
// as the broker's problem.
var ErrStore = errors.New("credential store")

func (x *scramExchange) Step(token []byte) ([]byte, bool, error) {
	x.step++
	switch x.step {
	case 1:
		msg := string(token)
		// Kafka's ScramExtensions follow the nonce: r=...,tokenauth=true.
		if fields := strings.Split(msg, ","); len(fields) > 4 {
			for _, f := range fields[4:] {
				if strings.HasPrefix(f, "tokenauth=") {
					return nil, false, &ClientError{Msg: "Authentication failed: delegation tokens are not supported"}
				}
			}
		}
		reply, err := x.conv.Step(msg)
		if err != nil {
			if x.lookupErr != nil {
				return nil, false, fmt.Errorf("%w: %v", ErrStore, x.lookupErr)
			}
			return nil, false, fmt.Errorf("client-first-message: %w", err)
		}
		if z := x.conv.AuthzID(); z != "" && z != x.conv.Username() {
			return nil, false, &ClientError{Msg: "Authentication failed: Client requested an authorization id that is different from username"}
		}
		return []byte(reply), false, nil
	case 2:
		reply, err := x.conv.Step(string(token))
		if err != nil || !x.conv.Valid() {
			if err == nil {
				err = errors.New("proof not valid")
			}
			return nil, false, fmt.Errorf("client-final-message: %w", err)
		}
		x.user = x.conv.Username()
		return []byte(reply), true, nil
	}
	return nil, false, errors.New("SCRAM exchange already complete")
}

func (x *scramExchange) User() string {
	if x.user == "" && x.step > 0 {
		return x.conv.Username()
	}
	return x.user
}

// plainExchange is SASL/PLAIN (RFC 4616): one token, "authzid NUL user
// NUL password", checked against the user's SCRAM credential, so PLAIN
// and SCRAM share one user store. The messages are Kafka's
// PlainSaslServer's.
type plainExchange struct {
	creds Credentials
	user  string
	done  bool
}

func (x *plainExchange) Step(token []byte) ([]byte, bool, error) {
	if x.done {
		return nil, false, errors.New("PLAIN exchange already complete")
	}
	x.done = true
	parts := strings.Split(string(token), "\x00")
	if len(parts) != 3 {
		return nil, false, &ClientError{Msg: fmt.Sprintf("Invalid SASL/PLAIN response: expected 3 tokens, got %d", len(parts))}
	}
	authzid, user, password := parts[0], parts[1], parts[2]
	x.user = user
	switch {
	case user == "":
		return nil, false, &ClientError{Msg: "Authentication failed: username not specified"}
	case password == "":
		return nil, false, &ClientError{Msg: "Authentication failed: password not specified"}
	case authzid != "" && authzid != user:
		return nil, false, &ClientError{Msg: "Authentication failed: Client requested an authorization id that is different from username"}
	}
	invalid := &ClientError{Msg: "Authentication failed: Invalid username or password"}
	for _, mech := range []string{MechanismSCRAM512, MechanismSCRAM256} {
		cred, ok, err := x.creds.SCRAMCredential(user, mech)
		if err != nil {
			return nil, false, fmt.Errorf("%w: %v", ErrStore, err)
		}
		if !ok {
			continue
		}
		if !verifyPassword(cred, password) {
			return nil, false, invalid
		}
		return nil, true, nil
	}
	return nil, false, invalid
}

func (x *plainExchange) User() string { return x.user }
