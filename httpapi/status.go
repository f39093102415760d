package httpapi

import (
	"net/http"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
)

// httpStatus maps a Kafka error code to the HTTP status of the same
// meaning. A client's mistake is a 4xx; only what the client cannot fix
// (storage errors, timeouts, shutdown) is a 5xx, and a retriable one is 503
// so that clients and proxies retry it.
func httpStatus(code int16) int {
	switch code {
	case kerr.UnknownTopicOrPartition.Code, kerr.UnknownTopicID.Code:
		return http.StatusNotFound
	case kerr.InvalidTopicException.Code, kerr.CorruptMessage.Code, kerr.InvalidRequest.Code:
		return http.StatusBadRequest
	case kerr.MessageTooLarge.Code, kerr.RecordListTooLarge.Code:
		return http.StatusRequestEntityTooLarge
	case kerr.InvalidRecord.Code, kerr.InvalidTimestamp.Code:
		// The key is in the window with other content (Stripe's
		// idempotency-key conflict), or the record breaks the topic's
		// rules (a keyless record on a compacted topic).
		return http.StatusUnprocessableEntity
	case kerr.PolicyViolation.Code:
		// Auto-creating the topic would pass --max-partitions.
		return http.StatusForbidden
	case kerr.TopicAuthorizationFailed.Code, kerr.ClusterAuthorizationFailed.Code:
		return http.StatusForbidden
	case kerr.RequestTimedOut.Code:
		return http.StatusServiceUnavailable
	}
	if err := kerr.ErrorForCode(code); kerr.IsRetriable(err) {
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// writeKafkaError answers with a broker error: its HTTP status, and a
// message naming the Kafka error.
func writeKafkaError(w http.ResponseWriter, e *Error) {
	if e.Status != 0 {
		writeError(w, e.Status, e.Message)
		return
	}
	name := "error " + strconv.Itoa(int(e.Code))
	if ke, ok := kerr.ErrorForCode(e.Code).(*kerr.Error); ok {
		name = ke.Message
	}
	msg := name
	if e.Message != "" {
		msg += ": " + e.Message
	}
	status := httpStatus(e.Code)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeError(w, status, msg)
}

func quote(s string) string { return strconv.Quote(s) }
