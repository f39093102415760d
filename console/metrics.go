package console

import (
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

type partKey struct {
	topic     string
	partition int32
}

// gather reads the broker's registry; nil without one.
func (c *Console) gather() []*dto.MetricFamily {
	if c.cfg.Gatherer == nil {
		return nil
	}
	fams, err := c.cfg.Gatherer.Gather()
	if err != nil && len(fams) == 0 {
		c.cfg.Logger.Warn("console: reading metrics failed", "err", err)
	}
	return fams
}

func value(m *dto.Metric) (float64, bool) {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue(), true
	case m.Gauge != nil:
		return m.Gauge.GetValue(), true
	case m.Untyped != nil:
		return m.Untyped.GetValue(), true
	}
	return 0, false
}

// totals sums every counter and gauge over its labels, and gives each
// histogram's _sum and _count: what the charts turn into rates and means.
func (c *Console) totals() map[string]float64 {
	out := map[string]float64{}
	for _, f := range c.gather() {
		name := f.GetName()
		if !strings.HasPrefix(name, "oncelog_") {
			continue // the Go runtime's and process metrics are /metrics' business
		}
		for _, m := range f.GetMetric() {
			if v, ok := value(m); ok {
				out[name] += v
			}
			if h := m.Histogram; h != nil {
				out[name+"_sum"] += h.GetSampleSum()
				out[name+"_count"] += float64(h.GetSampleCount())
			}
		}
	}
	return out
}

func (c *Console) counter(name string) float64 { return c.totals()[name] }

// partitionGauge is a per-partition metric (labels topic, partition).
func (c *Console) partitionGauge(name string) map[partKey]float64 {
	out := map[partKey]float64{}
	for _, f := range c.gather() {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var k partKey
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "topic":
					k.topic = l.GetValue()
				case "partition":
					p, _ := strconv.ParseInt(l.GetValue(), 10, 32)
					k.partition = int32(p)
				}
			}
			if v, ok := value(m); ok {
				out[k] = v
			}
		}
	}
	return out
}

type family struct {
	Name  string  `json:"name"`
	Help  string  `json:"help"`
	Value float64 `json:"value"`
}

// families lists the metrics whose names match, summed over labels.
func (c *Console) families(match func(string) bool) []family {
	out := []family{}
	for _, f := range c.gather() {
		if !match(f.GetName()) {
			continue
		}
		fam := family{Name: f.GetName(), Help: f.GetHelp()}
		for _, m := range f.GetMetric() {
			if v, ok := value(m); ok {
				fam.Value += v
			}
		}
		out = append(out, fam)
	}
	return out
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
