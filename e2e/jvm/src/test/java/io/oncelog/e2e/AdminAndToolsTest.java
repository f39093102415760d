package io.oncelog.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** The Java Admin client, against oncelog and against Kafka (the CLI tools: CliToolsTest). */
class AdminAndToolsTest {
  static Stream<Broker> brokers() throws Exception {
    return Brokers.stream();
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void adminTopicsConfigsDeleteRecordsOffsetsProducers(Broker b) throws Exception {
    String t = Clients.topic("admin");
    Clients.createTopic(b, t, 3, Map.of());
    TopicPartition tp = new TopicPartition(t, 0);
    try (Admin a = b.admin()) {
      assertEquals(3, a.describeTopics(List.of(t)).allTopicNames().get(30, TimeUnit.SECONDS).get(t).partitions().size());
      ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, t);
      a.incrementalAlterConfigs(Map.of(res, List.of(new AlterConfigOp(
          new ConfigEntry("retention.ms", "12345678"), AlterConfigOp.OpType.SET)))).all().get(30, TimeUnit.SECONDS);
      // Kafka applies an altered config through its metadata log, so a describe right
      // after the alter may still show the old value: poll for a while.
      String got = null;
      for (int i = 0; i < 100 && !"12345678".equals(got); i++) {
        got = a.describeConfigs(List.of(res)).all().get(30, TimeUnit.SECONDS).get(res).get("retention.ms").value();
        if (!"12345678".equals(got)) {
          Thread.sleep(100);
        }
      }
      assertEquals("12345678", got);

      try (KafkaProducer<String, String> p = Clients.producer(b, Map.of())) {
        for (int i = 0; i < 10; i++) {
          p.send(new ProducerRecord<>(t, 0, null, "d" + i));
        }
        p.flush();
      }
      assertEquals(5, a.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(5))).lowWatermarks().get(tp).get(30, TimeUnit.SECONDS).lowWatermark());
      assertEquals(5, a.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp).get(30, TimeUnit.SECONDS).offset());
      assertEquals(10, a.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp).get(30, TimeUnit.SECONDS).offset());
      List<ProducerState> ps = a.describeProducers(List.of(tp)).partitionResult(tp).get(30, TimeUnit.SECONDS).activeProducers();
      assertEquals(1, ps.size(), "one idempotent producer wrote partition 0: " + ps);
      assertEquals(9, ps.get(0).lastSequence());
    }
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void adminListDescribeAndFenceTransactions(Broker b) throws Exception {
    String t = Clients.topic("admintx");
    Clients.createTopic(b, t, 1, Map.of());
    String txid = Clients.topic("admintx-id");
    try (Admin a = b.admin();
        KafkaProducer<String, String> p = Clients.producer(b, Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txid))) {
      p.initTransactions();
      p.beginTransaction();
      p.send(new ProducerRecord<>(t, "open")).get();
      List<String> ids = a.listTransactions().all().get(30, TimeUnit.SECONDS).stream()
          .map(TransactionListing::transactionalId).toList();
      assertTrue(ids.contains(txid), "listTransactions " + ids);
      var d = a.describeTransactions(List.of(txid)).description(txid).get(30, TimeUnit.SECONDS);
      assertEquals("ONGOING", d.state().name());
      assertEquals(List.of(new TopicPartition(t, 0)), List.copyOf(d.topicPartitions()));
      a.fenceProducers(List.of(txid)).all().get(30, TimeUnit.SECONDS);
      assertTrue(Clients.readAll(b, t, "read_committed").isEmpty());
    }
  }
}
