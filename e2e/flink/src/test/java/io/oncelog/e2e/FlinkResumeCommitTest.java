package io.oncelog.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.flink.connector.kafka.sink.internal.FlinkKafkaInternalProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;

/**
 * What Flink's committer meets when it commits a prepared transaction from a new producer
 * instance (FlinkKafkaInternalProducer.resumeTransaction sets the old producer id and epoch
 * by reflection, without InitProducerId, then commitTransaction sends EndTxn), asked of
 * oncelog and Kafka in the same run:
 * - the transaction is still open (the task failed before the checkpoint's commit), with
 *   and without a broker kill -9 between the prepare and the resumed commit: committed;
 * - the transaction was committed already (the commit notification arrived first, the
 *   restored checkpoint holds it again): both brokers answer PRODUCER_FENCED, which the
 *   connector logs at ERROR ("most likely signals data loss") though nothing is lost.
 * The outcome (exception class, or none) and the read_committed output must be Kafka's.
 */
class FlinkResumeCommitTest {
  @Test
  void resumedCommitAnswersAsKafka() throws Exception {
    Map<String, Map<String, String>> outcomes = new LinkedHashMap<>();
    for (Broker b : Brokers.get()) {
      Map<String, String> o = new LinkedHashMap<>();
      o.put("open", scenario(b, false, false));
      o.put("open+kill9", scenario(b, false, true));
      o.put("committed", scenario(b, true, false));
      outcomes.put(b.name(), o);
      System.out.println("flink resumed commit on " + b + ": " + o);
    }
    assertEquals(outcomes.get("kafka"), outcomes.get("oncelog"));
  }

  /** One case: the resumed commit's exception (or "ok"), and what read_committed shows. */
  private static String scenario(Broker b, boolean committedFirst, boolean kill) throws Exception {
    String topic = Clients.topic("flink-resume");
    String txnId = Clients.topic("flink-resume-tx");
    Clients.createTopic(b, topic, 1, Map.of());
    long pid;
    short epoch;
    try (FlinkKafkaInternalProducer<String, String> first = new FlinkKafkaInternalProducer<>(props(b), txnId)) {
      first.initTransactions();
      first.beginTransaction();
      first.send(new ProducerRecord<>(topic, "k", "v"), null);
      first.flush(); // Flink's precommit at the checkpoint's snapshot
      pid = first.getProducerId();
      epoch = first.getEpoch();
      if (committedFirst) {
        first.commitTransaction();
      }
      first.close(java.time.Duration.ZERO); // the task fails: nothing more from this instance
    }
    if (kill) {
      b.killAndRestart();
    }
    String outcome;
    try (FlinkKafkaInternalProducer<String, String> resumed = new FlinkKafkaInternalProducer<>(props(b), txnId)) {
      resumed.resumeTransaction(pid, epoch);
      try {
        resumed.commitTransaction();
        outcome = "ok";
      } catch (Exception e) {
        outcome = e.getClass().getSimpleName();
      }
    }
    return outcome + ", read_committed " + Clients.readAll(b, topic, "read_committed");
  }

  private static Properties props(Broker b) {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, b.bootstrap());
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    // Longer than a Kafka restart on a loaded machine: otherwise Kafka aborts the open
    // transaction on timeout while it restarts and fences the resumed commit.
    p.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 600000);
    p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 30000);
    return p;
  }
}
