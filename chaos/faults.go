package chaos

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/oncelog/oncelog/batch"
	"github.com/oncelog/oncelog/internal/faultproxy"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Fault kinds, as counted in the report.
const (
	FaultCrash          = "crash"                   // kill -9 and restart
	FaultCrashAcksHeld  = "crash-with-acks-held"    // produce responses held back, then kill -9
	FaultTornTail       = "torn-tail"               // kill -9 with all responses held, then cut a log tail
	FaultTearSkipped    = "torn-tail-skipped"       // nothing beyond the high watermark to cut
	FaultDropProduce    = "drop-produce-responses"  // proxy window
	FaultDelayProduce   = "delay-produce-responses" // proxy window
	FaultCutProduce     = "cut-after-produce"       // proxy window
	FaultDropTxn        = "drop-txn-responses"      // proxy window: AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit
	FaultDropGroup      = "drop-group-responses"    // proxy window: Join/Sync/Heartbeat/OffsetFetch
	FaultDropFetch      = "drop-fetch-responses"    // proxy window
	FaultCutConnections = "cut-all-connections"     // instant
)

// Kafka API keys the proxy windows target.
const (
	apiProduce          int16 = 0
	apiFetch            int16 = 1
	apiListOffsets      int16 = 2
	apiOffsetFetch      int16 = 9
	apiJoinGroup        int16 = 11
	apiHeartbeat        int16 = 12
	apiSyncGroup        int16 = 14
	apiAddPartitionsTxn int16 = 24
	apiAddOffsetsTxn    int16 = 25
	apiEndTxn           int16 = 26
	apiTxnOffsetCommit  int16 = 28
	// apiKeyLimit is above every Kafka API key, for holding all responses.
	apiKeyLimit int16 = 100
)

// hold is a response delay long enough to never end: a held response is
// dropped when the crash cuts its connection.
const hold = time.Hour

// faultInjector kills, restarts and corrupts the broker and sets the proxy's
// fault rules. Two seeded random streams decide what happens, one for
// crashes and one for proxy windows, so each stream's decisions depend on
// the seed only; when they happen relative to the traffic is up to timing.
type faultInjector struct {
	cfg    Config
	broker *brokerProcess
	proxy  *faultproxy.Proxy
	logger *slog.Logger
	events *timeline

	crashRng *rand.Rand
	proxyRng *rand.Rand

	mu      sync.Mutex
	window  faultproxy.Rules // the proxy window in force (empty between windows)
	counts  map[string]int
	torn    []TornTail
	crashes int
}

func newFaultInjector(cfg Config, b *brokerProcess, p *faultproxy.Proxy, logger *slog.Logger, events *timeline) *faultInjector {
	return &faultInjector{
		cfg:      cfg,
		broker:   b,
		proxy:    p,
		logger:   logger,
		events:   events,
		crashRng: rand.New(rand.NewPCG(cfg.Seed, 0xc4a05)),
		proxyRng: rand.New(rand.NewPCG(cfg.Seed, 0x960c5)),
		counts:   make(map[string]int),
	}
}

// run injects faults until stop closes, and returns with the broker running
// and no proxy rules in force. An error means the broker did not come back.
func (fi *faultInjector) run(ctx context.Context, stop <-chan struct{}) error {
	defer fi.setWindow(faultproxy.Rules{})
	nextCrash := time.Now().Add(jitter(fi.crashRng, fi.cfg.CrashEvery))
	nextWindowChange := time.Now().Add(jitter(fi.proxyRng, time.Second))
	inWindow := false
	for {
		next := nextCrash
		if nextWindowChange.Before(next) {
			next = nextWindowChange
		}
		timer := time.NewTimer(time.Until(next))
		select {
		case <-stop:
			timer.Stop()
			return nil
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
		now := time.Now()
		if !nextCrash.After(now) {
			if err := fi.crash(ctx); err != nil {
				return err
			}
			nextCrash = time.Now().Add(jitter(fi.crashRng, fi.cfg.CrashEvery))
			continue
		}
		if inWindow {
			fi.events.add("proxy window ends")
			fi.setWindow(faultproxy.Rules{})
			nextWindowChange = now.Add(time.Duration(200+fi.proxyRng.IntN(1300)) * time.Millisecond)
		} else {
			length := fi.startWindow()
			nextWindowChange = now.Add(length)
		}
		inWindow = !inWindow
	}
}

// jitter returns a duration uniformly in [d/2, 3d/2).
func jitter(rng *rand.Rand, d time.Duration) time.Duration {
	return d/2 + time.Duration(rng.Int64N(int64(d)))
}

// startWindow draws a proxy fault and puts it in force; it returns how long
// the window lasts (zero for an instant fault).
func (fi *faultInjector) startWindow() time.Duration {
	rng := fi.proxyRng
	between := func(lo, hi float64) float64 { return lo + rng.Float64()*(hi-lo) }
	rules := faultproxy.Rules{Seed: rng.Int64()}
	var kind string
	switch rng.IntN(7) {
	case 0:
		kind = FaultDropProduce
		rules.DropResponseProb = map[int16]float64{apiProduce: between(0.02, 0.2)}
	case 1:
		kind = FaultDelayProduce
		rules.DelayResponse = map[int16]time.Duration{apiProduce: time.Duration(between(10, 300)) * time.Millisecond}
	case 2:
		kind = FaultCutProduce
		rules.CutAfterRequestProb = map[int16]float64{apiProduce: between(0.02, 0.1)}
	case 3:
		kind = FaultDropTxn
		p := between(0.05, 0.3)
		rules.DropResponseProb = map[int16]float64{apiAddPartitionsTxn: p, apiAddOffsetsTxn: p, apiEndTxn: p, apiTxnOffsetCommit: p}
	case 4:
		kind = FaultDropGroup
		p := between(0.05, 0.2)
		rules.DropResponseProb = map[int16]float64{apiJoinGroup: p, apiSyncGroup: p, apiHeartbeat: p, apiOffsetFetch: p}
	case 5:
		kind = FaultDropFetch
		rules.DropResponseProb = map[int16]float64{apiFetch: between(0.02, 0.1)}
	default:
		fi.count(FaultCutConnections)
		fi.events.add("proxy cuts all connections")
		fi.proxy.CutAll()
		return 0
	}
	fi.count(kind)
	length := time.Duration(between(500, 3000)) * time.Millisecond
	fi.events.add("proxy window %s for %v: drop %v, cut %v, delay %v", kind, length.Round(time.Millisecond),
		rules.DropResponseProb, rules.CutAfterRequestProb, rules.DelayResponse)
	fi.setWindow(rules)
	return length
}

func (fi *faultInjector) setWindow(rules faultproxy.Rules) {
	fi.mu.Lock()
	fi.window = rules
	fi.mu.Unlock()
	fi.proxy.SetRules(rules)
}

func (fi *faultInjector) count(kind string) {
	fi.mu.Lock()
	fi.counts[kind]++
	fi.mu.Unlock()
}

// crash kills the broker with SIGKILL and restarts it after a short
// downtime. Some crashes first hold produce responses back for a moment,
// so that batches the broker wrote and fsynced are unacknowledged when it
// dies (their retries must be recognised from recovered producer state).
// With TearTail, some crashes also cut the tail of an input partition's last
// segment while the broker is down; see tearTail for what may be cut.
func (fi *faultInjector) crash(ctx context.Context) error {
	rng := fi.crashRng
	draw := rng.Float64()
	downtime := time.Duration(rng.Int64N(int64(500 * time.Millisecond)))
	victim := int32(rng.IntN(int(fi.cfg.Partitions)))
	cutFraction := rng.Float64()
	heldFor := time.Duration(20+rng.IntN(200)) * time.Millisecond

	fi.mu.Lock()
	window := fi.window
	fi.mu.Unlock()

	tear := fi.cfg.TearTail && draw < 0.4
	var highWater int64
	switch {
	case tear:
		// From here on no response reaches a client, so what clients
		// know is bounded by the high watermark read next.
		held := window
		held.DelayResponse = make(map[int16]time.Duration, apiKeyLimit)
		for key := range apiKeyLimit {
			held.DelayResponse[key] = hold
		}
		fi.proxy.SetRules(held)
		fi.events.add("holding every response before a torn-tail crash")
		var err error
		highWater, err = directHighWatermark(ctx, fi.broker.Addr, inputTopic, victim)
		if err != nil {
			fi.logger.Warn("chaos: no high watermark before tearing, crashing without a tear", "err", err)
			tear = false
		}
		// Requests keep arriving and being written: the tail beyond
		// the high watermark grows.
		time.Sleep(heldFor)
	case draw < 0.7:
		fi.count(FaultCrashAcksHeld)
		fi.events.add("holding produce responses for %v before a crash", heldFor)
		held := window
		held.DelayResponse = map[int16]time.Duration{apiProduce: hold}
		fi.proxy.SetRules(held)
		time.Sleep(heldFor) // produce requests keep arriving and being written meanwhile
	}

	if err := fi.broker.kill(); err != nil {
		return err
	}
	fi.events.add("kill -9 (down for %v)", downtime.Round(time.Millisecond))
	fi.proxy.CutAll()
	fi.mu.Lock()
	fi.crashes++
	fi.counts[FaultCrash]++
	fi.mu.Unlock()
	time.Sleep(downtime) // the broker stays down a while: clients retry against a dead port

	if tear {
		torn, ok, err := tearTail(fi.broker.DataDir, inputTopic, victim, highWater, cutFraction)
		switch {
		case err != nil:
			return fmt.Errorf("tearing %s-%d: %w", inputTopic, victim, err)
		case ok:
			fi.mu.Lock()
			fi.counts[FaultTornTail]++
			fi.torn = append(fi.torn, torn)
			fi.mu.Unlock()
			fi.events.add("tore %d bytes (%d batches from offset %d) off %s-%d/%s; high watermark %d",
				torn.Bytes, torn.Batches, torn.FirstOffset, inputTopic, victim, torn.Segment, highWater)
		default:
			fi.count(FaultTearSkipped)
			fi.events.add("nothing beyond high watermark %d of %s-%d to tear", highWater, inputTopic, victim)
		}
	}

	if err := fi.broker.start(ctx); err != nil {
		return fmt.Errorf("restart after crash %d: %w", fi.crashCount(), err)
	}
	fi.events.add("broker restarted")
	fi.proxy.SetRules(window)
	return nil
}

func (fi *faultInjector) crashCount() int {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	return fi.crashes
}

// tearTail cuts the end of the last segment of a partition, but only bytes
// of batches at or beyond highWater: the broker's high watermark read after
// every response to clients had been held back. Acks (acks=all) and fetches
// never go beyond the high watermark, so no client ever learned of a cut
// record: the cut is a torn write of data nobody relied on, as a power loss
// could leave, and the checker may still demand every acknowledged record.
// (Kill -9 keeps the page cache, so bytes below the high watermark are
// durable and cutting them would test a disk that loses fsynced data.)
//
// The cut ends at a random point between the first such batch and the end
// of the file, often in the middle of a batch. ok is false if the file holds
// nothing beyond highWater.
func tearTail(dataDir, topic string, partition int32, highWater int64, fraction float64) (TornTail, bool, error) {
	dir := filepath.Join(dataDir, "topics", fmt.Sprintf("%s-%d", topic, partition))
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		return TornTail{}, false, err
	}
	if len(logs) == 0 {
		return TornTail{}, false, nil
	}
	slices.Sort(logs)
	path := logs[len(logs)-1]
	data, err := os.ReadFile(path)
	if err != nil {
		return TornTail{}, false, err
	}

	// Find where the batches at or beyond highWater start. Bytes that do
	// not parse as a batch (a write the kill interrupted) cannot have been
	// acknowledged either.
	start, firstOffset := -1, int64(-1)
	var ends []int // end positions of the batches from start on
	for pos := 0; pos < len(data); {
		h, b, _, err := batch.Next(data[pos:])
		if err != nil {
			if start < 0 {
				start = pos
			}
			ends = append(ends, len(data))
			break
		}
		if start < 0 && h.BaseOffset >= highWater {
			start, firstOffset = pos, h.BaseOffset
		}
		pos += len(b)
		if start >= 0 {
			ends = append(ends, pos)
		}
	}
	if start < 0 {
		return TornTail{}, false, nil
	}
	newSize := start + int(fraction*float64(len(data)-start))
	newSize = min(newSize, len(data)-1)
	if err := os.Truncate(path, int64(newSize)); err != nil {
		return TornTail{}, false, err
	}
	cut := 0
	for _, end := range ends {
		if end > newSize {
			cut++
		}
	}
	if firstOffset < 0 {
		firstOffset = highWater
	}
	return TornTail{
		Topic:       topic,
		Partition:   partition,
		Segment:     filepath.Base(path),
		HighWater:   highWater,
		FirstOffset: firstOffset,
		Batches:     cut,
		Bytes:       int64(len(data) - newSize),
	}, true, nil
}

// directHighWatermark asks the broker itself, not through the proxy, for a
// partition's high watermark (ListOffsets v1, latest).
func directHighWatermark(ctx context.Context, addr, topic string, partition int32) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}

	req := kmsg.NewPtrListOffsetsRequest()
	req.Version = 1
	req.ReplicaID = -1
	reqTopic := kmsg.NewListOffsetsRequestTopic()
	reqTopic.Topic = topic
	reqPartition := kmsg.NewListOffsetsRequestTopicPartition()
	reqPartition.Partition = partition
	reqPartition.Timestamp = -1 // latest: the high watermark
	reqTopic.Partitions = append(reqTopic.Partitions, reqPartition)
	req.Topics = append(req.Topics, reqTopic)
	const correlationID = 0x7ea7
	formatter := kmsg.NewRequestFormatter(kmsg.FormatterClientID("oncelog-chaos"))
	if _, err := conn.Write(formatter.AppendRequest(nil, req, correlationID)); err != nil {
		return 0, err
	}
	var sizeBuf [4]byte
	if _, err := io.ReadFull(conn, sizeBuf[:]); err != nil {
		return 0, err
	}
	size := binary.BigEndian.Uint32(sizeBuf[:])
	if size < 4 || size > 1<<20 {
		return 0, fmt.Errorf("implausible ListOffsets response size %d", size)
	}
	frame := make([]byte, size)
	if _, err := io.ReadFull(conn, frame); err != nil {
		return 0, err
	}
	if id := binary.BigEndian.Uint32(frame); id != correlationID {
		return 0, fmt.Errorf("response correlation id %d, want %d", id, correlationID)
	}
	resp := kmsg.NewPtrListOffsetsResponse()
	resp.Version = req.Version
	if err := resp.ReadFrom(frame[4:]); err != nil { // v1 is not flexible: no header tags
		return 0, err
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if t.Topic == topic && p.Partition == partition {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return 0, err
				}
				return p.Offset, nil
			}
		}
	}
	return 0, errors.New("partition missing from ListOffsets response")
}

// summary returns the fault counts, tears and crashes so far.
func (fi *faultInjector) summary() (counts map[string]int, torn []TornTail, crashes int) {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	counts = make(map[string]int, len(fi.counts))
	for k, v := range fi.counts {
		counts[k] = v
	}
	return counts, append([]TornTail(nil), fi.torn...), fi.crashes
}
