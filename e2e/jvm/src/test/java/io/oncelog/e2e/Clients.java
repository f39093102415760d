package io.oncelog.e2e;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/** Java-client helpers shared by the tests; every test uses its own topic. */
final class Clients {
  private Clients() {}

  static String topic(String prefix) {
    return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
  }

  static void createTopic(Broker b, String topic, int partitions, Map<String, String> configs) throws Exception {
    try (Admin a = b.admin()) {
      a.createTopics(List.of(new NewTopic(topic, partitions, (short) 1).configs(configs))).all().get(60, java.util.concurrent.TimeUnit.SECONDS);
    }
  }

  static Properties producerProps(Broker b) {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, b.bootstrap());
    p.put(ProducerConfig.ACKS_CONFIG, "all");
    p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 30000);
    return p;
  }

  static KafkaProducer<String, String> producer(Broker b, Map<String, Object> extra) {
    Properties p = producerProps(b);
    p.putAll(extra);
    return new KafkaProducer<>(p);
  }

  static KafkaConsumer<String, String> consumer(Broker b, Map<String, Object> extra) {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, b.bootstrap());
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
    p.putAll(extra);
    return new KafkaConsumer<>(p);
  }

  /**
   * Waits (up to 10 s) for the last stable offset to reach the log end: on both brokers
   * the commit or abort markers are written after EndTxn is answered, so right after
   * commitTransaction returns a read_committed reader may not see the transaction yet.
   * Returns the last stable offset then (a transaction deliberately left open keeps it
   * below the log end; the caller reads up to it).
   */
  private static long awaitStable(Broker b, TopicPartition tp, long lso) {
    try (KafkaConsumer<String, String> u = consumer(b, Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_uncommitted"));
        KafkaConsumer<String, String> c = consumer(b, Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed"))) {
      long leo = u.endOffsets(List.of(tp)).get(tp);
      long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
      while (lso < leo && System.nanoTime() < deadline) {
        try {
          Thread.sleep(20);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          break;
        }
        lso = c.endOffsets(List.of(tp)).get(tp);
      }
      return lso;
    }
  }

  /**
   * Reads partition 0 of topic from the start until want records arrived or the end
   * offset (as this isolation level sees it) is reached, whichever is first.
   */
  static List<String> readAll(Broker b, String topic, String isolation) {
    try (KafkaConsumer<String, String> c = consumer(b, Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation))) {
      TopicPartition tp = new TopicPartition(topic, 0);
      c.assign(List.of(tp));
      c.seekToBeginning(List.of(tp));
      long end = c.endOffsets(List.of(tp)).get(tp);
      if (isolation.equals("read_committed")) {
        end = awaitStable(b, tp, end);
      }
      List<String> out = new ArrayList<>();
      long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
      while (c.position(tp) < end && System.nanoTime() < deadline) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
          out.add(r.value());
        }
      }
      return out;
    }
  }
}
