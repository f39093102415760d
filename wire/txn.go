package wire

import (
	"context"
	"regexp"

	"github.com/oncelog/oncelog/txn"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(24, txn.Versions[24][0], txn.Versions[24][1], handleAddPartitionsToTxn)
	register(25, txn.Versions[25][0], txn.Versions[25][1], handleAddOffsetsToTxn)
	register(26, txn.Versions[26][0], txn.Versions[26][1], handleEndTxn)
	register(28, txn.Versions[28][0], txn.Versions[28][1], handleTxnOffsetCommit)
	register(65, txn.Versions[65][0], txn.Versions[65][1], handleDescribeTransactions)
	register(66, txn.Versions[66][0], txn.Versions[66][1], handleListTransactions)
}

func initTransactionalProducer(c *conn, req *kmsg.InitProducerIDRequest, resp *kmsg.InitProducerIDResponse) kmsg.Response {
	resp.ProducerID, resp.ProducerEpoch, resp.ErrorCode = c.s.b.Txns.InitProducerID(c.ctx, *req.TransactionalID, req.TransactionTimeoutMillis, req.ProducerID, req.ProducerEpoch, req.Version)
	return resp
}

func handleAddPartitionsToTxn(c *conn, r *request) respond {
	req := r.kreq.(*kmsg.AddPartitionsToTxnRequest)
	if req.Version >= 4 {
		return ready(addPartitionsToTxnBatch(c, req))
	}
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	var tps []txn.TopicPartition
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			tps = append(tps, txn.TopicPartition{Topic: t.Topic, Partition: p})
		}
	}
	codes := authorizeAddPartitions(c, r.key, req.TransactionalID, req.ProducerID, tps)
	if codes == nil {
		codes = c.s.b.Txns.AddPartitions(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Version, tps)
	}
	for _, t := range req.Topics {
		st := kmsg.NewAddPartitionsToTxnResponseTopic()
		st.Topic = t.Topic
		for _, p := range t.Partitions {
			sp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
			sp.Partition = p
			sp.ErrorCode = codes[txn.TopicPartition{Topic: t.Topic, Partition: p}]
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return ready(resp)
}

// addPartitionsToTxnBatch serves AddPartitionsToTxn v4+, the batched form
// that KIP-890 gave brokers: one result per transaction, and VerifyOnly
// transactions checked without adding anything. Kafka authorizes v4+ with
// CLUSTER_ACTION (checked when an authorizer is configured).
//
// A transactional id named more than once is not attempted: its one
// result answers INVALID_REQUEST for every partition of its entries. The
// results are keyed by transactional id (a map key in Kafka's schema), so
// two results for one id could not be told apart; Kafka itself runs each
// entry against the partitions of the last one, an accident of its
// partitionsByTransaction map that no sender relies on (its brokers keep
// one entry per id).
func addPartitionsToTxnBatch(c *conn, req *kmsg.AddPartitionsToTxnRequest) *kmsg.AddPartitionsToTxnResponse {
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	// v4+ is the broker-to-coordinator form (KIP-890): Kafka requires
	// CLUSTER_ACTION on the cluster and answers the whole request.
	if !c.authorizeCluster(24, opClusterAction) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp
	}
	entries := make(map[string]int, len(req.Transactions))
	for _, t := range req.Transactions {
		entries[t.TransactionalID]++
	}
	duplicateAnswered := map[string]bool{}
	for _, t := range req.Transactions {
		id := t.TransactionalID
		if entries[id] > 1 {
			if duplicateAnswered[id] {
				continue
			}
			duplicateAnswered[id] = true
			var tps []txn.TopicPartition
			for _, other := range req.Transactions {
				if other.TransactionalID == id {
					tps = appendTxnPartitions(tps, other.Topics)
				}
			}
			codes := make(map[txn.TopicPartition]int16, len(tps))
			for _, tp := range tps {
				codes[tp] = kerr.InvalidRequest.Code
			}
			resp.Transactions = append(resp.Transactions, txnResult(id, tps, codes))
			continue
		}
		tps := appendTxnPartitions(nil, t.Topics)
		codes := c.s.b.Txns.AddOrVerifyPartitions(id, t.ProducerID, t.ProducerEpoch, req.Version, t.VerifyOnly, tps)
		resp.Transactions = append(resp.Transactions, txnResult(id, tps, codes))
	}
	return resp
}

// appendTxnPartitions appends the partitions of topics not already in tps,
// in request order.
func appendTxnPartitions(tps []txn.TopicPartition, topics []kmsg.AddPartitionsToTxnRequestTransactionTopic) []txn.TopicPartition {
	seen := make(map[txn.TopicPartition]bool, len(tps))
	for _, tp := range tps {
		seen[tp] = true
	}
	for _, t := range topics {
		for _, p := range t.Partitions {
			tp := txn.TopicPartition{Topic: t.Topic, Partition: p}
			if !seen[tp] {
				seen[tp] = true
				tps = append(tps, tp)
			}
		}
	}
	return tps
}

// txnResult is one transaction's result, each topic once, as Kafka's
// keyed result collections have it.
func txnResult(id string, tps []txn.TopicPartition, codes map[txn.TopicPartition]int16) kmsg.AddPartitionsToTxnResponseTransaction {
	rt := kmsg.NewAddPartitionsToTxnResponseTransaction()
	rt.TransactionalID = id
	topics, partitions := groupByTopic(tps)
	for i, topic := range topics {
		st := kmsg.NewAddPartitionsToTxnResponseTransactionTopic()
		st.Topic = topic
		for _, p := range partitions[i] {
			sp := kmsg.NewAddPartitionsToTxnResponseTransactionTopicPartition()
			sp.Partition, sp.ErrorCode = p, codes[txn.TopicPartition{Topic: topic, Partition: p}]
			st.Partitions = append(st.Partitions, sp)
		}
		rt.Topics = append(rt.Topics, st)
	}
	return rt
}

func handleAddOffsetsToTxn(c *conn, r *request) respond {
	req := r.kreq.(*kmsg.AddOffsetsToTxnRequest)
	resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	switch {
	case !c.authorize(r.key, opWrite, rtTxnID, req.TransactionalID):
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return ready(resp)
	case !c.authorize(r.key, opRead, rtGroup, req.Group):
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return ready(resp)
	case !c.ownsProducerID(r.key, req.ProducerID):
		resp.ErrorCode = kerr.InvalidProducerIDMapping.Code
		return ready(resp)
	}
	resp.ErrorCode = c.s.b.Txns.AddOffsets(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Version, req.Group)
	return ready(resp)
}

// handleEndTxn writes markers and waits for them to be durable, so it runs
// on the writer goroutine.
func handleEndTxn(c *conn, r *request) respond {
	req := r.kreq.(*kmsg.EndTxnRequest)
	code := int16(0)
	switch {
	case !c.authorize(r.key, opWrite, rtTxnID, req.TransactionalID):
		code = kerr.TransactionalIDAuthorizationFailed.Code
	case !c.ownsProducerID(r.key, req.ProducerID):
		code = kerr.InvalidProducerIDMapping.Code
	}
	if code != 0 {
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode, resp.ProducerID, resp.ProducerEpoch = code, -1, -1
		return ready(resp)
	}
	return func(ctx context.Context) kmsg.Response {
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		res := c.s.b.Txns.EndTxn(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit, req.Version)
		// v5 (transaction version 2) tells the producer its next
		// producer id and epoch; earlier versions have no such fields.
		resp.ErrorCode, resp.ProducerID, resp.ProducerEpoch = res.Code, res.ProducerID, res.Epoch
		if res.Code == 0 && req.Version >= 5 && res.ProducerID >= 0 && res.ProducerID != req.ProducerID {
			// The coordinator moved the transactional id to a new
			// producer id (epoch exhausted): it belongs to the same
			// principal.
			if err := c.bindProducerID(res.ProducerID); err != nil {
				resp.ErrorCode, resp.ProducerID, resp.ProducerEpoch = kerr.KafkaStorageError.Code, -1, -1
			}
		}
		return resp
	}
}

// handleTxnOffsetCommit checks with the transaction coordinator that the
// group is part of the ongoing transaction, then stores the offsets as
// pending in the group coordinator until the COMMIT or ABORT.
func handleTxnOffsetCommit(c *conn, r *request) respond {
	b := c.s.b
	req := r.kreq.(*kmsg.TxnOffsetCommitRequest)
	errorTopics := func(topics []kmsg.TxnOffsetCommitRequestTopic, code int16) []kmsg.TxnOffsetCommitResponseTopic {
		var out []kmsg.TxnOffsetCommitResponseTopic
		for _, t := range topics {
			st := kmsg.NewTxnOffsetCommitResponseTopic()
			st.Topic, st.TopicID = t.Topic, t.TopicID
			for _, p := range t.Partitions {
				sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
				sp.Partition, sp.ErrorCode = p.Partition, code
				st.Partitions = append(st.Partitions, sp)
			}
			out = append(out, st)
		}
		return out
	}
	errorResponse := func(code int16) respond {
		resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
		resp.Topics = errorTopics(req.Topics, code)
		return ready(resp)
	}
	// Kafka: WRITE on the transactional id, READ on the group, then READ
	// on each topic (the others are still committed). The producer id
	// must be this principal's (producerids.go).
	switch {
	case !c.authorize(r.key, opWrite, rtTxnID, req.TransactionalID):
		return errorResponse(kerr.TransactionalIDAuthorizationFailed.Code)
	case !c.authorize(r.key, opRead, rtGroup, req.Group):
		return errorResponse(kerr.GroupAuthorizationFailed.Code)
	case !c.ownsProducerID(r.key, req.ProducerID):
		return errorResponse(kerr.InvalidProducerIDMapping.Code)
	}
	requested := req.Topics
	// v6 names topics by id (KIP-1319): resolved to names before the
	// topic authorization, as Kafka does; an id no topic has is
	// answered UNKNOWN_TOPIC_ID.
	var unknownIDs []kmsg.TxnOffsetCommitRequestTopic
	if req.Version >= 6 {
		named := make([]kmsg.TxnOffsetCommitRequestTopic, 0, len(req.Topics))
		for _, t := range req.Topics {
			if name, ok := topicNameByID(b, t.TopicID); ok {
				t.Topic = name
				named = append(named, t)
			} else {
				unknownIDs = append(unknownIDs, t)
			}
		}
		req.Topics = named
	}
	allowed, denied := splitAuthorized(req.Topics, func(t kmsg.TxnOffsetCommitRequestTopic) bool { return c.authorize(r.key, opRead, rtTopic, t.Topic) })
	// Kafka answers partitions its metadata does not have
	// UNKNOWN_TOPIC_OR_PARTITION and commits the rest.
	var missing []kmsg.TxnOffsetCommitRequestTopic
	req.Topics = allowed[:0:0]
	for _, t := range allowed {
		topic := b.Topic(t.Topic)
		exist, absent := splitAuthorized(t.Partitions, func(p kmsg.TxnOffsetCommitRequestTopicPartition) bool {
			return topic != nil && p.Partition >= 0 && int(p.Partition) < len(topic.Partitions)
		})
		if len(absent) > 0 {
			mt := t
			mt.Partitions = absent
			missing = append(missing, mt)
		}
		if len(exist) > 0 {
			t.Partitions = exist
			req.Topics = append(req.Topics, t)
		}
	}
	deniedTopics := errorTopics(denied, kerr.TopicAuthorizationFailed.Code)
	deniedTopics = append(deniedTopics, errorTopics(missing, kerr.UnknownTopicOrPartition.Code)...)
	deniedTopics = append(deniedTopics, errorTopics(unknownIDs, kerr.UnknownTopicID.Code)...)
	// finish merges the answers to the partitions set aside above into
	// the coordinator's (one entry per topic, as Kafka's), and from v6
	// names the topics by id in request order.
	finish := func(resp *kmsg.TxnOffsetCommitResponse) *kmsg.TxnOffsetCommitResponse {
		resp.Topics = mergeTxnOffsetCommitTopics(append(resp.Topics, deniedTopics...))
		if req.Version >= 6 {
			for i := range resp.Topics {
				if t := &resp.Topics[i]; t.TopicID == ([16]byte{}) {
					t.TopicID = topicIDByName(b, t.Topic)
				}
			}
			inRequestOrder(resp.Topics, requested, func(t kmsg.TxnOffsetCommitResponseTopic) [16]byte { return t.TopicID },
				func(t kmsg.TxnOffsetCommitRequestTopic) [16]byte { return t.TopicID })
		}
		return resp
	}
	verify := b.Txns.VerifyGroup
	if req.Version >= 5 {
		// Transaction version 2: no AddOffsetsToTxn came before; the
		// group joins the transaction here.
		verify = b.Txns.AddGroupImplicitly
	}
	if code := verify(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group); code != 0 {
		if code == kerr.InvalidTxnState.Code && req.Version >= 4 {
			// KIP-890: from v4 a group outside the transaction is an
			// abortable error, as Kafka's verification answers it.
			code = kerr.TransactionAbortable.Code
		}
		resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
		resp.Topics = errorTopics(req.Topics, code)
		return ready(finish(resp))
	}
	return func(ctx context.Context) kmsg.Response {
		return finish(b.Groups.TxnOffsetCommit(ctx, req))
	}
}

// mergeTxnOffsetCommitTopics joins answers for the same topic into one
// entry. Topics with an unresolved id (no name) stay separate.
func mergeTxnOffsetCommitTopics(topics []kmsg.TxnOffsetCommitResponseTopic) []kmsg.TxnOffsetCommitResponseTopic {
	at := map[string]int{}
	out := topics[:0]
	for _, t := range topics {
		if i, ok := at[t.Topic]; ok && t.Topic != "" {
			out[i].Partitions = append(out[i].Partitions, t.Partitions...)
			continue
		}
		at[t.Topic] = len(out)
		out = append(out, t)
	}
	return out
}

// authorizeAddPartitions is AddPartitionsToTxn v0-v3's authorization, as
// KafkaApis: without WRITE on the transactional id every partition answers
// TRANSACTIONAL_ID_AUTHORIZATION_FAILED; if any topic may not be written
// (or does not exist), nothing is added: those partitions answer
// TOPIC_AUTHORIZATION_FAILED (UNKNOWN_TOPIC_OR_PARTITION), the rest
// OPERATION_NOT_ATTEMPTED. nil means go ahead.
func authorizeAddPartitions(c *conn, api int16, id string, pid int64, tps []txn.TopicPartition) map[txn.TopicPartition]int16 {
	all := func(code int16) map[txn.TopicPartition]int16 {
		codes := make(map[txn.TopicPartition]int16, len(tps))
		for _, tp := range tps {
			codes[tp] = code
		}
		return codes
	}
	if !c.authorize(api, opWrite, rtTxnID, id) {
		return all(kerr.TransactionalIDAuthorizationFailed.Code)
	}
	if !c.ownsProducerID(api, pid) {
		return all(kerr.InvalidProducerIDMapping.Code)
	}
	if !c.aclEnabled() {
		return nil
	}
	codes := make(map[txn.TopicPartition]int16, len(tps))
	failed := false
	mayWrite := map[string]bool{}
	for _, tp := range tps {
		ok, seen := mayWrite[tp.Topic]
		if !seen {
			ok = c.authorize(api, opWrite, rtTopic, tp.Topic)
			mayWrite[tp.Topic] = ok
		}
		switch {
		case !ok:
			codes[tp], failed = kerr.TopicAuthorizationFailed.Code, true
		case c.s.b.Partition(tp.Topic, tp.Partition) == nil:
			codes[tp], failed = kerr.UnknownTopicOrPartition.Code, true
		default:
			codes[tp] = kerr.OperationNotAttempted.Code
		}
	}
	if !failed {
		return nil
	}
	return codes
}

func handleDescribeTransactions(c *conn, r *request) respond {
	req := r.kreq.(*kmsg.DescribeTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	for _, id := range req.TransactionalIDs {
		st := kmsg.NewDescribeTransactionsResponseTransactionState()
		st.TransactionalID = id
		// Kafka: DESCRIBE on the transactional id; partitions of topics
		// the principal may not describe are left out.
		if !c.authorize(r.key, opDescribe, rtTxnID, id) {
			st.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
			resp.TransactionStates = append(resp.TransactionStates, st)
			continue
		}
		info, ok := c.s.b.Txns.Describe(id)
		if !ok {
			st.ErrorCode = kerr.TransactionalIDNotFound.Code
			resp.TransactionStates = append(resp.TransactionStates, st)
			continue
		}
		st.State = info.Status.String()
		st.TimeoutMillis = info.TimeoutMs
		st.StartTimestamp = info.StartMs
		st.ProducerID, st.ProducerEpoch = info.ProducerID, info.Epoch
		topics, partitions := groupByTopic(info.Partitions)
		for i, topic := range topics {
			if !c.authorizeQuiet(opDescribe, rtTopic, topic) {
				continue
			}
			t := kmsg.NewDescribeTransactionsResponseTransactionStateTopic()
			t.Topic, t.Partitions = topic, partitions[i]
			st.Topics = append(st.Topics, t)
		}
		resp.TransactionStates = append(resp.TransactionStates, st)
	}
	return ready(resp)
}

func handleListTransactions(c *conn, r *request) respond {
	req := r.kreq.(*kmsg.ListTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.ListTransactionsResponse)
	states := map[string]bool{}
	for _, s := range req.StateFilters {
		states[s] = true
	}
	pids := map[int64]bool{}
	for _, p := range req.ProducerIDFilters {
		pids[p] = true
	}
	// v2 (KIP-1152): a regular expression (RE2, as Kafka's RE2/J) that
	// the whole transactional id must match; null or empty lists all.
	var idPattern *regexp.Regexp
	if req.Version >= 2 && req.TransactionalIDPattern != nil && *req.TransactionalIDPattern != "" {
		re, err := regexp.Compile("^(?:" + *req.TransactionalIDPattern + ")$")
		if err != nil {
			resp.ErrorCode = kerr.InvalidRegularExpression.Code
			return ready(resp)
		}
		idPattern = re
	}
	nowMs := c.s.b.Now().UnixMilli()
	for _, info := range c.s.b.Txns.List() {
		if idPattern != nil && !idPattern.MatchString(info.ID) {
			continue
		}
		if len(states) > 0 && !states[info.Status.String()] {
			continue
		}
		if len(pids) > 0 && !pids[info.ProducerID] {
			continue
		}
		if !c.authorizeQuiet(opDescribe, rtTxnID, info.ID) {
			continue // Kafka lists only what the principal may describe
		}
		if req.Version >= 1 && req.DurationFilterMillis >= 0 && (info.Status != txn.Ongoing || nowMs-info.StartMs < req.DurationFilterMillis) {
			continue
		}
		ts := kmsg.NewListTransactionsResponseTransactionState()
		ts.TransactionalID, ts.ProducerID, ts.TransactionState = info.ID, info.ProducerID, info.Status.String()
		resp.TransactionStates = append(resp.TransactionStates, ts)
	}
	return ready(resp)
}

// groupByTopic groups partitions by topic, topics in first-seen order, as
// responses list each topic once.
func groupByTopic(tps []txn.TopicPartition) (topics []string, partitions [][]int32) {
	index := map[string]int{}
	for _, tp := range tps {
		i, ok := index[tp.Topic]
		if !ok {
			i = len(topics)
			index[tp.Topic] = i
			topics = append(topics, tp.Topic)
			partitions = append(partitions, nil)
		}
		partitions[i] = append(partitions[i], tp.Partition)
	}
	return topics, partitions
}
