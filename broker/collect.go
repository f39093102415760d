package broker

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Gauges read from live broker state when /metrics is scraped. Computing them
// per scrape costs a few atomic loads per partition, where keeping them as
// gauges would touch a metric on every append, commit and rebalance, and
// they can never drift from the state they describe.
//
// Cardinality: seven series per partition (eight on a topic with a key
// window), one per partition a group has
// committed an offset for, and one per group.
var (
	partitionLabels = []string{"topic", "partition"}

	logSizeDesc = prometheus.NewDesc("oncelog_partition_log_size_bytes",
		"Bytes of segment files on disk for the partition.", partitionLabels, nil)
	logEndOffsetDesc = prometheus.NewDesc("oncelog_partition_log_end_offset",
		"Next offset the partition will assign (includes records not yet fsynced).", partitionLabels, nil)
	highWatermarkDesc = prometheus.NewDesc("oncelog_partition_high_watermark",
		"Offset below which records are fsynced and visible to consumers.", partitionLabels, nil)
	dirtyRatioDesc = prometheus.NewDesc("oncelog_partition_cleaner_dirty_ratio",
		"Compacted partitions: share of the closed segments' bytes not yet compacted, at the log cleaner's last look (it cleans above min.cleanable.dirty.ratio).", partitionLabels, nil)
	lastStableOffsetDesc = prometheus.NewDesc("oncelog_partition_last_stable_offset",
		"Offset below which every transaction is decided; read_committed consumers stop here. Stuck below the high watermark means an open transaction.", partitionLabels, nil)
	producerIDsSpilledDesc = prometheus.NewDesc("oncelog_producer_ids_spilled_total",
		"Producer ids moved from memory to their partition's spill store on disk to stay under --max-producers / --max-producers-per-partition (still deduplicated).", nil, nil)
	producerIDsRestoredDesc = prometheus.NewDesc("oncelog_producer_ids_restored_total",
		"Spilled producer ids read back from disk because their producer returned.", nil, nil)
	producerSpillErrorsDesc = prometheus.NewDesc("oncelog_producer_spill_errors_total",
		"Failed reads and writes of the producer spill stores (a produce then gets KAFKA_STORAGE_ERROR, or the id stays in memory over the cap).", nil, nil)
	producerIDsDesc = prometheus.NewDesc("oncelog_producer_ids",
		"Idempotent producer ids tracked, summed over partitions: a producer writing to 3 partitions counts 3 (capped by --max-producers).", nil, nil)
	transactionsOngoingDesc = prometheus.NewDesc("oncelog_transactions_ongoing",
		"Transactions begun and not yet committed or aborted.", nil, nil)
	groupMembersDesc = prometheus.NewDesc("oncelog_consumer_group_members",
		"Members of a consumer group.", []string{"group"}, nil)
	offlineDesc = prometheus.NewDesc("oncelog_partition_offline",
		"1 while a storage failure (failed write or fsync, full disk) keeps the partition offline; it recovers by itself once the fault is gone.", partitionLabels, nil)
	// Per-partition duplicates dropped. Kafka names no such metric (it has
	// none for dropped retries at all); these have exactly the labels and
	// the bound of the partition gauges above — one series per partition,
	// partitions bounded by the topics an operator creates — so they add
	// no producer- or key-dependent cardinality. They count since the
	// broker started, like the broker-wide counters they break down.
	partitionDupBatchesDesc = prometheus.NewDesc("oncelog_partition_produce_duplicate_batches_total",
		"Retried batches the partition recognised by producer id, epoch and sequence and answered with their original offset instead of storing them again.", partitionLabels, nil)
	partitionDupRecordsDesc = prometheus.NewDesc("oncelog_partition_produce_duplicate_records_total",
		"Records of the retried batches the partition did not store again (sequence dedup).", partitionLabels, nil)
	partitionKeyDupsDesc = prometheus.NewDesc("oncelog_partition_dedup_duplicates_dropped_total",
		"Records produced to the partition that the topic's key window (oncelog.dedup.key) did not store again; only for topics with a key window.", partitionLabels, nil)
	groupLagDesc = prometheus.NewDesc("oncelog_consumer_group_lag",
		"High watermark minus the group's committed offset (0 if the commit is ahead).", []string{"group", "topic", "partition"}, nil)
)

// scrapeCollector is a prometheus.Collector over a live broker.
type scrapeCollector struct{ b *Broker }

func (scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		logSizeDesc, logEndOffsetDesc, highWatermarkDesc, lastStableOffsetDesc, dirtyRatioDesc,
		producerIDsDesc, transactionsOngoingDesc, groupMembersDesc, groupLagDesc, offlineDesc,
		producerIDsSpilledDesc, producerIDsRestoredDesc, producerSpillErrorsDesc,
		partitionDupBatchesDesc, partitionDupRecordsDesc, partitionKeyDupsDesc,
	} {
		ch <- d
	}
}

func (c scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.b
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, t := range b.Topics() {
		keyWindow := keyWindowOf(t.Configs).on()
		for _, p := range t.Partitions {
			index := strconv.Itoa(int(p.Index))
			gauge(logSizeDesc, p.Size(), t.Name, index)
			gauge(logEndOffsetDesc, p.LogEndOffset(), t.Name, index)
			gauge(highWatermarkDesc, p.HighWatermark(), t.Name, index)
			gauge(lastStableOffsetDesc, p.LastStableOffset(), t.Name, index)
			offline := int64(0)
			if p.StorageError() != nil {
				offline = 1
			}
			gauge(offlineDesc, offline, t.Name, index)
			dropped := p.Dropped()
			counter(partitionDupBatchesDesc, dropped.SequenceBatches, t.Name, index)
			counter(partitionDupRecordsDesc, dropped.SequenceRecords, t.Name, index)
			if keyWindow || dropped.KeyWindowRecords > 0 {
				counter(partitionKeyDupsDesc, dropped.KeyWindowRecords, t.Name, index)
			}
			if b.cleaner != nil {
				if r, ok := b.cleaner.DirtyRatio(p); ok {
					ch <- prometheus.MustNewConstMetric(dirtyRatioDesc, prometheus.GaugeValue, r, t.Name, index)
				}
			}
		}
	}
	gauge(producerIDsDesc, int64(b.limits.Total()))
	spilled, restored, spillErrors := b.limits.SpillCounts()
	for d, v := range map[*prometheus.Desc]int64{producerIDsSpilledDesc: spilled, producerIDsRestoredDesc: restored, producerSpillErrorsDesc: spillErrors} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	if b.Txns != nil {
		gauge(transactionsOngoingDesc, int64(b.Txns.Ongoing()))
	}
	if b.Groups != nil {
		for _, g := range b.Groups.Groups() {
			gauge(groupMembersDesc, int64(len(g.Members)), g.Group)
			for topic, offsets := range b.Groups.CommittedOffsets(g.Group) {
				for index, committed := range offsets {
					p := b.Partition(topic, index)
					if p == nil || committed < 0 {
						continue // a deleted topic or partition, or no real position
					}
					gauge(groupLagDesc, max(p.HighWatermark()-committed, 0), g.Group, topic, strconv.Itoa(int(index)))
				}
			}
		}
	}
}
