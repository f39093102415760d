package main

import (
	"fmt"
	"time"
)

// shape is a produce workload's shape: record size, concurrent producers
// (separate clients, so separate producer ids) and partitions.
type shape struct {
	RecordSize int
	Producers  int
	Partitions int
}

func (s shape) String() string {
	producers := "1 producer"
	if s.Producers != 1 {
		producers = fmt.Sprintf("%d producers", s.Producers)
	}
	partitions := "1 partition"
	if s.Partitions != 1 {
		partitions = fmt.Sprintf("%d partitions", s.Partitions)
	}
	return fmt.Sprintf("%s, %s, %s", sizeName(s.RecordSize), producers, partitions)
}

func sizeName(size int) string {
	if size >= 1024 && size%1024 == 0 {
		return fmt.Sprintf("%d KB", size/1024)
	}
	return fmt.Sprintf("%d B", size)
}

// profile sizes every workload; --quick, the default and --full are profiles.
type profile struct {
	Name string

	// Matrix is produced idempotently (NATS: with Nats-Msg-Id) on every target.
	Matrix []shape
	// A run lasts MatrixDeadline (it stops starting new records then) unless
	// MatrixRecords (by record size) are produced first: the counts are caps
	// set above what oncelog reaches in that time.
	MatrixRecords  map[int]int
	MatrixDeadline time.Duration
	// MatrixRepeats is how many times each shape runs on each target; the
	// best run counts.
	MatrixRepeats int

	// RatioShapes are produced plain and idempotently, alternating, Repeats
	// times each; the best run of each mode counts. Transactions alternate
	// with idempotent produce the same way.
	RatioShapes []shape
	Repeats     int

	// TxnShape is produced in transactions of TxnSize records and
	// idempotently, each for MatrixDeadline or TxnRecords records.
	TxnShape   shape
	TxnSize    int
	TxnRecords int
	// TxnWideProducers, when not 0, runs TxnShape's transactions once more
	// with this many producers (how far concurrency takes them).
	TxnWideProducers int

	// Headline runs: HeadlineRecords records of each size with HeadlineShape
	// (its RecordSize is ignored).
	HeadlineShape    shape
	HeadlineRecords  int
	HeadlineDeadline time.Duration

	// PerfTestRecords are produced by Kafka's kafka-producer-perf-test
	// (idempotent, acks=all) with PerfTestShape's record size and
	// partitions; a target that has not sent them all after
	// PerfTestTimeout is stopped and measured from the tool's progress
	// lines. 0 skips the row.
	PerfTestShape   shape
	PerfTestRecords int
	PerfTestTimeout time.Duration
	// KafkaWarmUp is how long each Kafka peer's JVM is warmed up with
	// idempotent and then transactional produce before the first workload.
	KafkaWarmUp time.Duration

	ConsumeTimeout time.Duration
	// ConsumeRepeats is how many times each isolation level reads each topic
	// (alternating); the fastest read counts.
	ConsumeRepeats int

	// Latency runs at LatencyLoad times each target's 100 B, 1 producer,
	// 1 partition peak, and at LatencyFixedRate on every target.
	LatencyDuration  time.Duration
	LatencyLoad      float64
	LatencyFixedRate float64

	Restart restartSpec

	// KeyIndexKeys is how many keys the key-index workload indexes.
	KeyIndexKeys int64
}

var (
	tinyHundred   = shape{RecordSize: 100, Producers: 1, Partitions: 1}
	wideHundred   = shape{RecordSize: 100, Producers: 8, Partitions: 12}
	tinyKilobyte  = shape{RecordSize: 1024, Producers: 1, Partitions: 1}
	wideKilobyte  = shape{RecordSize: 1024, Producers: 8, Partitions: 12}
	headlineShape = shape{Producers: 4, Partitions: 12}
	// perfTestShape: kafka-producer-perf-test is one Java producer.
	perfTestShape = shape{RecordSize: 100, Producers: 1, Partitions: 12}
)

// defaultMatrix leaves out fullMatrix's 1 producer, 12 partitions shapes:
// 8 producers on 12 partitions covers multi-partition requests too.
func defaultMatrix() []shape {
	return []shape{
		tinyHundred, {RecordSize: 100, Producers: 8, Partitions: 1}, wideHundred,
		tinyKilobyte, {RecordSize: 1024, Producers: 8, Partitions: 1}, wideKilobyte,
	}
}

func fullMatrix() []shape {
	var shapes []shape
	for _, size := range []int{100, 1024} {
		for _, producers := range []int{1, 8} {
			for _, partitions := range []int{1, 12} {
				shapes = append(shapes, shape{RecordSize: size, Producers: producers, Partitions: partitions})
			}
		}
	}
	return shapes
}

func defaultProfile() profile {
	// Sized to take about 6 minutes with every peer (kfake, NATS and both
	// Kafkas), Kafka's start included: one run of each case (the
	// alternation of compared modes stays), 1 s per run, 3 s headlines,
	// no 32-producer transactions (12 s on Kafka with fsync alone). --full
	// repeats and runs longer.
	return profile{
		Name:             "default",
		Matrix:           defaultMatrix(),
		MatrixRecords:    map[int]int{100: 5_000_000, 1024: 1_500_000},
		MatrixDeadline:   time.Second,
		MatrixRepeats:    1,
		RatioShapes:      []shape{tinyHundred, wideHundred},
		Repeats:          1,
		TxnShape:         wideHundred,
		TxnSize:          100,
		TxnRecords:       5_000_000,
		HeadlineShape:    headlineShape,
		HeadlineRecords:  1_000_000,
		HeadlineDeadline: 3 * time.Second,
		PerfTestShape:    perfTestShape,
		PerfTestRecords:  1_000_000,
		PerfTestTimeout:  12 * time.Second,
		KafkaWarmUp:      1500 * time.Millisecond,
		ConsumeTimeout:   60 * time.Second,
		ConsumeRepeats:   2,
		LatencyDuration:  2 * time.Second,
		LatencyLoad:      0.5,
		LatencyFixedRate: 10_000,
		// 20k producer ids: created at 1.7k/s on a loaded machine, 50k took
		// 30 of the restart workload's 37 s.
		Restart:      restartSpec{LogBytes: 256 << 20, LogPartitions: 4, ProducerIDs: 20_000, PIDPartitions: 12},
		KeyIndexKeys: 1_000_000,
	}
}

func quickProfile() profile {
	return profile{
		Name:             "quick",
		Matrix:           []shape{tinyHundred, wideHundred, tinyKilobyte, wideKilobyte},
		MatrixRecords:    map[int]int{100: 2_000_000, 1024: 600_000},
		MatrixDeadline:   800 * time.Millisecond,
		MatrixRepeats:    1,
		RatioShapes:      []shape{wideHundred},
		Repeats:          1,
		TxnShape:         wideHundred,
		TxnSize:          100,
		TxnRecords:       2_000_000,
		TxnWideProducers: 32,
		HeadlineShape:    headlineShape,
		HeadlineRecords:  500_000,
		HeadlineDeadline: 1500 * time.Millisecond,
		PerfTestShape:    perfTestShape,
		PerfTestRecords:  500_000,
		PerfTestTimeout:  12 * time.Second,
		KafkaWarmUp:      1500 * time.Millisecond,
		ConsumeTimeout:   30 * time.Second,
		ConsumeRepeats:   2,
		LatencyDuration:  700 * time.Millisecond,
		LatencyLoad:      0.5,
		LatencyFixedRate: 10_000,
		Restart:          restartSpec{LogBytes: 32 << 20, LogPartitions: 4, ProducerIDs: 5_000, PIDPartitions: 12},
		KeyIndexKeys:     200_000,
	}
}

func fullProfile() profile {
	p := defaultProfile()
	p.Name = "full"
	p.Matrix = fullMatrix()
	p.MatrixRecords = map[int]int{100: 20_000_000, 1024: 6_000_000}
	p.MatrixDeadline = 4 * time.Second
	p.MatrixRepeats = 2
	p.Repeats = 4
	p.TxnRecords = 20_000_000
	p.TxnWideProducers = 32
	p.HeadlineDeadline = 60 * time.Second
	p.PerfTestRecords = 10_000_000
	p.PerfTestTimeout = time.Minute
	p.KafkaWarmUp = 4 * time.Second
	p.LatencyDuration = 10 * time.Second
	p.ConsumeRepeats = 5
	p.Restart = restartSpec{LogBytes: 1536 << 20, LogPartitions: 4, ProducerIDs: 100_000, PIDPartitions: 12}
	p.KeyIndexKeys = 10_000_000
	return p
}

// smokeProfile is the test's: every workload, tiny, a few seconds in all.
func smokeProfile() profile {
	return profile{
		Name:             "smoke",
		Matrix:           []shape{tinyHundred, wideKilobyte},
		MatrixRecords:    map[int]int{100: 20_000, 1024: 5_000},
		MatrixDeadline:   500 * time.Millisecond,
		MatrixRepeats:    1,
		RatioShapes:      []shape{tinyHundred},
		Repeats:          1,
		TxnShape:         shape{RecordSize: 100, Producers: 2, Partitions: 2},
		TxnSize:          100,
		TxnRecords:       2_000,
		TxnWideProducers: 8,
		HeadlineShape:    shape{Producers: 2, Partitions: 2},
		HeadlineRecords:  20_000,
		HeadlineDeadline: time.Second,
		ConsumeTimeout:   10 * time.Second,
		ConsumeRepeats:   1,
		LatencyDuration:  300 * time.Millisecond,
		LatencyLoad:      0.5,
		LatencyFixedRate: 10_000,
		Restart:          restartSpec{LogBytes: 4 << 20, LogPartitions: 2, ProducerIDs: 200, PIDPartitions: 2},
		KeyIndexKeys:     20_000,
	}
}
