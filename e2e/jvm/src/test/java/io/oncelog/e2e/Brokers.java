package io.oncelog.e2e;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/**
 * One oncelog and one Kafka broker per test JVM (surefire runs every test class in one
 * fork), started on first use and stopped cleanly (SIGTERM, then SIGKILL after 20 s) when
 * the JVM exits. -De2e.brokers=oncelog or -De2e.brokers=kafka runs against one only.
 */
public final class Brokers {
  private static List<Broker> all;

  private Brokers() {}

  static synchronized List<Broker> get() throws Exception {
    if (all == null) {
      String only = System.getProperty("e2e.brokers", "oncelog,kafka");
      List<Broker> started = new ArrayList<>();
      if (only.contains("oncelog")) {
        started.add(OncelogBroker.start());
      }
      if (only.contains("kafka")) {
        started.add(KafkaBroker.start());
      }
      all = List.copyOf(started);
      Runtime.getRuntime().addShutdownHook(new Thread(() -> {
        for (Broker b : all) {
          try {
            b.close();
          } catch (Exception e) {
            System.err.println("stopping " + b + ": " + e);
          }
        }
      }));
    }
    return all;
  }

  static Stream<Broker> stream() throws Exception {
    return get().stream();
  }
}
