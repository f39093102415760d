package io.oncelog.e2e;

import java.time.Duration;
import java.util.stream.Stream;
import org.apache.flink.connector.kafka.sink.TransactionNamingStrategy;
import org.apache.flink.runtime.testutils.MiniClusterResourceConfiguration;
import org.apache.flink.test.junit5.MiniClusterExtension;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * FlinkExactlyOnceTest's job for longer, against oncelog and Kafka, with each of the
 * connector's transaction-naming strategies: a feeder writes the input at a steady rate
 * while the job runs, the broker is killed with SIGKILL and restarted every
 * e2e.soak.flink.killEverySeconds (60) and a task fails every
 * e2e.soak.flink.failEverySeconds (90), for e2e.soak.flink.minutes (10) at
 * e2e.soak.flink.rate records/s (200). The anomalies of the read_committed output are
 * counted with the chaos harness's classes and must all be 0, and no transaction may be
 * left open. Tagged "soak": mvn -B -f e2e verify -pl flink -am -Psoak runs it; CI does not.
 */
@Tag("soak")
class FlinkSoakTest {
  @RegisterExtension
  static final MiniClusterExtension FLINK = new MiniClusterExtension(new MiniClusterResourceConfiguration.Builder()
      .setNumberTaskManagers(1).setNumberSlotsPerTaskManager(FlinkExactlyOnceTest.PARALLELISM).build());

  static Stream<Arguments> brokersAndStrategies() throws Exception {
    return FlinkExactlyOnceTest.brokersAndStrategies();
  }

  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("brokersAndStrategies")
  void repeatedKill9AndTaskFailures(Broker b, TransactionNamingStrategy naming) throws Exception {
    int minutes = Integer.getInteger("e2e.soak.flink.minutes", 10);
    int rate = Integer.getInteger("e2e.soak.flink.rate", 200);
    FlinkExactlyOnceTest.Run r = new FlinkExactlyOnceTest.Run(b, naming, minutes * 60 * rate);
    r.feedMillis = minutes * 60_000L;
    r.killEvery = Duration.ofSeconds(Integer.getInteger("e2e.soak.flink.killEverySeconds", 60));
    r.failEvery = Duration.ofSeconds(Integer.getInteger("e2e.soak.flink.failEverySeconds", 90));
    r.limit = Duration.ofMinutes(minutes + 5);
    r.execute().assertExactlyOnce();
  }
}
