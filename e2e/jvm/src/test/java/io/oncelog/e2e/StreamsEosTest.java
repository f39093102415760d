package io.oncelog.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Kafka Streams with processing.guarantee=exactly_once_v2 ({@link StreamsApp}: a repartition,
 * a count-and-sum aggregate and a windowed count) in two child JVMs, under faults: the broker
 * is killed with SIGKILL and restarted while input is fed, then one Streams instance is
 * SIGKILLed and replaced by a new one with an empty state directory, which must restore its
 * tasks' state from the changelogs. The read_committed outputs must end at exactly the
 * aggregates of the input topic's records. Also checked, and compared between the brokers:
 * the configs of the internal topics Streams creates, the repartition topic's purge
 * (DeleteRecords moves its log start offset), and one transactional id per stream thread.
 */
class StreamsEosTest {
  static final int THREADS = 2;
  static final int PARTITIONS = 4;
  static final int GROUPS = 16;
  /** Event time advances 100 ms per record: 100 records per 10 s window. */
  static final long TICK_MS = 100;

  /** broker name -> internal topic suffix -> the topic's DYNAMIC_TOPIC_CONFIG entries. */
  static final Map<String, Map<String, Map<String, String>>> INTERNAL_CONFIGS = new ConcurrentHashMap<>();

  static Stream<Broker> brokers() throws Exception {
    return Brokers.stream();
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void exactlyOnceV2AcrossBrokerKill9AndInstanceKill(Broker b) throws Exception {
    Result r = run(b, Integer.getInteger("e2e.streams.records", 3000), 1, 0);
    r.assertExact();
  }

  /** After both brokers ran: Streams asked both for the same internal topic configs. */
  @AfterAll
  static void internalTopicConfigsMatchKafka() {
    Map<String, Map<String, String>> o = INTERNAL_CONFIGS.get("oncelog");
    Map<String, Map<String, String>> k = INTERNAL_CONFIGS.get("kafka");
    if (o != null && k != null) {
      assertEquals(k, o, "internal topic configs (DYNAMIC_TOPIC_CONFIG) on oncelog vs Kafka");
    }
  }

  /** What one run saw; assertExact fails on any anomaly. */
  static final class Result {
    final String broker;
    int inputRecords;
    int inputDuplicates;
    int lost;
    int duplicated;
    int wrongSum;
    int windowLost;
    int windowDuplicated;
    int regressions;
    int brokerKills;
    int instanceKills;
    long restoredAfterKill;
    /** Hanging transactions found (and aborted) when the output stalled. */
    int hangingTransactions;
    /** Changelog records the replacement instances (empty state dirs) restored. */
    long restoredByReplacement;
    double steadyRecordsPerSec;
    double overallRecordsPerSec;
    String detail = "";

    Result(String broker) {
      this.broker = broker;
    }

    int anomalies() {
      return lost + duplicated + wrongSum + windowLost + windowDuplicated + regressions;
    }

    /**
     * Exactly-once on oncelog always. On Kafka too, unless Kafka left hanging transactions
     * behind (after a kill -9 of its single node, README): once an operator has had to abort
     * them the outcome is Kafka's, and the anomalies are printed, not asserted.
     */
    void assertExact() {
      if (broker.equals("kafka") && hangingTransactions > 0) {
        System.out.println("StreamsEosTest kafka: " + hangingTransactions + " hanging transactions aborted; anomalies "
            + anomalies() + " reported, not asserted: " + this + detail);
        return;
      }
      if (broker.equals("kafka") && brokerKills > 0 && anomalies() > 0) {
        // Kafka's single node over-counted after its kill -9 with no hanging transaction
        // found at the end too (e2e/jvm/README.md): Kafka's outcome, reported as a skip
        // (visible in the surefire summary), not a failure of oncelog's suite.
        String msg = "StreamsEosTest kafka after a kill -9 of its single node: anomalies reported, not asserted: " + this + detail;
        System.out.println(msg);
        Assumptions.abort(msg);
      }
      assertEquals(0, anomalies(), "anomalies on " + broker + ": " + this + detail);
      if (broker.equals("oncelog")) {
        assertEquals(0, inputDuplicates, "the idempotent input producer wrote duplicates");
        assertEquals(0, hangingTransactions, "hanging transactions");
      }
      assertTrue(restoredAfterKill > 0, "no instance restored state from a changelog after an instance kill");
      assertTrue(restoredByReplacement > 0, "the replacement instance restored nothing from the changelogs");
    }

    @Override
    public String toString() {
      return String.format("input %d (duplicates %d); totals lost %d duplicated %d wrong-sum %d; windows lost %d duplicated %d;"
              + " regressions %d; broker kills %d, instance kills %d; restored %d changelog records after a kill"
              + " (%d by the replacements); hanging transactions aborted %d; steady %.0f records/s, overall %.0f records/s",
          inputRecords, inputDuplicates, lost, duplicated, wrongSum, windowLost, windowDuplicated, regressions,
          brokerKills, instanceKills, restoredAfterKill, restoredByReplacement, hangingTransactions, steadyRecordsPerSec, overallRecordsPerSec);
    }
  }

  /**
   * The scenario: n records in total; a first 40 % without faults (the steady throughput),
   * then cycles of (broker kill -9 while feeding; instance SIGKILL and replacement while
   * feeding). With soakSeconds > 0 it keeps cycling (n records per cycle) until that much
   * time has passed.
   */
  static Result run(Broker b, int n, int cycles, int soakSeconds) throws Exception {
    String appId = Clients.topic("eos-" + b.name());
    String input = appId + "-in";
    String totalsOut = appId + "-totals";
    String windowedOut = appId + "-windowed";
    Clients.createTopic(b, input, PARTITIONS, Map.of());
    Clients.createTopic(b, totalsOut, 2, Map.of());
    Clients.createTopic(b, windowedOut, 2, Map.of());
    Path work = Files.createDirectories(Broker.targetDir().resolve("streams").resolve(appId));
    Result res = new Result(b.name());
    // Event time starts 12 h ago (10 records/s of event time: 432,000 records before it
    // reaches now; Kafka refuses timestamps more than 1 h ahead), well inside every retention.
    long base = (System.currentTimeMillis() - 12 * 3_600_000L) / StreamsApp.WINDOW_MS * StreamsApp.WINDOW_MS;
    Feeder feed = new Feeder(b, input, base);
    List<Instance> live = new ArrayList<>();
    List<Instance> all = new ArrayList<>();
    int[] seq = {0};
    java.util.function.Supplier<Instance> newInstance = () -> {
      try {
        Instance i = Instance.start(b, appId, work, "i" + (++seq[0]), input, totalsOut, windowedOut);
        all.add(i);
        return i;
      } catch (Exception e) {
        throw new RuntimeException(e);
      }
    };
    Reader reader = new Reader(b, totalsOut, windowedOut);
    try {
      live.add(newInstance.get());
      live.add(newInstance.get());
      for (Instance i : live) {
        i.awaitRunning(Duration.ofMinutes(2));
      }
      reader.start();

      long t0 = System.nanoTime();
      int first = n * 4 / 10;
      feed.send(0, first, 0);
      awaitOutput(b, appId, res, reader, feed, Duration.ofMinutes(2), live);
      res.steadyRecordsPerSec = first / ((System.nanoTime() - t0) / 1e9);

      long soakEnd = System.nanoTime() + TimeUnit.SECONDS.toNanos(soakSeconds);
      int from = first;
      for (int cycle = 0; cycle < cycles || System.nanoTime() < soakEnd; cycle++) {
        int per = cycle == 0 ? n - first : n;
        int mid = from + per / 2;
        int to = from + per;
        // (a) the broker is killed with SIGKILL and restarted while records are fed and
        // both instances have transactions open.
        Thread feeder = feed.sendAsync(from, mid, 25);
        Thread.sleep(1000);
        b.killAndRestart();
        res.brokerKills++;
        feeder.join();
        feed.check();
        // The pipeline catches up before the next fault, so the faults are separate events.
        awaitOutput(b, appId, res, reader, feed, Duration.ofMinutes(2), live);
        if (res.hangingTransactions > 0) {
          from = mid;
          break; // the broker left hanging transactions: report what the outputs hold
        }
        // (b) one instance is SIGKILLed (its open transaction and group membership left
        // behind) and replaced by a new one with an empty state dir, while records are fed;
        // the rest is fed once the new one runs, so it processes on its restored state.
        int q = mid + (to - mid) / 2;
        feeder = feed.sendAsync(mid, q, 25);
        Instance victim = live.remove(0); // the oldest
        long restoredBefore = 0;
        for (Instance i : all) {
          restoredBefore += i.restored();
        }
        victim.kill();
        res.instanceKills++;
        Instance fresh = newInstance.get();
        live.add(fresh);
        feeder.join();
        feed.check();
        try {
          fresh.awaitRunning(Duration.ofMinutes(2));
        } catch (IllegalStateException notRunning) {
          // On Kafka the replacement can stay REBALANCING for good behind a hanging
          // transaction (its restore waits for an LSO that never moves, README): the
          // operator's find-hanging/abort, then report as the stalled-output case does.
          int found = res.broker.equals("kafka") && fresh.proc.isAlive() ? abortHanging(b, appId) : 0;
          if (found == 0) {
            throw notRunning;
          }
          res.hangingTransactions += found;
          from = q;
          break;
        }
        feed.send(q, to, 0);
        awaitOutput(b, appId, res, reader, feed, Duration.ofMinutes(3), live);
        long restoredAfter = 0;
        for (Instance i : all) {
          restoredAfter += i.restored();
        }
        res.restoredAfterKill += restoredAfter - restoredBefore;
        res.restoredByReplacement += fresh.restored();
        if (res.hangingTransactions > 0) {
          from = to;
          break;
        }
        from = to;
      }
      res.overallRecordsPerSec = from / ((System.nanoTime() - t0) / 1e9);

      compare(b, res, input, reader);
      // The open transactions of the live instances are ONGOING at their coordinator; any
      // other open transaction on the app's partitions is hanging.
      res.hangingTransactions += abortHanging(b, appId);
      checkInternalTopics(b, appId, input, res);
      checkTransactionalIds(b, appId, all.size(), res);
    } finally {
      reader.shutdown();
      for (Instance i : live) {
        i.close();
      }
      feed.close();
    }
    System.out.println("StreamsEosTest " + b + ": " + res);
    for (Instance i : all) {
      System.out.println("  instance " + i.name + ": " + i.log);
    }
    return res;
  }

  /**
   * Waits until the outputs show the aggregates of everything fed so far. When they have
   * not for 20 s, it looks for hanging transactions (as kafka-transactions find-hanging
   * does) every 10 s and aborts them (as kafka-transactions abort does), counting them in
   * res: Kafka 4.4 leaves some behind after a kill -9 of its single node (README).
   */
  static void awaitOutput(Broker b, String appId, Result res, Reader r, Feeder f, Duration limit, List<Instance> live)
      throws Exception {
    long start = System.nanoTime();
    long deadline = start + limit.toNanos();
    long nextHangingCheck = start + TimeUnit.SECONDS.toNanos(20);
    Expected want = Expected.of(f.sent());
    while (System.nanoTime() < deadline) {
      if (r.matches(want)) {
        return;
      }
      for (Instance i : live) {
        if (!i.proc.isAlive()) {
          throw new IllegalStateException("streams instance " + i.name + " exited; see " + i.log);
        }
      }
      if (System.nanoTime() > nextHangingCheck) {
        int found = abortHanging(b, appId);
        if (found > 0 && res.hangingTransactions == 0) {
          // Kafka did not always recover from them even once aborted (README): 30 s more at
          // most, then the run stops and reports, to keep the suite's time bounded.
          deadline = Math.min(deadline, System.nanoTime() + TimeUnit.SECONDS.toNanos(30));
        }
        res.hangingTransactions += found;
        nextHangingCheck = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
      }
      Thread.sleep(200);
    }
    // Not an assertion here: the final comparison counts and names what is wrong.
    System.out.println("StreamsEosTest: the outputs did not reach the expected aggregates within " + limit);
  }

  /**
   * Finds the app's partitions with an open transaction that its coordinator does not know
   * as ongoing on that partition (KIP-664's hanging transaction), aborts each with
   * Admin.abortTransaction and returns how many it aborted.
   */
  static int abortHanging(Broker b, String appId) throws Exception {
    try (Admin a = b.admin()) {
      List<TopicPartition> tps = new ArrayList<>();
      Set<String> topics = a.listTopics().names().get(30, TimeUnit.SECONDS).stream()
          .filter(t -> t.startsWith(appId + "-")).collect(Collectors.toSet());
      for (TopicDescription d : a.describeTopics(topics).allTopicNames().get(30, TimeUnit.SECONDS).values()) {
        d.partitions().forEach(pi -> tps.add(new TopicPartition(d.name(), pi.partition())));
      }
      Map<Long, String> txidByPid = new HashMap<>();
      for (TransactionListing l : a.listTransactions().all().get(30, TimeUnit.SECONDS)) {
        txidByPid.put(l.producerId(), l.transactionalId());
      }
      int aborted = 0;
      for (var e : a.describeProducers(tps).all().get(30, TimeUnit.SECONDS).entrySet()) {
        for (var ps : e.getValue().activeProducers()) {
          if (ps.currentTransactionStartOffset().isEmpty()) {
            continue;
          }
          String txid = txidByPid.get(ps.producerId());
          boolean ongoingThere = false;
          if (txid != null) {
            var td = a.describeTransactions(List.of(txid)).description(txid).get(30, TimeUnit.SECONDS);
            ongoingThere = Set.of(org.apache.kafka.clients.admin.TransactionState.ONGOING,
                    org.apache.kafka.clients.admin.TransactionState.PREPARE_COMMIT,
                    org.apache.kafka.clients.admin.TransactionState.PREPARE_ABORT).contains(td.state())
                && td.topicPartitions().contains(e.getKey());
          }
          // Asked again after the coordinator: a transaction that just ended is not hanging.
          boolean stillOpen = !ongoingThere && a.describeProducers(List.of(e.getKey())).partitionResult(e.getKey())
              .get(30, TimeUnit.SECONDS).activeProducers().stream()
              .anyMatch(x -> x.producerId() == ps.producerId()
                  && x.currentTransactionStartOffset().equals(ps.currentTransactionStartOffset()));
          if (stillOpen) {
            System.out.println("StreamsEosTest " + b + ": hanging transaction on " + e.getKey() + " from offset "
                + ps.currentTransactionStartOffset().getAsLong() + ", producer " + ps.producerId() + " epoch "
                + ps.producerEpoch() + " (" + txid + "): aborting it");
            a.abortTransaction(new org.apache.kafka.clients.admin.AbortTransactionSpec(e.getKey(), ps.producerId(),
                (short) ps.producerEpoch(), ps.coordinatorEpoch().orElse(-1))).all().get(30, TimeUnit.SECONDS);
            aborted++;
          }
        }
      }
      return aborted;
    }
  }

  /** The expected aggregates of a list of "group:amount@timestamp" input records. */
  static final class Expected {
    final Map<String, String> totals = new TreeMap<>();
    final Map<String, Long> windows = new TreeMap<>();

    static Expected of(List<String[]> records) {
      Expected e = new Expected();
      Map<String, long[]> t = new HashMap<>();
      for (String[] r : records) { // r = {group, amount, timestamp}
        long[] cs = t.computeIfAbsent(r[0], k -> new long[2]);
        cs[0]++;
        cs[1] += Long.parseLong(r[1]);
        long start = Long.parseLong(r[2]) / StreamsApp.WINDOW_MS * StreamsApp.WINDOW_MS;
        e.windows.merge(r[0] + "@" + start, 1L, Long::sum);
      }
      t.forEach((g, cs) -> e.totals.put(g, cs[0] + "," + cs[1]));
      return e;
    }
  }

  /**
   * Reads the input topic back (read_uncommitted: it is not transactional), computes the
   * aggregates its records must give, and counts how the outputs differ.
   */
  static void compare(Broker b, Result res, String input, Reader reader) throws Exception {
    List<String[]> records = new ArrayList<>();
    Set<String> ids = new java.util.HashSet<>();
    try (KafkaConsumer<String, String> c = Clients.consumer(b, Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_uncommitted"))) {
      List<TopicPartition> tps = new ArrayList<>();
      for (int p = 0; p < PARTITIONS; p++) {
        tps.add(new TopicPartition(input, p));
      }
      c.assign(tps);
      c.seekToBeginning(tps);
      Map<TopicPartition, Long> end = c.endOffsets(tps);
      long deadline = System.nanoTime() + Duration.ofMinutes(1).toNanos();
      while (System.nanoTime() < deadline && tps.stream().anyMatch(tp -> c.position(tp) < end.get(tp))) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
          if (!ids.add(r.key())) {
            res.inputDuplicates++;
          }
          String v = r.value();
          records.add(new String[] {v.substring(0, v.indexOf(':')), v.substring(v.indexOf(':') + 1), Long.toString(r.timestamp())});
        }
      }
    }
    res.inputRecords = records.size();
    Expected want = Expected.of(records);
    Map<String, String> gotTotals;
    Map<String, Long> gotWindows;
    synchronized (reader) {
      gotTotals = new TreeMap<>(reader.totals);
      gotWindows = new TreeMap<>(reader.windows);
      res.regressions = reader.regressions;
    }
    StringBuilder d = new StringBuilder();
    for (var e : want.totals.entrySet()) {
      String got = gotTotals.getOrDefault(e.getKey(), "0,0");
      long wc = Long.parseLong(e.getValue().split(",")[0]);
      long gc = Long.parseLong(got.split(",")[0]);
      if (gc < wc) {
        res.lost++;
      } else if (gc > wc) {
        res.duplicated++;
      } else if (!got.equals(e.getValue())) {
        res.wrongSum++;
      }
      if (!got.equals(e.getValue()) && d.length() < 2000) {
        d.append("\n  ").append(e.getKey()).append(": want ").append(e.getValue()).append(" got ").append(got);
      }
    }
    for (var e : want.windows.entrySet()) {
      long got = gotWindows.getOrDefault(e.getKey(), 0L);
      if (got < e.getValue()) {
        res.windowLost++;
      } else if (got > e.getValue()) {
        res.windowDuplicated++;
      }
      if (got != e.getValue() && d.length() < 4000) {
        d.append("\n  window ").append(e.getKey()).append(": want ").append(e.getValue()).append(" got ").append(got);
      }
    }
    for (String k : gotTotals.keySet()) {
      if (!want.totals.containsKey(k)) {
        res.duplicated++;
        d.append("\n  unexpected key ").append(k);
      }
    }
    res.detail = d.toString();
  }

  /**
   * The internal topics: their DYNAMIC_TOPIC_CONFIG entries (kept for the comparison with
   * the other broker), their partition counts, and the repartition topic's purge.
   */
  static void checkInternalTopics(Broker b, String appId, String input, Result res) throws Exception {
    String repartition = appId + "-by-group-repartition";
    String totals = appId + "-" + StreamsApp.TOTALS + "-changelog";
    String windowed = appId + "-" + StreamsApp.WINDOWED + "-changelog";
    Map<String, Map<String, String>> configs = new TreeMap<>();
    try (Admin a = b.admin()) {
      Set<String> internal = a.listTopics().names().get(30, TimeUnit.SECONDS).stream()
          .filter(t -> t.startsWith(appId + "-") && !t.equals(input) && !t.equals(appId + "-totals") && !t.equals(appId + "-windowed"))
          .collect(Collectors.toCollection(TreeSet::new));
      assertEquals(new TreeSet<>(List.of(repartition, totals, windowed)), internal, "the internal topics Streams created");
      Map<String, TopicDescription> desc = a.describeTopics(internal).allTopicNames().get(30, TimeUnit.SECONDS);
      for (String t : internal) {
        assertEquals(PARTITIONS, desc.get(t).partitions().size(), t + " partitions");
      }
      List<ConfigResource> rs = internal.stream().map(t -> new ConfigResource(ConfigResource.Type.TOPIC, t)).toList();
      Map<ConfigResource, Config> cs = a.describeConfigs(rs).all().get(30, TimeUnit.SECONDS);
      for (var e : cs.entrySet()) {
        Map<String, String> dyn = new TreeMap<>();
        for (ConfigEntry ce : e.getValue().entries()) {
          if (ce.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG) {
            dyn.put(ce.name(), ce.value());
          }
        }
        configs.put(e.getKey().name().substring(appId.length() + 1), dyn);
      }
      INTERNAL_CONFIGS.put(b.name(), configs);
      System.out.println("StreamsEosTest " + b + " internal topic configs: " + configs);
      assertEquals("delete", configs.get("by-group-repartition").get("cleanup.policy"), "repartition cleanup.policy");
      assertEquals("-1", configs.get("by-group-repartition").get("retention.ms"), "repartition retention.ms");
      assertEquals("compact", configs.get(StreamsApp.TOTALS + "-changelog").get("cleanup.policy"), "changelog cleanup.policy");
      assertEquals("compact,delete", configs.get(StreamsApp.WINDOWED + "-changelog").get("cleanup.policy"), "window changelog cleanup.policy");

      // Streams purges what its committed offsets passed (DeleteRecords) every
      // repartition.purge.interval.ms (1 s in StreamsApp).
      Map<TopicPartition, OffsetSpec> earliest = new HashMap<>();
      for (int p = 0; p < PARTITIONS; p++) {
        earliest.put(new TopicPartition(repartition, p), OffsetSpec.earliest());
      }
      long start = 0;
      long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
      while (System.nanoTime() < deadline) {
        start = a.listOffsets(earliest).all().get(30, TimeUnit.SECONDS).values().stream().mapToLong(o -> o.offset()).sum();
        if (start > 0) {
          break;
        }
        Thread.sleep(500);
      }
      System.out.println("StreamsEosTest " + b + ": repartition topic log start offsets sum to " + start);
      assertTrue(start > 0, "Streams' DeleteRecords did not move the repartition topic's log start offset");
    }
  }

  /**
   * exactly_once_v2 gives every stream thread one transactional producer, with
   * transactional.id applicationId-processId-threadIndex (KIP-447).
   */
  static void checkTransactionalIds(Broker b, String appId, int instances, Result res) throws Exception {
    Pattern p = Pattern.compile(Pattern.quote(appId) + "-([0-9a-f-]{36})-(\\d+)");
    Map<String, Set<String>> byProcess = new TreeMap<>();
    try (Admin a = b.admin()) {
      for (TransactionListing l : a.listTransactions().all().get(30, TimeUnit.SECONDS)) {
        if (!l.transactionalId().startsWith(appId + "-")) {
          continue;
        }
        Matcher m = p.matcher(l.transactionalId());
        assertTrue(m.matches(), "transactional id " + l.transactionalId());
        byProcess.computeIfAbsent(m.group(1), k -> new TreeSet<>()).add(m.group(2));
      }
    }
    System.out.println("StreamsEosTest " + b + ": transactional ids per process: " + byProcess);
    assertEquals(instances, byProcess.size(), "one process id per instance: " + byProcess);
    for (Set<String> threads : byProcess.values()) {
      // A thread replaced after an error gets the next index; at least one per thread.
      assertTrue(threads.containsAll(Set.of("1", "2")), "one transactional id per stream thread: " + byProcess);
    }
  }

  /** Feeds input records with an idempotent producer; remembers what it sent. */
  static final class Feeder {
    final String topic;
    final long base;
    final KafkaProducer<String, String> p;
    final List<String[]> sent = new ArrayList<>();
    volatile Exception failure;

    Feeder(Broker b, String topic, long base) {
      this.topic = topic;
      this.base = base;
      this.p = Clients.producer(b, Map.of(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 180_000,
          ProducerConfig.MAX_BLOCK_MS_CONFIG, 120_000, ProducerConfig.LINGER_MS_CONFIG, 5));
    }

    /** Records [from, to); pauseMs between sends spreads them over time. */
    void send(int from, int to, long pauseMs) throws Exception {
      for (int i = from; i < to; i++) {
        String g = "g" + (i % GROUPS);
        long amount = (i * 7L) % 13 + 1;
        long ts = base + i * TICK_MS;
        p.send(new ProducerRecord<>(topic, null, ts, "id" + i, g + ":" + amount));
        synchronized (this) {
          sent.add(new String[] {g, Long.toString(amount), Long.toString(ts)});
        }
        if (pauseMs > 0 && i % 10 == 0) {
          Thread.sleep(pauseMs);
        }
      }
      p.flush();
    }

    Thread sendAsync(int from, int to, long pauseMs) {
      Thread t = new Thread(() -> {
        try {
          send(from, to, pauseMs);
        } catch (Exception e) {
          failure = e;
        }
      }, "feeder");
      t.start();
      return t;
    }

    void check() {
      if (failure != null) {
        throw new IllegalStateException("feeding the input failed", failure);
      }
    }

    synchronized List<String[]> sent() {
      return new ArrayList<>(sent);
    }

    void close() {
      p.close(Duration.ofSeconds(5));
    }
  }

  /** Follows both outputs with read_committed; keeps the last value per key. */
  static final class Reader extends Thread {
    final KafkaConsumer<String, String> c;
    final Map<String, String> totals = new HashMap<>();
    final Map<String, Long> windows = new HashMap<>();
    /** A key's count going down in committed output: a reprocessed record made visible twice, or state lost. */
    int regressions;
    volatile boolean stop;

    Reader(Broker b, String totalsOut, String windowedOut) {
      super("output-reader");
      c = Clients.consumer(b, Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed"));
      List<TopicPartition> tps = new ArrayList<>();
      for (int p = 0; p < 2; p++) {
        tps.add(new TopicPartition(totalsOut, p));
        tps.add(new TopicPartition(windowedOut, p));
      }
      c.assign(tps);
      c.seekToBeginning(tps);
    }

    @Override
    public void run() {
      while (!stop) {
        try {
          for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
            synchronized (this) {
              if (r.topic().endsWith("-totals")) {
                String prev = totals.put(r.key(), r.value());
                if (prev != null && Long.parseLong(prev.split(",")[0]) >= Long.parseLong(r.value().split(",")[0])) {
                  regressions++;
                }
              } else {
                Long prev = windows.put(r.key(), Long.parseLong(r.value()));
                if (prev != null && prev >= Long.parseLong(r.value())) {
                  regressions++;
                }
              }
            }
          }
        } catch (Exception e) {
          // the broker is restarting: poll again
        }
      }
      c.close(Duration.ofSeconds(5));
    }

    synchronized boolean matches(Expected e) {
      return totals.equals(e.totals) && windows.equals(e.windows);
    }

    void shutdown() throws InterruptedException {
      stop = true;
      join(30_000);
    }
  }

  /** One StreamsApp child JVM. */
  static final class Instance {
    final String name;
    final Process proc;
    final Path log;

    private Instance(String name, Process proc, Path log) {
      this.name = name;
      this.proc = proc;
      this.log = log;
    }

    static Instance start(Broker b, String appId, Path work, String name, String input, String totalsOut, String windowedOut)
        throws Exception {
      Path dir = Files.createDirectories(work.resolve(name));
      Path state = dir.resolve("state"); // new and empty: a replacement restores from the changelogs
      Path log4j = dir.resolve("log4j2.properties");
      Files.writeString(log4j, String.join("\n",
          "appender.out.type=Console",
          "appender.out.name=out",
          "appender.out.layout.type=PatternLayout",
          "appender.out.layout.pattern=[%d] %p %m (%c)%n",
          "rootLogger.level=INFO",
          "rootLogger.appenderRef.out.ref=out",
          ""));
      Path log = dir.resolve("streams.log");
      List<String> cmd = new ArrayList<>(List.of(
          Path.of(System.getProperty("java.home"), "bin", "java").toString(),
          "-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
          "-Dlog4j2.configurationFile=" + log4j,
          "-cp", Broker.targetDir().resolve("test-classes") + java.io.File.pathSeparator + KafkaBroker.classpath(),
          StreamsApp.class.getName(),
          b.bootstrap(), appId, state.toString(), input, totalsOut, windowedOut, Integer.toString(THREADS)));
      Process p = new ProcessBuilder(cmd).redirectErrorStream(true)
          .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
      return new Instance(name, p, log);
    }

    /** Waits for the first REBALANCING -> RUNNING transition. */
    void awaitRunning(Duration limit) throws Exception {
      long deadline = System.nanoTime() + limit.toNanos();
      while (System.nanoTime() < deadline) {
        if (Files.exists(log) && Files.readString(log).contains("STATE REBALANCING RUNNING")) {
          return;
        }
        if (!proc.isAlive()) {
          throw new IllegalStateException("streams instance " + name + " exited; see " + log);
        }
        Thread.sleep(200);
      }
      throw new IllegalStateException("streams instance " + name + " not RUNNING within " + limit + "; see " + log);
    }

    /** Changelog records this instance restored so far (its RESTORED lines). */
    long restored() throws Exception {
      long n = 0;
      for (String line : Files.readAllLines(log)) {
        if (line.startsWith("RESTORED ")) {
          String[] f = line.split(" ");
          n += Long.parseLong(f[f.length - 1]);
        }
      }
      return n;
    }

    /** SIGKILL: no close, no LeaveGroup, its transaction left open. */
    void kill() throws InterruptedException {
      proc.destroyForcibly().waitFor(30, TimeUnit.SECONDS);
    }

    void close() throws InterruptedException {
      Broker.stop(proc);
    }
  }
}
