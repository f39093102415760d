package io.oncelog.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Classic consumer groups through the Java consumer, against oncelog and against Kafka. */
class GroupsTest {
  static Stream<Broker> brokers() throws Exception {
    return Brokers.stream();
  }

  /**
   * Two cooperative-sticky members, both static (group.instance.id), split four
   * partitions two and two; the group is Stable and reports each member's instance id.
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void cooperativeStickyStaticMembers(Broker b) throws Exception {
    String t = Clients.topic("groups");
    Clients.createTopic(b, t, 4, Map.of());
    String group = Clients.topic("coop");
    Map<String, Object> common = Map.of(
        ConsumerConfig.GROUP_ID_CONFIG, group,
        ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, CooperativeStickyAssignor.class.getName(),
        ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 30000);
    try (KafkaConsumer<String, String> c1 = Clients.consumer(b, with(common, "static-1"));
        KafkaConsumer<String, String> c2 = Clients.consumer(b, with(common, "static-2"))) {
      c1.subscribe(List.of(t));
      c2.subscribe(List.of(t));
      long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
      while (System.nanoTime() < deadline && !(c1.assignment().size() == 2 && c2.assignment().size() == 2)) {
        c1.poll(Duration.ofMillis(200));
        c2.poll(Duration.ofMillis(200));
      }
      assertEquals(2, c1.assignment().size(), "c1 " + c1.assignment() + " c2 " + c2.assignment());
      assertEquals(2, c2.assignment().size(), "c1 " + c1.assignment() + " c2 " + c2.assignment());
      Set<TopicPartition> all = new HashSet<>(c1.assignment());
      all.addAll(c2.assignment());
      assertEquals(4, all.size());
      try (Admin a = b.admin()) {
        ConsumerGroupDescription d = a.describeConsumerGroups(List.of(group)).describedGroups().get(group).get(30, TimeUnit.SECONDS);
        assertEquals("STABLE", d.groupState().name());
        Set<String> ids = new HashSet<>();
        for (MemberDescription m : d.members()) {
          ids.add(m.groupInstanceId().orElse("none"));
        }
        assertEquals(Set.of("static-1", "static-2"), ids);
      }
    }
  }

  /**
   * Eager rebalancing (RangeAssignor, the classic protocol): when a second member joins,
   * the first gives up every partition before the new assignment, and the ranges are
   * contiguous halves.
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void eagerRangeAssignor(Broker b) throws Exception {
    String t = Clients.topic("eager");
    Clients.createTopic(b, t, 4, Map.of());
    Map<String, Object> common = Map.of(
        ConsumerConfig.GROUP_ID_CONFIG, Clients.topic("eager-group"),
        ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, RangeAssignor.class.getName());
    List<Set<TopicPartition>> revoked1 = new ArrayList<>();
    try (KafkaConsumer<String, String> c1 = Clients.consumer(b, common);
        KafkaConsumer<String, String> c2 = Clients.consumer(b, common)) {
      c1.subscribe(List.of(t), new ConsumerRebalanceListener() {
        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> parts) {
          if (!parts.isEmpty()) {
            revoked1.add(new HashSet<>(parts));
          }
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> parts) {}
      });
      pollUntil(() -> c1.assignment().size() == 4, c1);
      c2.subscribe(List.of(t));
      pollUntil(() -> c1.assignment().size() == 2 && c2.assignment().size() == 2, c1, c2);
      assertEquals(List.of(partitions(t, 0, 1, 2, 3)), revoked1, "eager: the first member revokes all it had");
      Set<Set<TopicPartition>> halves = Set.of(partitions(t, 0, 1), partitions(t, 2, 3));
      assertTrue(halves.contains(c1.assignment()) && halves.contains(c2.assignment()),
          "range: contiguous halves, got " + c1.assignment() + " and " + c2.assignment());
    }
  }

  /**
   * A static member (group.instance.id) that goes away without leaving (close keeps a
   * static member's place until its session times out) and comes back within
   * session.timeout.ms gets its old partitions back without a rebalance: the group's
   * generation stays and the other member's assignment is untouched.
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void staticMemberRejoinsWithoutRebalance(Broker b) throws Exception {
    String t = Clients.topic("static");
    Clients.createTopic(b, t, 4, Map.of());
    Map<String, Object> common = Map.of(
        ConsumerConfig.GROUP_ID_CONFIG, Clients.topic("static-group"),
        ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, RangeAssignor.class.getName(),
        ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 45000);
    try (KafkaConsumer<String, String> c1 = Clients.consumer(b, with(common, "s1"))) {
      c1.subscribe(List.of(t));
      Set<TopicPartition> c2Had;
      int generation;
      try (KafkaConsumer<String, String> c2 = Clients.consumer(b, with(common, "s2"))) {
        c2.subscribe(List.of(t));
        pollUntil(() -> c1.assignment().size() == 2 && c2.assignment().size() == 2, c1, c2);
        c2Had = new HashSet<>(c2.assignment());
        generation = c1.groupMetadata().generationId();
      }
      Set<TopicPartition> c1Had = new HashSet<>(c1.assignment());
      try (KafkaConsumer<String, String> c2 = Clients.consumer(b, with(common, "s2"))) {
        c2.subscribe(List.of(t));
        pollUntil(() -> !c2.assignment().isEmpty(), c1, c2);
        for (int i = 0; i < 5; i++) {
          c1.poll(Duration.ofMillis(200));
          c2.poll(Duration.ofMillis(200));
        }
        assertEquals(c2Had, c2.assignment(), "the static member got its partitions back");
        assertEquals(c1Had, c1.assignment());
        assertEquals(generation, c1.groupMetadata().generationId(), "no rebalance: the generation stayed");
        assertEquals(generation, c2.groupMetadata().generationId());
      }
    }
  }

  /**
   * The KIP-848 consumer group protocol (group.protocol=consumer): the broker assigns,
   * two members split four partitions, and the Admin client describes a Stable group of
   * type CONSUMER.
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void consumerGroupProtocol(Broker b) throws Exception {
    String t = Clients.topic("kip848");
    Clients.createTopic(b, t, 4, Map.of());
    String group = Clients.topic("kip848-group");
    Map<String, Object> common = Map.of(ConsumerConfig.GROUP_ID_CONFIG, group, ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
    try (KafkaConsumer<String, String> c1 = Clients.consumer(b, common);
        KafkaConsumer<String, String> c2 = Clients.consumer(b, common)) {
      c1.subscribe(List.of(t));
      c2.subscribe(List.of(t));
      pollUntil(() -> c1.assignment().size() == 2 && c2.assignment().size() == 2, c1, c2);
      Set<TopicPartition> all = new HashSet<>(c1.assignment());
      all.addAll(c2.assignment());
      assertEquals(partitions(t, 0, 1, 2, 3), all);
      try (Admin a = b.admin()) {
        ConsumerGroupDescription d = a.describeConsumerGroups(List.of(group)).describedGroups().get(group).get(30, TimeUnit.SECONDS);
        assertEquals("CONSUMER", d.type().name());
        assertEquals("STABLE", d.groupState().name());
        assertEquals(2, d.members().size());
      }
    }
  }

  private static Set<TopicPartition> partitions(String t, int... ps) {
    Set<TopicPartition> out = new HashSet<>();
    for (int p : ps) {
      out.add(new TopicPartition(t, p));
    }
    return out;
  }

  /** Polls every consumer in turn until cond holds; fails after 90 s. */
  @SafeVarargs
  private static void pollUntil(java.util.function.BooleanSupplier cond, KafkaConsumer<String, String>... cs) {
    long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
    while (!cond.getAsBoolean()) {
      assertTrue(System.nanoTime() < deadline, "condition not reached within 90 s");
      for (KafkaConsumer<String, String> c : cs) {
        c.poll(Duration.ofMillis(100));
      }
    }
  }

  private static Map<String, Object> with(Map<String, Object> common, String instanceId) {
    Map<String, Object> m = new java.util.HashMap<>(common);
    m.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instanceId);
    return m;
  }
}
