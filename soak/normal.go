package soak

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/oncelog/oncelog/chaos"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	normalTopic = "soak-normal"
	normalGroup = "soak-group"
	// produceTick is how often producers hand over their share of records.
	produceTick = 10 * time.Millisecond
)

// producer is one well-behaved client: idempotent, acks=all, record values
// chaos.EncodeInput(producer, seq), so the final read names every record.
type producer struct {
	id         uint16
	cl         *kgo.Client
	start      time.Time
	partitions int32
	rate       int

	mu     sync.Mutex
	sends  []chaos.Send
	errors []string
}

func newProducer(id uint16, seeds string, partitions int32, rate int, start time.Time) (*producer, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds),
		kgo.DefaultProduceTopic(normalTopic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(2*time.Millisecond),
		kgo.MaxBufferedRecords(10000),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }),
		kgo.ClientID(fmt.Sprintf("soak-producer-%d", id)),
	)
	if err != nil {
		return nil, err
	}
	return &producer{id: id, cl: cl, start: start, partitions: partitions, rate: rate}, nil
}

func (p *producer) now() int64 { return int64(time.Since(p.start)) }

// run produces at the configured rate until stop ends. Records are handed
// over with ctx (the whole soak's), so those still buffered when the phase
// ends are sent, not cancelled.
func (p *producer) run(ctx, stop context.Context) {
	ticker := time.NewTicker(produceTick)
	defer ticker.Stop()
	perTick := float64(p.rate) * produceTick.Seconds()
	var owed float64
	for {
		select {
		case <-stop.Done():
			return
		case <-ticker.C:
		}
		for owed += perTick; owed >= 1 && stop.Err() == nil; owed-- {
			p.send(ctx)
		}
	}
}

func (p *producer) send(ctx context.Context) {
	p.mu.Lock()
	seq := len(p.sends)
	partition := int32((seq + int(p.id)) % int(p.partitions))
	p.sends = append(p.sends, chaos.Send{Partition: partition, Status: chaos.SendPending, Call: p.now()})
	p.mu.Unlock()
	record := &kgo.Record{Partition: partition, Value: chaos.EncodeInput(chaos.RecordID{Producer: p.id, Seq: uint64(seq)})}
	p.cl.Produce(ctx, record, func(r *kgo.Record, err error) {
		now := p.now()
		p.mu.Lock()
		defer p.mu.Unlock()
		s := &p.sends[seq]
		s.Return = now
		if err != nil {
			s.Status = chaos.SendFailed
			if len(p.errors) < maxExamples {
				p.errors = append(p.errors, fmt.Sprintf("producer %d record %d: %v", p.id, seq, err))
			}
			return
		}
		s.Status, s.Offset = chaos.SendAcked, r.Offset
	})
}

func (p *producer) history() []chaos.Send {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.sends)
}

func (p *producer) acked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.sends {
		if s.Status == chaos.SendAcked {
			n++
		}
	}
	return n
}

// latencies are the ack latencies of the acknowledged records.
func latencies(producers []*producer) []time.Duration {
	var out []time.Duration
	for _, p := range producers {
		for _, s := range p.history() {
			if s.Status == chaos.SendAcked {
				out = append(out, time.Duration(s.Return-s.Call))
			}
		}
	}
	slices.Sort(out)
	return out
}

// percentile of sorted durations (q in [0,1]).
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// groupConsumer is one member of the normal consumer group. It records
// every record it polls, and the rebalances that may legitimately deliver a
// record twice.
type groupConsumer struct {
	cl *kgo.Client

	mu       sync.Mutex
	seen     map[int32][]int64 // partition -> offsets in poll order
	assigned map[int32]bool
	revokes  int
	bad      []string // records that did not decode
}

func newGroupConsumer(id int, seeds string) (*groupConsumer, error) {
	g := &groupConsumer{seen: make(map[int32][]int64), assigned: make(map[int32]bool)}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds),
		kgo.ConsumerGroup(normalGroup),
		kgo.ConsumeTopics(normalTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.SessionTimeout(10*time.Second),
		kgo.ClientID(fmt.Sprintf("soak-consumer-%d", id)),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			g.mu.Lock()
			defer g.mu.Unlock()
			for _, p := range m[normalTopic] {
				g.assigned[p] = true
			}
		}),
		kgo.OnPartitionsRevoked(g.lose),
		kgo.OnPartitionsLost(g.lose),
	)
	if err != nil {
		return nil, err
	}
	g.cl = cl
	return g, nil
}

func (g *groupConsumer) lose(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(m[normalTopic]) > 0 {
		g.revokes++
	}
	for _, p := range m[normalTopic] {
		delete(g.assigned, p)
	}
}

func (g *groupConsumer) run(ctx context.Context) {
	for ctx.Err() == nil {
		fetches := g.cl.PollFetches(ctx)
		g.mu.Lock()
		fetches.EachRecord(func(r *kgo.Record) {
			if _, err := chaos.DecodeInput(r.Value); err != nil && len(g.bad) < maxExamples {
				g.bad = append(g.bad, fmt.Sprintf("%d@%d", r.Partition, r.Offset))
			}
			g.seen[r.Partition] = append(g.seen[r.Partition], r.Offset)
		})
		g.mu.Unlock()
	}
}

// groupView merges what the members saw.
type groupView struct {
	seen    map[int32]map[int64]int // partition -> offset -> times polled
	last    map[int32]int64
	revokes int
	// backwards counts offsets polled at or below one the same member
	// polled before on that partition.
	backwards int
	bad       []string
	assigned  map[int32]bool
}

func viewOf(members []*groupConsumer) groupView {
	v := groupView{seen: make(map[int32]map[int64]int), last: make(map[int32]int64), assigned: make(map[int32]bool)}
	for _, g := range members {
		g.mu.Lock()
		v.revokes += g.revokes
		v.bad = append(v.bad, g.bad...)
		for p := range g.assigned {
			v.assigned[p] = true
		}
		for p, offsets := range g.seen {
			if v.seen[p] == nil {
				v.seen[p] = make(map[int64]int)
			}
			prev := int64(-1)
			for _, o := range offsets {
				if o <= prev {
					v.backwards++
				}
				prev = max(prev, o)
				v.seen[p][o]++
				v.last[p] = max(v.last[p], o+1)
			}
		}
		g.mu.Unlock()
	}
	return v
}

// consumed is the number of distinct records the group polled.
func (v groupView) consumed() int {
	n := 0
	for _, m := range v.seen {
		n += len(m)
	}
	return n
}
