package io.oncelog.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ListOffsetsOptions;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.admin.TransactionState;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Kafka Connect with exactly-once source support (KIP-618), against oncelog and against
 * Kafka: a distributed worker in a child JVM creates its compacted internal topics; the
 * CountingSource connector writes N records through per-poll transactions while the
 * broker is kill -9'd and restarted and the worker is SIGKILLed and restarted; the output,
 * read read_committed, holds each record exactly once; the RecordingSink connector reads
 * it read_committed and commits its group's offsets to the end.
 */
class ConnectTest {
  static final int RECORDS = Integer.getInteger("e2e.connect.records", 15000);

  static Stream<Broker> brokers() throws Exception {
    return Brokers.stream();
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void exactlyOnceSourceAcrossBrokerAndWorkerKills(Broker b) throws Exception {
    long t0 = System.nanoTime();
    String group = Clients.topic("connect");
    String out = group + "-out";
    Path dir = Broker.targetDir().resolve("connect").resolve(b.name() + "-" + group);
    Files.createDirectories(dir);
    Path gate = dir.resolve("gate");
    Path sinkFile = dir.resolve("sink.txt");
    Clients.createTopic(b, out, 1, Map.of());
    ConnectWorker w = ConnectWorker.start(b, dir, group, Map.of());
    double workerStart = secs(t0);
    log(b, "worker up: %.1f s", workerStart);
    try {
      checkInternalTopics(b, w);

      int n = RECORDS;
      int phase1 = n / 3;
      Files.writeString(gate, Integer.toString(phase1));
      w.putConnector("sink", Map.of(
          "connector.class", "io.oncelog.e2e.connect.RecordingSinkConnector",
          "tasks.max", "1",
          "topics", out,
          "file", sinkFile.toString()));
      long tSource = System.nanoTime();
      w.putConnector("source", Map.of(
          "connector.class", "io.oncelog.e2e.connect.CountingSourceConnector",
          "tasks.max", "1",
          "topic", out,
          "records", Integer.toString(n),
          // 1,000 records a poll, so one transaction per 1,000: with many tiny transactions
          // the Java client (4.4) can send EndTxn before the last transaction's Produce
          // (its Sender reads "any incomplete batches?" before it takes the next request),
          // which a fast broker answers INVALID_TXN_STATE (e2e/jvm/README.md, Connect).
          "records.per.poll", "1000",
          "gate.file", gate.toString(),
          // The worker refuses to start the connector unless it can give exactly-once.
          "exactly.once.support", "required",
          "transaction.boundary", "poll",
          // A SIGKILLed worker leaves its task's transaction open; the restarted worker
          // reads the offsets topic up to its read_uncommitted end before it does anything,
          // so it waits for the broker to abort that transaction: 10 s, not the default 60 s.
          "producer.override.transaction.timeout.ms", "10000"));
      w.awaitRunning("source", Duration.ofSeconds(60));
      w.awaitRunning("sink", Duration.ofSeconds(60));

      // Phase 1, no faults: source -> broker -> sink for the first third, timed from the
      // connector's creation and from the first record at the sink.
      awaitSinkLines(sinkFile, 1, Duration.ofSeconds(90), w);
      long tFirst = System.nanoTime();
      awaitSinkLines(sinkFile, phase1, Duration.ofSeconds(90), w);
      double phase1Secs = secs(tSource);
      double steadySecs = secs(tFirst);
      log(b, "phase 1: %d records source->sink in %.1f s from the connector's creation, %.2f s from the first"
          + " record at the sink (%.0f records/s)", phase1, phase1Secs, steadySecs, (phase1 - 1) / steadySecs);

      // Phase 2: the rest, with a kill -9 of the broker while the source writes, then a
      // SIGKILL of the worker (while it writes or just after), with 3,000 records still
      // held back by the gate, so that the restarted worker has to resume the source.
      long tFaults = System.nanoTime();
      int held = n - 3000;
      Files.writeString(gate, Integer.toString(held));
      awaitSinkLines(sinkFile, phase1 + 1500, Duration.ofSeconds(90), w);
      long tKill = System.nanoTime();
      b.killAndRestart();
      double brokerRestart = secs(tKill);
      int atBrokerUp = distinctSinkLines(sinkFile);
      log(b, "broker kill -9 and restart: %.1f s, sink at %d", brokerRestart, atBrokerUp);
      try {
        awaitSinkLines(sinkFile, Math.min(atBrokerUp + 1500, held - 1000), Duration.ofSeconds(120), w);
      } catch (AssertionError stalled) {
        if (!b.toString().equals("kafka")) {
          throw stalled;
        }
        // Kafka's single node does not always come back whole from a kill -9 (its
        // re-registration is refused until the old session expires and leaders are then
        // re-elected uncleanly; README, "Differences found"): the pipeline on Kafka is the
        // reference only while Kafka recovers. Seen once in CI: the source connector
        // UNASSIGNED for 2 minutes after Kafka's restart. oncelog must always recover.
        org.junit.jupiter.api.Assumptions.abort("Kafka did not recover the Connect pipeline within 2 min"
            + " of its kill -9; not asserted on Kafka: " + stalled.getMessage());
      }
      double brokerOutage = secs(tKill);
      tKill = System.nanoTime();
      w.kill();
      TopicPartition tp = new TopicPartition(out, 0);
      long stableAtKill = stableEnd(b, tp);
      int atWorkerKill = distinctSinkLines(sinkFile);
      String zombie = describeTaskTransaction(b, group + "-source-0");
      w.restart();
      double workerRestart = secs(tKill);
      log(b, "worker SIGKILL at sink %d (task transaction then: %s) and restart: %.1f s", atWorkerKill, zombie, workerRestart);
      Files.writeString(gate, Integer.toString(n));
      awaitStableEndPast(b, tp, stableAtKill, Duration.ofSeconds(120));
      double sourceOutage = secs(tKill);
      awaitSinkLines(sinkFile, atWorkerKill + 1, Duration.ofSeconds(120), w);
      double workerOutage = secs(tKill);
      log(b, "after the worker kill the source committed again after %.1f s, the sink moved after %.1f s", sourceOutage, workerOutage);
      awaitSinkLines(sinkFile, n, Duration.ofSeconds(120), w);
      double phase2Secs = secs(tFaults);
      log(b, "phase 2 done: %.1f s; sink moved again %.1f s after the broker kill, %.1f s after the worker kill",
          phase2Secs, brokerOutage, workerOutage);

      // Every source transaction ended (the worker is idle), so the log end is stable.
      long end;
      try (Admin a = b.admin()) {
        end = a.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp).get(30, TimeUnit.SECONDS).offset();
      }
      Output o = readCommitted(b, out);
      List<String> got = o.values();
      // The sink's group commits offsets after each flush: up to the last record.
      awaitSinkCommitted(b, "connect-sink", tp, o.next(), Duration.ofSeconds(30));
      double total = secs(t0);
      List<String> want = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        want.add(Integer.toString(i));
      }
      int uncommitted = Clients.readAll(b, out, "read_uncommitted").size();
      List<String> sink = sinkLines(sinkFile);
      int sinkDupes = sink.size() - new HashSet<>(sink).size();
      System.out.printf("ConnectTest %s: %d records; worker up in %.1f s; phase 1 (no faults): %d records in %.1f s"
              + " from the connector's creation, %.0f records/s source->sink once flowing; phase 2: %d records in"
              + " %.1f s with a broker kill -9 (restart %.1f s) and a worker SIGKILL (restart %.1f s, source committing"
              + " again after %.1f s, sink after %.1f s); read_uncommitted %d records (aborted ones included); sink got"
              + " %d lines, %d duplicates (at-least-once); sink committed %d, log end %d; %.1f s in all%n",
          b.name(), n, workerStart, phase1, phase1Secs, (phase1 - 1) / steadySecs, n - phase1, phase2Secs,
          brokerRestart, workerRestart, sourceOutage, workerOutage, uncommitted, sink.size(), sinkDupes, o.next(), end, total);
      assertEquals(n, got.size(), b.name() + ": read_committed records in the output (duplicates or losses)");
      assertEquals(want, got, b.name() + ": each record exactly once, in order");
      assertEquals(new HashSet<>(want), new HashSet<>(sink), b.name() + ": the sink got every record");
      assertEquals("RUNNING", w.taskState("source"));
      assertEquals("RUNNING", w.taskState("sink"));
      assertNoOpenTransactions(b, group);
    } finally {
      w.close();
    }
  }

  /**
   * The worker created its config (1 partition), offset (25) and status (5) topics with
   * cleanup.policy=compact, and DescribeConfigs says so, as it does on Kafka.
   */
  static void checkInternalTopics(Broker b, ConnectWorker w) throws Exception {
    Map<String, Integer> want = Map.of(w.configTopic(), 1, w.offsetTopic(), 25, w.statusTopic(), 5);
    Map<String, String> seen = new TreeMap<>();
    try (Admin a = b.admin()) {
      Map<String, TopicDescription> d = a.describeTopics(want.keySet()).allTopicNames().get(30, TimeUnit.SECONDS);
      List<ConfigResource> res = new ArrayList<>();
      for (String t : want.keySet()) {
        res.add(new ConfigResource(ConfigResource.Type.TOPIC, t));
      }
      Map<ConfigResource, Config> cs = a.describeConfigs(res).all().get(30, TimeUnit.SECONDS);
      for (ConfigResource r : res) {
        String policy = cs.get(r).get("cleanup.policy").value();
        int parts = d.get(r.name()).partitions().size();
        seen.put(r.name().substring(w.groupId.length() + 1), "cleanup.policy=" + policy + " partitions=" + parts);
        assertEquals("compact", policy, b.name() + ": cleanup.policy of " + r.name());
        assertEquals(want.get(r.name()), parts, b.name() + ": partitions of " + r.name());
      }
    }
    System.out.println("ConnectTest " + b.name() + " internal topics: " + seen);
  }

  /** No transaction of this worker's producers (ids start with the group id) is left open. */
  static void assertNoOpenTransactions(Broker b, String group) throws Exception {
    try (Admin a = b.admin()) {
      List<String> open = new ArrayList<>();
      for (TransactionListing l : a.listTransactions().all().get(30, TimeUnit.SECONDS)) {
        if (l.transactionalId().contains(group) && l.state() != TransactionState.COMPLETE_COMMIT
            && l.state() != TransactionState.COMPLETE_ABORT && l.state() != TransactionState.EMPTY) {
          open.add(l.transactionalId() + "=" + l.state());
        }
      }
      System.out.println("ConnectTest " + b.name() + " transactions of the worker not complete: " + open);
      assertTrue(open.isEmpty(), b.name() + ": transactions left open: " + open);
    }
  }

  /**
   * Waits until the sink group's committed offset of tp is want. Connect commits the
   * offset after the last record it delivered, not the consumer's position, so it stays
   * below the log end by the last transaction's commit marker (on both brokers).
   */
  static void awaitSinkCommitted(Broker b, String groupId, TopicPartition tp, long want, Duration limit) throws Exception {
    long deadline = System.nanoTime() + limit.toNanos();
    try (Admin a = b.admin()) {
      long committed = -1;
      while (System.nanoTime() < deadline) {
        OffsetAndMetadata om = a.listConsumerGroupOffsets(groupId).partitionsToOffsetAndMetadata()
            .get(30, TimeUnit.SECONDS).get(tp);
        committed = om == null ? -1 : om.offset();
        if (committed == want) {
          return;
        }
        Thread.sleep(200);
      }
      throw new AssertionError(b.name() + ": group " + groupId + " committed " + committed + " of " + tp + ", want " + want);
    }
  }

  /** Partition 0 of topic read read_committed from the start: the values and the offset after the last record. */
  record Output(List<String> values, long next) {}

  static Output readCommitted(Broker b, String topic) {
    try (KafkaConsumer<String, String> c = Clients.consumer(b, Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed"))) {
      TopicPartition tp = new TopicPartition(topic, 0);
      c.assign(List.of(tp));
      c.seekToBeginning(List.of(tp));
      long end = c.endOffsets(List.of(tp)).get(tp);
      List<String> out = new ArrayList<>();
      long next = 0;
      long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
      while (c.position(tp) < end && System.nanoTime() < deadline) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
          out.add(r.value());
          next = r.offset() + 1;
        }
      }
      return new Output(out, next);
    }
  }

  /** The complete lines of the sink's file (a line being appended is left out). */
  static List<String> sinkLines(Path f) throws IOException {
    if (!Files.exists(f)) {
      return List.of();
    }
    String s = new String(Files.readAllBytes(f), StandardCharsets.UTF_8);
    int last = s.lastIndexOf('\n');
    if (last < 0) {
      return List.of();
    }
    return List.of(s.substring(0, last).split("\n"));
  }

  /** The last stable offset of tp (ListOffsets latest, read_committed). */
  static long stableEnd(Broker b, TopicPartition tp) throws Exception {
    try (Admin a = b.admin()) {
      return a.listOffsets(Map.of(tp, OffsetSpec.latest()), new ListOffsetsOptions(IsolationLevel.READ_COMMITTED))
          .partitionResult(tp).get(30, TimeUnit.SECONDS).offset();
    }
  }

  /** Waits until the last stable offset of tp passes from: a source transaction committed. */
  static void awaitStableEndPast(Broker b, TopicPartition tp, long from, Duration limit) throws Exception {
    long deadline = System.nanoTime() + limit.toNanos();
    try (Admin a = b.admin()) {
      while (System.nanoTime() < deadline) {
        long lso = a.listOffsets(Map.of(tp, OffsetSpec.latest()), new ListOffsetsOptions(IsolationLevel.READ_COMMITTED))
            .partitionResult(tp).get(30, TimeUnit.SECONDS).offset();
        if (lso > from) {
          return;
        }
        Thread.sleep(100);
      }
    }
    throw new AssertionError(b.name() + ": no source transaction committed to " + tp + " within " + limit);
  }

  static int distinctSinkLines(Path f) throws IOException {
    return new HashSet<>(sinkLines(f)).size();
  }

  /**
   * The broker's view of a transactional id: its state and the partitions of its open
   * transaction (right after a SIGKILL of the worker, the zombie's).
   */
  static String describeTaskTransaction(Broker b, String transactionalId) {
    try (Admin a = b.admin()) {
      TransactionDescription d = a.describeTransactions(List.of(transactionalId)).description(transactionalId)
          .get(30, TimeUnit.SECONDS);
      List<String> parts = new ArrayList<>();
      for (TopicPartition tp : d.topicPartitions()) {
        parts.add(tp.toString());
      }
      java.util.Collections.sort(parts);
      return d.state() + " " + parts;
    } catch (Exception e) {
      return "describe failed: " + e;
    }
  }

  /** Waits until the sink's file holds at least want distinct values. */
  static void awaitSinkLines(Path f, int want, Duration limit, ConnectWorker w) throws Exception {
    long deadline = System.nanoTime() + limit.toNanos();
    int have = 0;
    while (System.nanoTime() < deadline) {
      Set<String> distinct = new HashSet<>(sinkLines(f));
      have = distinct.size();
      if (have >= want) {
        return;
      }
      Thread.sleep(50);
    }
    JsonNode s = w.status("source");
    throw new AssertionError("the sink holds " + have + " of " + want + " records after " + limit
        + "; source status " + s + "; see " + w.log());
  }

  static void log(Broker b, String format, Object... args) {
    System.out.printf("%tT ConnectTest %s: %s%n", System.currentTimeMillis(), b.name(), String.format(format, args));
  }

  static double secs(long since) {
    return (System.nanoTime() - since) / 1e9;
  }
}
