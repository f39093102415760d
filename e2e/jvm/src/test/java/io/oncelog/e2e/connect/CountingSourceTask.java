package io.oncelog.e2e.connect;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.config.AbstractConfig;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.source.SourceTask;

/** The task of {@link CountingSourceConnector}. */
public class CountingSourceTask extends SourceTask {
  private Map<String, String> partition;
  private String topic;
  private long records;
  private int perPoll;
  private Path gate;
  private long next;

  @Override
  public void start(Map<String, String> props) {
    AbstractConfig c = new AbstractConfig(CountingSourceConnector.CONFIG, props);
    topic = c.getString(CountingSourceConnector.TOPIC);
    records = c.getLong(CountingSourceConnector.RECORDS);
    perPoll = c.getInt(CountingSourceConnector.PER_POLL);
    String g = c.getString(CountingSourceConnector.GATE_FILE);
    gate = g.isEmpty() ? null : Path.of(g);
    partition = Map.of("counter", props.getOrDefault("name", "counting"));
    // The committed offset: under exactly-once it was written in the same transaction
    // as the records it covers, so it is exactly where the output stops.
    Map<String, Object> off = context.offsetStorageReader().offset(partition);
    next = off == null ? 0 : ((Number) off.get("next")).longValue();
  }

  private long limit() {
    if (gate == null) {
      return records;
    }
    try {
      return Math.min(records, Long.parseLong(Files.readString(gate).trim()));
    } catch (IOException | NumberFormatException e) {
      return records;
    }
  }

  @Override
  public List<SourceRecord> poll() throws InterruptedException {
    long end = Math.min(limit(), next + perPoll);
    if (next >= end) {
      Thread.sleep(50);
      return null;
    }
    List<SourceRecord> out = new ArrayList<>((int) (end - next));
    for (long i = next; i < end; i++) {
      out.add(new SourceRecord(partition, Map.of("next", i + 1), topic, null, null, null,
          Schema.STRING_SCHEMA, Long.toString(i)));
    }
    next = end;
    return out;
  }

  @Override
  public void stop() {}

  @Override
  public String version() {
    return "1";
  }
}
