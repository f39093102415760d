package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/xdg-go/scram"
)

type memCreds map[string]Credential

func (m memCreds) SCRAMCredential(user, mechanism string) (Credential, bool, error) {
	c, ok := m[user+"/"+mechanism]
	return c, ok, nil
}

func newCreds(t testing.TB, user, password string) memCreds {
	m := memCreds{}
	for _, mech := range []string{MechanismSCRAM256, MechanismSCRAM512} {
		c, err := NewCredential(mech, password, MinIterations)
		if err != nil {
			t.Fatal(err)
		}
		m[user+"/"+mech] = c
	}
	return m
}

// TestCredentialMatchesRFC5802: the stored keys are those an independent
// SCRAM implementation derives from the same salt and password.
func TestCredentialMatchesRFC5802(t *testing.T) {
	for _, mech := range []string{MechanismSCRAM256, MechanismSCRAM512} {
		c, err := NewCredential(mech, "pencil", 4096)
		if err != nil {
			t.Fatal(err)
		}
		gen := scram.SHA256
		if mech == MechanismSCRAM512 {
			gen = scram.SHA512
		}
		cl, _ := gen.NewClientUnprepped("user", "pencil", "")
		want, err := cl.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(c.Salt), Iters: 4096})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(want.StoredKey, c.StoredKey) || !bytes.Equal(want.ServerKey, c.ServerKey) {
			t.Fatalf("%s: keys differ from xdg-go's", mech)
		}
	}
	if _, err := NewCredential(MechanismSCRAM256, "x", 4095); err == nil {
		t.Fatal("4095 iterations accepted")
	}
}

func login(t *testing.T, creds Credentials, mech, user, pass string) error {
	x, err := NewExchange(mech, creds)
	if err != nil {
		t.Fatal(err)
	}
	gen := scram.SHA256
	if mech == MechanismSCRAM512 {
		gen = scram.SHA512
	}
	cl, _ := gen.NewClient(user, pass, "")
	conv := cl.NewConversation()
	msg, _ := conv.Step("")
	reply, done, err := x.Step([]byte(msg))
	if err != nil || done {
		return err
	}
	msg, err = conv.Step(string(reply))
	if err != nil {
		t.Fatal(err)
	}
	reply, done, err = x.Step([]byte(msg))
	if err != nil {
		return err
	}
	if !done || x.User() != user {
		t.Fatalf("done %v user %q", done, x.User())
	}
	if _, err := conv.Step(string(reply)); err != nil {
		t.Fatalf("server signature rejected: %v", err)
	}
	return nil
}

func TestSCRAMExchange(t *testing.T) {
	creds := newCreds(t, "alice", "s3cret")
	for _, mech := range []string{MechanismSCRAM256, MechanismSCRAM512} {
		if err := login(t, creds, mech, "alice", "s3cret"); err != nil {
			t.Fatalf("%s: %v", mech, err)
		}
		if err := login(t, creds, mech, "alice", "wrong"); err == nil {
			t.Fatalf("%s: wrong password accepted", mech)
		}
		if err := login(t, creds, mech, "bob", "s3cret"); err == nil {
			t.Fatalf("%s: unknown user accepted", mech)
		}
	}
}

func TestPlainExchange(t *testing.T) {
	creds := newCreds(t, "alice", "s3cret")
	for token, wantErr := range map[string]string{
		"\x00alice\x00s3cret":      "",
		"alice\x00alice\x00s3cret": "",
		"\x00alice\x00wrong":       "Authentication failed: Invalid username or password",
		"\x00bob\x00s3cret":        "Authentication failed: Invalid username or password",
		"bob\x00alice\x00s3cret":   "Authentication failed: Client requested an authorization id that is different from username",
		"\x00\x00s3cret":           "Authentication failed: username not specified",
		"\x00alice\x00":            "Authentication failed: password not specified",
		"alice s3cret":             "Invalid SASL/PLAIN response: expected 3 tokens, got 1",
	} {
		x, _ := NewExchange(MechanismPlain, creds)
		_, done, err := x.Step([]byte(token))
		if wantErr == "" {
			if err != nil || !done || x.User() != "alice" {
				t.Errorf("%q: done %v err %v", token, done, err)
			}
			continue
		}
		var ce *ClientError
		if !errors.As(err, &ce) || ce.Msg != wantErr {
			t.Errorf("%q: %v, want %q", token, err, wantErr)
		}
	}
}

// FuzzSCRAMServer feeds arbitrary client messages to both steps of the
// server exchange: it must fail or succeed, never panic, and never
// authenticate without the password.
func FuzzSCRAMServer(f *testing.F) {
	f.Add([]byte("n,,n=alice,r=abc"), []byte("c=biws,r=abcdef,p=AAAA"))
	f.Add([]byte("n,a=alice,n=alice,r=abc,tokenauth=true"), []byte("c=biws,r=abc"))
	f.Add([]byte("y,,n=al=2Cice,r=a"), []byte(",,,"))
	f.Add([]byte("p=tls-unique,,n=alice,r=x"), []byte("c=,r=,p="))
	creds := newCreds(f, "alice", "s3cret")
	f.Fuzz(func(t *testing.T, first, final []byte) {
		for _, mech := range []string{MechanismSCRAM256, MechanismSCRAM512} {
			x, _ := NewExchange(mech, creds)
			if _, done, err := x.Step(first); err != nil || done {
				continue
			}
			if _, done, err := x.Step(final); err == nil || done {
				t.Fatalf("authenticated by %q / %q", first, final)
			}
		}
	})
}

// TestSCRAMNonceSuffix: Kafka accepts a client-final-message whose nonce
// ends with the server's (librdkafka sends the client nonce twice); so do
// we, and the proof is over the message as sent.
func TestSCRAMNonceSuffix(t *testing.T) {
	creds := newCreds(t, "alice", "s3cret")
	for _, tc := range []struct {
		prefix string
		ok     bool
	}{{"", true}, {"cnonce", true}, {"", false}} {
		x, _ := NewExchange(MechanismSCRAM256, creds)
		c1bare := "n=alice,r=cnonce"
		s1, _, err := x.Step([]byte("n,," + c1bare))
		if err != nil {
			t.Fatal(err)
		}
		nonce := tc.prefix + strings.TrimPrefix(strings.Split(string(s1), ",")[0], "r=")
		if !tc.ok {
			nonce = "cnonce" + "other"
		}
		cred := creds["alice/"+MechanismSCRAM256]
		salted, _ := pbkdf2.Key(sha256.New, "s3cret", cred.Salt, cred.Iterations, sha256.Size)
		wop := "c=biws,r=" + nonce
		authMessage := c1bare + "," + string(s1) + "," + wop
		ck := hmac.New(sha256.New, salted)
		ck.Write([]byte("Client Key"))
		clientKey := ck.Sum(nil)
		sig := hmac.New(sha256.New, cred.StoredKey)
		sig.Write([]byte(authMessage))
		proof := sig.Sum(nil)
		for i := range proof {
			proof[i] ^= clientKey[i]
		}
		_, done, err := x.Step([]byte(wop + ",p=" + base64.StdEncoding.EncodeToString(proof)))
		if tc.ok != (err == nil && done) {
			t.Errorf("nonce %q: done %v err %v", nonce, done, err)
		}
	}
}
