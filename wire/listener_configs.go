package wire

import (
	"strconv"
	"strings"

	"github.com/oncelog/oncelog/broker"
)

// servedListener is a listener the server accepts on, with the address
// it is bound to.
type servedListener struct {
	Listener
	addr string
}

// listenerConfigEntries are the broker configs DescribeConfigs reports for
// the listeners and SASL, with Kafka's names (oncelog cluster describe
// and kafka-configs.sh --describe --entity-type brokers show them).
func (s *Server) listenerConfigEntries() []broker.ConfigEntry {
	s.mu.Lock()
	served := append([]servedListener(nil), s.served...)
	s.mu.Unlock()
	var listeners, advertised, protocols []string
	for _, l := range served {
		listeners = append(listeners, l.Name+"://"+l.addr)
		host, port := l.AdvertisedHost, l.AdvertisedPort
		if host == "" {
			cfg := s.b.Config()
			host, port = cfg.AdvertisedHost, cfg.AdvertisedPort
		}
		advertised = append(advertised, l.Name+"://"+host+":"+strconv.Itoa(int(port)))
		protocols = append(protocols, l.Name+":"+string(l.Protocol))
	}
	e := func(name, value string, typ int8) broker.ConfigEntry {
		return broker.ConfigEntry{Name: name, Value: value, Source: broker.SourceStatic, ValueType: typ}
	}
	return []broker.ConfigEntry{
		e("listeners", strings.Join(listeners, ","), 2),
		e("advertised.listeners", strings.Join(advertised, ","), 2),
		e("listener.security.protocol.map", strings.Join(protocols, ","), 2),
		e("sasl.enabled.mechanisms", strings.Join(s.cfg.SASLMechanisms, ","), 7),
		e("sasl.server.max.receive.size", strconv.Itoa(int(s.cfg.SASLServerMaxReceiveSize)), 3),
		e("connections.max.reauth.ms", strconv.FormatInt(s.cfg.ConnectionsMaxReauth.Milliseconds(), 10), 5),
		e("connection.failed.authentication.delay.ms", strconv.FormatInt(s.cfg.FailedAuthenticationDelay.Milliseconds(), 10), 3),
	}
}
