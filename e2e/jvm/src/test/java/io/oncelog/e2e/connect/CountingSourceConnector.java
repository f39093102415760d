package io.oncelog.e2e.connect;

import java.util.List;
import java.util.Map;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.source.ExactlyOnceSupport;
import org.apache.kafka.connect.source.SourceConnector;

/**
 * A deterministic source for ConnectTest: one task writes the values "0" .. "records-1"
 * to topic, each with its source offset {"next": i+1} under the source partition
 * {"counter": name}, so a restarted task resumes after the last committed record. With
 * exactly.once.support=required the worker writes each poll's records and their offset
 * in one transaction; a record written twice is the worker's or the broker's fault.
 *
 * <p>gate.file, when set, names a file holding a number: the task writes no record at or
 * past it until the file says more (a missing file means no limit). The test uses it to
 * stop the source part-way without reconfiguring the connector.
 */
public class CountingSourceConnector extends SourceConnector {
  public static final String TOPIC = "topic";
  public static final String RECORDS = "records";
  public static final String PER_POLL = "records.per.poll";
  public static final String GATE_FILE = "gate.file";

  static final ConfigDef CONFIG = new ConfigDef()
      .define(TOPIC, ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "the topic written to")
      .define(RECORDS, ConfigDef.Type.LONG, ConfigDef.Importance.HIGH, "how many records in all")
      .define(PER_POLL, ConfigDef.Type.INT, 100, ConfigDef.Importance.LOW, "records per poll (one transaction each)")
      .define(GATE_FILE, ConfigDef.Type.STRING, "", ConfigDef.Importance.LOW, "file holding how many records may be written so far");

  private Map<String, String> props;

  @Override
  public void start(Map<String, String> props) {
    this.props = props;
  }

  @Override
  public Class<? extends Task> taskClass() {
    return CountingSourceTask.class;
  }

  /** One task: the records form one ordered sequence with one source partition. */
  @Override
  public List<Map<String, String>> taskConfigs(int maxTasks) {
    return List.of(props);
  }

  /** Each record's offset is its position, stored with it: a restart resumes exactly. */
  @Override
  public ExactlyOnceSupport exactlyOnceSupport(Map<String, String> props) {
    return ExactlyOnceSupport.SUPPORTED;
  }

  @Override
  public void stop() {}

  @Override
  public ConfigDef config() {
    return CONFIG;
  }

  @Override
  public String version() {
    return "1";
  }
}
