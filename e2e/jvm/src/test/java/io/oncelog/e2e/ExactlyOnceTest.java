package io.oncelog.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
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
import org.junit.jupiter.api.Test;
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
    List<String> want = produceAcrossKills(b, t, 2000, 1, Map.of());
    assertEquals(want, Clients.readAll(b, t, "read_uncommitted"));
  }

  static Stream<String> kinds() {
    return Stream.of("oncelog", "kafka");
  }

  /**
   * The same producer (acks=all, max.in.flight 5, small batches so there are many
   * Produce requests) through the fault proxy, which loses 5 % of Produce responses
   * and closes the connection each time (a lost ack), and across a kill -9 of the
   * broker behind it: every record once and in order, and the proxy did drop acks.
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("kinds")
  void idempotentProducerThroughLostAcksAndKill9(String kind) throws Exception {
    throughLostAcksAndKills(kind, 3000, 1);
  }

  /**
   * Starts a broker of that kind behind a fault proxy losing 5 % of Produce responses,
   * sends n records across the given number of kill -9s and checks the log holds each
   * once and in order, and that the proxy did drop acknowledgements.
   */
  static void throughLostAcksAndKills(String kind, int n, int kills) throws Exception {
    Broker b = kind.equals("oncelog") ? OncelogBroker.startBehindProxy(0.05, 7) : KafkaBroker.startBehindProxy(0.05, 7);
    FaultProxy proxy = b instanceof OncelogBroker o ? o.proxy() : ((KafkaBroker) b).proxy();
    try {
      String t = Clients.topic("lostacks");
      Clients.createTopic(b, t, 1, Map.of());
      List<String> want = produceAcrossKills(b, t, n, kills, Map.of(
          ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 5,
          ProducerConfig.BATCH_SIZE_CONFIG, 256,
          ProducerConfig.LINGER_MS_CONFIG, 1));
      List<String> got = Clients.readAll(b, t, "read_uncommitted");
      if (kind.equals("kafka")) {
        // Kafka (4.4, one node) can write a retried window twice here: after a kill -9 it
        // rebuilds producer state from a snapshot that keeps only each producer's last
        // batch, so a resent older in-flight batch is OUT_OF_ORDER_SEQUENCE_NUMBER, and
        // the Java client bumps the epoch and sends it again (e2e/jvm/README.md). oncelog
        // must not; for Kafka the test only asks that nothing is lost or reordered.
        List<String> firsts = new ArrayList<>(new java.util.LinkedHashSet<>(got));
        System.out.println("throughLostAcksAndKills kafka n=" + n + " kills=" + kills + ": "
            + (got.size() - firsts.size()) + " duplicate records");
        assertEquals(want, firsts, "kafka: every record, first copies in order");
      } else {
        assertEquals(want.size(), got.size(), kind + ": records in the log (duplicates or losses)");
        assertEquals(want, got);
      }
    } finally {
      b.close();
    }
    System.out.println("throughLostAcksAndKills " + kind + " n=" + n + " kills=" + kills + ": proxy dropped "
        + proxy.dropped() + " Produce responses");
    assertTrue(proxy.dropped() > 0, "the proxy dropped no Produce response: the test tested nothing");
  }

  /**
   * Sends n records with an idempotent producer, killing (-9) and restarting the broker
   * kills times at even intervals, and waits for every acknowledgement; returns the
   * values in send order.
   */
  static List<String> produceAcrossKills(Broker b, String t, int n, int kills, Map<String, Object> extra) throws Exception {
    List<String> want = new ArrayList<>();
    List<Future<RecordMetadata>> fs = new ArrayList<>();
    Map<String, Object> cfg = new HashMap<>(Map.of(
        ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 180000,
        ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000,
        ProducerConfig.MAX_BLOCK_MS_CONFIG, 120000,
        ProducerConfig.LINGER_MS_CONFIG, 5,
        ProducerConfig.RETRY_BACKOFF_MS_CONFIG, 100,
        ProducerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, 1000));
    cfg.putAll(extra);
    try (KafkaProducer<String, String> p = Clients.producer(b, cfg)) {
      for (int i = 0; i < n; i++) {
        if (i > 0 && i % (n / (kills + 1)) == 0 && i / (n / (kills + 1)) <= kills) {
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
    return want;
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

  /**
   * A transactional producer that stalls inside a transaction (writes, then neither
   * commits nor aborts) past its transaction.timeout.ms: the broker aborts the
   * transaction, so read_committed readers move past the record without returning it,
   * the stalled producer's late commit fails, and a new producer with the same
   * transactional.id initialises and commits without waiting. Both brokers must refuse
   * the late commit with the same exception class.
   */
  @Test
  void transactionTimeoutAbortsStalledProducer() throws Exception {
    Map<String, String> seen = new LinkedHashMap<>();
    for (Broker b : Brokers.get()) {
      seen.put(b.name(), stalledScenario(b));
    }
    System.out.println("transactionTimeoutAbortsStalledProducer: late commit of the stalled producer failed with " + seen);
    assertEquals(seen.get("kafka"), seen.get("oncelog"), "oncelog must refuse a timed-out producer's commit as Kafka does");
  }

  private static String stalledScenario(Broker b) throws Exception {
    String t = Clients.topic("stalled");
    Clients.createTopic(b, t, 1, Map.of());
    String txid = Clients.topic("stalled-tx");
    TopicPartition tp = new TopicPartition(t, 0);
    String late;
    try (KafkaProducer<String, String> stalled = Clients.producer(b, Map.of(
        ProducerConfig.TRANSACTIONAL_ID_CONFIG, txid, ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 3000))) {
      stalled.initTransactions();
      stalled.beginTransaction();
      stalled.send(new ProducerRecord<>(t, "stalled")).get();
      long start = System.nanoTime();
      // The abort marker moves the last stable offset past the record: end offsets as
      // read_committed sees them reach 2 (record + marker). No abort: fail after 60 s.
      try (KafkaConsumer<String, String> c = Clients.consumer(b, Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed"))) {
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (c.endOffsets(List.of(tp)).get(tp) < 2 && System.nanoTime() < deadline) {
          Thread.sleep(200);
        }
        assertEquals(2, c.endOffsets(List.of(tp)).get(tp), b + ": the stalled transaction was not aborted");
      }
      System.out.println("transactionTimeoutAbortsStalledProducer " + b + ": aborted after "
          + Duration.ofNanos(System.nanoTime() - start).toMillis() + " ms (timeout 3000 ms)");
      assertEquals(List.of(), Clients.readAll(b, t, "read_committed"), b.name());
      assertEquals(List.of("stalled"), Clients.readAll(b, t, "read_uncommitted"), b.name());
      Exception e = org.junit.jupiter.api.Assertions.assertThrows(Exception.class, stalled::commitTransaction);
      late = e.getClass().getName();
    }
    try (KafkaProducer<String, String> next = Clients.producer(b, Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txid))) {
      next.initTransactions();
      next.beginTransaction();
      next.send(new ProducerRecord<>(t, "next"));
      next.commitTransaction();
    }
    assertEquals(List.of("next"), Clients.readAll(b, t, "read_committed"), b.name());
    return late;
  }
}
