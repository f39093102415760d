package io.oncelog.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * KIP-447 consume-transform-produce under churn: two group members, each with its own
 * transactional producer, process a 4-partition input while the second member joins
 * late and leaves mid-way and the broker is killed with SIGKILL and restarted. The
 * read_committed output holds every input exactly once, and no input partition is owned by
 * two members at once: a member's ConsumerRebalanceListener is told of a partition only
 * after the member that had it returned from its revocation of it (Ownership).
 */
class ChurnTest {
  static Stream<Broker> brokers() throws Exception {
    return Brokers.stream();
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void consumeTransformProduceAcrossKill9AndMemberChurn(Broker b) throws Exception {
    run(b, 1500, "classic");
  }

  /**
   * The same with group.protocol=consumer (KIP-848): broker-side assignment and member
   * epochs across the kill -9 and the join and leave, read_committed input and
   * transactional output exactly once, and no partition's committed offset going back.
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void consumerProtocolAcrossKill9AndMemberChurn(Broker b) throws Exception {
    run(b, 1500, "consumer");
  }

  /** The ownership check itself, on made-up listener calls: it sees what it must refuse. */
  @Test
  void ownershipCheckFindsOverlaps() {
    TopicPartition p0 = new TopicPartition("t", 0);
    TopicPartition p1 = new TopicPartition("t", 1);
    Ownership ok = new Ownership();
    ok.record("a", "assigned", List.of(p0, p1));
    ok.record("a", "revoked", List.of(p1));
    ok.record("b", "assigned", List.of(p1));
    assertEquals(List.of(), ok.overlaps());
    assertEquals(1, ok.handOvers());

    Ownership early = new Ownership(); // b is given p0 before a's revocation returned
    early.record("a", "assigned", List.of(p0));
    early.record("b", "assigned", List.of(p0));
    early.record("a", "revoked", List.of(p0));
    assertEquals(1, early.overlaps().size(), early.overlaps().toString());

    Ownership never = new Ownership(); // a never gives p0 up
    never.record("a", "assigned", List.of(p0));
    never.record("b", "assigned", List.of(p0));
    assertEquals(1, never.overlaps().size(), never.overlaps().toString());

    Ownership lost = new Ownership(); // a was fenced: it learns of the loss late
    lost.record("a", "assigned", List.of(p0));
    lost.record("b", "assigned", List.of(p0));
    lost.record("a", "lost", List.of(p0));
    assertEquals(List.of(), lost.overlaps());
    assertEquals(1, lost.afterLoss());
  }

  /** The churn scenario over n inputs (SoakTest runs it longer). */
  static void run(Broker b, int n) throws Exception {
    run(b, n, "classic");
  }

  /** The churn scenario with the given group.protocol. */
  static void run(Broker b, int n, String protocol) throws Exception {
    String in = Clients.topic("churn-in");
    String out = Clients.topic("churn-out");
    Clients.createTopic(b, in, 4, Map.of());
    Clients.createTopic(b, out, 1, Map.of());
    List<String> want = new ArrayList<>();
    try (KafkaProducer<String, String> p = Clients.producer(b, Map.of())) {
      for (int i = 0; i < n; i++) {
        p.send(new ProducerRecord<>(in, i % 4, null, "in" + i));
        want.add("IN" + i);
      }
      p.flush();
    }
    String group = Clients.topic("churn-group");
    Ownership owners = new Ownership();
    Worker w1 = new Worker(b, group, in, out, "w1", protocol, owners);
    Worker w2 = new Worker(b, group, in, out, "w2", protocol, owners);
    Map<TopicPartition, Long> highest = new HashMap<>();
    List<String> backwards = new ArrayList<>();
    w1.start();
    long deadline = System.nanoTime() + Duration.ofMinutes(5).toNanos();
    boolean joined = false;
    long joinedAt = 0;
    boolean killed = false;
    boolean left = false;
    long done = 0;
    try (Admin a = b.admin()) {
      while (done < n && System.nanoTime() < deadline && w1.failure == null && w2.failure == null) {
        done = committed(a, group, in, highest, backwards);
        if (!joined && done >= n / 10) {
          // w2 gets partitions only after a rebalance (classic) or after w1 revoked them on a
          // heartbeat (KIP-848): w1 pauses its partitions, still polling, until w2 has an
          // assignment, so that w2 takes part whatever the speed of the machine (a fast
          // oncelog finished 1,500 inputs before the classic rebalance completed).
          w1.hold = true;
          w2.start(); // a second member joins: the group rebalances
          joined = true;
          joinedAt = System.nanoTime();
        } else if (w1.hold && w2.assigned > 0) {
          w1.hold = false;
        } else if (w1.hold && System.nanoTime() - joinedAt > Duration.ofSeconds(60).toNanos()) {
          break; // w2 never got a partition: the assertions below say so
        } else if (joined && !killed && done >= n / 3) {
          b.killAndRestart(); // transactions are in flight on both members
          killed = true;
        } else if (killed && !left && done >= 2 * n / 3) {
          w2.shutdown(); // the second member leaves: its partitions move to w1
          left = true;
        }
        Thread.sleep(50);
      }
    } finally {
      w1.shutdown();
      w2.shutdown();
    }
    System.out.println("churn (group.protocol=" + protocol + ") " + b + ": committed " + done + " of " + n
        + "; transactions committed w1=" + w1.commits.get() + " w2=" + w2.commits.get()
        + ", aborted or lost w1=" + w1.aborts.get() + " w2=" + w2.aborts.get()
        + "; rebalance callbacks " + owners.events() + ", hand-overs " + owners.handOvers()
        + ", taken over after a loss " + owners.afterLoss());
    assertFalse(w1.hold, "w2 got no partition within 60 s of joining (w1 paused for it)");
    assertEquals(null, w1.failure, "w1");
    assertEquals(null, w2.failure, "w2");
    assertEquals(n, done, "committed input offsets");
    assertEquals(List.of(), backwards, "committed offsets that went back");
    assertEquals(List.of(), owners.overlaps(), "partitions owned by two members at once");
    assertTrue(owners.handOvers() > 0, "no partition moved between the members: the ownership check saw nothing");
    assertTrue(joined && killed && left, "joined " + joined + " killed " + killed + " left " + left);
    assertTrue(w2.commits.get() > 0, "the second member committed no transaction");
    List<String> got = new ArrayList<>(Clients.readAll(b, out, "read_committed"));
    Collections.sort(got);
    Collections.sort(want);
    assertEquals(want.size(), got.size(), "read_committed output size (duplicates or losses)");
    assertEquals(want, got);
  }

  /**
   * The sum of the group's committed offsets on in; records in backwards every partition whose
   * committed offset is below one seen before (highest).
   */
  private static long committed(Admin a, String group, String in, Map<TopicPartition, Long> highest,
      List<String> backwards) {
    try {
      long sum = 0;
      for (Map.Entry<TopicPartition, OffsetAndMetadata> e
          : a.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(10, TimeUnit.SECONDS).entrySet()) {
        if (e.getKey().topic().equals(in) && e.getValue() != null) {
          long offset = e.getValue().offset();
          Long before = highest.put(e.getKey(), Math.max(offset, highest.getOrDefault(e.getKey(), 0L)));
          if (before != null && offset < before) {
            backwards.add(e.getKey() + ": " + before + " then " + offset);
          }
          sum += e.getValue().offset();
        }
      }
      return sum;
    } catch (Exception e) {
      return 0; // the broker is down or the coordinator moving: ask again
    }
  }

  /**
   * The order in which the members' rebalance listeners took and gave up partitions, on one
   * sequence for all members. A partition assigned to a member while another still owned it
   * (that one's onPartitionsRevoked for it had not returned) is an overlap, unless the other
   * one's ownership ends in onPartitionsLost: a member that lost its partitions (its session
   * or epoch fenced by the broker) learns so only after the group moved on, as in Kafka, and
   * its transactional offset commits are then refused.
   */
  static final class Ownership {
    private record Event(String member, String kind, TopicPartition tp) {}

    private final List<Event> log = new ArrayList<>();

    synchronized void record(String member, String kind, Collection<TopicPartition> tps) {
      for (TopicPartition tp : tps) {
        log.add(new Event(member, kind, tp));
      }
    }

    synchronized int events() {
      return log.size();
    }

    /** Partitions that moved from one member to another after a revocation. */
    synchronized int handOvers() {
      return (int) replay().stream().filter(s -> s.startsWith("hand-over")).count();
    }

    /** Partitions taken by a member while another owned it, that other later losing it. */
    synchronized int afterLoss() {
      return (int) replay().stream().filter(s -> s.startsWith("after-loss")).count();
    }

    synchronized List<String> overlaps() {
      return replay().stream().filter(s -> s.startsWith("overlap")).toList();
    }

    /** Replays the log: one line per hand-over, per take-over after a loss and per overlap. */
    private List<String> replay() {
      List<String> out = new ArrayList<>();
      Map<TopicPartition, String> owner = new HashMap<>();
      Map<TopicPartition, String> lastReleasedBy = new HashMap<>();
      // The member that still owned a partition when another was given it, per partition.
      Map<TopicPartition, String> pending = new HashMap<>();
      for (int i = 0; i < log.size(); i++) {
        Event e = log.get(i);
        String cur = owner.get(e.tp);
        switch (e.kind) {
          case "assigned" -> {
            if (cur != null && !cur.equals(e.member)) {
              pending.put(e.tp, cur + " still owned it at event " + i + " when " + e.member + " was assigned it");
            } else if (cur == null && lastReleasedBy.containsKey(e.tp) && !lastReleasedBy.get(e.tp).equals(e.member)) {
              out.add("hand-over " + e.tp + " " + lastReleasedBy.get(e.tp) + " -> " + e.member);
            }
            owner.put(e.tp, e.member);
          }
          case "revoked", "lost" -> {
            String p = pending.get(e.tp);
            if (p != null && p.startsWith(e.member + " ")) {
              pending.remove(e.tp);
              out.add((e.kind.equals("lost") ? "after-loss " : "overlap ") + e.tp + ": " + p
                  + ", and gave it up (" + e.kind + ") at event " + i);
            } else if (e.member.equals(cur)) {
              owner.remove(e.tp);
              lastReleasedBy.put(e.tp, e.member);
            }
          }
          default -> throw new IllegalStateException(e.kind);
        }
      }
      for (String p : pending.values()) {
        out.add("overlap " + p + ", and never gave it up");
      }
      return out;
    }
  }

  /**
   * One group member and its transactional producer. On any error inside a transaction it
   * aborts (or, when the producer cannot abort, replaces the producer: initTransactions
   * with the same transactional.id ends the old one's transaction), then rewinds to the
   * group's committed offsets, so nothing is skipped and nothing is written twice.
   */
  static final class Worker extends Thread {
    final Broker b;
    final String group;
    final String in;
    final String out;
    final String txid;
    final String protocol;
    final Ownership owners;
    final AtomicInteger commits = new AtomicInteger();
    final AtomicInteger aborts = new AtomicInteger();
    volatile boolean stop;
    /** Pause fetching (reconciliation goes on in poll) until the test clears it. */
    volatile boolean hold;
    /** The number of partitions assigned after the last poll. */
    volatile int assigned;
    volatile Throwable failure;

    Worker(Broker b, String group, String in, String out, String name, String protocol, Ownership owners) {
      super(name);
      this.owners = owners;
      this.protocol = protocol;
      this.b = b;
      this.group = group;
      this.in = in;
      this.out = out;
      this.txid = group + "-" + name;
    }

    void shutdown() throws InterruptedException {
      stop = true;
      if (isAlive()) {
        join(120_000);
      }
    }

    @Override
    public void run() {
      Map<String, Object> config = new HashMap<>(Map.of(
          ConsumerConfig.GROUP_ID_CONFIG, group,
          ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed",
          ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 10,
          ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30000,
          ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol));
      if (protocol.equals("classic")) {
        // The consumer protocol takes the session timeout from the broker
        // (group.consumer.session.timeout.ms) and rejects the client setting.
        config.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 45000);
      }
      try (KafkaConsumer<String, String> c = Clients.consumer(b, config)) {
        KafkaProducer<String, String> p = newProducer();
        try {
          String me = getName();
          c.subscribe(List.of(in), new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> tps) {
              owners.record(me, "assigned", tps);
            }

            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> tps) {
              // Recorded as the callback returns: until then the partitions are this member's.
              owners.record(me, "revoked", tps);
            }

            @Override
            public void onPartitionsLost(Collection<TopicPartition> tps) {
              owners.record(me, "lost", tps);
            }
          });
          while (!stop) {
            ConsumerRecords<String, String> recs;
            try {
              if (hold) {
                c.pause(c.assignment());
              } else if (!c.paused().isEmpty()) {
                c.resume(c.paused());
              }
              recs = c.poll(Duration.ofMillis(200));
              assigned = c.assignment().size();
            } catch (Exception e) {
              continue; // the broker is restarting
            }
            if (recs.isEmpty()) {
              continue;
            }
            try {
              p.beginTransaction();
              Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
              for (ConsumerRecord<String, String> r : recs) {
                p.send(new ProducerRecord<>(out, r.value().toUpperCase()));
                offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
              }
              Thread.sleep(20); // the "transform": keeps transactions open long enough to be hit
              p.sendOffsetsToTransaction(offsets, c.groupMetadata());
              p.commitTransaction();
              commits.incrementAndGet();
            } catch (Exception e) {
              aborts.incrementAndGet();
              try {
                p.abortTransaction();
              } catch (Exception abortFailed) {
                p.close(Duration.ZERO);
                p = newProducer();
              }
              rewind(c);
            }
          }
        } finally {
          p.close(Duration.ofSeconds(5));
        }
      } catch (Throwable t) {
        failure = t;
      }
    }

    /** A transactional producer, initialised: retried while the broker is down. */
    private KafkaProducer<String, String> newProducer() throws InterruptedException {
      long deadline = System.nanoTime() + Duration.ofMinutes(2).toNanos();
      while (true) {
        KafkaProducer<String, String> p = Clients.producer(b, Map.of(
            ProducerConfig.TRANSACTIONAL_ID_CONFIG, txid,
            ProducerConfig.MAX_BLOCK_MS_CONFIG, 15000,
            ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000,
            ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 30000));
        try {
          p.initTransactions();
          return p;
        } catch (Exception e) {
          p.close(Duration.ZERO);
          if (System.nanoTime() > deadline) {
            throw e;
          }
          Thread.sleep(500);
        }
      }
    }

    /** Seeks every assigned partition back to the group's committed offset. */
    private static void rewind(KafkaConsumer<String, String> c) {
      long deadline = System.nanoTime() + Duration.ofMinutes(2).toNanos();
      while (System.nanoTime() < deadline) {
        try {
          Set<TopicPartition> assigned = c.assignment();
          Map<TopicPartition, OffsetAndMetadata> committed = c.committed(assigned);
          for (TopicPartition tp : assigned) {
            OffsetAndMetadata o = committed.get(tp);
            if (o != null) {
              c.seek(tp, o.offset());
            } else {
              c.seekToBeginning(List.of(tp));
            }
          }
          return;
        } catch (Exception e) {
          try {
            Thread.sleep(500);
          } catch (InterruptedException ie) {
            Thread.currentThread().interrupt();
            return;
          }
        }
      }
      throw new IllegalStateException("could not read the committed offsets to rewind to");
    }
  }
}
