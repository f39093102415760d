package broker

import (
	"fmt"
	"maps"
	"sort"

	"github.com/oncelog/oncelog/meta"
	"github.com/twmb/franz-go/pkg/kerr"
)

// TransactionVersionFeature is Kafka's transaction.version feature
// (KIP-890 part 2): at level 2 clients end every transaction with an epoch
// bump (EndTxn v5) and drop AddPartitionsToTxn and AddOffsetsToTxn for
// Produce v12 and TxnOffsetCommit v5. The broker serves both forms at
// every level, as Kafka does (the request version says which semantics a
// client wants); the finalized level is what clients are told to use.
const TransactionVersionFeature = "transaction.version"

// SupportedFeature is a feature and the level range this broker can run.
type SupportedFeature struct {
	Name     string
	Min, Max int16
}

// SupportedFeatures lists the features oncelog implements, by name.
var SupportedFeatures = []SupportedFeature{
	{Name: TransactionVersionFeature, Min: 0, Max: 2},
}

func supportedFeature(name string) (SupportedFeature, bool) {
	for _, f := range SupportedFeatures {
		if f.Name == name {
			return f, true
		}
	}
	return SupportedFeature{}, false
}

// FinalizedFeatures are the feature levels in effect (ApiVersions).
type FinalizedFeatures struct {
	// Levels omits features at level 0, as Kafka does.
	Levels map[string]int16
	Epoch  int64
}

// loadFeatures sets the finalized levels: those an UpdateFeatures stored,
// else the configured ones, as Kafka's storage format sets a new
// cluster's (kafka-storage format --feature transaction.version=N).
func (b *Broker) loadFeatures() error {
	stored, ok, err := b.meta.Features()
	if err != nil {
		return err
	}
	if ok {
		b.features = FinalizedFeatures{Levels: stored.Levels, Epoch: stored.Epoch}
		if lvl := stored.Levels[TransactionVersionFeature]; lvl != b.cfg.TransactionVersion {
			b.logger.Warn("transaction.version was set by UpdateFeatures; the configured level applies only to a new data directory",
				"finalized", lvl, "configured", b.cfg.TransactionVersion)
		}
		return nil
	}
	b.features = FinalizedFeatures{Levels: map[string]int16{}, Epoch: 1}
	if b.cfg.TransactionVersion > 0 {
		b.features.Levels[TransactionVersionFeature] = b.cfg.TransactionVersion
	}
	return nil
}

// Features returns the finalized feature levels.
func (b *Broker) Features() FinalizedFeatures {
	b.featuresMu.Lock()
	defer b.featuresMu.Unlock()
	return FinalizedFeatures{Levels: maps.Clone(b.features.Levels), Epoch: b.features.Epoch}
}

// FeatureUpdate is one UpdateFeatures entry. Level < 1 removes the
// feature (level 0). Downgrade allows a lower level than the current one
// (v0 AllowDowngrade, v1+ UpgradeType safe or unsafe downgrade).
type FeatureUpdate struct {
	Name      string
	Level     int16
	Downgrade bool
}

// UpdateFeatures applies updates (all or none, as Kafka's controller) and
// returns an error per feature, nil for those that would apply. Nothing
// changes if any fails or validateOnly. The levels are stored durably and
// win over the configured ones from then on.
func (b *Broker) UpdateFeatures(updates []FeatureUpdate, validateOnly bool) map[string]*TopicError {
	b.featuresMu.Lock()
	defer b.featuresMu.Unlock()
	results := make(map[string]*TopicError, len(updates))
	next := maps.Clone(b.features.Levels)
	failed := false
	fail := func(name string, code int16, format string, args ...any) {
		results[name] = topicErr(code, "%s", fmt.Sprintf(format, args...))
		failed = true
	}
	seen := map[string]bool{}
	for _, u := range updates {
		if seen[u.Name] {
			fail(u.Name, kerr.InvalidRequest.Code, "feature %s is updated more than once", u.Name)
			continue
		}
		seen[u.Name] = true
		spec, ok := supportedFeature(u.Name)
		if !ok {
			fail(u.Name, kerr.InvalidUpdateVersion.Code, "this broker does not support feature %s", u.Name)
			continue
		}
		level := max(u.Level, 0)
		if level < spec.Min || level > spec.Max {
			fail(u.Name, kerr.InvalidUpdateVersion.Code, "feature %s supports levels %d to %d, not %d", u.Name, spec.Min, spec.Max, level)
			continue
		}
		if level < b.features.Levels[u.Name] && !u.Downgrade {
			fail(u.Name, kerr.InvalidUpdateVersion.Code, "feature %s is at level %d; lowering it to %d needs a downgrade", u.Name, b.features.Levels[u.Name], level)
			continue
		}
		results[u.Name] = nil
		if level == 0 {
			delete(next, u.Name)
		} else {
			next[u.Name] = level
		}
	}
	if failed {
		for name, err := range results {
			if err == nil {
				results[name] = topicErr(kerr.InvalidUpdateVersion.Code, "not applied: another feature update in the request failed")
			}
		}
		return results
	}
	if validateOnly || maps.Equal(next, b.features.Levels) {
		return results
	}
	f := meta.Features{Levels: next, Epoch: b.features.Epoch + 1}
	if err := b.meta.PutFeatures(f); err != nil {
		for _, u := range updates {
			results[u.Name] = topicErr(kerr.KafkaStorageError.Code, "store feature levels: %v", err)
		}
		return results
	}
	b.features = FinalizedFeatures{Levels: next, Epoch: f.Epoch}
	names := make([]string, 0, len(next))
	for n := range next {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b.logger.Info("feature level finalized", "feature", n, "level", next[n], "epoch", f.Epoch)
	}
	return results
}
