package wire

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// SecurityProtocol is a listener's security.protocol, as Kafka names them.
type SecurityProtocol string

const (
	Plaintext     SecurityProtocol = "PLAINTEXT"
	SSL           SecurityProtocol = "SSL"
	SASLPlaintext SecurityProtocol = "SASL_PLAINTEXT"
	SASLSSL       SecurityProtocol = "SASL_SSL"
)

// ParseSecurityProtocol accepts Kafka's four protocol names.
func ParseSecurityProtocol(s string) (SecurityProtocol, error) {
	switch p := SecurityProtocol(strings.ToUpper(s)); p {
	case Plaintext, SSL, SASLPlaintext, SASLSSL:
		return p, nil
	}
	return "", fmt.Errorf("unknown security protocol %q: use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", s)
}

// SASL reports whether the protocol authenticates with SASL.
func (p SecurityProtocol) SASL() bool { return p == SASLPlaintext || p == SASLSSL }

// TLS reports whether the protocol runs over TLS.
func (p SecurityProtocol) TLS() bool { return p == SSL || p == SASLSSL }

// Listener is one Kafka endpoint the server accepts connections on.
type Listener struct {
	// Name is the listener name (Kafka's listener.name: PLAINTEXT,
	// SASL_SSL, or a custom name mapped to a protocol).
	Name     string
	Protocol SecurityProtocol
	// AdvertisedHost and AdvertisedPort are what Metadata,
	// FindCoordinator and DescribeCluster tell a client connected to this
	// listener (advertised.listeners); empty means the broker config's.
	AdvertisedHost string
	AdvertisedPort int32
	// TLS is the server TLS configuration of SSL and SASL_SSL listeners
	// (its GetConfigForClient may serve reloaded certificates).
	TLS *tls.Config
}

// PlaintextListener is what Serve uses: the one PLAINTEXT listener of
// --listen.
var PlaintextListener = Listener{Name: string(Plaintext), Protocol: Plaintext}

// ListenerSpec is one entry of --listeners or --advertised-listeners:
// NAME://host:port, where NAME is a security protocol or, with a
// protocol map, a listener name.
type ListenerSpec struct {
	Name string
	Host string
	Port int
}

// Addr is host:port.
func (l ListenerSpec) Addr() string { return net.JoinHostPort(l.Host, strconv.Itoa(l.Port)) }

// ParseListeners parses Kafka's listeners syntax:
// "PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9094". Names must be
// unique; port 0 (pick one) is allowed only where allowZeroPort.
func ParseListeners(flag, list string, allowZeroPort bool) ([]ListenerSpec, error) {
	var out []ListenerSpec
	seen := map[string]bool{}
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, addr, ok := strings.Cut(item, "://")
		if !ok || name == "" {
			return nil, fmt.Errorf("%s: %q is not NAME://host:port (e.g. SASL_SSL://127.0.0.1:9094)", flag, item)
		}
		name = strings.ToUpper(name)
		host, portStr, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %v", flag, item, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil || port < 0 || port > 65535 || (port == 0 && !allowZeroPort) {
			return nil, fmt.Errorf("%s: %q: the port must be 1-65535", flag, item)
		}
		if seen[name] {
			return nil, fmt.Errorf("%s: listener name %s appears twice (each listener needs its own name)", flag, name)
		}
		seen[name] = true
		out = append(out, ListenerSpec{Name: name, Host: host, Port: port})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no listener given", flag)
	}
	return out, nil
}
