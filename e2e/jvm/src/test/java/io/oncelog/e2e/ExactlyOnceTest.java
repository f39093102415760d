package io.oncelog.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Exactly-once paths of the Java client, against oncelog and against Kafka. */
class ExactlyOnceTest {
  static Stream<Broker> brokers() throws Exception {
    return Brokers.stream();
  }

  /**
   * An idempotent producer keeps sending while the broker is killed with SIGKILL and
   * restarted on the same data: every acknowledged record is in the log once, in order.
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void idempotentProducerAcrossKill9(Broker b) throws Exception {
    String t = Clients.topic("kill9");
    Clients.createTopic(b, t, 1, Map.of());
    int n = 2000;
    List<String> want = new ArrayList<>();
    List<Future<RecordMetadata>> fs = new ArrayList<>();
    try (KafkaProducer<String, String> p = Clients.producer(b, Map.of(
        ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 180000,
        ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000,
        ProducerConfig.MAX_BLOCK_MS_CONFIG, 120000,
        ProducerConfig.LINGER_MS_CONFIG, 5,
        ProducerConfig.RETRY_BACKOFF_MS_CONFIG, 100,
        ProducerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, 1000))) {
      for (int i = 0; i < n; i++) {
        if (i == n / 2) {
          b.killAndRestart();
        }
        String v = "r" + i;
        want.add(v);
        fs.add(p.send(new ProducerRecord<>(t, v)));
        if (i % 100 == 0) {
          Thread.sleep(5);
        }
      }
      for (Future<RecordMetadata> f : fs) {
        f.get(3, TimeUnit.MINUTES);
      }
    }
    assertEquals(want, Clients.readAll(b, t, "read_uncommitted"));
  }

  /**
   * KIP-447 consume-transform-produce: each input is read by a group member, its
   * transform written and its offset committed in one transaction; read_committed sees
   * every input's output once, and the group's committed offset is the input's end.
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void consumeTransformProduce(Broker b) throws Exception {
    String in = Clients.topic("ctp-in");
    String out = Clients.topic("ctp-out");
    Clients.createTopic(b, in, 1, Map.of());
    Clients.createTopic(b, out, 1, Map.of());
    int n = 300;
    List<String> want = new ArrayList<>();
    try (KafkaProducer<String, String> p = Clients.producer(b, Map.of())) {
      for (int i = 0; i < n; i++) {
        p.send(new ProducerRecord<>(in, "in" + i));
        want.add("IN" + i);
      }
      p.flush();
    }
    String group = Clients.topic("ctp-group");
    try (KafkaConsumer<String, String> c = Clients.consumer(b, Map.of(
            ConsumerConfig.GROUP_ID_CONFIG, group,
            ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed",
            ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 50));
        KafkaProducer<String, String> p = Clients.producer(b, Map.of(
            ProducerConfig.TRANSACTIONAL_ID_CONFIG, Clients.topic("ctp-tx")))) {
      p.initTransactions();
      c.subscribe(List.of(in));
      int done = 0;
      long deadline = System.nanoTime() + Duration.ofMinutes(2).toNanos();
      while (done < n && System.nanoTime() < deadline) {
        ConsumerRecords<String, String> recs = c.poll(Duration.ofMillis(500));
        if (recs.isEmpty()) {
          continue;
        }
        p.beginTransaction();
        Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
        for (ConsumerRecord<String, String> r : recs) {
          p.send(new ProducerRecord<>(out, r.value().toUpperCase()));
          offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
          done++;
        }
        p.sendOffsetsToTransaction(offsets, c.groupMetadata());
        p.commitTransaction();
      }
    }
    assertEquals(want, Clients.readAll(b, out, "read_committed"));
    try (Admin a = b.admin()) {
      Map<TopicPartition, OffsetAndMetadata> committed =
          a.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
      assertEquals(n, committed.get(new TopicPartition(in, 0)).offset());
    }
  }
}
