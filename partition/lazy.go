package partition

import (
	"sync"

	"github.com/oncelog/oncelog/producer"
)

// producerLoad is the deferred load of a partition's producer state
// (OpenDeferred): the log is open and readable at once, the snapshot load
// and the replay of the log after it run at the first use of the producer
// state or of the offsets (the last stable offset depends on the open
// transactions), or when the broker's background loader gets to the
// partition, whichever comes first. Until then p.producers and p.pub are
// nil.
//
// Lock order: producerLoad.mu, then Partition.mu. Every method that needs
// the producer state or the offsets calls LoadProducers before it takes
// Partition.mu.
type producerLoad struct {
	mu sync.Mutex
	// done is closed once the state is loaded (or failed to: then the
	// partition is offline and its storage recovery loads it again).
	done chan struct{}
}

// LoadProducers loads the producer state of a partition opened with
// OpenDeferred, or waits for the load another goroutine runs; it returns at
// once when the state is loaded. A load that fails takes the partition
// offline (KAFKA_STORAGE_ERROR to producers) with an empty state, and the
// storage recovery (storage.go) loads it again.
func (p *Partition) LoadProducers() {
	select {
	case <-p.load.done:
		return
	default:
	}
	p.load.mu.Lock()
	defer p.load.mu.Unlock()
	select {
	case <-p.load.done:
		return
	default:
	}
	cfg := p.cfg.Load().Producer
	p.mu.Lock()
	err := p.loadProducers(cfg, p.limits)
	if err != nil {
		p.logger.Error("loading producer state failed; the partition is offline until its storage recovery loads it", "err", err)
		cfg.Spill, cfg.SpillDir = false, ""
		p.producers = producer.NewState(cfg, p.limits, p.logger)
		p.stateLost = true
		p.sync.fail(err)
	}
	// Only the snapshot size (guarded by p.mu): the time of the last
	// recovery point belongs to the checkpoint loop, which may be running
	// on this partition now (OpenDeferred set it).
	p.ckpt.snapshotSize = p.log.Size()
	p.publishLocked(p.log.NextOffset())
	p.mu.Unlock()
	close(p.load.done)
}

// ProducersLoaded reports whether the producer state is loaded (for
// metrics and tests: it never waits).
func (p *Partition) ProducersLoaded() bool {
	select {
	case <-p.load.done:
		return true
	default:
		return false
	}
}

// offsets is the published high watermark and LSO, loading the producer
// state first if need be. p.mu must not be held.
func (p *Partition) offsets() *offsets {
	if o := p.pub.cur.Load(); o != nil {
		return o
	}
	p.LoadProducers()
	return p.pub.cur.Load()
}
