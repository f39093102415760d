package io.oncelog.e2e;

import java.util.List;
import java.util.stream.Stream;

/**
 * One oncelog and one Kafka broker per test JVM (surefire runs every test class in one
 * fork), started on first use and stopped cleanly (SIGTERM, then SIGKILL after 20 s) when
 * the JVM exits.
 */
public final class Brokers {
  private static List<Broker> all;

  private Brokers() {}

  static synchronized List<Broker> get() throws Exception {
    if (all == null) {
      Broker o = OncelogBroker.start();
      Broker k = KafkaBroker.start();
      all = List.of(o, k);
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
