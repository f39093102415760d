package io.oncelog.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.stream.Stream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Each test runs against oncelog and against Apache Kafka and asserts the answer Kafka
 * gives: the same records back, the same exception class for the same misuse.
 */
class CompatTest {
  static Stream<Broker> brokers() throws Exception {
    return Brokers.stream();
  }

  static Stream<org.junit.jupiter.params.provider.Arguments> brokersAndCodecs() throws Exception {
    List<org.junit.jupiter.params.provider.Arguments> out = new ArrayList<>();
    for (Broker b : Brokers.get()) {
      for (String codec : List.of("none", "gzip", "snappy", "lz4", "zstd")) {
        out.add(org.junit.jupiter.params.provider.Arguments.of(b, codec));
      }
    }
    return out.stream();
  }

  private static List<String> values(String prefix, int n) {
    List<String> v = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      v.add(prefix + i);
    }
    return v;
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void idempotentProduceConsumeRoundTrip(Broker b) throws Exception {
    String t = Clients.topic("roundtrip");
    Clients.createTopic(b, t, 1, Map.of());
    List<String> want = values("v", 200);
    try (KafkaProducer<String, String> p = Clients.producer(b, Map.of(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 5))) {
      List<Future<RecordMetadata>> fs = new ArrayList<>();
      for (String v : want) {
        fs.add(p.send(new ProducerRecord<>(t, "k", v)));
      }
      for (int i = 0; i < fs.size(); i++) {
        assertEquals(i, fs.get(i).get().offset());
      }
    }
    assertEquals(want, Clients.readAll(b, t, "read_uncommitted"));
  }

  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("brokersAndCodecs")
  void compressionCodecs(Broker b, String codec) throws Exception {
    String t = Clients.topic("codec-" + codec);
    Clients.createTopic(b, t, 1, Map.of());
    List<String> want = values(codec + "-value-that-compresses-well-", 50);
    try (KafkaProducer<String, String> p = Clients.producer(b, Map.of(
        ProducerConfig.COMPRESSION_TYPE_CONFIG, codec, ProducerConfig.LINGER_MS_CONFIG, 20))) {
      for (String v : want) {
        p.send(new ProducerRecord<>(t, v));
      }
      p.flush();
    }
    assertEquals(want, Clients.readAll(b, t, "read_uncommitted"));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void recordTooLargePastMaxMessageBytes(Broker b) throws Exception {
    String t = Clients.topic("toolarge");
    Clients.createTopic(b, t, 1, Map.of("max.message.bytes", "10000"));
    try (KafkaProducer<String, String> p = Clients.producer(b, Map.of())) {
      p.send(new ProducerRecord<>(t, "x".repeat(5000))).get();
      ExecutionException e = assertThrows(ExecutionException.class,
          () -> p.send(new ProducerRecord<>(t, "y".repeat(20000))).get());
      assertInstanceOf(RecordTooLargeException.class, e.getCause());
    }
    assertEquals(1, Clients.readAll(b, t, "read_uncommitted").size());
  }

  /**
   * A record just under a raised max.message.bytes (2 MiB) is stored and read back
   * whole; one just over it is RecordTooLargeException, from the broker (the producer's
   * max.request.size is raised past it).
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void largeRecordsUpToMaxMessageBytes(Broker b) throws Exception {
    String t = Clients.topic("large");
    int max = 2 * 1024 * 1024;
    Clients.createTopic(b, t, 1, Map.of("max.message.bytes", String.valueOf(max)));
    String big = "b".repeat(max - 1024);
    try (KafkaProducer<String, String> p = Clients.producer(b, Map.of(
        ProducerConfig.MAX_REQUEST_SIZE_CONFIG, 4 * max, ProducerConfig.BATCH_SIZE_CONFIG, 16384))) {
      assertEquals(0, p.send(new ProducerRecord<>(t, big)).get().offset());
      ExecutionException e = assertThrows(ExecutionException.class,
          () -> p.send(new ProducerRecord<>(t, "c".repeat(max + 1024))).get());
      assertInstanceOf(RecordTooLargeException.class, e.getCause());
    }
    List<String> got = Clients.readAll(b, t, "read_uncommitted");
    assertEquals(1, got.size());
    assertEquals(big, got.get(0));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void unknownTopicWithAutoCreateOff(Broker b) throws Exception {
    String t = Clients.topic("missing");
    try (Admin a = b.admin()) {
      ExecutionException e = assertThrows(ExecutionException.class,
          () -> a.describeTopics(List.of(t)).allTopicNames().get());
      assertInstanceOf(UnknownTopicOrPartitionException.class, e.getCause());
    }
    try (KafkaProducer<String, String> p = Clients.producer(b, Map.of(ProducerConfig.MAX_BLOCK_MS_CONFIG, 3000))) {
      ExecutionException e = assertThrows(ExecutionException.class,
          () -> p.send(new ProducerRecord<>(t, "v")).get());
      // Kafka's producer waits for the topic to appear in metadata, then times out.
      assertInstanceOf(TimeoutException.class, e.getCause());
    }
    try (Admin a = b.admin()) {
      assertEquals(false, a.listTopics().names().get().contains(t), "the topic must not have been auto-created");
    }
  }

  /**
   * A second producer with the same transactional.id fences the first (zombie fencing).
   * The zombie's next produce and its commit each fail; oncelog must fail them with the
   * same exception classes Kafka does, and only the fresh producer's record is committed.
   */
  @Test
  void fencedTransactionalProducer() throws Exception {
    Map<String, List<String>> seen = new java.util.LinkedHashMap<>();
    for (Broker b : Brokers.get()) {
      seen.put(b.name(), fencedScenario(b));
    }
    System.out.println("fencedTransactionalProducer: exceptions seen " + seen);
    List<String> kafka = seen.get("kafka");
    // With transaction.version 2 (Kafka 4's default) the zombie's produce is refused
    // with INVALID_PRODUCER_EPOCH and its EndTxn with PRODUCER_FENCED.
    assertEquals(InvalidProducerEpochException.class.getName(), kafka.get(0), "kafka: " + kafka);
    assertEquals(kafka, seen.get("oncelog"), "oncelog must fail a fenced producer as Kafka does");
  }

  private static List<String> fencedScenario(Broker b) throws Exception {
    String t = Clients.topic("fenced");
    Clients.createTopic(b, t, 1, Map.of());
    String txid = Clients.topic("txid");
    List<String> errors = new ArrayList<>();
    try (KafkaProducer<String, String> zombie = Clients.producer(b, Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txid))) {
      zombie.initTransactions();
      zombie.beginTransaction();
      zombie.send(new ProducerRecord<>(t, "zombie")).get();
      try (KafkaProducer<String, String> fresh = Clients.producer(b, Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txid))) {
        fresh.initTransactions();
        fresh.beginTransaction();
        fresh.send(new ProducerRecord<>(t, "fresh")).get();
        ExecutionException send = assertThrows(ExecutionException.class,
            () -> zombie.send(new ProducerRecord<>(t, "zombie2")).get());
        errors.add(send.getCause().getClass().getName());
        Exception commit = assertThrows(Exception.class, zombie::commitTransaction);
        errors.add(commit.getClass().getName());
        errors.add(fencedIn(commit) != null ? "fenced-in-chain" : "no-fenced-in-chain");
        fresh.commitTransaction();
      }
    }
    assertEquals(List.of("fresh"), Clients.readAll(b, t, "read_committed"), b.name());
    return errors;
  }

  private static ProducerFencedException fencedIn(Throwable e) {
    for (Throwable c = e; c != null; c = c.getCause()) {
      if (c instanceof ProducerFencedException f) {
        return f;
      }
    }
    return null;
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void abortedTransactionInvisibleToReadCommitted(Broker b) throws Exception {
    String t = Clients.topic("aborted");
    Clients.createTopic(b, t, 1, Map.of());
    try (KafkaProducer<String, String> p = Clients.producer(b, Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, Clients.topic("tx")))) {
      p.initTransactions();
      p.beginTransaction();
      p.send(new ProducerRecord<>(t, "a1"));
      p.send(new ProducerRecord<>(t, "a2"));
      p.flush();
      p.abortTransaction();
      p.beginTransaction();
      p.send(new ProducerRecord<>(t, "c1"));
      p.commitTransaction();
    }
    assertEquals(List.of("c1"), Clients.readAll(b, t, "read_committed"));
    assertEquals(List.of("a1", "a2", "c1"), Clients.readAll(b, t, "read_uncommitted"));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void offsetsForTimes(Broker b) throws Exception {
    String t = Clients.topic("times");
    Clients.createTopic(b, t, 1, Map.of());
    long base = System.currentTimeMillis() - 60_000;
    try (KafkaProducer<String, String> p = Clients.producer(b, Map.of())) {
      for (int i = 0; i < 3; i++) {
        p.send(new ProducerRecord<>(t, 0, base + i * 1000L, null, "t" + i)).get();
      }
    }
    TopicPartition tp = new TopicPartition(t, 0);
    try (KafkaConsumer<String, String> c = Clients.consumer(b, Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed"))) {
      Map<TopicPartition, OffsetAndTimestamp> got = c.offsetsForTimes(Map.of(tp, base + 1500));
      assertEquals(List.of(2L, base + 2000), List.of(got.get(tp).offset(), got.get(tp).timestamp()));
      got = c.offsetsForTimes(Map.of(tp, base));
      assertEquals(List.of(0L, base), List.of(got.get(tp).offset(), got.get(tp).timestamp()));
      got = c.offsetsForTimes(Map.of(tp, base + 10_000));
      assertNull(got.get(tp), "a timestamp past the last record has no offset");
      // Seek by timestamp: position at the offset found, then read from there.
      c.assign(List.of(tp));
      c.seek(tp, c.offsetsForTimes(Map.of(tp, base + 500)).get(tp).offset());
      List<String> read = new ArrayList<>();
      long deadline = System.nanoTime() + java.time.Duration.ofSeconds(30).toNanos();
      while (read.size() < 2 && System.nanoTime() < deadline) {
        c.poll(java.time.Duration.ofMillis(200)).forEach(r -> read.add(r.value()));
      }
      assertEquals(List.of("t1", "t2"), read);
    }
  }
}
