// Package auth is oncelog's authentication: Kafka principals, SCRAM
// credentials (RFC 5802/7677) and the server side of the SASL exchanges
// (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN). The wire package drives the
// exchanges from SaslHandshake/SaslAuthenticate; the broker stores the
// credentials in its metadata store.
package auth

import (
	"fmt"
	"strings"
)

// Anonymous is Kafka's principal of an unauthenticated connection:
// PLAINTEXT, SSL without a client certificate, and a SASL listener before
// its exchange completes.
const Anonymous = "User:ANONYMOUS"

// UserPrincipal is the Kafka principal of an authenticated user name.
func UserPrincipal(name string) string { return "User:" + name }

// Mechanism names, as Kafka spells them.
const (
	MechanismPlain    = "PLAIN"
	MechanismSCRAM256 = "SCRAM-SHA-256"
	MechanismSCRAM512 = "SCRAM-SHA-512"
	// DefaultMechanisms is --sasl-mechanisms' default: PLAIN sends the
	// password itself and must be asked for.
	DefaultMechanisms = MechanismSCRAM256 + "," + MechanismSCRAM512
)

// ParseMechanisms parses a comma-separated --sasl-mechanisms list; it
// refuses unknown and duplicated names.
func ParseMechanisms(list string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, m := range strings.Split(list, ",") {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		switch m {
		case MechanismPlain, MechanismSCRAM256, MechanismSCRAM512:
		default:
			return nil, fmt.Errorf("unknown SASL mechanism %q: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", m)
		}
		if seen[m] {
			return nil, fmt.Errorf("SASL mechanism %q listed twice", m)
		}
		seen[m] = true
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no SASL mechanism listed")
	}
	return out, nil
}
