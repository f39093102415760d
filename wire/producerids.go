package wire

import (
	"errors"

	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// With an authorizer, a producer id is usable only by the principal that
// obtained it (broker.ProducerOwners). Kafka has no such check; the code
// for someone else's (or an unknown) producer id is
// INVALID_PRODUCER_ID_MAPPING, Kafka's "the producer id is not the one
// assigned to its transactional id": clients answer it by obtaining a new
// producer id, so a producer whose binding is missing (one issued before
// the authorizer was turned on) recovers by itself.

// ownsProducerID reports whether the connection's principal may use pid
// (always without an authorizer; -1 is no producer id).
func (c *conn) ownsProducerID(api int16, pid int64) bool {
	o := c.s.b.Owners
	if o == nil || pid < 0 {
		return true
	}
	p := c.Principal()
	if owner, ok := o.Owner(pid); ok && owner == p {
		return true
	}
	c.s.b.Stats.AuthorizationDenied.Inc(p, kmsg.NameForKey(api))
	if ok, suppressed := c.s.warn.allow("producer_id_owner"); ok {
		c.s.logger.Warn("refused a producer id issued to another principal (or to none)", "principal", p, "host", c.clientHost,
			"api", kmsg.NameForKey(api), "producer_id", pid, "suppressed", suppressed)
	}
	return false
}

// bindProducerID records that pid now belongs to the connection's
// principal.
func (c *conn) bindProducerID(pid int64) error {
	o := c.s.b.Owners
	if o == nil || pid < 0 {
		return nil
	}
	return o.Bind(pid, c.Principal())
}

// bindCode is InitProducerId's error code for a failed bindProducerID.
func bindCode(err error) int16 {
	if errors.Is(err, broker.ErrTooManyProducerIDs) {
		return kerr.ThrottlingQuotaExceeded.Code
	}
	return kerr.KafkaStorageError.Code
}
