package io.oncelog.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The 3-node Kafka fixture (replication factor 3, min.insync.replicas=2): an idempotent
 * acks=all producer keeps every record, once and in order, across a SIGKILL of one node.
 * Kafka only: oncelog is a single node.
 */
class KafkaClusterTest {
  static KafkaCluster cluster;

  @BeforeAll
  static void start() throws Exception {
    cluster = KafkaCluster.start(3);
  }

  @AfterAll
  static void stop() throws Exception {
    if (cluster != null) {
      cluster.close();
    }
  }

  @Test
  void idempotentProducerAcrossOneNodeKill() throws Exception {
    String t = Clients.topic("rf3");
    try (Admin a = cluster.admin()) {
      a.createTopics(List.of(new NewTopic(t, 1, (short) 3))).all().get(60, TimeUnit.SECONDS);
    }
    List<String> want = new ArrayList<>();
    try (KafkaProducer<String, String> p = Clients.producer(cluster, Map.of(
        ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 120000, ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000))) {
      for (int i = 0; i < 400; i++) {
        if (i == 200) {
          p.flush();
          cluster.kill(1);
        }
        want.add("r" + i);
        p.send(new ProducerRecord<>(t, "r" + i));
      }
      p.flush();
    }
    assertEquals(want, Clients.readAll(cluster, t, "read_uncommitted"));
  }
}
