package io.oncelog.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.ListShareGroupOffsetsSpec;
import org.apache.kafka.clients.admin.SharePartitionOffsetInfo;
import org.apache.kafka.clients.consumer.AcknowledgeType;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaShareConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Share groups (KIP-932) through the Java KafkaShareConsumer and Admin, against oncelog and Kafka. */
class ShareConsumerTest {
  static Stream<Broker> brokers() throws Exception {
    return Brokers.stream();
  }

  /**
   * A share consumer with explicit acknowledgement reads 100 records of two partitions:
   * one record it RELEASEs comes back with delivery count 2 and is then accepted, every
   * record is delivered, and the Admin share-group APIs (describe, list and alter start
   * offsets, delete offsets, list groups, delete the group) answer as Kafka does.
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void explicitAcknowledgementAndAdmin(Broker b) throws Exception {
    String t = Clients.topic("share");
    Clients.createTopic(b, t, 2, Map.of());
    String group = Clients.topic("sg");
    try (Admin a = b.admin()) {
      ConfigResource cr = new ConfigResource(ConfigResource.Type.GROUP, group);
      a.incrementalAlterConfigs(Map.of(cr, List.of(new AlterConfigOp(
          new ConfigEntry("share.auto.offset.reset", "earliest"), AlterConfigOp.OpType.SET))))
          .all().get(30, TimeUnit.SECONDS);
    }
    try (KafkaProducer<String, String> p = Clients.producer(b, Map.of())) {
      for (int i = 0; i < 100; i++) {
        p.send(new ProducerRecord<>(t, "k" + i, "v" + i));
      }
    }
    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, b.bootstrap());
    props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    props.put("share.acknowledgement.mode", "explicit");
    Map<String, Integer> seen = new HashMap<>();
    short releasedCount = 0;
    try (KafkaShareConsumer<String, String> c =
        new KafkaShareConsumer<>(props, new StringDeserializer(), new StringDeserializer())) {
      c.subscribe(List.of(t));
      long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
      while (System.nanoTime() < deadline && !(seen.size() == 100 && releasedCount == 2)) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
          short count = r.deliveryCount().orElse((short) 0);
          if (r.value().equals("v7")) {
            releasedCount = count;
            if (count == 1) {
              c.acknowledge(r, AcknowledgeType.RELEASE);
              continue;
            }
          }
          seen.merge(r.value(), 1, Integer::sum);
          c.acknowledge(r, AcknowledgeType.ACCEPT);
        }
        c.commitSync();
      }
    }
    assertEquals(100, seen.size(), "records seen");
    assertEquals(2, releasedCount, "delivery count of the released record when it came back");
    for (Map.Entry<String, Integer> e : seen.entrySet()) {
      assertEquals(1, e.getValue(), "accepted " + e.getKey() + " more than once");
    }
    try (Admin a = b.admin()) {
      assertEquals("EMPTY", a.describeShareGroups(List.of(group)).all().get(30, TimeUnit.SECONDS)
          .get(group).groupState().name());
      TopicPartition tp0 = new TopicPartition(t, 0);
      a.alterShareGroupOffsets(group, Map.of(tp0, 10L)).all().get(30, TimeUnit.SECONDS);
      Map<TopicPartition, SharePartitionOffsetInfo> offsets = a.listShareGroupOffsets(
          Map.of(group, new ListShareGroupOffsetsSpec())).all().get(30, TimeUnit.SECONDS).get(group);
      assertEquals(10L, offsets.get(tp0).startOffset());
      a.deleteShareGroupOffsets(group, Set.of(t)).all().get(30, TimeUnit.SECONDS);
      assertTrue(a.listShareGroupOffsets(Map.of(group, new ListShareGroupOffsetsSpec()))
          .all().get(30, TimeUnit.SECONDS).get(group).isEmpty());
      assertTrue(a.listGroups(ListGroupsOptions.forShareGroups()).all().get(30, TimeUnit.SECONDS)
          .stream().anyMatch(l -> l.groupId().equals(group)));
      a.deleteShareGroups(List.of(group)).all().get(30, TimeUnit.SECONDS);
      assertFalse(a.listGroups(ListGroupsOptions.forShareGroups()).all().get(30, TimeUnit.SECONDS)
          .stream().anyMatch(l -> l.groupId().equals(group)));
    }
  }

  /**
   * A share consumer (explicit acknowledgement) reads 400 records of two partitions while the
   * broker is kill -9'd and restarted right after the first poll, its records acquired and
   * not yet acknowledged: every record is delivered and accepted at least once (what was
   * acquired when the broker died comes back), no delivery count exceeds
   * group.share.delivery.count.limit (5 by default), and Admin reports a lag of 0 on both
   * share-partitions, i.e. every record's acknowledgement survived. (Kafka 4.4 leaves the
   * listed start offset at 0 after the restart although the lag is 0, so the start offset
   * is printed, not asserted.)
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void acknowledgementsAcrossKill9(Broker b) throws Exception {
    final int n = 400;
    final int deliveryCountLimit = 5;
    String t = Clients.topic("share-kill");
    Clients.createTopic(b, t, 2, Map.of());
    String group = Clients.topic("sg-kill");
    try (Admin a = b.admin()) {
      ConfigResource cr = new ConfigResource(ConfigResource.Type.GROUP, group);
      a.incrementalAlterConfigs(Map.of(cr, List.of(new AlterConfigOp(
          new ConfigEntry("share.auto.offset.reset", "earliest"), AlterConfigOp.OpType.SET))))
          .all().get(30, TimeUnit.SECONDS);
    }
    try (KafkaProducer<String, String> p = Clients.producer(b, Map.of())) {
      for (int i = 0; i < n; i++) {
        p.send(new ProducerRecord<>(t, i % 2, null, "v" + i));
      }
      p.flush();
    }
    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, b.bootstrap());
    props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    props.put("share.acknowledgement.mode", "explicit");
    Map<String, Integer> accepted = new HashMap<>();
    short maxDeliveryCount = 0;
    int redelivered = 0;
    boolean killed = false;
    boolean acknowledged = false;
    try (Admin a = b.admin(); KafkaShareConsumer<String, String> c =
        new KafkaShareConsumer<>(props, new StringDeserializer(), new StringDeserializer())) {
      c.subscribe(List.of(t));
      long deadline = System.nanoTime() + Duration.ofSeconds(120).toNanos();
      long nextCheck = 0;
      // Until every record was delivered and the broker's lag says every one is
      // acknowledged: acknowledgements the kill lost mean redeliveries to accept again.
      while (System.nanoTime() < deadline && !acknowledged) {
        if (accepted.size() == n && System.nanoTime() > nextCheck) {
          nextCheck = System.nanoTime() + Duration.ofSeconds(1).toNanos();
          try {
            Map<TopicPartition, SharePartitionOffsetInfo> offsets = a.listShareGroupOffsets(
                Map.of(group, new ListShareGroupOffsetsSpec())).all().get(10, TimeUnit.SECONDS).get(group);
            acknowledged = zeroLag(offsets.get(new TopicPartition(t, 0))) && zeroLag(offsets.get(new TopicPartition(t, 1)));
          } catch (Exception e) {
            // ask again
          }
        }
        try {
          ConsumerRecords<String, String> polled = c.poll(Duration.ofMillis(500));
          if (!killed && !polled.isEmpty()) {
            // The polled records are acquired and not yet acknowledged: the restarted
            // broker must hand them out again (or take the acknowledgements).
            b.killAndRestart();
            killed = true;
          }
          for (ConsumerRecord<String, String> r : polled) {
            short count = r.deliveryCount().orElse((short) 0);
            maxDeliveryCount = (short) Math.max(maxDeliveryCount, count);
            if (accepted.merge(r.value(), 1, Integer::sum) > 1) {
              redelivered++;
            }
            c.acknowledge(r, AcknowledgeType.ACCEPT);
          }
          c.commitSync();
        } catch (KafkaException e) {
          // The broker is down or just back: what was not acknowledged comes back.
        }
      }
    }
    System.out.println("acknowledgementsAcrossKill9 " + b + ": " + accepted.size() + " of " + n
        + " accepted, " + redelivered + " redelivered, max delivery count " + maxDeliveryCount);
    assertTrue(killed, "the broker was not killed");
    assertEquals(n, accepted.size(), "records accepted at least once");
    assertTrue(maxDeliveryCount >= 1 && maxDeliveryCount <= deliveryCountLimit,
        "max delivery count " + maxDeliveryCount);
    try (Admin a = b.admin()) {
      long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
      Map<TopicPartition, SharePartitionOffsetInfo> offsets = Map.of();
      while (System.nanoTime() < deadline) {
        offsets = a.listShareGroupOffsets(Map.of(group, new ListShareGroupOffsetsSpec()))
            .all().get(30, TimeUnit.SECONDS).get(group);
        if (zeroLag(offsets.get(new TopicPartition(t, 0))) && zeroLag(offsets.get(new TopicPartition(t, 1)))) {
          break;
        }
        Thread.sleep(250);
      }
      System.out.println("acknowledgementsAcrossKill9 " + b + ": share-partition offsets " + offsets);
      for (int p = 0; p < 2; p++) {
        SharePartitionOffsetInfo info = offsets.get(new TopicPartition(t, p));
        assertTrue(zeroLag(info), "share-partition " + p + " after every acknowledgement: " + info);
      }
    }
  }

  private static boolean zeroLag(SharePartitionOffsetInfo info) {
    return info != null && info.lag().orElse(-1L) == 0L;
  }
}
