package io.oncelog.e2e.connect;

import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Collection;
import java.util.Map;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTask;

/** The task of {@link RecordingSinkConnector}. */
public class RecordingSinkTask extends SinkTask {
  private FileOutputStream out;

  @Override
  public void start(Map<String, String> props) {
    try {
      out = new FileOutputStream(props.get(RecordingSinkConnector.FILE), true);
    } catch (IOException e) {
      throw new ConnectException(e);
    }
  }

  @Override
  public void put(Collection<SinkRecord> records) {
    if (records.isEmpty()) {
      return;
    }
    StringBuilder sb = new StringBuilder();
    for (SinkRecord r : records) {
      sb.append(r.value()).append('\n');
    }
    try {
      // One write per batch: the page cache keeps it if the worker JVM is SIGKILLed.
      out.write(sb.toString().getBytes(StandardCharsets.UTF_8));
    } catch (IOException e) {
      throw new ConnectException(e);
    }
  }

  @Override
  public void flush(Map<TopicPartition, OffsetAndMetadata> currentOffsets) {}

  @Override
  public void stop() {
    try {
      if (out != null) {
        out.close();
      }
    } catch (IOException e) {
      throw new ConnectException(e);
    }
  }

  @Override
  public String version() {
    return "1";
  }
}
