// Package broker composes oncelog: the topic and partition registry, the
// metadata store, the producer-id allocator and the coordinators. The wire
// package routes each request to it; it never encodes protocol bytes.
package broker

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oncelog/oncelog/acl"
	"github.com/oncelog/oncelog/cleaner"
	"github.com/oncelog/oncelog/group"
	"github.com/oncelog/oncelog/internal/fsx"
	"github.com/oncelog/oncelog/meta"
	"github.com/oncelog/oncelog/partition"
	"github.com/oncelog/oncelog/producer"
	"github.com/oncelog/oncelog/segment"
	"github.com/oncelog/oncelog/share"
	"github.com/oncelog/oncelog/txn"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Topic is a live topic.
type Topic struct {
	Name       string
	ID         [16]byte
	Configs    map[string]string // overrides only
	Partitions []*partition.Partition
}

// Broker is safe for concurrent use.
type Broker struct {
	cfg       Config
	logger    *slog.Logger
	ClusterID string

	meta *meta.Store
	// Users are the SCRAM credentials SASL authenticates against.
	Users  *Users
	limits *producer.Limits
	PIDs   *producer.IDAllocator
	Groups *group.Coordinator
	// Shares is the share-group coordinator (KIP-932).
	Shares *share.Coordinator
	Txns   *txn.Coordinator
	Stats  *Stats
	// ACL is the authorizer, nil with --authorizer none (then every
	// request is allowed).
	ACL *acl.Authorizer
	// Owners binds producer ids to principals; nil without an
	// authorizer (producerowners.go).
	Owners *ProducerOwners

	cleaner *cleaner.Cleaner // nil with --log-cleaner-enable=false

	// keys is the idempotency-key window (keywindow.go); nil until Open
	// opened its index.
	keys *keyWindows

	// internal are Kafka's internal topics (internal.go); fixed at Open.
	internal map[string]*InternalTopic

	featuresMu sync.Mutex
	features   FinalizedFeatures

	mu     sync.RWMutex
	topics map[string]*Topic
	byID   map[[16]byte]*Topic
	// busy names topics being created or grown: their files are opened
	// without mu held, and the channel is closed when that is over.
	busy map[string]chan struct{}
	// shutdown is set by Close: no admin operation starts after it.
	shutdown bool
	// partitionCount is the partitions of topics (internal ones hold
	// none), reserved those of creates under way: --max-partitions bounds
	// their sum.
	partitionCount int
	reserved       int
	// topicsGen moves whenever a topic is created or deleted or gains
	// partitions: consumer groups re-resolve their subscriptions then.
	topicsGen atomic.Uint64

	stop    chan struct{}
	stopped sync.WaitGroup
	// producersLoaded is closed once the background loader has loaded the
	// producer state of every partition opened at start (loadProducers).
	producersLoaded chan struct{}

	// storeFailed is closed when a metadata store (meta, groups,
	// transactions) failed for good; storeErr says which and why.
	storeFailed   chan struct{}
	storeFailOnce sync.Once
	storeErr      error
	// removing tracks tombstone removals; removeMu orders their start
	// against Close, after which none starts (the next start does them).
	removeMu sync.Mutex
	removing sync.WaitGroup
	closing  bool
	closeErr error
	closed   sync.Once

	// dirLock is held on the data dir's lock file from Open to Close, so
	// a second oncelog on the same directory fails at once.
	dirLock io.Closer
}

// lockFileName is the data dir's lock file (Kafka's name for a log dir's).
const lockFileName = ".lock"

// lockDataDir takes the data dir's lock: an exclusive POSIX lock on its
// lock file, released by the kernel if the process dies, held by another
// process or by another broker in this process.
func lockDataDir(fs fsx.FS, dir string) (io.Closer, error) {
	l, err := fs.Lock(filepath.Join(dir, lockFileName))
	if err != nil {
		return nil, fmt.Errorf("data dir %s is in use by another oncelog (lock held): %w", dir, err)
	}
	return l, nil
}

// Open starts a broker on cfg.DataDir, recovering every partition.
func Open(cfg Config, logger *slog.Logger) (*Broker, error) {
	cfg.FS = fsx.Or(cfg.FS)
	if err := fsx.MkdirAll(cfg.FS, cfg.DataDir); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	dirLock, err := lockDataDir(cfg.FS, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	opened := false
	defer func() {
		if !opened {
			dirLock.Close()
		}
	}()
	if cfg.MaxOpenSegmentFiles > 0 {
		segment.SetMaxOpenFiles(cfg.MaxOpenSegmentFiles)
	}
	start := time.Now()
	b := &Broker{
		cfg:         cfg,
		logger:      logger,
		topics:      map[string]*Topic{},
		byID:        map[[16]byte]*Topic{},
		busy:        map[string]chan struct{}{},
		stop:        make(chan struct{}),
		storeFailed: make(chan struct{}),
		Stats:       newStats(),
	}
	if b.meta, err = meta.Open(cfg.FS, filepath.Join(cfg.DataDir, "meta"), logger, b.storeFatal("metadata")); err != nil {
		return nil, err
	}
	if b.ClusterID, err = b.meta.ClusterID(); err != nil {
		b.meta.Close()
		return nil, err
	}
	b.Users = &Users{meta: b.meta}
	b.internal = newInternalTopics(b.ClusterID)
	if b.ACL, err = openAuthorizer(cfg, b.meta); err != nil {
		b.meta.Close()
		return nil, err
	}
	if b.ACL != nil {
		if b.Owners, err = b.openProducerOwners(); err != nil {
			b.meta.Close()
			return nil, err
		}
	}
	if err := b.loadFeatures(); err != nil {
		b.meta.Close()
		return nil, err
	}
	b.limits = producer.NewLimits(cfg.MaxProducers, func(n int) {
		b.Stats.ProducersEvicted.Add(float64(n))
	})
	if b.PIDs, err = producer.OpenIDAllocator(cfg.FS, filepath.Join(cfg.DataDir, "producer-ids")); err != nil {
		b.meta.Close()
		return nil, err
	}
	metaTook := time.Since(start)
	phase := time.Now()
	b.Groups, err = group.Open(group.Config{
		NodeID:                cfg.NodeID,
		Dir:                   filepath.Join(cfg.DataDir, "groups"),
		FS:                    cfg.FS,
		InitialRebalanceDelay: cfg.GroupInitialRebalanceDelay,
		MinSessionTimeout:     cfg.GroupMinSessionTimeout,
		MaxSessionTimeout:     cfg.GroupMaxSessionTimeout,
		MaxSize:               cfg.GroupMaxSize,
		// KIP-848 consumer groups.
		ConsumerSessionTimeout:    cfg.GroupConsumerSessionTimeout,
		ConsumerHeartbeatInterval: cfg.GroupConsumerHeartbeatInterval,
		ConsumerMaxSize:           cfg.GroupConsumerMaxSize,
		ConsumerAssignors:         splitList(cfg.GroupConsumerAssignors),
		ConsumerMigrationPolicy:   cfg.GroupConsumerMigrationPolicy,
		Topics:                    b.consumerGroupTopics,
		TopicsGeneration:          b.topicsGen.Load,
		Logger:                    logger,
		OnStoreFatal:              b.storeFatal("groups"),
	})
	if err != nil {
		b.meta.Close()
		return nil, err
	}
	groupsTook := time.Since(phase)
	topics, err := b.meta.Topics()
	if err != nil {
		b.Close()
		return nil, err
	}
	var stored []*Topic
	var counts []int32
	for _, mt := range topics {
		if IsInternalTopic(mt.Name) {
			// Auto-created by a client before oncelog knew internal
			// topics; its files stay on disk, unserved.
			logger.Warn("not serving a stored topic named like a Kafka internal topic; its files are left in place", "topic", mt.Name)
			continue
		}
		stored = append(stored, &Topic{Name: mt.Name, ID: mt.ID, Configs: mt.Configs})
		counts = append(counts, mt.Partitions)
	}
	phase = time.Now()
	if err := b.openStoredPartitions(stored, counts); err != nil {
		b.Close()
		return nil, err
	}
	partitionsTook := time.Since(phase)
	for _, t := range stored {
		b.topics[t.Name] = t
		b.byID[t.ID] = t
		b.partitionCount += len(t.Partitions)
	}
	// Before the transaction coordinator: its recovery may abort
	// transactions, which takes their keys out of the window.
	phase = time.Now()
	if err := b.openKeyWindows(); err != nil {
		b.Close()
		return nil, err
	}
	keyWindowsTook := time.Since(phase)
	if b.partitionCount > cfg.MaxPartitions {
		logger.Warn("the stored topics hold more partitions than --max-partitions; no partition can be created until some are deleted", "partitions", b.partitionCount, "max_partitions", cfg.MaxPartitions)
	}
	phase = time.Now()
	b.Shares, err = share.Open(share.Config{
		Dir:                     filepath.Join(cfg.DataDir, "share-groups"),
		FS:                      cfg.FS,
		Logger:                  logger.With("component", "share-groups"),
		OnStoreFatal:            b.storeFatal("share groups"),
		SessionTimeout:          cfg.ShareSessionTimeout,
		HeartbeatInterval:       cfg.ShareHeartbeatInterval,
		MaxSize:                 cfg.ShareMaxSize,
		RecordLockDuration:      cfg.ShareRecordLockDuration,
		DeliveryCountLimit:      cfg.ShareDeliveryCountLimit,
		PartitionMaxRecordLocks: cfg.SharePartitionMaxRecordLocks,
		MaxShareSessions:        cfg.ShareMaxShareSessions,
		FetchMaxBytes:           int(cfg.FetchMaxBytes),
		Topics:                  shareTopics{b},
		ClassicGroup:            b.Groups.Exists,
	})
	if err != nil {
		b.Close()
		return nil, err
	}
	sharesTook := time.Since(phase)
	phase = time.Now()
	b.Txns, err = txn.Open(txn.Config{
		Dir:          filepath.Join(cfg.DataDir, "transactions"),
		FS:           cfg.FS,
		MaxTimeoutMs: cfg.TransactionMaxTimeoutMs,
		SweepEvery:   cfg.TransactionSweepInterval,
		IDExpiration: cfg.TransactionalIDExpiration,
		Logger:       logger.With("component", "transactions"),
		OnStoreFatal: b.storeFatal("transactions"),
	}, b.PIDs.Next, b, b.Groups, b.partitionExists, txn.Stats{
		Committed: b.Stats.TxnCommitted.Inc,
		Aborted:   b.Stats.TxnAborted.Inc,
		TimedOut:  b.Stats.TxnTimedOut.Inc,
	})
	if err != nil {
		b.Close()
		return nil, err
	}
	// The partitions' producer states load in the background (and each
	// on its first use before that); the coordinator's reconciliation
	// reads every partition's open transactions, so it starts after them,
	// and transactional requests wait for it.
	b.producersLoaded = make(chan struct{})
	b.stopped.Add(1)
	go b.loadProducers(stored, start)
	b.Txns.StartAfter(func() { <-b.producersLoaded })
	txnsTook := time.Since(phase)
	if cfg.CleanerEnable {
		b.cleaner = cleaner.New(cleaner.Config{
			Threads:             cfg.CleanerThreads,
			Backoff:             time.Duration(cfg.CleanerBackoffMs) * time.Millisecond,
			DedupeBufferSize:    cfg.CleanerDedupeBufferSize,
			IOMaxBytesPerSecond: cfg.CleanerIOMaxBytesPerSecond,
			Logger:              logger,
			Stats: cleaner.Stats{
				Cleaned: func(r cleaner.Result) {
					s := b.Stats
					s.CleanerRuns.Inc()
					s.CleanerBytesRead.Add(float64(r.BytesRead))
					s.CleanerBytesWritten.Add(float64(r.BytesWritten))
					s.CleanerSeconds.Add(r.Took.Seconds())
					s.CleanerRecordsGone.Add(float64(r.RecordsRemoved))
				},
				Failed: func(error) {
					b.Stats.CleanerErrors.Inc()
					b.Stats.CleanerLastError.SetToCurrentTime()
				},
			},
		}, b.allPartitions)
		b.cleaner.Start()
	}
	// Per-partition, producer, transaction and group gauges are computed
	// when /metrics is scraped (collect.go).
	b.Stats.Registry.MustRegister(scrapeCollector{b})
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	logger.Info("broker recovered", "topics", len(topics), "partitions", b.partitionCount,
		"meta", ms(metaTook), "groups", ms(groupsTook), "partition_logs", ms(partitionsTook), "key_windows", ms(keyWindowsTook),
		"share_groups", ms(sharesTook), "transactions", ms(txnsTook), "took", ms(time.Since(start)))
	b.removeLeftoverTombstones()
	b.stopped.Add(2)
	go b.maintain()
	go b.checkpointRecoveryPoints()
	b.dirLock, opened = dirLock, true
	return b, nil
}

// Config returns the broker configuration.
func (b *Broker) Config() Config { return b.cfg }

func (b *Broker) partitionDir(topic string, index int32) string {
	return filepath.Join(b.cfg.DataDir, "topics", topic+"-"+strconv.Itoa(int(index)))
}

// openPartitions opens partitions [from, to) of t.
func (b *Broker) openPartitions(t *Topic, from, to int32) error {
	pcfg := b.cfg.partitionConfig(t.Configs)
	for i := from; i < to; i++ {
		p, err := partition.Open(b.cfg.FS, b.partitionDir(t.Name, i), t.Name, i, pcfg, b.limits, b.partitionHooks(), b.logger)
		if err != nil {
			return err
		}
		t.Partitions = append(t.Partitions, p)
	}
	return nil
}

// openStoredPartitions opens (and, after a crash, recovers) the partitions
// of the stored topics, counts[i] of topics[i], RecoveryThreads at a time
// (Kafka's num.recovery.threads.per.data.dir): each partition's scan and
// producer-state load are independent, so a restart takes about as long as
// the slowest share rather than the sum. On error every partition opened is
// closed again.
func (b *Broker) openStoredPartitions(topics []*Topic, counts []int32) error {
	type job struct {
		t *Topic
		i int32
	}
	jobs := make(chan job)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	for i, t := range topics {
		t.Partitions = make([]*partition.Partition, counts[i])
	}
	for range max(b.cfg.RecoveryThreads, 1) {
		wg.Go(func() {
			for j := range jobs {
				pcfg := b.cfg.partitionConfig(j.t.Configs)
				p, err := partition.OpenDeferred(b.cfg.FS, b.partitionDir(j.t.Name, j.i), j.t.Name, j.i, pcfg, b.limits, b.partitionHooks(), b.logger)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				j.t.Partitions[j.i] = p // nil on error
			}
		})
	}
	for i, t := range topics {
		for p := range counts[i] {
			mu.Lock()
			failed := firstErr != nil
			mu.Unlock()
			if failed {
				break
			}
			jobs <- job{t, p}
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr == nil {
		return nil
	}
	for _, t := range topics {
		for _, p := range t.Partitions {
			if p != nil {
				p.Close()
			}
		}
		t.Partitions = nil
	}
	return firstErr
}

// loadProducers loads the producer state of the partitions opened at
// start, RecoveryThreads at a time, after Open returned: a partition used
// before its turn loads on that first use (partition.LoadProducers), so a
// restart serves producers without waiting for every partition's
// snapshot. It stops early when the broker closes (Close loads what is
// left of a partition it closes).
func (b *Broker) loadProducers(topics []*Topic, began time.Time) {
	defer b.stopped.Done()
	defer close(b.producersLoaded)
	parts := make(chan *partition.Partition)
	var wg sync.WaitGroup
	for range max(b.cfg.RecoveryThreads, 1) {
		wg.Go(func() {
			for p := range parts {
				p.LoadProducers()
			}
		})
	}
	n := 0
feed:
	for _, t := range topics {
		for _, p := range t.Partitions {
			select {
			case parts <- p:
				n++
			case <-b.stop:
				break feed
			}
		}
	}
	close(parts)
	wg.Wait()
	b.logger.Info("producer states loaded", "partitions", n, "since_start", time.Since(began).Round(time.Millisecond).String())
}

// WaitRecovered returns once the start's background work is done: every
// partition's producer state loaded and the transaction coordinator's
// reconciliation with them run (so a transaction a crash left open in a
// partition without the coordinator knowing it is aborted by then).
func (b *Broker) WaitRecovered() {
	<-b.producersLoaded
	b.Txns.WaitStarted()
}

func (b *Broker) partitionHooks() partition.Hooks {
	s := b.Stats
	return partition.Hooks{
		Woke: func(n int) { s.FetchWakeups.Add(float64(n)) },
		Synced: func(d time.Duration, waiters int) {
			s.FsyncSeconds.Observe(d.Seconds())
			s.GroupCommitSize.Observe(float64(waiters))
		},
		Appended: func(records, bytes int) {
			s.BatchesAppended.Inc()
			s.RecordsAppended.Add(float64(records))
		},
		Duplicate: func() { s.DuplicateBatches.Inc() },
		Rejected: func(code int16) {
			switch code {
			case kerr.OutOfOrderSequenceNumber.Code:
				s.OutOfOrder.Inc()
			case kerr.InvalidProducerEpoch.Code, kerr.ProducerFenced.Code:
				s.Fenced.Inc()
			}
		},
	}
}

// PartitionCount is the number of partitions of all topics (internal topics
// hold none).
func (b *Broker) PartitionCount() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.partitionCount
}

// Topic returns a topic by name.
func (b *Broker) Topic(name string) *Topic {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.topics[name]
}

// TopicByID returns a topic by id.
func (b *Broker) TopicByID(id [16]byte) *Topic {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.byID[id]
}

// Topics returns every topic, sorted by name.
func (b *Broker) Topics() []*Topic {
	b.mu.RLock()
	out := make([]*Topic, 0, len(b.topics))
	for _, t := range b.topics {
		out = append(out, t)
	}
	b.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Partition returns a partition, or nil.
func (b *Broker) Partition(topic string, index int32) *partition.Partition {
	t := b.Topic(topic)
	if t == nil || index < 0 || int(index) >= len(t.Partitions) {
		return nil
	}
	return t.Partitions[index]
}

// TopicError is a Kafka error code with a message.
type TopicError struct {
	Code    int16
	Message string
}

func (e *TopicError) Error() string { return e.Message }

func topicErr(code int16, format string, args ...any) *TopicError {
	return &TopicError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ValidTopicName applies Kafka's rules: 1-249 characters of [a-zA-Z0-9._-],
// not "." or "..".
func ValidTopicName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 249 {
		return fmt.Errorf("topic name %q is illegal: 1-249 characters, not '.' or '..'", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic name %q is illegal: only ASCII letters, digits, '.', '_' and '-' are allowed", name)
		}
	}
	return nil
}

// MaxPartitionsPerRequest bounds the partitions one CreateTopics or
// CreatePartitions request may create, counting each new topic as one more
// (Kafka 4.0's controller: MAX_RECORDS_PER_USER_OP, 10,000 records per
// request, one per topic and one per partition). A request beyond it is
// refused whole with POLICY_VIOLATION, before any file is opened.
const MaxPartitionsPerRequest = 10000

// ExcessivePartitionsMessage is Kafka's message for a request beyond
// MaxPartitionsPerRequest.
const ExcessivePartitionsMessage = "Excessively large number of partitions per request."

// reserveLocked marks name busy (being created or grown) and reserves n
// partitions against --max-partitions. Call under b.mu; the returned
// function (call without b.mu) ends the reservation, after commit ran under
// b.mu if the operation succeeded.
func (b *Broker) reserveLocked(name string, n int) (done func(commit func())) {
	ch := make(chan struct{})
	b.busy[name] = ch
	b.reserved += n
	return func(commit func()) {
		b.mu.Lock()
		if commit != nil {
			commit()
		}
		delete(b.busy, name)
		b.reserved -= n
		b.mu.Unlock()
		close(ch)
	}
}

// errShuttingDown answers admin operations that arrive after Close began.
func errShuttingDown() *TopicError {
	return topicErr(kerr.KafkaStorageError.Code, "the broker is shutting down")
}

// waitIdleLocked waits, dropping b.mu meanwhile, until no create or grow of
// name is under way. Call under b.mu; it returns with b.mu held.
func (b *Broker) waitIdleLocked(name string) {
	for {
		ch, ok := b.busy[name]
		if !ok {
			return
		}
		b.mu.Unlock()
		<-ch
		b.mu.Lock()
	}
}

// partitionBudgetLocked refuses n more partitions beyond --max-partitions.
func (b *Broker) partitionBudgetLocked(n int) *TopicError {
	if have := b.partitionCount + b.reserved; have+n > b.cfg.MaxPartitions {
		return topicErr(kerr.PolicyViolation.Code, "the broker holds %d partitions (and %d being created); %d more would exceed --max-partitions %d", b.partitionCount, b.reserved, n, b.cfg.MaxPartitions)
	}
	return nil
}

// openNewPartitions opens partitions [from, to) of t for a create or grow,
// after removing whatever a crash between opening and persisting an earlier
// attempt left in their directories (deleted partitions are tombstoned away,
// so such a directory belongs to no live partition). On failure it closes
// and removes what it opened.
func (b *Broker) openNewPartitions(t *Topic, from, to int32) error {
	for i := from; i < to; i++ {
		if err := b.cfg.FS.RemoveAll(b.partitionDir(t.Name, i)); err != nil {
			return fmt.Errorf("clear old partition dir: %w", err)
		}
	}
	if err := b.openPartitions(t, from, to); err != nil {
		b.discardPartitions(t, from)
		return err
	}
	return nil
}

// discardPartitions closes t's partitions from index from on, removes their
// directories and drops them from t: a create or grow that failed before
// its metadata was persisted leaves nothing behind.
func (b *Broker) discardPartitions(t *Topic, from int32) {
	for _, p := range t.Partitions[from:] {
		if err := p.Close(); err != nil {
			b.logger.Warn("closing a partition of a failed create", "topic", t.Name, "partition", p.Index, "err", err)
		}
	}
	t.Partitions = t.Partitions[:from]
	for i := from; ; i++ {
		dir := b.partitionDir(t.Name, i)
		if _, err := b.cfg.FS.Stat(dir); err != nil {
			break
		}
		if err := b.cfg.FS.RemoveAll(dir); err != nil {
			b.logger.Warn("removing a partition of a failed create; removed again at its next create", "dir", dir, "err", err)
		}
	}
}

// CreateTopic creates a topic. partitions <= 0 means the broker default;
// replicationFactor must be -1 or 1 on a single node.
//
// The partitions are opened first and the topic persisted last, so a
// failure on the way (file descriptors or disk space running out) leaves
// no topic in the metadata store whose partitions cannot open: the broker
// still restarts. The name is reserved under the broker lock but the files
// are opened without it, so serving goes on meanwhile; a concurrent create
// of the same name gets TOPIC_ALREADY_EXISTS and an auto-create waits.
func (b *Broker) CreateTopic(name string, partitions int32, replicationFactor int16, configs map[string]string, validateOnly bool) (*Topic, *TopicError) {
	return b.createTopic(name, partitions, replicationFactor, configs, validateOnly, "request")
}

// createTopic is CreateTopic; by says in the log line what created the
// topic: a CreateTopics request, or auto-creation for a client that named a
// topic that did not exist (a typo in a producer's topic shows up here).
func (b *Broker) createTopic(name string, partitions int32, replicationFactor int16, configs map[string]string, validateOnly bool, by string) (*Topic, *TopicError) {
	if err := ValidTopicName(name); err != nil {
		return nil, topicErr(kerr.InvalidTopicException.Code, "%v", err)
	}
	if IsInternalTopic(name) {
		return nil, topicErr(kerr.TopicAlreadyExists.Code, "topic %q already exists: it is a Kafka internal topic", name)
	}
	if partitions == -1 || partitions == 0 {
		partitions = b.cfg.DefaultPartitions
	}
	if partitions < 0 {
		return nil, topicErr(kerr.InvalidPartitions.Code, "number of partitions must be at least 1, got %d", partitions)
	}
	if partitions > MaxPartitionsPerRequest-1 {
		return nil, topicErr(kerr.PolicyViolation.Code, "%s", ExcessivePartitionsMessage)
	}
	if replicationFactor != -1 && replicationFactor != 1 {
		return nil, topicErr(kerr.InvalidReplicationFactor.Code, "replication factor %d is impossible on a single-node oncelog; use 1 (or -1 for the default)", replicationFactor)
	}
	if code, msg := ValidateTopicConfigs(configs); code != 0 {
		return nil, topicErr(code, "%s", msg)
	}
	b.mu.Lock()
	if _, ok := b.topics[name]; ok {
		b.mu.Unlock()
		return nil, topicErr(kerr.TopicAlreadyExists.Code, "topic %q already exists", name)
	}
	if _, ok := b.busy[name]; ok {
		b.mu.Unlock()
		return nil, topicErr(kerr.TopicAlreadyExists.Code, "topic %q is being created", name)
	}
	if b.shutdown {
		b.mu.Unlock()
		return nil, errShuttingDown()
	}
	if terr := b.partitionBudgetLocked(int(partitions)); terr != nil {
		b.mu.Unlock()
		return nil, terr
	}
	if validateOnly {
		b.mu.Unlock()
		return &Topic{Name: name}, nil
	}
	done := b.reserveLocked(name, int(partitions))
	b.mu.Unlock()

	t := &Topic{Name: name, ID: meta.NewUUID(), Configs: configs}
	if err := b.openNewPartitions(t, 0, partitions); err != nil {
		done(nil)
		return nil, topicErr(kerr.KafkaStorageError.Code, "create partitions: %v", err)
	}
	if err := b.meta.PutTopic(meta.Topic{Name: name, ID: t.ID, Partitions: partitions, Configs: configs}); err != nil {
		b.discardPartitions(t, 0)
		done(nil)
		return nil, topicErr(kerr.KafkaStorageError.Code, "persist topic: %v", err)
	}
	done(func() {
		b.topics[name] = t
		b.byID[t.ID] = t
		b.partitionCount += int(partitions)
		b.topicsGen.Add(1)
	})
	b.logger.Info("topic created", "topic", name, "partitions", partitions, "by", by)
	return t, nil
}

// AutoCreate creates a topic with default settings if auto-creation is on.
// A create of the same name already under way is waited for.
func (b *Broker) AutoCreate(name string) (*Topic, *TopicError) {
	if t := b.Topic(name); t != nil {
		return t, nil
	}
	if IsInternalTopic(name) {
		return nil, internalTopicErr(name, "create")
	}
	if !b.cfg.AutoCreateTopics {
		return nil, topicErr(kerr.UnknownTopicOrPartition.Code, "topic %q does not exist and auto-creation is off", name)
	}
	for {
		t, terr := b.createTopic(name, -1, -1, nil, false, "auto-create (auto.create.topics.enable)")
		if terr == nil || terr.Code != kerr.TopicAlreadyExists.Code {
			return t, terr
		}
		b.mu.Lock()
		b.waitIdleLocked(name)
		t = b.topics[name]
		b.mu.Unlock()
		if t != nil {
			return t, nil
		}
		// The other create failed: try again.
	}
}

// DeleteTopic removes a topic and its data.
func (b *Broker) DeleteTopic(name string) *TopicError {
	if IsInternalTopic(name) {
		return internalTopicErr(name, "delete")
	}
	b.mu.Lock()
	b.waitIdleLocked(name)
	if b.shutdown {
		b.mu.Unlock()
		return errShuttingDown()
	}
	t, ok := b.topics[name]
	if !ok {
		b.mu.Unlock()
		return topicErr(kerr.UnknownTopicOrPartition.Code, "topic %q does not exist", name)
	}
	if err := b.meta.DeleteTopic(name); err != nil {
		b.mu.Unlock()
		return topicErr(kerr.KafkaStorageError.Code, "delete topic: %v", err)
	}
	delete(b.topics, name)
	delete(b.byID, t.ID)
	b.partitionCount -= len(t.Partitions)
	b.topicsGen.Add(1)
	// Each partition is closed and its directory renamed to a tombstone
	// before the name is free again: a topic re-created with this name
	// (say, auto-created by a producer racing the deletion) gets a fresh
	// directory that the old partition can no longer touch. Removing the
	// tombstones' files can take long and needs no lock.
	var tombs []string
	for _, p := range t.Partitions {
		tomb, err := p.Delete()
		if err != nil {
			b.logger.Error("deleting partition failed; its files stay until the next start", "topic", name, "partition", p.Index, "err", err)
			continue
		}
		tombs = append(tombs, tomb)
	}
	b.mu.Unlock()
	if b.keys != nil && keyWindowOf(t.Configs).on() {
		if err := b.keys.drop(name); err != nil {
			b.logger.Error("removing the deleted topic's idempotency keys failed; expiry removes them later", "topic", name, "err", err)
		}
	}
	b.removeTombstones(tombs)
	b.logger.Info("topic deleted", "topic", name)
	return nil
}

// removeTombstones removes deleted partitions' directories in the
// background; a stop or crash before it is done leaves them for
// removeLeftoverTombstones at the next start.
func (b *Broker) removeTombstones(tombs []string) {
	b.removeMu.Lock()
	defer b.removeMu.Unlock()
	if len(tombs) == 0 || b.closing {
		return
	}
	b.removing.Add(1)
	go func() {
		defer b.removing.Done()
		for _, tomb := range tombs {
			if err := b.cfg.FS.RemoveAll(tomb); err != nil {
				b.logger.Error("removing a deleted partition's files failed; retried at the next start", "dir", tomb, "err", err)
			}
		}
	}()
}

// removeLeftoverTombstones removes the tombstones of partitions deleted
// before a stop or crash.
func (b *Broker) removeLeftoverTombstones() {
	dir := filepath.Join(b.cfg.DataDir, "topics")
	names, err := b.cfg.FS.List(dir)
	if err != nil {
		return // no topics directory yet
	}
	var tombs []string
	for _, n := range names {
		if strings.HasSuffix(n, segment.DeleteSuffix) {
			tombs = append(tombs, filepath.Join(dir, n))
		}
	}
	if len(tombs) > 0 {
		b.logger.Info("removing partitions deleted before the last stop", "count", len(tombs))
	}
	tombs = append(tombs, b.tombstoneOrphans(dir, names)...)
	b.removeTombstones(tombs)
}

// tombstoneOrphans renames partition directories that no stored topic owns
// to tombstones and returns them. A create or grow opens its partitions
// before it persists the topic, so a crash in between leaves such
// directories (never acknowledged). They are renamed here, before any
// client can re-create the name, so the background removal can never touch
// a directory a new partition owns; a re-creation would clear them anyway,
// but a name never used again would keep its files forever.
func (b *Broker) tombstoneOrphans(dir string, names []string) []string {
	stored, err := b.meta.Topics()
	if err != nil {
		b.logger.Warn("not looking for orphan partition directories", "err", err)
		return nil
	}
	owned := make(map[string]int32, len(stored))
	for _, mt := range stored {
		owned[mt.Name] = mt.Partitions // internal-named ones too: left in place
	}
	var tombs []string
	renamed := false
	for _, n := range names {
		i := strings.LastIndexByte(n, '-')
		if i <= 0 || strings.HasSuffix(n, segment.DeleteSuffix) {
			continue
		}
		index, err := strconv.ParseInt(n[i+1:], 10, 32)
		if err != nil || index < 0 || ValidTopicName(n[:i]) != nil {
			continue // not a partition directory
		}
		if have, ok := owned[n[:i]]; ok && int32(index) < have {
			continue
		}
		id := meta.NewUUID()
		path := filepath.Join(dir, n)
		tomb := path + "." + hex.EncodeToString(id[:]) + segment.DeleteSuffix
		if err := b.cfg.FS.Rename(path, tomb); err != nil {
			b.logger.Error("moving aside a partition directory no stored topic owns failed", "dir", path, "err", err)
			continue
		}
		b.logger.Warn("removing a partition directory no stored topic owns (a create interrupted by a crash)", "dir", path)
		tombs = append(tombs, tomb)
		renamed = true
	}
	if renamed {
		if err := fsx.SyncDir(b.cfg.FS, dir); err != nil {
			b.logger.Warn("syncing the topics directory after moving orphans aside", "err", err)
		}
	}
	return tombs
}

// CreatePartitions grows a topic to count partitions: like CreateTopic, the
// new partitions are opened first (without the broker lock) and the new
// count persisted last, so a failure leaves the topic as it was.
func (b *Broker) CreatePartitions(name string, count int32, validateOnly bool) *TopicError {
	if IsInternalTopic(name) {
		return internalTopicErr(name, "add partitions to")
	}
	b.mu.Lock()
	b.waitIdleLocked(name)
	if b.shutdown {
		b.mu.Unlock()
		return errShuttingDown()
	}
	t, ok := b.topics[name]
	if !ok {
		b.mu.Unlock()
		return topicErr(kerr.UnknownTopicOrPartition.Code, "topic %q does not exist", name)
	}
	have := int32(len(t.Partitions))
	if count <= have {
		b.mu.Unlock()
		return topicErr(kerr.InvalidPartitions.Code, "topic %q has %d partitions; the new count must be larger", name, have)
	}
	if count-have > MaxPartitionsPerRequest {
		b.mu.Unlock()
		return topicErr(kerr.PolicyViolation.Code, "%s", ExcessivePartitionsMessage)
	}
	if terr := b.partitionBudgetLocked(int(count - have)); terr != nil {
		b.mu.Unlock()
		return terr
	}
	if validateOnly {
		b.mu.Unlock()
		return nil
	}
	done := b.reserveLocked(name, int(count-have))
	b.mu.Unlock()

	nt := &Topic{Name: t.Name, ID: t.ID, Configs: t.Configs, Partitions: append([]*partition.Partition(nil), t.Partitions...)}
	if err := b.openNewPartitions(nt, have, count); err != nil {
		done(nil)
		return topicErr(kerr.KafkaStorageError.Code, "create partitions: %v", err)
	}
	if err := b.meta.PutTopic(meta.Topic{Name: name, ID: t.ID, Partitions: count, Configs: t.Configs}); err != nil {
		b.discardPartitions(nt, have)
		done(nil)
		return topicErr(kerr.KafkaStorageError.Code, "persist topic: %v", err)
	}
	done(func() {
		b.topics[name] = nt
		b.byID[nt.ID] = nt
		b.partitionCount += int(count - have)
		b.topicsGen.Add(1)
	})
	b.logger.Info("partitions added", "topic", name, "partitions", count)
	return nil
}

// SetTopicConfigs replaces a topic's overrides (AlterConfigs) or, with
// incremental, applies ops (IncrementalAlterConfigs).
func (b *Broker) SetTopicConfigs(name string, configs map[string]string, validateOnly bool) *TopicError {
	if code, msg := ValidateTopicConfigs(configs); code != 0 {
		return topicErr(code, "%s", msg)
	}
	if IsInternalTopic(name) {
		return internalTopicErr(name, "alter the configs of")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	// A grow under way persists the configs it started with: wait for it.
	b.waitIdleLocked(name)
	if b.shutdown {
		return errShuttingDown()
	}
	t, ok := b.topics[name]
	if !ok {
		return topicErr(kerr.UnknownTopicOrPartition.Code, "topic %q does not exist", name)
	}
	if validateOnly {
		return nil
	}
	if err := b.meta.PutTopic(meta.Topic{Name: name, ID: t.ID, Partitions: int32(len(t.Partitions)), Configs: configs}); err != nil {
		return topicErr(kerr.KafkaStorageError.Code, "persist topic config: %v", err)
	}
	nt := &Topic{Name: t.Name, ID: t.ID, Configs: configs, Partitions: t.Partitions}
	if err := b.keyWindowChanged(t, nt); err != nil {
		return topicErr(kerr.KafkaStorageError.Code, "update the dedup index: %v", err)
	}
	pcfg := b.cfg.partitionConfig(configs)
	for _, p := range nt.Partitions {
		p.SetConfig(pcfg)
	}
	b.topics[name] = nt
	b.byID[nt.ID] = nt
	b.logger.Info("topic config changed", "topic", name, "configs", configs)
	if b.cleaner != nil {
		b.cleaner.Wake() // a switch to compact is looked at now
	}
	return nil
}

// allPartitions lists every partition (the log cleaner's view).
func (b *Broker) allPartitions() []*partition.Partition {
	var out []*partition.Partition
	for _, t := range b.Topics() {
		out = append(out, t.Partitions...)
	}
	return out
}

// Now is the broker clock.
func (b *Broker) Now() time.Time { return time.Now() }

func (b *Broker) partitionExists(tp txn.TopicPartition) bool {
	return b.Partition(tp.Topic, tp.Partition) != nil
}

// WriteMarker appends a transaction marker (the transaction coordinator's
// WriteTxnMarkers, in process) and returns the offset that makes it
// durable. A marker refused for a stale epoch is dropped, as Kafka's
// coordinator does: a newer incarnation already closed that producer's
// transaction there.
func (b *Broker) WriteMarker(tp txn.TopicPartition, pid int64, epoch int16, commit bool, before int64) (int64, error) {
	p := b.Partition(tp.Topic, tp.Partition)
	if p == nil {
		return 0, nil
	}
	if !commit {
		if err := b.BeforeAbortMarker(tp.Topic, p, pid, before); err != nil {
			return 0, err
		}
	}
	off, err := p.WriteMarker(pid, epoch, commit, before, b.Now())
	if err == nil {
		b.AfterMarker(tp.Topic, p, pid)
	}
	if errors.Is(err, kerr.InvalidProducerEpoch) || errors.Is(err, kerr.TransactionCoordinatorFenced) {
		return 0, nil
	}
	return off, err
}

// AwaitDurable waits for a partition's high watermark to reach offset
// without asking for an fsync (a marker asks for its own).
func (b *Broker) AwaitDurable(ctx context.Context, tp txn.TopicPartition, offset int64) error {
	if p := b.Partition(tp.Topic, tp.Partition); p != nil {
		return p.AwaitDurable(ctx, offset)
	}
	return nil
}

// LogEnd is a partition's next offset (0 for one that does not exist).
func (b *Broker) LogEnd(tp txn.TopicPartition) int64 {
	if p := b.Partition(tp.Topic, tp.Partition); p != nil {
		return p.LogEndOffset()
	}
	return 0
}

// OpenTransactions lists the open transactions of every partition, for the
// transaction coordinator's reconciliation after a restart.
func (b *Broker) OpenTransactions() []txn.OpenTxn {
	var out []txn.OpenTxn
	for _, t := range b.Topics() {
		for _, p := range t.Partitions {
			for _, e := range p.OpenTransactions() {
				out = append(out, txn.OpenTxn{
					TopicPartition: txn.TopicPartition{Topic: t.Name, Partition: p.Index},
					ProducerID:     e.ProducerID,
					Epoch:          e.Epoch,
				})
			}
		}
	}
	return out
}

// maintain applies retention and producer expiry periodically.
func (b *Broker) maintain() {
	defer b.stopped.Done()
	t := time.NewTicker(b.cfg.RetentionCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case now := <-t.C:
			for _, topic := range b.Topics() {
				for _, p := range topic.Partitions {
					p.Maintain(now)
				}
			}
			b.limits.Trim(now.UnixMilli())
			b.expireKeys()
		}
	}
}

// checkpointRecoveryPoints writes the partitions' recovery points and
// producer snapshots (partition.Checkpoint) as RecoveryPointInterval and
// RecoveryPointBytes ask, checking every second (or every interval, if
// shorter) which are due, like Kafka's recovery-point checkpoint task.
func (b *Broker) checkpointRecoveryPoints() {
	defer b.stopped.Done()
	policy := partition.CheckpointPolicy{Interval: b.cfg.RecoveryPointInterval, Bytes: b.cfg.RecoveryPointBytes}
	t := time.NewTicker(min(policy.Interval, time.Second))
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case now := <-t.C:
			for _, topic := range b.Topics() {
				for _, p := range topic.Partitions {
					select {
					case <-b.stop:
						return
					default:
					}
					if _, err := p.Checkpoint(now, policy); err != nil && !errors.Is(err, segment.ErrClosed) {
						b.logger.Warn("writing a recovery point failed; a crash now would scan more of the log", "topic", p.Topic, "partition", p.Index, "err", err)
					}
				}
			}
		}
	}
}

// Close shuts the broker down cleanly: every partition is flushed, snapshot
// and marked clean so the next start skips recovery scans.
func (b *Broker) Close() error {
	b.closed.Do(func() {
		close(b.stop)
		b.stopped.Wait()
		if b.cleaner != nil {
			b.cleaner.Stop() // a clean in progress finishes first
		}
		b.removeMu.Lock()
		b.closing = true
		b.removeMu.Unlock()
		b.removing.Wait()
		var errs []error
		// The coordinator first: it waits for markers still being
		// written, which needs the partitions open.
		if b.Txns != nil {
			errs = append(errs, b.Txns.Close())
		}
		if b.Shares != nil {
			errs = append(errs, b.Shares.Close())
		}
		b.mu.Lock()
		// Creates and grows under way finish first (publishing or
		// discarding what they opened) while the metadata store is still
		// open; none starts after this.
		b.shutdown = true
		for len(b.busy) > 0 {
			for name := range b.busy {
				b.waitIdleLocked(name)
				break
			}
		}
		for _, t := range b.topics {
			for _, p := range t.Partitions {
				errs = append(errs, p.Close())
			}
		}
		b.topics = map[string]*Topic{}
		b.mu.Unlock()
		if b.keys != nil {
			// Keys not indexed yet are past the watermark: the next
			// start reconciles them from the log.
			b.keys.flushes.Wait()
			errs = append(errs, b.keys.ix.Close())
		}
		if b.Groups != nil {
			errs = append(errs, b.Groups.Close())
		}
		errs = append(errs, b.meta.Close())
		if b.dirLock != nil {
			errs = append(errs, b.dirLock.Close())
		}
		b.closeErr = errors.Join(errs...)
	})
	return b.closeErr
}

// storeFatal returns the callback a metadata store calls when it cannot
// continue (a failed write-ahead-log write or fsync: ENOSPC, EIO). The
// request that hit it is answered with an error code; the broker then stops
// (StoreFailed), because the store's memory may hold changes that are not
// durable and pebble cannot carry on after such a failure. The next start
// recovers the store from its log, like after a crash, or exits with a
// clear error if the disk is still full.
func (b *Broker) storeFatal(name string) func(error) {
	return func(err error) {
		b.storeFailOnce.Do(func() {
			b.storeErr = fmt.Errorf("%s store failed: %w", name, err)
			b.logger.Error("metadata store failed; the broker stops", "store", name, "err", err)
			close(b.storeFailed)
		})
	}
}

// StoreFailed is closed when a metadata store failed for good; the caller
// (oncelog serve) then shuts the broker down and exits with StoreErr.
func (b *Broker) StoreFailed() <-chan struct{} { return b.storeFailed }

// StoreErr is why StoreFailed was closed.
func (b *Broker) StoreErr() error {
	select {
	case <-b.storeFailed:
		return b.storeErr
	default:
		return nil
	}
}

// OfflinePartitions describes the partitions a storage failure took offline
// ("topic-partition: error"), for readiness; empty when all are online.
// Each recovers by itself once the fault is gone (partition/storage.go).
func (b *Broker) OfflinePartitions() []string {
	var out []string
	for _, t := range b.Topics() {
		for _, p := range t.Partitions {
			if err := p.StorageError(); err != nil {
				out = append(out, fmt.Sprintf("%s-%d: %v", t.Name, p.Index, err))
			}
		}
	}
	return out
}
