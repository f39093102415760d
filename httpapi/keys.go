package httpapi

import (
	"encoding/hex"
	"net/http"

	"github.com/oncelog/oncelog/broker"
)

// KeyResponse is the body of a found key.
type KeyResponse struct {
	Key       string `json:"key"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Timestamp int64  `json:"timestamp"`
	// Digest is the hex SHA-256 the key window compares a replay with
	// (dedup.Digest: the value and the headers other than the key).
	Digest string `json:"digest"`
}

// handleKey answers where the key was written within the topic's window,
// or 404 when the window does not hold it.
func (s *Server) handleKey(w http.ResponseWriter, r *http.Request) {
	topic, key := r.PathValue("topic"), r.PathValue("key")
	if err := broker.ValidTopicName(topic); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	e, found, kerr := s.b.LookupKey(topic, []byte(key))
	if kerr != nil {
		writeKafkaError(w, kerr)
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, "key "+quote(key)+" is not in the key window of topic "+topic)
		return
	}
	writeJSON(w, http.StatusOK, KeyResponse{Key: key, Partition: e.Partition, Offset: e.Offset, Timestamp: e.Timestamp, Digest: hex.EncodeToString(e.Digest[:])})
}
