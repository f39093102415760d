package console

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/oncelog/oncelog/internal/txnscan"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Bounds on what one API call can make the broker (and the console) hold.
const (
	maxBrowseRecords     = 500
	maxBrowseBytes       = 4 << 20  // fetched per browse
	maxShownValueBytes   = 64 << 10 // longer keys/values are cut, marked truncated
	maxScannedPartitions = 2000     // DescribeProducers scope of the transactions page
	maxConfigBody        = 64 << 10
	// browsePollWait is how long the browser waits for more records
	// before it answers with what it has.
	browsePollWait = 2 * time.Second
)

func (c *Console) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/session", c.sessionState)
	mux.HandleFunc("POST /api/login", c.login)
	mux.HandleFunc("POST /api/logout", c.logout)
	mux.HandleFunc("GET /api/overview", c.with((*view).overview))
	mux.HandleFunc("GET /api/topics", c.with((*view).topics))
	mux.HandleFunc("GET /api/topics/{topic}", c.with((*view).topic))
	mux.HandleFunc("POST /api/topics/{topic}/configs", c.with((*view).alterConfigs))
	mux.HandleFunc("GET /api/topics/{topic}/records", c.with((*view).records))
	mux.HandleFunc("GET /api/topics/{topic}/producers", c.with((*view).producers))
	mux.HandleFunc("GET /api/transactions", c.with((*view).transactions))
	mux.HandleFunc("POST /api/transactions/abort", c.with((*view).abort))
	mux.HandleFunc("GET /api/groups", c.with((*view).groups))
	mux.HandleFunc("GET /api/groups/{group}", c.with((*view).group))
	mux.HandleFunc("GET /api/keywindow", c.with((*view).keyWindow))
	mux.HandleFunc("GET /api/keys/{topic}/{key}", c.with((*view).lookupKey))
	mux.HandleFunc("GET /api/metrics", c.with((*view).metrics))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such console API: %s %s", r.Method, r.URL.Path)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, args...)})
}

// authorizationError reports whether the broker refused the principal
// (its ACLs), as opposed to failing.
func authorizationError(err error) bool {
	for _, e := range []error{kerr.TopicAuthorizationFailed, kerr.GroupAuthorizationFailed, kerr.ClusterAuthorizationFailed,
		kerr.TransactionalIDAuthorizationFailed, kerr.DelegationTokenAuthorizationFailed} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// brokerError answers an error from the broker: 403 for what the
// principal may not do (the broker's error says which ACL is missing),
// 401 when the broker no longer accepts the login, 404 for what does not
// exist, 502 for the rest (the console works, the broker did not answer).
func brokerError(w http.ResponseWriter, err error) {
	switch {
	case authorizationError(err):
		writeError(w, http.StatusForbidden, "the broker refused: %v", err)
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": fmt.Sprintf("the broker no longer accepts this login: %v", err), "login_required": true})
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.GroupIDNotFound):
		writeError(w, http.StatusNotFound, "%v", err)
	case errors.Is(err, kerr.InvalidConfig), errors.Is(err, kerr.InvalidRequest), errors.Is(err, kerr.PolicyViolation):
		writeError(w, http.StatusBadRequest, "%v", err)
	default:
		writeError(w, http.StatusBadGateway, "broker: %v", err)
	}
}

// listAll marks a context for kadm calls that list every topic: their
// Metadata request goes to the broker rather than to kgo's metadata
// cache (kadm.WithAuthorizedOps bypasses it). A cached answer can carry a
// topic this user was refused earlier (the topic page of a topic they may
// not describe), and kadm fails a whole listing on one such topic; the
// broker's own answer to "all topics" leaves out what the user may not
// describe.
func listAll(ctx context.Context) context.Context { return kadm.WithAuthorizedOps(ctx) }

type brokerInfo struct {
	ID   int32  `json:"id"`
	Host string `json:"host"`
	Port int32  `json:"port"`
}

type overview struct {
	Version    string             `json:"version"`
	ClusterID  string             `json:"cluster_id"`
	Controller int32              `json:"controller"`
	Brokers    []brokerInfo       `json:"brokers"`
	Listeners  []Listener         `json:"listeners"`
	Topics     int                `json:"topics"`
	Partitions int                `json:"partitions"`
	Groups     int                `json:"groups"`
	Totals     map[string]float64 `json:"totals"`
}

func (c *view) overview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	md, err := c.adm.Metadata(listAll(ctx))
	if err != nil {
		brokerError(w, err)
		return
	}
	ov := overview{Version: c.cfg.Version, ClusterID: md.Cluster, Controller: md.Controller, Listeners: c.cfg.Listeners}
	for _, b := range md.Brokers {
		ov.Brokers = append(ov.Brokers, brokerInfo{ID: b.NodeID, Host: b.Host, Port: b.Port})
	}
	for _, t := range md.Topics {
		if t.IsInternal {
			continue
		}
		ov.Topics++
		ov.Partitions += len(t.Partitions)
	}
	if groups, err := c.adm.ListGroups(ctx); err == nil {
		ov.Groups = len(groups)
	}
	ov.Totals = c.totals()
	writeJSON(w, http.StatusOK, ov)
}

type topicSummary struct {
	Name       string `json:"name"`
	ID         string `json:"id"`
	Internal   bool   `json:"internal"`
	Partitions int    `json:"partitions"`
	Records    int64  `json:"records"` // high watermark - start offset, summed
	SizeBytes  int64  `json:"size_bytes"`
}

func (c *view) topics(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	details, err := c.adm.ListTopicsWithInternal(listAll(ctx))
	if err != nil {
		brokerError(w, err)
		return
	}
	names := details.Names()
	starts, _ := c.adm.ListStartOffsets(ctx, names...)
	ends, _ := c.adm.ListEndOffsets(ctx, names...)
	sizes := c.partitionGauge("oncelog_partition_log_size_bytes")
	out := []topicSummary{}
	for _, name := range names {
		d := details[name]
		s := topicSummary{Name: name, ID: topicID(d.ID), Internal: d.IsInternal, Partitions: len(d.Partitions)}
		for p := range d.Partitions {
			if e, ok := ends.Lookup(name, p); ok && e.Err == nil {
				if st, ok := starts.Lookup(name, p); ok && st.Err == nil {
					s.Records += e.Offset - st.Offset
				}
			}
			s.SizeBytes += int64(sizes[partKey{name, p}])
		}
		out = append(out, s)
	}
	writeJSON(w, http.StatusOK, out)
}

// topicID prints a topic id as Kafka's tools do (Uuid.toString).
func topicID(id kadm.TopicID) string {
	if id == (kadm.TopicID{}) {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(id[:])
}

type partitionDetail struct {
	Partition     int32  `json:"partition"`
	Leader        int32  `json:"leader"`
	LeaderEpoch   int32  `json:"leader_epoch"`
	StartOffset   int64  `json:"start_offset"`
	HighWatermark int64  `json:"high_watermark"`
	LastStable    int64  `json:"last_stable_offset"`
	LogEndOffset  *int64 `json:"log_end_offset"` // from metrics; null when unknown
	SizeBytes     *int64 `json:"size_bytes"`
	Error         string `json:"error,omitempty"`
}

type configEntry struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	Source    string `json:"source"`
	Sensitive bool   `json:"sensitive"`
	ReadOnly  bool   `json:"read_only"`
}

type topicDetail struct {
	topicSummary
	PartitionDetails []partitionDetail `json:"partition_details"`
	Configs          []configEntry     `json:"configs"`
}

func (c *view) topic(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	name := r.PathValue("topic")
	details, err := c.adm.ListTopicsWithInternal(ctx, name)
	if err != nil {
		brokerError(w, err)
		return
	}
	d, ok := details[name]
	if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		writeError(w, http.StatusNotFound, "topic %q does not exist", name)
		return
	}
	if d.Err != nil {
		brokerError(w, d.Err)
		return
	}
	starts, _ := c.adm.ListStartOffsets(ctx, name)
	ends, _ := c.adm.ListEndOffsets(ctx, name)
	stable, _ := c.adm.ListCommittedOffsets(ctx, name)
	sizes := c.partitionGauge("oncelog_partition_log_size_bytes")
	leos := c.partitionGauge("oncelog_partition_log_end_offset")
	td := topicDetail{topicSummary: topicSummary{Name: name, ID: topicID(d.ID), Internal: d.IsInternal, Partitions: len(d.Partitions)}}
	for _, p := range d.Partitions.Sorted() {
		pd := partitionDetail{Partition: p.Partition, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch, StartOffset: -1, HighWatermark: -1, LastStable: -1}
		if p.Err != nil {
			pd.Error = p.Err.Error()
		}
		if o, ok := starts.Lookup(name, p.Partition); ok && o.Err == nil {
			pd.StartOffset = o.Offset
		}
		if o, ok := ends.Lookup(name, p.Partition); ok && o.Err == nil {
			pd.HighWatermark = o.Offset
		}
		if o, ok := stable.Lookup(name, p.Partition); ok && o.Err == nil {
			pd.LastStable = o.Offset
		}
		if v, ok := leos[partKey{name, p.Partition}]; ok {
			n := int64(v)
			pd.LogEndOffset = &n
		}
		if v, ok := sizes[partKey{name, p.Partition}]; ok {
			n := int64(v)
			pd.SizeBytes = &n
			td.SizeBytes += n
		}
		if pd.HighWatermark >= 0 && pd.StartOffset >= 0 {
			td.Records += pd.HighWatermark - pd.StartOffset
		}
		td.PartitionDetails = append(td.PartitionDetails, pd)
	}
	configs, err := c.adm.DescribeTopicConfigs(ctx, name)
	if err == nil {
		if rc, err := configs.On(name, nil); err == nil && rc.Err == nil {
			for _, cfg := range rc.Configs {
				e := configEntry{Name: cfg.Key, Source: cfg.Source.String(), Sensitive: cfg.Sensitive}
				if cfg.Value != nil {
					e.Value = *cfg.Value
				}
				td.Configs = append(td.Configs, e)
			}
		}
	}
	sort.Slice(td.Configs, func(i, j int) bool { return td.Configs[i].Name < td.Configs[j].Name })
	writeJSON(w, http.StatusOK, td)
}

// alterConfigsBody is POST /api/topics/{topic}/configs: settings to set and
// to delete (back to the default), applied with IncrementalAlterConfigs.
type alterConfigsBody struct {
	Set    map[string]string `json:"set"`
	Delete []string          `json:"delete"`
}

func (c *view) alterConfigs(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	name := r.PathValue("topic")
	var body alterConfigsBody
	if err := json.NewDecoder(io.LimitReader(r.Body, maxConfigBody)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "body must be JSON {\"set\": {name: value}, \"delete\": [name]}: %v", err)
		return
	}
	var alters []kadm.AlterConfig
	for k, v := range body.Set {
		alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: kadm.StringPtr(v)})
	}
	for _, k := range body.Delete {
		alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
	}
	if len(alters) == 0 {
		writeError(w, http.StatusBadRequest, "nothing to change")
		return
	}
	resps, err := c.adm.AlterTopicConfigs(ctx, alters, name)
	if err != nil {
		brokerError(w, err)
		return
	}
	for _, resp := range resps {
		if resp.Err != nil {
			msg := resp.Err.Error()
			if resp.ErrMessage != "" {
				msg += ": " + resp.ErrMessage
			}
			status := http.StatusBadRequest
			if authorizationError(resp.Err) {
				status = http.StatusForbidden
			} else if errors.Is(resp.Err, kerr.UnknownTopicOrPartition) {
				status = http.StatusNotFound
			}
			writeError(w, status, "%s", msg)
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

type shownBytes struct {
	Text      *string `json:"text,omitempty"`   // valid UTF-8
	Base64    *string `json:"base64,omitempty"` // otherwise
	Size      int     `json:"size"`
	Truncated bool    `json:"truncated,omitempty"`
}

func show(b []byte) *shownBytes {
	if b == nil {
		return nil
	}
	s := &shownBytes{Size: len(b)}
	if len(b) > maxShownValueBytes {
		b, s.Truncated = b[:maxShownValueBytes], true
	}
	if utf8.Valid(b) {
		t := string(b)
		s.Text = &t
	} else {
		e := base64.StdEncoding.EncodeToString(b)
		s.Base64 = &e
	}
	return s
}

type shownHeader struct {
	Key   string      `json:"key"`
	Value *shownBytes `json:"value"`
}

type shownRecord struct {
	Partition int32         `json:"partition"`
	Offset    int64         `json:"offset"`
	Timestamp int64         `json:"timestamp"`
	Key       *shownBytes   `json:"key"`
	Value     *shownBytes   `json:"value"`
	Headers   []shownHeader `json:"headers"`
}

type browseResult struct {
	Records       []shownRecord `json:"records"`
	StartOffset   int64         `json:"start_offset"`
	HighWatermark int64         `json:"high_watermark"`
	LastStable    int64         `json:"last_stable_offset"`
	From          int64         `json:"from"`
	Next          int64         `json:"next"` // where the next page starts
	Isolation     string        `json:"isolation"`
}

// records is the record browser: up to limit records of one partition from
// an offset (default: the start) or the first at or after a timestamp.
func (c *view) records(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("topic")
	q := r.URL.Query()
	partition, err := intParam(q, "partition", 0, 0, 1<<31-1)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	limit, err := intParam(q, "limit", 50, 1, maxBrowseRecords)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	isolation := q.Get("isolation")
	if isolation == "" {
		isolation = "read_uncommitted"
	}
	if isolation != "read_committed" && isolation != "read_uncommitted" {
		writeError(w, http.StatusBadRequest, "isolation must be read_committed or read_uncommitted")
		return
	}
	select {
	case c.browse <- struct{}{}:
		defer func() { <-c.browse }()
	default:
		writeError(w, http.StatusTooManyRequests, "%d record reads are running; try again", maxConcurrentBrowse)
		return
	}
	ctx, cancel := c.ctx(r)
	defer cancel()
	p := int32(partition)
	res := browseResult{Records: []shownRecord{}, Isolation: isolation, StartOffset: -1, HighWatermark: -1, LastStable: -1}
	starts, err := c.adm.ListStartOffsets(ctx, name)
	if err != nil {
		brokerError(w, err)
		return
	}
	st, ok := starts.Lookup(name, p)
	if !ok || st.Err != nil {
		if ok && !errors.Is(st.Err, kerr.UnknownTopicOrPartition) {
			brokerError(w, st.Err)
			return
		}
		writeError(w, http.StatusNotFound, "topic %q has no partition %d", name, p)
		return
	}
	res.StartOffset = st.Offset
	if ends, err := c.adm.ListEndOffsets(ctx, name); err == nil {
		if e, ok := ends.Lookup(name, p); ok && e.Err == nil {
			res.HighWatermark = e.Offset
		}
	}
	if stable, err := c.adm.ListCommittedOffsets(ctx, name); err == nil {
		if e, ok := stable.Lookup(name, p); ok && e.Err == nil {
			res.LastStable = e.Offset
		}
	}
	from := res.StartOffset
	switch {
	case q.Get("offset") != "":
		off, err := strconv.ParseInt(q.Get("offset"), 10, 64)
		if err != nil || off < 0 {
			writeError(w, http.StatusBadRequest, "offset must be a non-negative integer")
			return
		}
		from = max(off, res.StartOffset)
	case q.Get("timestamp") != "":
		ts, err := strconv.ParseInt(q.Get("timestamp"), 10, 64)
		if err != nil || ts < 0 {
			writeError(w, http.StatusBadRequest, "timestamp must be unix milliseconds")
			return
		}
		after, err := c.adm.ListOffsetsAfterMilli(ctx, ts, name)
		if err != nil {
			brokerError(w, err)
			return
		}
		if o, ok := after.Lookup(name, p); ok && o.Err == nil {
			from = o.Offset
		}
	}
	res.From, res.Next = from, from
	end := res.HighWatermark
	iso := kgo.ReadUncommitted()
	if isolation == "read_committed" {
		end, iso = res.LastStable, kgo.ReadCommitted()
	}
	if from >= end {
		writeJSON(w, http.StatusOK, res)
		return
	}
	opts := append(slices.Clone(c.opts), kgo.ClientID("oncelog-console-browser"),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{name: {p: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(iso), kgo.FetchMaxBytes(maxBrowseBytes), kgo.FetchMaxPartitionBytes(maxBrowseBytes),
		kgo.FetchMaxWait(500*time.Millisecond))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "consumer: %v", err)
		return
	}
	defer cl.Close()
	// read_committed skips aborted records and markers, so the offsets to
	// reach are bounded by end, not by the count of records seen.
	for len(res.Records) < int(limit) && res.Next < end && ctx.Err() == nil {
		// A poll blocks until records arrive; what remains before end may
		// be control records and aborted data only, which a read_committed
		// consumer skips without returning anything: a quiet poll ends
		// the page there.
		pollCtx, cancelPoll := context.WithTimeout(ctx, browsePollWait)
		fetches := cl.PollRecords(pollCtx, int(limit)-len(res.Records))
		cancelPoll()
		if err := fetches.Err0(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			brokerError(w, err)
			return
		}
		if fetches.Empty() {
			res.Next = end
			break
		}
		for _, rec := range fetches.Records() {
			res.Next = rec.Offset + 1
			if rec.Offset >= end {
				continue
			}
			sr := shownRecord{Partition: rec.Partition, Offset: rec.Offset, Timestamp: rec.Timestamp.UnixMilli(),
				Key: show(rec.Key), Value: show(rec.Value), Headers: []shownHeader{}}
			for _, h := range rec.Headers {
				sr.Headers = append(sr.Headers, shownHeader{Key: h.Key, Value: show(h.Value)})
			}
			res.Records = append(res.Records, sr)
		}
	}
	writeJSON(w, http.StatusOK, res)
}

func intParam(q url.Values, name string, def, lo, hi int64) (int64, error) {
	s := q.Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("%s must be an integer from %d to %d", name, lo, hi)
	}
	return v, nil
}

type producerRow struct {
	Partition             int32 `json:"partition"`
	ProducerID            int64 `json:"producer_id"`
	ProducerEpoch         int16 `json:"producer_epoch"`
	LastSequence          int32 `json:"last_sequence"`
	LastTimestamp         int64 `json:"last_timestamp"`
	CoordinatorEpoch      int32 `json:"coordinator_epoch"`
	CurrentTxnStartOffset int64 `json:"current_txn_start_offset"`
}

// partitionDups is what one partition did not store again since the broker
// started: retried batches (and their records) recognised by sequence, and
// records dropped by the key window (null on topics without one). From
// oncelog's per-partition metrics; the whole row is absent without them
// (another Kafka broker carries no such figure).
type partitionDups struct {
	Partition        int32    `json:"partition"`
	DuplicateBatches float64  `json:"duplicate_batches"`
	DuplicateRecords float64  `json:"duplicate_records"`
	KeyWindowRecords *float64 `json:"key_window_records"`
}

func (c *view) partitionDuplicates(topic string, partitions []int32) []partitionDups {
	batches := c.partitionGauge("oncelog_partition_produce_duplicate_batches_total")
	records := c.partitionGauge("oncelog_partition_produce_duplicate_records_total")
	keys := c.partitionGauge("oncelog_partition_dedup_duplicates_dropped_total")
	out := []partitionDups{}
	for _, p := range partitions {
		k := partKey{topic, p}
		b, ok := batches[k]
		if !ok {
			continue
		}
		row := partitionDups{Partition: p, DuplicateBatches: b, DuplicateRecords: records[k]}
		if v, ok := keys[k]; ok {
			row.KeyWindowRecords = &v
		}
		out = append(out, row)
	}
	return out
}

func (c *view) producers(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	name := r.PathValue("topic")
	details, err := c.adm.ListTopics(ctx, name)
	if err != nil {
		brokerError(w, err)
		return
	}
	d, ok := details[name]
	if !ok || d.Err != nil {
		writeError(w, http.StatusNotFound, "topic %q does not exist", name)
		return
	}
	set := kadm.TopicsSet{}
	var indexes []int32
	for p := range d.Partitions {
		set.Add(name, p)
		indexes = append(indexes, p)
	}
	slices.Sort(indexes)
	described, err := c.adm.DescribeProducers(ctx, set)
	if err != nil && len(described) == 0 {
		brokerError(w, err)
		return
	}
	rows := []producerRow{}
	for _, t := range described.Sorted() {
		for _, p := range t.Partitions.Sorted() {
			for _, a := range p.ActiveProducers.Sorted() {
				rows = append(rows, producerRow{Partition: p.Partition, ProducerID: a.ProducerID, ProducerEpoch: a.ProducerEpoch,
					LastSequence: a.LastSequence, LastTimestamp: a.LastTimestamp, CoordinatorEpoch: a.CoordinatorEpoch,
					CurrentTxnStartOffset: a.CurrentTxnStartOffset})
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"producers":             rows,
		"partitions":            c.partitionDuplicates(name, indexes),
		"duplicates_dropped":    c.counter("oncelog_produce_duplicate_batches_total"),
		"duplicates_scope_note": "retried batches dropped by the broker, all topics",
	})
}

type txnRow struct {
	TransactionalID string   `json:"transactional_id"`
	State           string   `json:"state"`
	ProducerID      int64    `json:"producer_id"`
	ProducerEpoch   int16    `json:"producer_epoch"`
	TimeoutMs       int32    `json:"timeout_ms"`
	StartTimestamp  int64    `json:"start_timestamp"`
	Partitions      []string `json:"partitions"`
}

type openRow struct {
	txnscan.OpenTxn
	Hanging bool `json:"hanging"`
}

func (c *view) transactions(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	listed, err := c.adm.ListTransactions(ctx, nil, nil)
	if err != nil {
		brokerError(w, err)
		return
	}
	rows := []txnRow{}
	if ids := listed.TransactionalIDs(); len(ids) > 0 {
		described, err := c.adm.DescribeTransactions(ctx, ids...)
		if err != nil {
			brokerError(w, err)
			return
		}
		for _, d := range described.Sorted() {
			row := txnRow{TransactionalID: d.TxnID, State: d.State, ProducerID: d.ProducerID, ProducerEpoch: d.ProducerEpoch,
				TimeoutMs: d.TimeoutMillis, StartTimestamp: d.StartTimestamp, Partitions: []string{}}
			for _, tp := range d.Topics.Sorted() {
				for _, p := range tp.Partitions {
					row.Partitions = append(row.Partitions, fmt.Sprintf("%s/%d", tp.Topic, p))
				}
			}
			rows = append(rows, row)
		}
	}
	open, truncated, unreadable, err := c.openTransactions(r)
	if err != nil {
		brokerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"transactions":   rows,
		"open":           open,
		"open_truncated": truncated,
		// Topics whose open transactions this user may not see (no
		// READ): DescribeProducers refused them.
		"open_unreadable": unreadable,
		"committed":       c.counter("oncelog_transactions_committed_total"),
		"aborted":         c.counter("oncelog_transactions_aborted_total"),
		"timed_out":       c.counter("oncelog_transactions_timed_out_total"),
	})
}

// openTransactions lists what partitions hold open and which of it hangs
// (no coordinator will complete it: see package txnscan).
// Topics the user may describe but not read (DescribeProducers needs READ)
// are left out of the scan and named in unreadable.
func (c *view) openTransactions(r *http.Request) (rows []openRow, truncated bool, unreadable []string, err error) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	details, err := c.adm.ListTopics(listAll(ctx))
	if err != nil {
		return nil, false, nil, err
	}
	set := kadm.TopicsSet{}
	n := 0
	for _, name := range details.Names() {
		for p := range details[name].Partitions {
			if n == maxScannedPartitions {
				truncated = true
				break
			}
			set.Add(name, p)
			n++
		}
	}
	open, err := txnscan.Open(ctx, c.adm, set, time.Now())
	if authorizationError(err) {
		// Find every topic refused (kadm stops at the first), then scan
		// the others.
		unreadable = c.unreadableTopics(ctx, set)
		for _, t := range unreadable {
			delete(set, t)
		}
		slices.Sort(unreadable)
		open, err = txnscan.Open(ctx, c.adm, set, time.Now())
	}
	if err != nil {
		return nil, false, nil, err
	}
	hanging, err := txnscan.Hanging(ctx, c.adm, open)
	if err != nil {
		return nil, false, nil, err
	}
	rows = []openRow{}
	for _, o := range open {
		row := openRow{OpenTxn: o}
		for _, h := range hanging {
			if h.Topic == o.Topic && h.Partition == o.Partition && h.ProducerID == o.ProducerID {
				row.OpenTxn, row.Hanging = h, true
			}
		}
		rows = append(rows, row)
	}
	return rows, truncated, unreadable, nil
}

// unreadableTopics are the topics of set whose producers DescribeProducers
// refuses to show this user (it needs READ).
func (c *view) unreadableTopics(ctx context.Context, set kadm.TopicsSet) []string {
	req := kmsg.NewPtrDescribeProducersRequest()
	for _, t := range set.IntoList() {
		rt := kmsg.NewDescribeProducersRequestTopic()
		rt.Topic, rt.Partitions = t.Topic, t.Partitions
		req.Topics = append(req.Topics, rt)
	}
	var out []string
	for _, shard := range c.cl.RequestSharded(ctx, req) {
		if shard.Err != nil {
			continue
		}
		for _, rt := range shard.Resp.(*kmsg.DescribeProducersResponse).Topics {
			for _, rp := range rt.Partitions {
				if authorizationError(kerr.ErrorForCode(rp.ErrorCode)) && !slices.Contains(out, rt.Topic) {
					out = append(out, rt.Topic)
				}
			}
		}
	}
	return out
}

// abortBody names a hanging transaction: the partition and the producer
// whose open transaction it holds.
type abortBody struct {
	Topic      string `json:"topic"`
	Partition  int32  `json:"partition"`
	ProducerID int64  `json:"producer_id"`
}

// abort writes an ABORT marker for a hanging transaction (KIP-664, as
// `kafka-transactions.sh abort`). It refuses a transaction a coordinator
// still tracks: that one completes or times out by itself, and a marker
// written behind the coordinator's back could tear a transaction it then
// commits.
func (c *view) abort(w http.ResponseWriter, r *http.Request) {
	var body abortBody
	if err := json.NewDecoder(io.LimitReader(r.Body, maxConfigBody)).Decode(&body); err != nil || body.Topic == "" {
		writeError(w, http.StatusBadRequest, "body must be JSON {\"topic\", \"partition\", \"producer_id\"}")
		return
	}
	ctx, cancel := c.ctx(r)
	defer cancel()
	set := kadm.TopicsSet{}
	set.Add(body.Topic, body.Partition)
	open, err := txnscan.Open(ctx, c.adm, set, time.Now())
	if err != nil {
		brokerError(w, err)
		return
	}
	var target *txnscan.OpenTxn
	for i := range open {
		if open[i].ProducerID == body.ProducerID {
			target = &open[i]
		}
	}
	if target == nil {
		writeError(w, http.StatusNotFound, "%s/%d holds no open transaction of producer %d", body.Topic, body.Partition, body.ProducerID)
		return
	}
	hanging, err := txnscan.Hanging(ctx, c.adm, []txnscan.OpenTxn{*target})
	if err != nil {
		brokerError(w, err)
		return
	}
	if len(hanging) == 0 {
		writeError(w, http.StatusConflict, "the transaction of producer %d on %s/%d is tracked by its coordinator: it completes or times out by itself, so it is not aborted from here", body.ProducerID, body.Topic, body.Partition)
		return
	}
	markers := kadm.TopicsSet{}
	markers.Add(body.Topic, body.Partition)
	resps, err := c.adm.WriteTxnMarkers(ctx, kadm.TxnMarkers{ProducerID: target.ProducerID, ProducerEpoch: target.ProducerEpoch,
		CoordinatorEpoch: target.CoordinatorEpoch, Commit: false, Topics: markers})
	if err != nil {
		brokerError(w, err)
		return
	}
	pr, ok := resps[target.ProducerID].Topics[body.Topic].Partitions[body.Partition]
	if !ok {
		writeError(w, http.StatusBadGateway, "the broker's WriteTxnMarkers answer misses %s/%d", body.Topic, body.Partition)
		return
	}
	if pr.Err != nil {
		brokerError(w, pr.Err)
		return
	}
	c.cfg.Logger.Info("console aborted a hanging transaction", "user", c.user, "topic", body.Topic, "partition", body.Partition,
		"producer_id", target.ProducerID, "producer_epoch", target.ProducerEpoch, "reason", hanging[0].Reason)
	writeJSON(w, http.StatusOK, map[string]any{"aborted": hanging[0]})
}

type groupRow struct {
	Group        string `json:"group"`
	State        string `json:"state"`
	ProtocolType string `json:"protocol_type"`
	Type         string `json:"type"`
	Members      int    `json:"members"`
	Lag          int64  `json:"lag"`
}

func (c *view) groups(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	listed, err := c.adm.ListGroups(ctx)
	if err != nil {
		brokerError(w, err)
		return
	}
	rows := []groupRow{}
	groups := listed.Groups()
	var lags kadm.DescribedGroupLags
	if len(groups) > 0 {
		lags, _ = c.adm.Lag(ctx, groups...)
	}
	for _, g := range listed.Sorted() {
		row := groupRow{Group: g.Group, State: g.State, ProtocolType: g.ProtocolType, Type: g.GroupType}
		if l, ok := lags[g.Group]; ok {
			row.Members = len(l.Members)
			row.Lag = l.Lag.Total()
		}
		rows = append(rows, row)
	}
	// Share groups are not in DescribeGroups (so not in Lag), and KIP-848
	// groups' members are in ConsumerGroupDescribe: take their member
	// counts from there.
	var share, consumer []string
	for _, row := range rows {
		switch row.Type {
		case "share":
			share = append(share, row.Group)
		case "consumer":
			consumer = append(consumer, row.Group)
		}
	}
	if len(consumer) > 0 {
		if d, err := c.adm.DescribeConsumerGroups(ctx, consumer...); err == nil {
			for i, row := range rows {
				if g, ok := d[row.Group]; ok && row.Type == "consumer" && g.Err == nil {
					rows[i].Members = len(g.Members)
				}
				if row.Type == "consumer" {
					if _, total, err := c.committedLag(ctx, row.Group, nil); err == nil {
						rows[i].Lag = total
					}
				}
			}
		}
	}
	if len(share) > 0 {
		if d, err := c.adm.DescribeShareGroups(ctx, share...); err == nil {
			for i, row := range rows {
				if g, ok := d[row.Group]; ok && row.Type == "share" && g.Err == nil {
					rows[i].Members = len(g.Members)
				}
				if row.Type == "share" {
					rows[i].Lag = c.shareLag(ctx, row.Group)
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, rows)
}

type memberRow struct {
	MemberID    string   `json:"member_id"`
	InstanceID  string   `json:"instance_id,omitempty"`
	ClientID    string   `json:"client_id"`
	Host        string   `json:"host"`
	Assignments []string `json:"assignments"`
	// KIP-848 consumer and share group members only: the member's epoch,
	// its subscription and (consumer groups) the assignment it is moving to.
	MemberEpoch *int32   `json:"member_epoch,omitempty"`
	Subscribed  []string `json:"subscribed,omitempty"`
	Target      []string `json:"target_assignment,omitempty"`
}

// shareOffsetRow is a share group's position on one partition: the
// share-partition start offset (records below it are acknowledged or
// archived) and the records from there to the high watermark.
type shareOffsetRow struct {
	Topic       string `json:"topic"`
	Partition   int32  `json:"partition"`
	StartOffset int64  `json:"start_offset"`
	Lag         int64  `json:"lag"`
	Error       string `json:"error,omitempty"`
}

func partitionList(s kadm.TopicsSet) []string {
	out := []string{}
	for _, tp := range s.Sorted() {
		for _, p := range tp.Partitions {
			out = append(out, fmt.Sprintf("%s/%d", tp.Topic, p))
		}
	}
	return out
}

// groupType is the group's type as ListGroups reports it (classic,
// consumer for KIP-848, share for KIP-932); "" if the broker does not say.
func (c *view) groupType(ctx context.Context, name string) string {
	listed, err := c.adm.ListGroups(ctx)
	if err != nil {
		return ""
	}
	return listed[name].GroupType
}

// committedLag is a group's committed offsets against the partitions'
// high watermarks (kadm's Lag needs DescribeGroups, which refuses KIP-848
// groups as Kafka's does); owner names each partition's member, if known.
func (c *view) committedLag(ctx context.Context, name string, owner map[string]map[int32]string) ([]lagRow, int64, error) {
	committed, err := c.adm.FetchOffsets(ctx, name)
	if err != nil {
		return nil, 0, err
	}
	var topics []string
	for t := range committed {
		topics = append(topics, t)
	}
	ends, _ := c.adm.ListEndOffsets(ctx, topics...)
	rows := []lagRow{}
	var total int64
	for _, o := range committed.Sorted() {
		row := lagRow{Topic: o.Topic, Partition: o.Partition, Committed: o.At, End: -1, Lag: -1, MemberID: owner[o.Topic][o.Partition]}
		if e, ok := ends.Lookup(o.Topic, o.Partition); ok && e.Err == nil {
			row.End = e.Offset
			row.Lag = max(e.Offset-o.At, 0)
			total += row.Lag
		}
		if o.Err != nil {
			row.Error = o.Err.Error()
		}
		rows = append(rows, row)
	}
	return rows, total, nil
}

// groupDetail is the answer of GET /api/groups/{group} for every type of
// group; Epoch is the group epoch of KIP-848 consumer and share groups,
// ShareOffsets a share group's positions (its Offsets are empty).
type groupDetail struct {
	Group        string           `json:"group"`
	Type         string           `json:"type"`
	State        string           `json:"state"`
	ProtocolType string           `json:"protocol_type"`
	Protocol     string           `json:"protocol"`
	Coordinator  int32            `json:"coordinator"`
	Epoch        *int32           `json:"epoch,omitempty"`
	Lag          int64            `json:"lag"`
	Members      []memberRow      `json:"members"`
	Offsets      []lagRow         `json:"offsets"`
	ShareOffsets []shareOffsetRow `json:"share_offsets,omitzero"`
}

// describedGroup is name's entry of a DescribeConsumerGroups or
// DescribeShareGroups answer; false once it has answered w with the
// request's error, the group's own error (groupErr) or 404.
func describedGroup[G any](w http.ResponseWriter, described map[string]G, err error, kind, name string, groupErr func(G) error) (G, bool) {
	g, ok := described[name]
	switch {
	case err != nil:
		brokerError(w, err)
	case !ok:
		writeError(w, http.StatusNotFound, "%s group %q does not exist", kind, name)
	case groupErr(g) != nil:
		brokerError(w, groupErr(g))
	default:
		return g, true
	}
	return g, false
}

// consumerGroup describes a KIP-848 consumer group: its members' epochs,
// subscriptions and target assignments are only in ConsumerGroupDescribe;
// the lag is its committed offsets against the partitions' high watermarks.
func (c *view) consumerGroup(ctx context.Context, w http.ResponseWriter, name string) {
	described, err := c.adm.DescribeConsumerGroups(ctx, name)
	g, ok := describedGroup(w, described, err, "consumer", name, func(g kadm.DescribedConsumerGroup) error { return g.Err })
	if !ok {
		return
	}
	members := []memberRow{}
	owner := map[string]map[int32]string{}
	for _, m := range g.Members {
		epoch := m.MemberEpoch
		row := memberRow{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost, MemberEpoch: &epoch,
			Assignments: partitionList(m.Assignment), Target: partitionList(m.TargetAssignment), Subscribed: m.SubscribedTopics}
		if m.InstanceID != nil {
			row.InstanceID = *m.InstanceID
		}
		for t, ps := range m.Assignment {
			if owner[t] == nil {
				owner[t] = map[int32]string{}
			}
			for p := range ps {
				owner[t][p] = m.MemberID
			}
		}
		members = append(members, row)
	}
	rows, total, err := c.committedLag(ctx, name, owner)
	if err != nil {
		brokerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, groupDetail{Group: name, Type: "consumer", State: g.State, ProtocolType: "consumer",
		Protocol: g.AssignorName, Coordinator: g.Coordinator.NodeID, Epoch: &g.Epoch, Lag: total, Members: members, Offsets: rows})
}

// shareGroup describes a KIP-932 share group: DescribeGroups does not know
// it, DescribeShareGroups and DescribeShareGroupOffsets do.
func (c *view) shareGroup(ctx context.Context, w http.ResponseWriter, name string) {
	described, err := c.adm.DescribeShareGroups(ctx, name)
	g, ok := describedGroup(w, described, err, "share", name, func(g kadm.DescribedShareGroup) error { return g.Err })
	if !ok {
		return
	}
	members := []memberRow{}
	for _, m := range g.Members {
		epoch := m.MemberEpoch
		members = append(members, memberRow{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost,
			Assignments: partitionList(m.Assignment), MemberEpoch: &epoch, Subscribed: m.SubscribedTopicNames})
	}
	offsets, total := c.shareOffsets(ctx, name)
	writeJSON(w, http.StatusOK, groupDetail{Group: name, Type: "share", State: g.GroupState, ProtocolType: "share",
		Protocol: g.Assignor, Coordinator: g.Coordinator.NodeID, Epoch: &g.GroupEpoch, Lag: total, Members: members,
		Offsets: []lagRow{}, ShareOffsets: offsets})
}

func (c *view) shareLag(ctx context.Context, name string) int64 {
	_, total := c.shareOffsets(ctx, name)
	return total
}

// shareOffsets is a share group's start offset and lag per partition.
func (c *view) shareOffsets(ctx context.Context, name string) ([]shareOffsetRow, int64) {
	offsets := []shareOffsetRow{}
	var total int64
	if got, err := c.adm.DescribeShareGroupOffsets(ctx, name); err == nil {
		d := got[name]
		d.Offsets.Each(func(o kadm.ShareOffset) {
			row := shareOffsetRow{Topic: o.Topic, Partition: o.Partition, StartOffset: o.StartOffset, Lag: o.Lag}
			if o.Err != nil {
				row.Error = o.Err.Error()
			}
			if o.Lag > 0 {
				total += o.Lag
			}
			offsets = append(offsets, row)
		})
	}
	sort.Slice(offsets, func(i, j int) bool {
		if offsets[i].Topic != offsets[j].Topic {
			return offsets[i].Topic < offsets[j].Topic
		}
		return offsets[i].Partition < offsets[j].Partition
	})
	return offsets, total
}

type lagRow struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Committed int64  `json:"committed"`
	End       int64  `json:"end"`
	Lag       int64  `json:"lag"`
	MemberID  string `json:"member_id,omitempty"`
	Error     string `json:"error,omitempty"`
}

func (c *view) group(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	name := r.PathValue("group")
	typ := c.groupType(ctx, name)
	switch typ {
	case "share":
		c.shareGroup(ctx, w, name)
		return
	case "consumer":
		c.consumerGroup(ctx, w, name)
		return
	}
	lags, err := c.adm.Lag(ctx, name)
	if err != nil {
		brokerError(w, err)
		return
	}
	l, ok := lags[name]
	if !ok || l.State == "Dead" && len(l.Members) == 0 && len(l.Lag) == 0 {
		writeError(w, http.StatusNotFound, "group %q does not exist", name)
		return
	}
	if l.Error() != nil && len(l.Members) == 0 && len(l.Lag) == 0 {
		brokerError(w, l.Error())
		return
	}
	members := []memberRow{}
	for _, m := range l.Members {
		row := memberRow{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost, Assignments: []string{}}
		if m.InstanceID != nil {
			row.InstanceID = *m.InstanceID
		}
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range a.Topics {
				for _, p := range t.Partitions {
					row.Assignments = append(row.Assignments, fmt.Sprintf("%s/%d", t.Topic, p))
				}
			}
		}
		members = append(members, row)
	}
	rows := []lagRow{}
	for _, ps := range l.Lag.Sorted() {
		row := lagRow{Topic: ps.Topic, Partition: ps.Partition, Committed: ps.Commit.At, End: ps.End.Offset, Lag: ps.Lag}
		if ps.Member != nil {
			row.MemberID = ps.Member.MemberID
		}
		if ps.Err != nil {
			row.Error = ps.Err.Error()
		}
		rows = append(rows, row)
	}
	writeJSON(w, http.StatusOK, groupDetail{Group: name, Type: typ, State: l.State, ProtocolType: l.ProtocolType,
		Protocol: l.Protocol, Coordinator: l.Coordinator.NodeID, Lag: l.Lag.Total(), Members: members, Offsets: rows})
}

func (c *view) keyWindow(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"metrics":        c.families(func(name string) bool { return containsAny(name, "dedup", "key_window", "idempotency") }),
		"lookup_enabled": c.cfg.KeyLookupURL != "",
	})
}

// lookupKey asks the HTTP ingest listener where a key is in the window.
func (c *view) lookupKey(w http.ResponseWriter, r *http.Request) {
	if c.cfg.KeyLookupURL == "" {
		writeError(w, http.StatusNotFound, "key lookup needs the HTTP ingest listener (serve --http-listen)")
		return
	}
	ctx, cancel := c.ctx(r)
	defer cancel()
	// The HTTP ingest listener does not know the console's user: the
	// user must at least be allowed to DESCRIBE the topic.
	details, err := c.adm.ListTopics(ctx, r.PathValue("topic"))
	if err != nil {
		brokerError(w, err)
		return
	}
	if d, ok := details[r.PathValue("topic")]; ok && authorizationError(d.Err) {
		brokerError(w, d.Err)
		return
	}
	u := c.cfg.KeyLookupURL + "/v1/topics/" + url.PathEscape(r.PathValue("topic")) + "/keys/" + url.PathEscape(r.PathValue("key"))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if c.cfg.KeyLookupToken != nil {
		req.Header.Set("Authorization", "Bearer "+c.cfg.KeyLookupToken())
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		writeError(w, http.StatusBadGateway, "HTTP ingest listener: %v", err)
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, io.LimitReader(resp.Body, 1<<20))
}

func (c *view) metrics(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"time_ms": time.Now().UnixMilli(), "values": c.totals()})
}
