package io.oncelog.e2e;

import java.util.stream.Stream;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The longer variants of the exactly-once scenarios, against oncelog and Kafka. Tagged
 * "soak": the default build excludes them; `mvn -B -f e2e/jvm verify -Psoak` runs only
 * these. Sizes: -De2e.soak.records (default 30000, 5 kills) and -De2e.soak.inputs
 * (default 15000); the Streams soak: -De2e.soak.streams.seconds (default 600) and
 * -De2e.soak.streams.records (per cycle, default 2000).
 */
@Tag("soak")
class SoakTest {
  static Stream<Broker> brokers() throws Exception {
    return Brokers.stream();
  }

  static Stream<String> kinds() {
    return Stream.of("oncelog", "kafka");
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("kinds")
  void idempotentProducerThroughLostAcksAndRepeatedKill9(String kind) throws Exception {
    ExactlyOnceTest.throughLostAcksAndKills(kind, Integer.getInteger("e2e.soak.records", 30000), 5);
  }

  /**
   * StreamsEosTest's exactly_once_v2 pipeline for -De2e.soak.streams.seconds (default 600):
   * cycles of -De2e.soak.streams.records records (default 2000), each with a broker kill -9
   * and a Streams instance SIGKILL and replacement; the anomalies (lost, duplicated, wrong
   * sum, window counts, regressions) are counted and must be 0.
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void streamsExactlyOnceV2UnderRepeatedKills(Broker b) throws Exception {
    StreamsEosTest.run(b, Integer.getInteger("e2e.soak.streams.records", 2000), 1,
        Integer.getInteger("e2e.soak.streams.seconds", 600)).assertExact();
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void consumeTransformProduceUnderChurn(Broker b) throws Exception {
    ChurnTest.run(b, Integer.getInteger("e2e.soak.inputs", 15000));
  }
}
