package wire

import (
	"strconv"
	"strings"

	"github.com/oncelog/oncelog/broker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(32, 0, 4, handleDescribeConfigs)
	register(33, 0, 2, handleAlterConfigs)
	register(44, 0, 1, handleIncrementalAlterConfigs)
}

const (
	resourceTopic  = 2
	resourceBroker = 4
	resourceGroup  = 32 // group configs (KIP-848, KIP-932)
)

func handleDescribeConfigs(c *conn, r *request) respond {
	b := c.s.b
	cfg := b.Config()
	req := r.kreq.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		if code := authorizeConfigs(c, r.key, rr.ResourceType, rr.ResourceName, opDescribeConfigs); code != 0 {
			sr.ErrorCode = code
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		var entries []broker.ConfigEntry
		readOnly := false
		switch kmsg.ConfigResourceType(rr.ResourceType) {
		case resourceTopic:
			if it := b.InternalTopic(rr.ResourceName); it != nil {
				entries = cfg.EffectiveTopicConfigs(it.Configs)
				break
			}
			t := b.Topic(rr.ResourceName)
			if t == nil {
				sr.ErrorCode = kerr.UnknownTopicOrPartition.Code
				sr.ErrorMessage = strPtr("topic " + rr.ResourceName + " does not exist")
				resp.Resources = append(resp.Resources, sr)
				continue
			}
			entries = cfg.EffectiveTopicConfigs(t.Configs)
		case resourceBroker:
			if rr.ResourceName != "" && rr.ResourceName != strconv.Itoa(int(cfg.NodeID)) {
				sr.ErrorCode = kerr.InvalidRequest.Code
				sr.ErrorMessage = strPtr("unknown broker id " + rr.ResourceName)
				resp.Resources = append(resp.Resources, sr)
				continue
			}
			entries, readOnly = append(brokerConfigEntries(cfg), c.s.listenerConfigEntries()...), true
		case resourceGroup:
			entries = shareGroupConfigEntries(b, rr.ResourceName)
		default:
			sr.ErrorCode = kerr.InvalidRequest.Code
			sr.ErrorMessage = strPtr("unsupported resource type")
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		want := map[string]bool{}
		for _, n := range rr.ConfigNames {
			want[n] = true
		}
		for _, e := range entries {
			if rr.ConfigNames != nil && !want[e.Name] {
				continue
			}
			ce := kmsg.NewDescribeConfigsResponseResourceConfig()
			ce.Name, ce.Value, ce.ReadOnly = e.Name, strPtr(e.Value), readOnly
			ce.Source = kmsg.ConfigSource(e.Source)
			ce.IsDefault = e.Source == broker.SourceDefault
			ce.ConfigType = kmsg.ConfigType(e.ValueType)
			if req.IncludeDocumentation {
				ce.Documentation = strPtr(e.Doc)
			}
			if req.IncludeSynonyms {
				synonyms := e.Synonyms
				if len(synonyms) == 0 {
					synonyms = []broker.ConfigSynonym{{Name: e.Name, Value: e.Value, Source: e.Source}}
				}
				for _, s := range synonyms {
					syn := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
					syn.Name, syn.Value, syn.Source = s.Name, strPtr(s.Value), kmsg.ConfigSource(s.Source)
					ce.ConfigSynonyms = append(ce.ConfigSynonyms, syn)
				}
			}
			sr.Configs = append(sr.Configs, ce)
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return ready(resp)
}

func brokerConfigEntries(cfg broker.Config) []broker.ConfigEntry {
	e := func(name, value string, typ int8) broker.ConfigEntry {
		return broker.ConfigEntry{Name: name, Value: value, Source: broker.SourceStatic, ValueType: typ}
	}
	return []broker.ConfigEntry{
		e("auto.create.topics.enable", strconv.FormatBool(cfg.AutoCreateTopics), 1),
		e("broker.id", strconv.Itoa(int(cfg.NodeID)), 3),
		e("default.replication.factor", "1", 3),
		e("log.cleaner.backoff.ms", strconv.FormatInt(cfg.CleanerBackoffMs, 10), 5),
		e("log.cleaner.dedupe.buffer.size", strconv.FormatInt(cfg.CleanerDedupeBufferSize, 10), 5),
		e("log.cleaner.delete.retention.ms", strconv.FormatInt(cfg.CleanerDeleteRetentionMs, 10), 5),
		e("log.cleaner.enable", strconv.FormatBool(cfg.CleanerEnable), 1),
		e("log.cleaner.io.max.bytes.per.second", strconv.FormatFloat(cfg.CleanerIOMaxBytesPerSecond, 'g', -1, 64), 6),
		e("log.cleaner.max.compaction.lag.ms", strconv.FormatInt(cfg.CleanerMaxCompactionLagMs, 10), 5),
		e("log.cleaner.min.cleanable.ratio", strconv.FormatFloat(cfg.CleanerMinCleanableRatio, 'g', -1, 64), 6),
		e("log.cleaner.min.compaction.lag.ms", strconv.FormatInt(cfg.CleanerMinCompactionLagMs, 10), 5),
		e("log.cleaner.threads", strconv.Itoa(cfg.CleanerThreads), 3),
		e("log.cleanup.policy", cfg.CleanupPolicy, 7),
		e("log.dirs", cfg.DataDir, 2),
		e("log.retention.bytes", strconv.FormatInt(cfg.RetentionBytes, 10), 5),
		e("log.retention.ms", strconv.FormatInt(cfg.RetentionMs, 10), 5),
		e("log.segment.bytes", strconv.FormatInt(cfg.SegmentBytes, 10), 3),
		e("log.message.timestamp.after.max.ms", strconv.FormatInt(cfg.MessageTimestampAfterMaxMs, 10), 5),
		e("log.message.timestamp.before.max.ms", strconv.FormatInt(cfg.MessageTimestampBeforeMaxMs, 10), 5),
		e("message.max.bytes", strconv.Itoa(int(cfg.MaxMessageBytes)), 3),
		e("num.partitions", strconv.Itoa(int(cfg.DefaultPartitions)), 3),
		e("producer.id.expiration.ms", strconv.FormatInt(cfg.ProducerIDExpirationMs, 10), 3),
	}
}

func handleAlterConfigs(c *conn, r *request) respond {
	b := c.s.b
	req := r.kreq.(*kmsg.AlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		if code := authorizeConfigs(c, r.key, rr.ResourceType, rr.ResourceName, opAlterConfigs); code != 0 {
			sr.ErrorCode = code
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		if rr.ResourceType != resourceTopic {
			sr.ErrorCode = kerr.InvalidRequest.Code
			sr.ErrorMessage = strPtr("broker settings are static: set them with `oncelog serve` flags or its config file")
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		configs := map[string]string{}
		for _, ce := range rr.Configs {
			if ce.Value != nil {
				configs[ce.Name] = *ce.Value
			}
		}
		if terr := b.SetTopicConfigs(rr.ResourceName, configs, req.ValidateOnly); terr != nil {
			sr.ErrorCode, sr.ErrorMessage = terr.Code, strPtr(terr.Message)
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return ready(resp)
}

func handleIncrementalAlterConfigs(c *conn, r *request) respond {
	b := c.s.b
	req := r.kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		fail := func(code int16, msg string) {
			sr.ErrorCode, sr.ErrorMessage = code, strPtr(msg)
			resp.Resources = append(resp.Resources, sr)
		}
		if code := authorizeConfigs(c, r.key, rr.ResourceType, rr.ResourceName, opAlterConfigs); code != 0 {
			sr.ErrorCode = code
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		if rr.ResourceType == resourceGroup {
			code, msg := alterShareGroupConfigs(b, rr, req.ValidateOnly)
			if code != 0 {
				fail(code, msg)
				continue
			}
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		if rr.ResourceType != resourceTopic {
			fail(kerr.InvalidRequest.Code, "broker settings are static: set them with `oncelog serve` flags or its config file")
			continue
		}
		if broker.IsInternalTopic(rr.ResourceName) {
			fail(kerr.InvalidTopicException.Code, "cannot alter the configs of internal topic "+rr.ResourceName)
			continue
		}
		t := b.Topic(rr.ResourceName)
		if t == nil {
			fail(kerr.UnknownTopicOrPartition.Code, "topic "+rr.ResourceName+" does not exist")
			continue
		}
		configs := map[string]string{}
		for k, v := range t.Configs {
			configs[k] = v
		}
		effective := map[string]string{}
		for _, e := range b.Config().EffectiveTopicConfigs(t.Configs) {
			effective[e.Name] = e.Value
		}
		bad := ""
		for _, ce := range rr.Configs {
			val := ""
			if ce.Value != nil {
				val = *ce.Value
			}
			switch ce.Op {
			case 0: // SET
				configs[ce.Name] = val
			case 1: // DELETE
				delete(configs, ce.Name)
			case 2, 3: // APPEND, SUBTRACT on list values
				list := splitList(effective[ce.Name])
				if ce.Op == 2 {
					for _, v := range splitList(val) {
						if !contains(list, v) {
							list = append(list, v)
						}
					}
				} else {
					var kept []string
					for _, v := range list {
						if !contains(splitList(val), v) {
							kept = append(kept, v)
						}
					}
					list = kept
				}
				configs[ce.Name] = strings.Join(list, ",")
			default:
				bad = "unknown operation"
			}
		}
		if bad != "" {
			fail(kerr.InvalidRequest.Code, bad)
			continue
		}
		if terr := b.SetTopicConfigs(rr.ResourceName, configs, req.ValidateOnly); terr != nil {
			fail(terr.Code, terr.Message)
			continue
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return ready(resp)
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// authorizeConfigs is KafkaApis' check for describing or altering a
// config resource: op on the topic (TOPIC_AUTHORIZATION_FAILED) or, for a
// broker (or broker logger), on the cluster (CLUSTER_AUTHORIZATION_FAILED),
// or on the group (GROUP_AUTHORIZATION_FAILED).
// Other resource types are left to the handler's own answer.
func authorizeConfigs(c *conn, api int16, resourceType kmsg.ConfigResourceType, name string, op kmsg.ACLOperation) int16 {
	switch resourceType {
	case resourceTopic:
		if !c.authorize(api, op, rtTopic, name) {
			return kerr.TopicAuthorizationFailed.Code
		}
	case resourceBroker, kmsg.ConfigResourceTypeBrokerLogger:
		if !c.authorizeCluster(api, op) {
			return kerr.ClusterAuthorizationFailed.Code
		}
	case resourceGroup:
		if !c.authorize(api, op, rtGroup, name) {
			return kerr.GroupAuthorizationFailed.Code
		}
	}
	return 0
}
