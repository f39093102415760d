package io.oncelog.e2e.connect;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.sink.SinkConnector;

/**
 * A sink for ConnectTest: appends each record's value as a line to file (unbuffered, so a
 * SIGKILLed worker loses nothing it was given). Its offsets are the worker's: committed
 * through the consumer group connect-&lt;name&gt; after flush, every offset.flush.interval.ms.
 */
public class RecordingSinkConnector extends SinkConnector {
  public static final String FILE = "file";

  static final ConfigDef CONFIG = new ConfigDef()
      .define(FILE, ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "the file the values are appended to");

  private Map<String, String> props;

  @Override
  public void start(Map<String, String> props) {
    this.props = props;
  }

  @Override
  public Class<? extends Task> taskClass() {
    return RecordingSinkTask.class;
  }

  @Override
  public List<Map<String, String>> taskConfigs(int maxTasks) {
    List<Map<String, String>> out = new ArrayList<>();
    out.add(props);
    return out;
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
