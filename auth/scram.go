package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strings"
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
		return &scramExchange{mechanism: mechanism, creds: creds}, nil
	}
	return nil, fmt.Errorf("unsupported SASL mechanism %q", mechanism)
}

// scramExchange is the server side of SCRAM's two round trips (RFC 5802
// section 5, RFC 7677), with Kafka's rules where they differ
// (ScramSaslServer): an authorization id must equal the user name, the
// delegation-token extension is refused (oncelog has no tokens), and the
// client-final-message's nonce must end with the nonce the server sent
// rather than equal it. That last leniency is why this is not
// github.com/xdg-go/scram's server conversation, which checks equality:
// librdkafka (kcat, confluent-kafka; 2.0 at least) sends the client nonce
// twice there, and Kafka accepts it. xdg-go's client is what the tests
// check this implementation against.
type scramExchange struct {
	mechanism string
	creds     Credentials
	step      int
	user      string // as the client gave it
	gs2Header string
	c1Bare    string
	s1        string
	nonce     string // client nonce + server nonce
	cred      Credential
}

// ErrStore marks a failure to read the credential store (not the
// client's fault); the wire answers it like a failed login but logs it
// as the broker's problem.
var ErrStore = errors.New("credential store")

func (x *scramExchange) Step(token []byte) ([]byte, bool, error) {
	x.step++
	switch x.step {
	case 1:
		return x.first(string(token))
	case 2:
		return x.final(string(token))
	}
	return nil, false, errors.New("SCRAM exchange already complete")
}

// decodeSaslName undoes RFC 5802's escaping of ',' and '=' in names.
func decodeSaslName(s string) (string, bool) {
	if !strings.Contains(s, "=") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", false
		}
		i += 2
	}
	return b.String(), true
}

// printableNonce: RFC 5802's printable, %x21-7E except ','.
func printableNonce(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == ',' {
			return false
		}
	}
	return true
}

// first handles client-first-message:
// gs2-cbind-flag "," [authzid] "," [reserved-mext ","] username "," nonce ["," extensions]
func (x *scramExchange) first(msg string) ([]byte, bool, error) {
	fields := strings.Split(msg, ",")
	if len(fields) < 4 {
		return nil, false, errors.New("client-first-message: too few attributes")
	}
	switch fields[0] {
	case "n", "y": // no channel binding ("y": the client could, we don't offer it)
	default:
		return nil, false, errors.New("client-first-message: channel binding is not supported")
	}
	var authzid string
	if fields[1] != "" {
		raw, ok := strings.CutPrefix(fields[1], "a=")
		if !ok {
			return nil, false, errors.New("client-first-message: bad authzid")
		}
		if authzid, ok = decodeSaslName(raw); !ok {
			return nil, false, errors.New("client-first-message: bad authzid encoding")
		}
	}
	if strings.HasPrefix(fields[2], "m=") {
		return nil, false, errors.New("client-first-message: mandatory extensions are not supported")
	}
	rawUser, ok := strings.CutPrefix(fields[2], "n=")
	if !ok || rawUser == "" {
		return nil, false, errors.New("client-first-message: no user name")
	}
	user, ok := decodeSaslName(rawUser)
	if !ok {
		return nil, false, errors.New("client-first-message: bad user name encoding")
	}
	x.user = user
	cnonce, ok := strings.CutPrefix(fields[3], "r=")
	if !ok || !printableNonce(cnonce) {
		return nil, false, errors.New("client-first-message: bad nonce")
	}
	// Kafka's ScramExtensions follow the nonce: r=...,tokenauth=true.
	for _, ext := range fields[4:] {
		key, _, ok := strings.Cut(ext, "=")
		if !ok || key == "" {
			return nil, false, errors.New("client-first-message: bad extension")
		}
		if key == "tokenauth" {
			return nil, false, &ClientError{Msg: "Authentication failed: delegation tokens are not supported"}
		}
	}
	if authzid != "" && authzid != user {
		return nil, false, &ClientError{Msg: "Authentication failed: Client requested an authorization id that is different from username"}
	}
	cred, found, err := x.creds.SCRAMCredential(user, x.mechanism)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrStore, err)
	}
	if !found {
		return nil, false, fmt.Errorf("no %s credential for user %q", x.mechanism, user)
	}
	snonce := make([]byte, 24)
	_, _ = rand.Read(snonce)
	x.cred = cred
	x.gs2Header = fields[0] + "," + fields[1] + ","
	x.c1Bare = strings.Join(fields[2:], ",")
	x.nonce = cnonce + base64.RawURLEncoding.EncodeToString(snonce)
	x.s1 = fmt.Sprintf("r=%s,s=%s,i=%d", x.nonce, base64.StdEncoding.EncodeToString(cred.Salt), cred.Iterations)
	return []byte(x.s1), false, nil
}

// final handles client-final-message: channel-binding "," nonce ["," extensions] "," proof
func (x *scramExchange) final(msg string) ([]byte, bool, error) {
	fields := strings.Split(msg, ",")
	if len(fields) < 3 {
		return nil, false, errors.New("client-final-message: too few attributes")
	}
	cb, ok := strings.CutPrefix(fields[0], "c=")
	if !ok {
		return nil, false, errors.New("client-final-message: no channel binding attribute")
	}
	if raw, err := base64.StdEncoding.DecodeString(cb); err != nil || string(raw) != x.gs2Header {
		return nil, false, errors.New("client-final-message: channel binding does not match the gs2 header")
	}
	nonce, ok := strings.CutPrefix(fields[1], "r=")
	if !ok || !strings.HasSuffix(nonce, x.nonce) {
		return nil, false, errors.New("client-final-message: nonce does not match the server's")
	}
	proof64, ok := strings.CutPrefix(fields[len(fields)-1], "p=")
	if !ok {
		return nil, false, errors.New("client-final-message: no proof")
	}
	proof, err := base64.StdEncoding.DecodeString(proof64)
	h, _ := hashFor(x.mechanism)
	if err != nil || len(proof) != h().Size() {
		return nil, false, errors.New("client-final-message: malformed proof")
	}
	authMessage := []byte(x.c1Bare + "," + x.s1 + "," + msg[:strings.LastIndex(msg, ",")])
	sig := hmac.New(h, x.cred.StoredKey)
	sig.Write(authMessage)
	clientKey := sig.Sum(nil)
	for i := range clientKey {
		clientKey[i] ^= proof[i]
	}
	sh := h()
	sh.Write(clientKey)
	if !hmac.Equal(sh.Sum(nil), x.cred.StoredKey) {
		return nil, false, errors.New("client-final-message: proof does not match the password")
	}
	ss := hmac.New(h, x.cred.ServerKey)
	ss.Write(authMessage)
	return []byte("v=" + base64.StdEncoding.EncodeToString(ss.Sum(nil))), true, nil
}

func (x *scramExchange) User() string { return x.user }

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
