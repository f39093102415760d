package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// readTopic reads every partition of topic from offset 0 up to ends (an
// exclusive end offset per partition) with a fresh client, control records
// included, and calls fn for each record in the order returned.
func readTopic(ctx context.Context, seeds, topic string, ends map[int32]int64, committed bool, logger *slog.Logger, fn func(*kgo.Record)) error {
	partitions := make(map[int32]kgo.Offset)
	for p, end := range ends {
		if end > 0 {
			partitions[p] = kgo.NewOffset().At(0)
		}
	}
	if len(partitions) == 0 {
		return nil
	}
	isolation := kgo.ReadUncommitted()
	if committed {
		isolation = kgo.ReadCommitted()
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: partitions}),
		kgo.FetchIsolationLevel(isolation),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(250*time.Millisecond),
		kgo.ClientID("chaos-reader"),
	)
	if err != nil {
		return err
	}
	defer cl.Close()

	last := make(map[int32]int64)
	remaining := len(partitions)
	for remaining > 0 {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			var behind []string
			for p := range partitions {
				if l, ok := last[p]; !ok || l < ends[p]-1 {
					behind = append(behind, fmt.Sprintf("%d at %d of %d", p, l, ends[p]))
				}
			}
			return fmt.Errorf("reading %s stopped before the end: partitions %v: %w", topic, behind, ctx.Err())
		}
		fetches.EachError(func(t string, p int32, err error) {
			logger.Debug("chaos: fetch error while reading", "topic", t, "partition", p, "err", err)
		})
		fetches.EachRecord(func(r *kgo.Record) {
			prev, seen := last[r.Partition]
			if r.Offset >= ends[r.Partition]-1 && (!seen || prev < ends[r.Partition]-1) {
				remaining--
			}
			if !seen || r.Offset > prev {
				last[r.Partition] = r.Offset
			}
			fn(r)
		})
	}
	return nil
}

// ReadInput reads a topic of EncodeInput records (the chaos input topic, or
// the soak's) from offset 0 up to ends into an InputRead named name, for
// Check. Records that do not decode are kept as Bad (phantoms).
func ReadInput(ctx context.Context, seeds, topic, name string, ends map[int32]int64, committed bool, logger *slog.Logger) (InputRead, error) {
	read := InputRead{Name: name, Records: make(map[int32][]InputRecord)}
	err := readTopic(ctx, seeds, topic, ends, committed, logger, func(r *kgo.Record) {
		if r.Attrs.IsControl() {
			return
		}
		id, err := DecodeInput(r.Value)
		read.Records[r.Partition] = append(read.Records[r.Partition], InputRecord{Offset: r.Offset, ID: id, Bad: err != nil})
	})
	return read, err
}

// readOutput reads the output topic, markers included, into an OutputRead.
func readOutput(ctx context.Context, seeds, name string, ends map[int32]int64, committed bool, logger *slog.Logger) (OutputRead, error) {
	read := OutputRead{Name: name, Records: make(map[int32][]OutputRecord)}
	err := readTopic(ctx, seeds, outputTopic, ends, committed, logger, func(r *kgo.Record) {
		rec := OutputRecord{
			Offset:        r.Offset,
			ProducerID:    r.ProducerID,
			ProducerEpoch: r.ProducerEpoch,
			Transactional: r.Attrs.IsTransactional(),
			Control:       r.Attrs.IsControl(),
		}
		if rec.Control {
			// Key: version int16, type int16 (0 ABORT, 1 COMMIT).
			rec.Commit = len(r.Key) >= 4 && r.Key[2] == 0 && r.Key[3] == 1
		} else {
			v, err := decodeOutput(r.Value)
			rec.Value, rec.Bad = v, err != nil
		}
		read.Records[r.Partition] = append(read.Records[r.Partition], rec)
	})
	return read, err
}

// EndOffsets lists a topic's high watermarks (committed false) or last
// stable offsets (committed true).
func EndOffsets(ctx context.Context, adm *kadm.Client, topic string, committed bool) (map[int32]int64, error) {
	list := adm.ListEndOffsets
	if committed {
		list = adm.ListCommittedOffsets
	}
	listed, err := list(ctx, topic)
	if err != nil {
		return nil, err
	}
	if err := listed.Error(); err != nil {
		return nil, err
	}
	ends := make(map[int32]int64)
	listed.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	return ends, nil
}

// groupOffsets lists the transform group's committed offsets on the input.
func groupOffsets(ctx context.Context, adm *kadm.Client) (map[int32]int64, error) {
	resp, err := adm.FetchOffsets(ctx, transformGroup)
	if err != nil {
		return nil, err
	}
	offsets := make(map[int32]int64)
	var firstErr error
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Err != nil && firstErr == nil {
			firstErr = o.Err
		}
		if o.Topic == inputTopic && o.Err == nil {
			offsets[o.Partition] = o.At
		}
	})
	return offsets, firstErr
}
