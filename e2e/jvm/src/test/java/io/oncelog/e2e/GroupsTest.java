package io.oncelog.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Duration;
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
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
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

  private static Map<String, Object> with(Map<String, Object> common, String instanceId) {
    Map<String, Object> m = new java.util.HashMap<>(common);
    m.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instanceId);
    return m;
  }
}
