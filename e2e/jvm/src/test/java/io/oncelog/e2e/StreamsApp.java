package io.oncelog.e2e;

import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.WindowStore;

/**
 * One Kafka Streams instance of StreamsEosTest's application, run as a child JVM (as a
 * real deployment runs it), so that the test can SIGKILL it.
 *
 * <p>Input: key = the record's id, value = "group:amount", timestamp = event time. The
 * topology re-keys by group (a repartition topic), then keeps per group
 * <ul>
 *   <li>"count,sum" in the key-value store {@value #TOTALS} (compacted changelog), written to
 *       the totals output topic;
 *   <li>the count per 10 s tumbling window (grace 1 day, so no record is late) in the window
 *       store {@value #WINDOWED}, written to the windowed output topic as key "group@start".
 * </ul>
 *
 * <p>It prints lines the test parses: "STATE from to", "RESTORED store partition n" when a
 * store partition finished restoring from its changelog, "STREAMS-ERROR ..." for an uncaught
 * exception (the thread is replaced, as a long-running deployment would do).
 *
 * <p>Arguments: bootstrap applicationId stateDir input totalsOut windowedOut threads.
 */
public final class StreamsApp {
  static final String TOTALS = "totals";
  static final String WINDOWED = "windowed";
  static final long WINDOW_MS = 10_000;

  private StreamsApp() {}

  public static void main(String[] args) throws Exception {
    String bootstrap = args[0];
    String appId = args[1];
    String stateDir = args[2];
    String input = args[3];
    String totalsOut = args[4];
    String windowedOut = args[5];
    int threads = Integer.parseInt(args[6]);

    StreamsBuilder sb = new StreamsBuilder();
    KGroupedStream<String, String> byGroup = sb.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
        .groupBy((id, v) -> v.substring(0, v.indexOf(':')), Grouped.with("by-group", Serdes.String(), Serdes.String()));
    byGroup.aggregate(() -> "0,0", (group, v, agg) -> {
      int c = agg.indexOf(',');
      long count = Long.parseLong(agg.substring(0, c)) + 1;
      long sum = Long.parseLong(agg.substring(c + 1)) + Long.parseLong(v.substring(v.indexOf(':') + 1));
      return count + "," + sum;
    }, Materialized.<String, String, KeyValueStore<Bytes, byte[]>>as(TOTALS)
        .withKeySerde(Serdes.String()).withValueSerde(Serdes.String()))
        .toStream().to(totalsOut, Produced.with(Serdes.String(), Serdes.String()));
    byGroup.windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMillis(WINDOW_MS), Duration.ofDays(1)))
        .count(Materialized.<String, Long, WindowStore<Bytes, byte[]>>as(WINDOWED)
            .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long()))
        .toStream()
        .map((wk, n) -> KeyValue.pair(wk.key() + "@" + wk.window().start(), Long.toString(n)))
        .to(windowedOut, Produced.with(Serdes.String(), Serdes.String()));

    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
    // Purge the repartition topic (DeleteRecords) every second instead of every 30 s, so
    // a short test sees its log start offset move.
    p.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, 1000);
    // A SIGKILLed instance leaves the group after 6 s (the brokers' minimum), not 45 s.
    p.put(StreamsConfig.consumerPrefix("session.timeout.ms"), 6000);
    p.put(StreamsConfig.consumerPrefix("heartbeat.interval.ms"), 1500);
    // The broker is killed and restarted under the app: wait for it, do not give up.
    p.put(StreamsConfig.TASK_TIMEOUT_MS_CONFIG, 300_000);
    p.put(StreamsConfig.producerPrefix("delivery.timeout.ms"), 120_000);
    p.put(StreamsConfig.producerPrefix("max.block.ms"), 60_000);

    KafkaStreams ks = new KafkaStreams(sb.build(), p);
    ks.setStateListener((to, from) -> System.out.println("STATE " + from + " " + to));
    ks.setUncaughtExceptionHandler(e -> {
      System.out.println("STREAMS-ERROR " + e);
      e.printStackTrace(System.out);
      return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.REPLACE_THREAD;
    });
    ks.setGlobalStateRestoreListener(new StateRestoreListener() {
      @Override
      public void onRestoreStart(TopicPartition tp, String store, long start, long end) {
        System.out.println("RESTORE-START " + store + " " + tp + " " + start + " " + end);
      }

      @Override
      public void onBatchRestored(TopicPartition tp, String store, long batchEnd, long n) {}

      @Override
      public void onRestoreEnd(TopicPartition tp, String store, long total) {
        System.out.println("RESTORED " + store + " " + tp + " " + total);
      }
    });
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      ks.close(Duration.ofSeconds(20));
      stopped.countDown();
    }));
    ks.start();
    stopped.await();
  }
}
