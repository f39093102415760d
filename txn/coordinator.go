package txn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/oncelog/oncelog/internal/fsx"
	"github.com/oncelog/oncelog/internal/pebblestore"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Partitions is what the coordinator needs of the partition logs; the
// broker implements it.
type Partitions interface {
	// WriteMarker appends a transaction marker to a partition and
	// returns the offset its high watermark must pass for the marker to
	// be durable, which it will be shortly without anyone asking. Only a
	// transaction of the producer open below offset before gets one, so
	// writing it again is harmless.
	WriteMarker(tp TopicPartition, producerID int64, epoch int16, commit bool, before int64) (int64, error)
	// AwaitDurable waits until a partition's high watermark reaches
	// offset.
	AwaitDurable(ctx context.Context, tp TopicPartition, offset int64) error
	// LogEnd is a partition's next offset.
	LogEnd(tp TopicPartition) int64
	// OpenTransactions lists every producer with an open transaction in
	// some partition's log: data without its COMMIT or ABORT marker yet.
	OpenTransactions() []OpenTxn
}

// OpenTxn is a transaction a partition's log holds open.
type OpenTxn struct {
	TopicPartition
	ProducerID int64
	Epoch      int16
}

// GroupCompleter makes a transaction's pending group offsets committed or
// drops them. The group coordinator implements it.
type GroupCompleter interface {
	CompleteTxn(producerID int64, commit bool) error
}

// PartitionChecker says whether a partition exists (AddPartitionsToTxn).
type PartitionChecker func(tp TopicPartition) bool

// Config configures the coordinator.
type Config struct {
	Dir          string
	MaxTimeoutMs int32         // transaction.max.timeout.ms (900000)
	SweepEvery   time.Duration // how often timed-out transactions are aborted (Kafka: 10 s)
	// IDExpiration is transactional.id.expiration.ms: a transactional id
	// with no transaction in progress and no update for this long is
	// forgotten (Kafka: 7 days); its next InitProducerId gets a new
	// producer id.
	IDExpiration time.Duration
	Logger       *slog.Logger
	Now          func() time.Time
	// FS is the filesystem of the store (nil: the operating system's;
	// tests inject faults and crashes through it).
	FS fsx.FS
	// OnStoreFatal (may be nil) is told when the store fails for good
	// (internal/pebblestore); the failing request gets an error code.
	OnStoreFatal func(error)
}

// Stats counts outcomes for metrics.
type Stats struct {
	Committed, Aborted, TimedOut func()
}

// Coordinator is safe for concurrent use.
type Coordinator struct {
	cfg     Config
	db      *pebble.DB
	nextPID func() (int64, error)
	parts   Partitions
	groups  GroupCompleter
	exists  PartitionChecker
	stats   Stats

	mu   sync.Mutex
	txns map[string]*entry

	started bool // Start ran: the sweeper goroutine exists
	// ready, when StartAfter made it, is closed once Start ran; the
	// requests wait for it (await).
	ready   chan struct{}
	stop    chan struct{}
	stopped chan struct{}

	// completing counts transactions being completed after their EndTxn
	// was answered, and markers being watched until durable; Close waits
	// for them.
	completing sync.WaitGroup
}

// entry is one transactional id. Its mutex serialises every operation on
// the id, including produce-side verification plus the append it guards, so
// a produce can never slip in between a commit's markers.
type entry struct {
	mu   sync.Mutex
	rec  record
	gone bool // expired and removed: whoever locked it late must look again
	// stale says rec changed since it was last persisted in a way that
	// needs no write of its own (its markers became durable): the next
	// persist, or Close, writes it.
	stale bool
}

// Open loads durable state and completes transactions that were prepared
// before a crash.
func Open(cfg Config, nextPID func() (int64, error), parts Partitions, groups GroupCompleter, exists PartitionChecker, stats Stats) (*Coordinator, error) {
	if cfg.MaxTimeoutMs <= 0 {
		cfg.MaxTimeoutMs = 900000
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = 10 * time.Second
	}
	if cfg.IDExpiration <= 0 {
		cfg.IDExpiration = 7 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	db, err := pebblestore.Open(cfg.Dir, pebblestore.Config{Name: "transactions", FS: cfg.FS, Logger: cfg.Logger, OnFatal: cfg.OnStoreFatal})
	if err != nil {
		return nil, err
	}
	c := &Coordinator{cfg: cfg, db: db, nextPID: nextPID, parts: parts, groups: groups, exists: exists, stats: stats,
		txns: map[string]*entry{}, stop: make(chan struct{}), stopped: make(chan struct{})}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte(keyPrefix), UpperBound: []byte(keyEnd)})
	if err != nil {
		db.Close()
		return nil, err
	}
	for it.First(); it.Valid(); it.Next() {
		var r record
		if err := json.Unmarshal(it.Value(), &r); err != nil {
			it.Close()
			db.Close()
			return nil, fmt.Errorf("decode transaction %q: %w", it.Key(), err)
		}
		c.txns[r.ID] = &entry{rec: r}
	}
	if err := it.Close(); err != nil {
		db.Close()
		return nil, err
	}
	return c, nil
}

// Start completes prepared transactions left by a crash, reconciles the
// partitions' open transactions with the coordinator's state, and starts
// the timeout sweeper. It runs after the partitions are open and before
// clients are served.
func (c *Coordinator) Start() {
	c.settleAll()
	for _, e := range c.all() {
		e.mu.Lock()
		if e.rec.Status == PrepareCommit || e.rec.Status == PrepareAbort {
			c.cfg.Logger.Info("completing a transaction prepared before the restart", "transactional_id", e.rec.ID, "status", e.rec.Status.String())
			if err := c.completeLocked(context.Background(), e); err != nil {
				c.cfg.Logger.Error("completing transaction failed; will retry", "transactional_id", e.rec.ID, "err", err)
			}
		}
		e.mu.Unlock()
	}
	c.reconcile()
	c.started = true
	go c.sweep()
}

// StartAfter runs Start in the background once wait returns (for the
// broker: once every partition's producer state is loaded, which Start's
// reconciliation reads), so that a restart serves the partitions before
// that. Until Start has run, every request to the coordinator waits for it.
// It is called instead of Start, before any request.
func (c *Coordinator) StartAfter(wait func()) {
	c.ready = make(chan struct{})
	go func() {
		defer close(c.ready)
		wait()
		c.Start()
	}()
}

// WaitStarted returns once Start has run (at once unless StartAfter
// deferred it and it has not run yet).
func (c *Coordinator) WaitStarted() { c.await() }

// await waits until Start has run when StartAfter deferred it.
func (c *Coordinator) await() {
	if c.ready != nil {
		<-c.ready
	}
}

// settleAll makes every transactional id's last markers durable, writing
// again those a crash lost: all appended first, then waited for together
// (each waits up to lazySyncDelay for its fsync).
func (c *Coordinator) settleAll() {
	type appended struct {
		e         *entry
		durableAt []int64
	}
	var waits []appended
	for _, e := range c.all() {
		if set := e.rec.Unsynced; set != nil {
			at, err := c.appendMarkers(set.markerPID(&e.rec), set)
			if err != nil {
				c.cfg.Logger.Error("writing the last transaction's markers again failed", "transactional_id", e.rec.ID, "err", err)
				continue
			}
			waits = append(waits, appended{e, at})
		}
	}
	for _, w := range waits {
		if err := c.awaitMarkers(context.Background(), w.e.rec.Unsynced, w.durableAt); err != nil {
			c.cfg.Logger.Error("making the last transaction's markers durable failed", "transactional_id", w.e.rec.ID, "err", err)
			continue
		}
		w.e.rec.Unsynced = nil
	}
}

// reconcile adopts or aborts what the partitions hold open. AddPartitions
// is persisted without a sync (the Prepare sync that a commit needs makes
// it durable first, pebble's log being sequential), so a crash can lose the
// last partitions added to an ongoing transaction, or its start, while data
// written to them survived. Such data is adopted into the producer's
// current transaction (see adopt); data of an older epoch or an unknown
// producer is aborted. Without this a partition would hold an open
// transaction forever and pin its last stable offset (a hanging
// transaction), or a producer's commit would be answered from the
// coordinator's older state while its data stayed open.
func (c *Coordinator) reconcile() {
	byPID := map[int64]*entry{}
	for _, e := range c.all() {
		byPID[e.rec.ProducerID] = e
	}
	for _, o := range c.parts.OpenTransactions() {
		epoch := o.Epoch
		if e := byPID[o.ProducerID]; e != nil {
			adopted, abortEpoch := c.adopt(e, o)
			if adopted {
				continue
			}
			epoch = abortEpoch
		}
		c.cfg.Logger.Warn("aborting an open transaction the coordinator does not know (its AddPartitionsToTxn was lost in a crash)",
			"topic", o.Topic, "partition", o.Partition, "producer_id", o.ProducerID, "epoch", o.Epoch)
		abort := markerSet{Epoch: epoch, Partitions: []TopicPartition{o.TopicPartition}, PreparedEnds: []int64{math.MaxInt64}}
		if err := c.writeMarkers(context.Background(), o.ProducerID, &abort); err != nil {
			c.cfg.Logger.Error("aborting an unknown open transaction failed", "topic", o.Topic, "partition", o.Partition, "producer_id", o.ProducerID, "err", err)
		}
	}
}

// adopt adds an open partition to the transaction its data belongs to and
// reports true; otherwise the data is to be aborted at the returned epoch.
// Data at the producer's current epoch belongs to its current transaction:
// after the settling above, the previous one's markers are in place, so
// open data at that epoch is newer. If the coordinator lost that
// transaction's start too (it still says Empty or Complete*), the
// transaction is taken up again as ongoing, as the producer believes it
// is: its acknowledged writes are all durable, hence all adopted, so its
// commit commits exactly those, and if the producer is gone the
// transaction times out and is aborted. Data at an older epoch is aborted.
func (c *Coordinator) adopt(e *entry, o OpenTxn) (adopted bool, epoch int16) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := &e.rec
	if r.dataEpoch() != o.Epoch {
		return false, max(r.Epoch, o.Epoch)
	}
	switch r.Status {
	case PrepareCommit, PrepareAbort, PrepareEpochFence:
		// Completion failed above and the sweeper retries it; a prepared
		// transaction's partition list is complete (its Prepare sync made
		// every AddPartitions before it durable), so anything else here
		// cannot be explained: abort it.
		return r.hasPartition(o.TopicPartition), r.Epoch
	case Ongoing:
		if r.hasPartition(o.TopicPartition) {
			return true, r.Epoch
		}
	default: // Empty, CompleteCommit, CompleteAbort, Dead
		c.cfg.Logger.Warn("resuming a transaction whose start was lost in a crash", "transactional_id", r.ID, "producer_id", r.ProducerID, "epoch", r.Epoch)
		r.Status = Ongoing
		r.StartMs = c.cfg.Now().UnixMilli()
		r.Partitions, r.Groups, r.PreparedEnds = nil, nil, nil
	}
	c.cfg.Logger.Info("adopting a partition into its ongoing transaction after a crash", "transactional_id", r.ID, "topic", o.Topic, "partition", o.Partition)
	r.Partitions = append(r.Partitions, o.TopicPartition)
	if err := c.persist(r, pebble.Sync); err != nil {
		c.cfg.Logger.Error("persisting an adopted partition failed", "transactional_id", r.ID, "err", err)
	}
	return true, r.Epoch
}

// Close stops the sweeper, waits for transactions being completed, and
// closes the store. The partitions must still be open.
func (c *Coordinator) Close() error {
	c.await()
	select {
	case <-c.stop:
	default:
		close(c.stop)
		if c.started {
			<-c.stopped
		}
	}
	c.completing.Wait()
	// A clean stop leaves no markers to write again at the next start.
	for _, e := range c.all() {
		e.mu.Lock()
		if e.stale && !e.gone {
			if err := c.persist(&e.rec, pebble.NoSync); err != nil {
				c.cfg.Logger.Warn("recording durable markers failed", "transactional_id", e.rec.ID, "err", err)
			}
			e.stale = false
		}
		e.mu.Unlock()
	}
	return c.db.Close()
}

const (
	keyPrefix = "txn/"
	keyEnd    = "txn0" // '0' follows '/'
)

// persist stores r. Transitions a client is told about are synced
// (InitProducerId, AddOffsets, Prepare*); AddPartitions and Complete* are
// not, because a lost one is repaired: pebble's log is sequential, so any
// later synced write makes them durable, and until then a crash leaves
//   - a lost AddPartitions: reconcile adopts or aborts the partition;
//   - a lost Complete*: the transaction is found prepared and completed
//     again, and a partition writes no second marker for it (WriteMarker).
//
// A store failure (internal/pebblestore) comes back as an error; the caller
// answers COORDINATOR_NOT_AVAILABLE.
func (c *Coordinator) persist(r *record, opts *pebble.WriteOptions) (err error) {
	defer pebblestore.Guard(&err)
	r.UpdatedMs = c.cfg.Now().UnixMilli()
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return c.db.Set([]byte(keyPrefix+r.ID), b, opts)
}

// lock returns id's entry locked, or nil if there is none. An entry
// expired meanwhile (expireIDs) is not returned.
func (c *Coordinator) lock(id string) *entry {
	for {
		c.mu.Lock()
		e := c.txns[id]
		c.mu.Unlock()
		if e == nil {
			return nil
		}
		e.mu.Lock()
		if !e.gone {
			return e
		}
		e.mu.Unlock()
	}
}

// lockOrCreate returns id's entry locked, creating it if need be.
func (c *Coordinator) lockOrCreate(id string) *entry {
	for {
		c.mu.Lock()
		e := c.txns[id]
		if e == nil {
			e = &entry{rec: record{ID: id, ProducerID: -1, Epoch: -1, LastEpoch: -1, PrevProducerID: -1, Status: Empty}}
			c.txns[id] = e
		}
		c.mu.Unlock()
		e.mu.Lock()
		if !e.gone {
			return e
		}
		e.mu.Unlock()
	}
}

func (c *Coordinator) all() []*entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*entry, 0, len(c.txns))
	for _, e := range c.txns {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rec.ID < out[j].rec.ID })
	return out
}

// InitProducerID serves InitProducerId for a transactional id (Kafka's
// TransactionCoordinator.handleInitProducerId).
func (c *Coordinator) InitProducerID(ctx context.Context, id string, timeoutMs int32, pid int64, epoch int16, version int16) (int64, int16, int16) {
	c.await()
	if id == "" {
		return -1, -1, kerr.InvalidRequest.Code
	}
	if timeoutMs <= 0 || timeoutMs > c.cfg.MaxTimeoutMs {
		return -1, -1, kerr.InvalidTransactionTimeout.Code
	}
	fenced := kerr.ProducerFenced.Code
	if version < 4 {
		fenced = kerr.InvalidProducerEpoch.Code
	}
	e := c.lockOrCreate(id)
	defer e.mu.Unlock()
	r := &e.rec
	if r.ProducerID < 0 {
		newPID, err := c.nextPID()
		if err != nil {
			return -1, -1, kerr.CoordinatorLoadInProgress.Code
		}
		r.ProducerID = newPID
	}
	if pid >= 0 {
		ok := r.Epoch == -1 || pid == r.ProducerID || (pid == r.PrevProducerID && epoch >= epochExhausted)
		if !ok {
			return -1, -1, fenced
		}
	}
	switch r.Status {
	case PrepareCommit, PrepareAbort, PrepareEpochFence:
		return -1, -1, kerr.ConcurrentTransactions.Code
	case Ongoing:
		// A new incarnation fences the old one: abort its transaction
		// with markers at a bumped epoch, then ask the client to retry,
		// as Kafka does.
		if err := c.fenceAndAbortLocked(ctx, e); err != nil {
			c.cfg.Logger.Error("aborting the previous incarnation's transaction failed", "transactional_id", id, "err", err)
		}
		return -1, -1, kerr.ConcurrentTransactions.Code
	}
	// Empty, CompleteCommit, CompleteAbort, Dead: bump the epoch.
	switch {
	case pid >= 0 && epoch == r.LastEpoch && pid == r.ProducerID && r.LastEpoch >= 0:
		// A retry of an InitProducerId that bumped already.
		return r.ProducerID, r.Epoch, 0
	case pid >= 0 && epoch != r.Epoch && r.Epoch != -1 && !(pid == r.PrevProducerID && epoch >= epochExhausted):
		return -1, -1, fenced
	}
	if r.Epoch+1 >= epochExhausted {
		newPID, err := c.nextPID()
		if err != nil {
			return -1, -1, kerr.CoordinatorLoadInProgress.Code
		}
		r.PrevProducerID, r.ProducerID, r.Epoch, r.LastEpoch = r.ProducerID, newPID, 0, -1
	} else {
		if pid >= 0 {
			r.LastEpoch = r.Epoch
		} else {
			r.LastEpoch = -1
		}
		r.Epoch++
	}
	r.TimeoutMs = timeoutMs
	r.Status = Empty
	r.Partitions, r.Groups = nil, nil
	if err := c.persist(r, pebble.Sync); err != nil {
		return -1, -1, kerr.CoordinatorNotAvailable.Code
	}
	return r.ProducerID, r.Epoch, 0
}

// checkProducer applies the common checks of AddPartitions/AddOffsets/EndTxn.
func checkProducer(e *entry, pid int64, epoch int16, version int16, fencedFromV int16) int16 {
	if e == nil || e.rec.ProducerID != pid {
		return kerr.InvalidProducerIDMapping.Code
	}
	if e.rec.Epoch != epoch {
		if version >= fencedFromV {
			return kerr.ProducerFenced.Code
		}
		return kerr.InvalidProducerEpoch.Code
	}
	if s := e.rec.Status; s == PrepareCommit || s == PrepareAbort || s == PrepareEpochFence {
		return kerr.ConcurrentTransactions.Code
	}
	return 0
}

// AddPartitions adds partitions to the ongoing transaction. It returns one
// error code per partition.
func (c *Coordinator) AddPartitions(id string, pid int64, epoch int16, version int16, tps []TopicPartition) map[TopicPartition]int16 {
	c.await()
	all := func(code int16) map[TopicPartition]int16 { return allPartitions(tps, code) }
	// Unknown partitions fail the request; the rest are not attempted.
	if out := c.unknownPartitions(tps); out != nil {
		return out
	}
	e := c.lock(id)
	if e == nil {
		return all(kerr.InvalidProducerIDMapping.Code)
	}
	defer e.mu.Unlock()
	if code := checkProducer(e, pid, epoch, version, 2); code != 0 {
		return all(code)
	}
	r := &e.rec
	changed := r.Status != Ongoing
	for _, tp := range tps {
		if !r.hasPartition(tp) {
			r.Partitions = append(r.Partitions, tp)
			changed = true
		}
	}
	if changed {
		if r.Status != Ongoing {
			r.Status = Ongoing
			r.StartMs = c.cfg.Now().UnixMilli()
		}
		if err := c.persist(r, pebble.NoSync); err != nil {
			return all(kerr.CoordinatorNotAvailable.Code)
		}
	}
	return all(0)
}

// AddOffsets records that the transaction will commit offsets of group.
func (c *Coordinator) AddOffsets(id string, pid int64, epoch int16, version int16, group string) int16 {
	c.await()
	e := c.lock(id)
	if e == nil {
		return kerr.InvalidProducerIDMapping.Code
	}
	defer e.mu.Unlock()
	if code := checkProducer(e, pid, epoch, version, 2); code != 0 {
		return code
	}
	r := &e.rec
	if r.Status != Ongoing || !r.hasGroup(group) {
		if r.Status != Ongoing {
			r.Status = Ongoing
			r.StartMs = c.cfg.Now().UnixMilli()
		}
		if !r.hasGroup(group) {
			r.Groups = append(r.Groups, group)
		}
		// Synced: the group's pending offsets (TxnOffsetCommit) are kept
		// by the group coordinator, and only a durable group list gets
		// them aborted after a crash.
		if err := c.persist(r, pebble.Sync); err != nil {
			return kerr.CoordinatorNotAvailable.Code
		}
	}
	return 0
}

// VerifyGroup checks that a TxnOffsetCommit belongs to an ongoing
// transaction that added the group (AddOffsetsToTxn).
func (c *Coordinator) VerifyGroup(id string, pid int64, epoch int16, group string) int16 {
	c.await()
	e := c.lock(id)
	if e == nil {
		return kerr.InvalidProducerIDMapping.Code
	}
	defer e.mu.Unlock()
	switch {
	case e.rec.ProducerID != pid:
		return kerr.InvalidProducerIDMapping.Code
	case e.rec.Epoch != epoch:
		return kerr.InvalidProducerEpoch.Code
	case e.rec.Status != Ongoing || !e.rec.hasGroup(group):
		return kerr.InvalidTxnState.Code
	}
	return 0
}

// VerifyAndAppend is KIP-890 part 1: a transactional produce is appended
// only if its partition is in the producer's ongoing transaction. append
// runs under the transaction's lock, so EndTxn cannot write its markers
// between the check and the append (the hanging-transaction race).
// notInTxn is the code for a partition outside the transaction (48 before
// Produce v11, 120 from v11).
func VerifyAndAppend[T any](c *Coordinator, id string, pid int64, epoch int16, tp TopicPartition, notInTxn int16, reject func(code int16) T, append func() T) T {
	c.await()
	e := c.lock(id)
	if e == nil {
		return reject(notInTxn)
	}
	defer e.mu.Unlock()
	switch {
	case e.rec.ProducerID != pid:
		return reject(notInTxn)
	case epoch < e.rec.Epoch:
		return reject(kerr.InvalidProducerEpoch.Code)
	case e.rec.Epoch != epoch:
		return reject(notInTxn)
	case e.rec.Status != Ongoing || !e.rec.hasPartition(tp):
		return reject(notInTxn)
	}
	return append()
}

// EndResult is EndTxn's answer. From v5 (transaction version 2) it
// carries the producer id and epoch of the producer's next transaction.
type EndResult struct {
	Code       int16
	ProducerID int64
	Epoch      int16
}

// EndTxn commits or aborts. The decision is made durable (Prepare*) and
// answered, as Kafka does; the markers are then appended, the group
// offsets completed and the transaction marked Complete* in the
// background, still under the transaction's lock. The producer's next
// AddPartitionsToTxn, produce or EndTxn waits on that lock instead of
// being told CONCURRENT_TRANSACTIONS and backing off.
//
// v5+ is transaction version 2 (KIP-890 part 2, docs/exactly-once.md):
// every EndTxn bumps the epoch, see prepareTV2Locked.
func (c *Coordinator) EndTxn(id string, pid int64, epoch int16, commit bool, version int16) EndResult {
	c.await()
	fail := func(code int16) EndResult { return EndResult{Code: code, ProducerID: -1, Epoch: -1} }
	if id == "" {
		return fail(kerr.InvalidRequest.Code)
	}
	e := c.lock(id)
	if e == nil {
		return fail(kerr.InvalidProducerIDMapping.Code)
	}
	var code int16
	var prepared bool
	if version >= 5 {
		code, prepared = c.prepareTV2Locked(e, pid, epoch, commit)
	} else {
		code, prepared = c.prepareLocked(e, pid, epoch, commit, version)
	}
	if code != 0 {
		e.mu.Unlock()
		return fail(code)
	}
	res := EndResult{ProducerID: e.rec.ProducerID, Epoch: e.rec.Epoch}
	if next := e.rec.NextProducerID; next != nil && prepared {
		res.ProducerID, res.Epoch = *next, 0
	}
	if !prepared {
		e.mu.Unlock()
		return res
	}
	c.completing.Add(1)
	go func() {
		defer c.completing.Done()
		defer e.mu.Unlock() // handed over from EndTxn
		if err := c.completeLocked(context.Background(), e); err != nil {
			c.cfg.Logger.Error("writing transaction markers failed; will retry", "transactional_id", id, "err", err)
		}
	}()
	return res
}

// prepareLocked validates a transaction version 0/1 EndTxn (v0-v4) and
// makes its decision durable. It reports whether the transaction is now
// prepared and must be completed.
func (c *Coordinator) prepareLocked(e *entry, pid int64, epoch int16, commit bool, version int16) (int16, bool) {
	r := &e.rec
	if r.ProducerID != pid {
		return kerr.InvalidProducerIDMapping.Code, false
	}
	if r.Epoch != epoch {
		if version >= 2 {
			return kerr.ProducerFenced.Code, false
		}
		return kerr.InvalidProducerEpoch.Code, false
	}
	switch r.Status {
	case Ongoing:
	case CompleteCommit:
		if commit {
			return 0, false // a retry of the EndTxn that completed it
		}
		return kerr.InvalidTxnState.Code, false
	case CompleteAbort:
		if !commit {
			return 0, false
		}
		return kerr.InvalidTxnState.Code, false
	case PrepareCommit, PrepareAbort, PrepareEpochFence:
		// Only when completing failed; the sweeper retries it.
		return kerr.ConcurrentTransactions.Code, false
	default: // Empty, Dead
		return kerr.InvalidTxnState.Code, false
	}
	return c.prepareAs(r, commit, false)
}

// prepareTV2Locked validates a transaction version 2 EndTxn (v5+) and
// makes its decision durable, bumping the epoch (Kafka's
// TransactionCoordinator.handleEndTransaction with TV_2):
//   - the producer's current epoch may end an Ongoing transaction, and
//     abort from Empty or Complete* too (a client that saw every produce
//     fail aborts what the leaders may have added implicitly);
//   - a retry, at the epoch before the bump (any bump, the coordinator's
//     abort of a timed-out transaction too) (or, after the bump exhausted
//     the epoch, as the previous producer id at the last epoch), is
//     answered NONE from the matching Complete* state with the new epoch,
//     CONCURRENT_TRANSACTIONS from the matching Prepare* state;
//   - any other producer id is INVALID_PRODUCER_ID_MAPPING, any other
//     epoch PRODUCER_FENCED, any other transition INVALID_TXN_STATE.
func (c *Coordinator) prepareTV2Locked(e *entry, pid int64, epoch int16, commit bool) (int16, bool) {
	r := &e.rec
	prepared := r.Status == PrepareCommit || r.Status == PrepareAbort
	completed := r.Status == CompleteCommit || r.Status == CompleteAbort
	// Kafka takes any request one epoch below a Prepare*/Complete* entry for
	// a retry (retryOnEpochBump), whoever bumped it: also the coordinator's
	// own abort of a timed-out transaction. So the timed-out producer's late
	// commit is INVALID_TXN_STATE and its abort NONE at the new epoch.
	retryOnBump := pid == r.ProducerID && r.Epoch == epoch+1 && (prepared || completed)
	retryOnOverflow := pid == r.PrevProducerID && pid != r.ProducerID && epoch == epochExhausted && r.Epoch == 0 && completed
	retry := retryOnBump || retryOnOverflow
	switch {
	case retry:
	case pid != r.ProducerID:
		return kerr.InvalidProducerIDMapping.Code, false
	case epoch != r.Epoch:
		return kerr.ProducerFenced.Code, false
	}
	sameResult := commit && (r.Status == PrepareCommit || r.Status == CompleteCommit) ||
		!commit && (r.Status == PrepareAbort || r.Status == CompleteAbort)
	switch {
	case r.Status == PrepareEpochFence || prepared && sameResult:
		return kerr.ConcurrentTransactions.Code, false
	case retry && completed && sameResult:
		return 0, false // answered with the epoch the retried EndTxn bumped to
	case retry:
		return kerr.InvalidTxnState.Code, false
	case r.Status == Ongoing:
	case !commit && (r.Status == Empty || completed):
		// An abort with nothing added: the epoch still bumps.
		r.Partitions, r.Groups = nil, nil
		r.StartMs = c.cfg.Now().UnixMilli()
	default:
		return kerr.InvalidTxnState.Code, false
	}
	if r.Epoch >= epochExhausted {
		next, err := c.nextPID()
		if err != nil {
			return kerr.CoordinatorNotAvailable.Code, false
		}
		r.NextProducerID = &next
	}
	lastEpoch := r.LastEpoch
	r.LastEpoch = r.Epoch
	r.Epoch++
	code, ok := c.prepareAs(r, commit, true)
	if !ok {
		r.Epoch, r.LastEpoch, r.NextProducerID = r.LastEpoch, lastEpoch, nil
	}
	return code, ok
}

// prepareAs moves r to PrepareCommit or PrepareAbort and persists it
// synced: the decision is what the client is told.
func (c *Coordinator) prepareAs(r *record, commit, tv2 bool) (int16, bool) {
	was := r.Status
	if commit {
		r.Status = PrepareCommit
	} else {
		r.Status = PrepareAbort
	}
	r.TV2 = tv2
	c.notePreparedEnds(r)
	if err := c.persist(r, pebble.Sync); err != nil {
		r.Status, r.PreparedEnds, r.TV2 = was, nil, false
		return kerr.CoordinatorNotAvailable.Code, false
	}
	return 0, true
}

// notePreparedEnds records where each partition's log ends as r is
// prepared. The transaction's data is all appended (its produces were
// answered, and verification refuses later ones under this lock), and
// its markers will land at or above these offsets.
func (c *Coordinator) notePreparedEnds(r *record) {
	r.PreparedEnds = make([]int64, len(r.Partitions))
	for i, tp := range r.Partitions {
		r.PreparedEnds[i] = c.parts.LogEnd(tp)
	}
}

// completeLocked writes the markers of a Prepare* transaction, completes
// its group offsets and marks it Complete*. It is idempotent: after a crash
// it runs again and a repeated marker changes nothing at a partition.
//
// The markers are appended, not waited for: nothing a client is told
// depends on their durability, and an fsync a producer asks for on the
// same partition soon covers them, sparing one per partition. Until they
// are known durable the record keeps them (Unsynced), so that a crash
// before then has them written again at the restart, and the producer's
// next completion makes sure of them (settleLocked) before replacing them.
func (c *Coordinator) completeLocked(ctx context.Context, e *entry) error {
	if err := c.settleLocked(ctx, e); err != nil {
		return err
	}
	r := &e.rec
	// The markers carry the epoch as prepared: under transaction version
	// 2 the bumped one, which fences every write of the transaction that
	// arrives late and clears the partitions' cached batches.
	pid := r.ProducerID
	set := &markerSet{ProducerID: &pid, Commit: r.Status == PrepareCommit, Epoch: r.Epoch, Partitions: r.Partitions}
	for i := range r.Partitions {
		set.PreparedEnds = append(set.PreparedEnds, r.preparedEnd(i))
	}
	durableAt, err := c.appendMarkers(pid, set)
	if err != nil {
		return err
	}
	// Called for every transaction, not only those that added a group:
	// it is a no-op without pending offsets, and TxnOffsetCommit v5
	// (transaction version 2) adds groups implicitly. It is synced, so
	// the unsynced Complete* below can never be durable without it.
	if c.groups != nil {
		if err := c.groups.CompleteTxn(r.ProducerID, set.Commit); err != nil {
			return fmt.Errorf("complete group offsets: %w", err)
		}
	}
	if set.Commit {
		r.Status = CompleteCommit
		if c.stats.Committed != nil {
			c.stats.Committed()
		}
	} else {
		r.Status = CompleteAbort
		if c.stats.Aborted != nil {
			c.stats.Aborted()
		}
	}
	r.Partitions, r.Groups, r.PreparedEnds = nil, nil, nil
	r.Unsynced = set
	if r.NextProducerID != nil {
		// Transaction version 2 exhausted the epoch: the producer's
		// next transaction runs as the next producer id, at epoch 0, as
		// the EndTxn answer told it. A crash losing this unsynced write
		// finds the transaction prepared with NextProducerID (synced at
		// Prepare) and switches again.
		r.PrevProducerID, r.ProducerID, r.Epoch = r.ProducerID, *r.NextProducerID, 0
		r.NextProducerID = nil
	}
	if err := c.persist(r, pebble.NoSync); err != nil {
		return err
	}
	c.completing.Add(1)
	go func() {
		defer c.completing.Done()
		if err := c.awaitMarkers(context.Background(), set, durableAt); err != nil {
			c.cfg.Logger.Warn("transaction markers not durable; written again later", "transactional_id", r.ID, "err", err)
			return
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if r.Unsynced == set {
			// Not persisted here: the record's next write (the
			// producer's next AddPartitions, or the next Prepare)
			// carries it. Until then a crash finds the set still
			// recorded and writes the markers a second time at the
			// restart, which changes nothing at a partition (only a
			// transaction open below PreparedEnds gets a marker). This
			// spared one of the four state writes per transaction.
			r.Unsynced = nil
			e.stale = true
		}
	}()
	return nil
}

// settleLocked makes sure the markers of e's last completed transaction
// are durable, writing them again if need be (a restart, or a partition
// that failed its fsync), before anything replaces them in the record.
func (c *Coordinator) settleLocked(ctx context.Context, e *entry) error {
	if e.rec.Unsynced == nil {
		return nil
	}
	if err := c.writeMarkers(ctx, e.rec.Unsynced.markerPID(&e.rec), e.rec.Unsynced); err != nil {
		return err
	}
	e.rec.Unsynced = nil
	return nil
}

// writeMarkers appends a marker set and waits until it is durable.
func (c *Coordinator) writeMarkers(ctx context.Context, pid int64, set *markerSet) error {
	durableAt, err := c.appendMarkers(pid, set)
	if err != nil {
		return err
	}
	return c.awaitMarkers(ctx, set, durableAt)
}

// appendMarkers appends a marker to every partition of set (deleted ones
// need none) and returns the offsets that make each durable.
func (c *Coordinator) appendMarkers(pid int64, set *markerSet) ([]int64, error) {
	durableAt := make([]int64, len(set.Partitions))
	var errs []error
	for i, tp := range set.Partitions {
		if !c.exists(tp) {
			continue
		}
		off, err := c.parts.WriteMarker(tp, pid, set.Epoch, set.Commit, set.PreparedEnds[i])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s/%d: %w", tp.Topic, tp.Partition, err))
		}
		durableAt[i] = off
	}
	return durableAt, errors.Join(errs...)
}

func (c *Coordinator) awaitMarkers(ctx context.Context, set *markerSet, durableAt []int64) error {
	for i, tp := range set.Partitions {
		if durableAt[i] > 0 {
			if err := c.parts.AwaitDurable(ctx, tp, durableAt[i]); err != nil {
				return fmt.Errorf("%s/%d: %w", tp.Topic, tp.Partition, err)
			}
		}
	}
	return nil
}

// fenceAndAbortLocked bumps the epoch of an ongoing transaction and aborts
// it with markers at the new epoch: the old producer's later writes get
// INVALID_PRODUCER_EPOCH at the partitions and PRODUCER_FENCED here.
func (c *Coordinator) fenceAndAbortLocked(ctx context.Context, e *entry) error {
	r := &e.rec
	r.LastEpoch = -1
	r.Epoch++
	r.Status = PrepareAbort
	r.TV2 = false
	c.notePreparedEnds(r)
	if err := c.persist(r, pebble.Sync); err != nil {
		return err
	}
	return c.completeLocked(ctx, e)
}

func (c *Coordinator) sweep() {
	defer close(c.stopped)
	t := time.NewTicker(c.cfg.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.AbortTimedOut()
			c.ExpireIDs()
		}
	}
}

// AbortTimedOut aborts every ongoing transaction older than its timeout and
// retries completing prepared ones.
func (c *Coordinator) AbortTimedOut() int {
	c.await()
	now := c.cfg.Now().UnixMilli()
	n := 0
	for _, e := range c.all() {
		e.mu.Lock()
		r := &e.rec
		switch {
		case r.Status == Ongoing && now-r.StartMs > int64(r.TimeoutMs):
			c.cfg.Logger.Info("aborting timed-out transaction", "transactional_id", r.ID, "producer_id", r.ProducerID, "timeout_ms", r.TimeoutMs)
			if err := c.fenceAndAbortLocked(context.Background(), e); err != nil {
				c.cfg.Logger.Error("aborting timed-out transaction failed; will retry", "transactional_id", r.ID, "err", err)
			} else {
				n++
				if c.stats.TimedOut != nil {
					c.stats.TimedOut()
				}
			}
		case r.Status == PrepareCommit || r.Status == PrepareAbort:
			if err := c.completeLocked(context.Background(), e); err != nil {
				c.cfg.Logger.Error("completing transaction failed; will retry", "transactional_id", r.ID, "err", err)
			}
		}
		e.mu.Unlock()
	}
	return n
}

// ExpireIDs forgets the transactional ids idle for longer than
// IDExpiration, as Kafka does, so that ids used once do not accumulate in
// memory and in the store. Only an id with no transaction in progress and
// its markers known durable is expired; one locked right now is left for
// the next sweep. It returns how many were expired.
func (c *Coordinator) ExpireIDs() int {
	c.await()
	cutoff := c.cfg.Now().Add(-c.cfg.IDExpiration).UnixMilli()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for id, e := range c.txns {
		if !e.mu.TryLock() {
			continue
		}
		r := &e.rec
		idle := r.Status == Empty || r.Status == CompleteCommit || r.Status == CompleteAbort
		if idle && r.Unsynced == nil && r.UpdatedMs < cutoff {
			if err := c.deleteRecord(id); err != nil {
				c.cfg.Logger.Error("expiring a transactional id failed", "transactional_id", id, "err", err)
			} else {
				delete(c.txns, id)
				e.gone = true
				n++
			}
		}
		e.mu.Unlock()
	}
	if n > 0 {
		c.cfg.Logger.Info("expired idle transactional ids", "count", n, "idle_for_more_than", c.cfg.IDExpiration.String())
	}
	return n
}

// Info describes one transactional id (DescribeTransactions, ListTransactions).
type Info struct {
	ID         string
	ProducerID int64
	Epoch      int16
	Status     Status
	TimeoutMs  int32
	StartMs    int64
	Partitions []TopicPartition
}

// Describe returns a transactional id's state.
func (c *Coordinator) Describe(id string) (Info, bool) {
	c.await()
	e := c.lock(id)
	if e == nil {
		return Info{}, false
	}
	defer e.mu.Unlock()
	return infoOf(&e.rec), true
}

// List returns every transactional id's state.
func (c *Coordinator) List() []Info {
	c.await()
	var out []Info
	for _, e := range c.all() {
		e.mu.Lock()
		if !e.gone {
			out = append(out, infoOf(&e.rec))
		}
		e.mu.Unlock()
	}
	return out
}

func infoOf(r *record) Info {
	return Info{ID: r.ID, ProducerID: r.ProducerID, Epoch: r.Epoch, Status: r.Status, TimeoutMs: r.TimeoutMs, StartMs: r.StartMs,
		Partitions: append([]TopicPartition(nil), r.Partitions...)}
}

// Ongoing counts ongoing transactions (a metric).
func (c *Coordinator) Ongoing() int {
	n := 0
	for _, e := range c.all() {
		e.mu.Lock()
		if e.rec.Status == Ongoing && !e.gone {
			n++
		}
		e.mu.Unlock()
	}
	return n
}

// deleteRecord removes a transactional id's record (not synced: a lost
// delete only means the id is expired again after a restart).
func (c *Coordinator) deleteRecord(id string) (err error) {
	defer pebblestore.Guard(&err)
	return c.db.Delete([]byte(keyPrefix+id), pebble.NoSync)
}
