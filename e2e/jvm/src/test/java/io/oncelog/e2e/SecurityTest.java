package io.oncelog.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.fail;

import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.errors.GroupAuthorizationException;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.errors.TopicAuthorizationException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * SASL/SCRAM-SHA-256 and ACLs (issues #12, #16) through the Java client: both brokers
 * get a SASL_PLAINTEXT listener, users admin (super user) and alice, and an ACL
 * authorizer. Its own brokers, started on first use: the shared ones have no SASL.
 */
class SecurityTest {
  static final Map<String, String> USERS = Map.of("admin", "admin-secret", "alice", "alice-secret");
  private static List<Broker> brokers;

  static synchronized Stream<Broker> brokers() throws Exception {
    if (brokers == null) {
      brokers = new ArrayList<>();
      brokers.add(OncelogBroker.startSasl(USERS, "admin"));
      brokers.add(KafkaBroker.startSasl(USERS, "admin"));
    }
    return brokers.stream();
  }

  @AfterAll
  static void stopBrokers() throws Exception {
    if (brokers != null) {
      for (Broker b : brokers) {
        b.close();
      }
    }
  }

  static Admin admin(Broker b, String user, String password) {
    Map<String, Object> p = new HashMap<>(Broker.scram(user, password));
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, b.bootstrap());
    p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000);
    p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 20000);
    return Admin.create(p);
  }

  static KafkaProducer<String, String> producer(Broker b, String password, boolean idempotent) {
    Map<String, Object> p = new HashMap<>(Broker.scram("alice", password));
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, b.bootstrap());
    p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, idempotent);
    p.put(ProducerConfig.ACKS_CONFIG, idempotent ? "all" : "1");
    p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 15000);
    p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 20000);
    p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000);
    return new KafkaProducer<>(p, new StringSerializer(), new StringSerializer());
  }

  static KafkaConsumer<String, String> consumer(Broker b, String group) {
    Map<String, Object> p = new HashMap<>(Broker.scram("alice", USERS.get("alice")));
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, b.bootstrap());
    p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
    return new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer());
  }

  /** The first Throwable of type in e's cause chain, else null. */
  static <T extends Throwable> T causeOf(Throwable e, Class<T> type) {
    for (Throwable c = e; c != null; c = c.getCause()) {
      if (type.isInstance(c)) {
        return type.cast(c);
      }
    }
    return null;
  }

  /** What one produce of alice's (a fresh producer) throws, or null when it is acknowledged. */
  static Throwable produceOnce(Broker b, String password, boolean idempotent, String topic, String value) {
    try (KafkaProducer<String, String> p = producer(b, password, idempotent)) {
      p.send(new ProducerRecord<>(topic, value)).get(30, TimeUnit.SECONDS);
      return null;
    } catch (Exception e) {
      return e;
    }
  }

  /**
   * Kafka applies an ACL change through its metadata log, so the broker's authorizer may
   * see it a moment after CreateAcls/DeleteAcls returns: poll until the expected outcome.
   */
  static Throwable produceUntil(Broker b, String topic, boolean wantError) throws Exception {
    Instant deadline = Instant.now().plusSeconds(20);
    Throwable last;
    do {
      last = produceOnce(b, USERS.get("alice"), !wantError, topic, "v");
      if ((last != null) == wantError) {
        return last;
      }
      Thread.sleep(200);
    } while (Instant.now().isBefore(deadline));
    fail("produce to " + topic + (wantError ? " kept succeeding" : " kept failing"), last);
    return null;
  }

  static Throwable pollForError(KafkaConsumer<String, String> c) {
    Instant deadline = Instant.now().plusSeconds(20);
    while (Instant.now().isBefore(deadline)) {
      try {
        c.poll(Duration.ofMillis(500));
      } catch (Exception e) {
        return e;
      }
    }
    return null;
  }

  static Set<String> acls(Admin a) throws Exception {
    return a.describeAcls(AclBindingFilter.ANY).values().get(20, TimeUnit.SECONDS).stream()
        .map(AclBinding::toString).collect(Collectors.toCollection(TreeSet::new));
  }

  static AclBinding allow(ResourceType type, String name, AclOperation op) {
    return new AclBinding(new ResourcePattern(type, name, PatternType.LITERAL),
        new AccessControlEntry("User:alice", "*", op, AclPermissionType.ALLOW));
  }

  /**
   * A wrong password fails the login (SaslAuthenticationException); without ACLs alice is
   * refused the topic (TopicAuthorizationException) and the group
   * (GroupAuthorizationException); with WRITE/READ on the topic and DESCRIBE/READ on the
   * group her producer and consumer work; describeAcls lists exactly the created ACLs and
   * deleteAcls removes them, after which alice is refused again.
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void scramLoginAndAcls(Broker b) throws Exception {
    String topic = Clients.topic("sec");
    String group = Clients.topic("secg");
    try (Admin admin = admin(b, "admin", USERS.get("admin"))) {
      admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(60, TimeUnit.SECONDS);

      // A wrong password: the login fails, for Admin and for a producer alike.
      try (Admin bad = admin(b, "alice", "not-alices-password")) {
        Exception e = assertThrows(Exception.class, () -> bad.describeCluster().nodes().get(20, TimeUnit.SECONDS));
        if (causeOf(e, SaslAuthenticationException.class) == null) {
          fail("wrong password: want SaslAuthenticationException", e);
        }
      }
      Throwable badProduce = produceOnce(b, "not-alices-password", false, topic, "x");
      if (causeOf(badProduce, SaslAuthenticationException.class) == null) {
        fail("wrong password, producer: want SaslAuthenticationException", badProduce);
      }

      // No ACLs at all: alice may not write the topic.
      Throwable noAcl = produceOnce(b, USERS.get("alice"), false, topic, "x");
      if (causeOf(noAcl, TopicAuthorizationException.class) == null) {
        fail("no ACL: want TopicAuthorizationException", noAcl);
      }

      List<AclBinding> topicAcls = List.of(allow(ResourceType.TOPIC, topic, AclOperation.WRITE),
          allow(ResourceType.TOPIC, topic, AclOperation.READ));
      admin.createAcls(topicAcls).all().get(20, TimeUnit.SECONDS);
      produceUntil(b, topic, false);
      try (KafkaProducer<String, String> p = producer(b, USERS.get("alice"), true)) {
        for (int i = 0; i < 10; i++) {
          p.send(new ProducerRecord<>(topic, "r" + i)).get(30, TimeUnit.SECONDS);
        }
      }

      // The topic is readable but the group is not.
      try (KafkaConsumer<String, String> c = consumer(b, group)) {
        c.subscribe(List.of(topic));
        Throwable e = pollForError(c);
        if (causeOf(e, GroupAuthorizationException.class) == null) {
          fail("no group ACL: want GroupAuthorizationException", e);
        }
      }

      List<AclBinding> groupAcls = List.of(allow(ResourceType.GROUP, group, AclOperation.DESCRIBE),
          allow(ResourceType.GROUP, group, AclOperation.READ));
      admin.createAcls(groupAcls).all().get(20, TimeUnit.SECONDS);
      List<String> got = new ArrayList<>();
      Instant deadline = Instant.now().plusSeconds(30);
      while (got.size() < 11 && Instant.now().isBefore(deadline)) {
        try (KafkaConsumer<String, String> c = consumer(b, group)) {
          c.subscribe(List.of(topic));
          while (got.size() < 11 && Instant.now().isBefore(deadline)) {
            for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
              got.add(r.value());
            }
          }
          c.commitSync(Duration.ofSeconds(20));
        } catch (GroupAuthorizationException e) {
          // The group ACL has not reached the broker's authorizer yet (Kafka); try again.
          got.clear();
          Thread.sleep(200);
        }
      }
      // produceUntil's "v" then r0..r9.
      assertEquals(11, got.size(), "records read by alice: " + got);
      assertEquals("r9", got.get(10));
      long committed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(20, TimeUnit.SECONDS)
          .values().stream().mapToLong(o -> o.offset()).sum();
      assertEquals(11, committed);

      Set<String> want = new TreeSet<>();
      Stream.concat(topicAcls.stream(), groupAcls.stream()).forEach(a -> want.add(a.toString()));
      assertEquals(want, acls(admin));

      var deleted = admin.deleteAcls(List.of(AclBindingFilter.ANY)).all().get(20, TimeUnit.SECONDS);
      assertEquals(want, deleted.stream().map(AclBinding::toString).collect(Collectors.toCollection(TreeSet::new)));
      assertEquals(Set.of(), acls(admin));
      Throwable after = produceUntil(b, topic, true);
      if (causeOf(after, TopicAuthorizationException.class) == null) {
        fail("after deleteAcls: want TopicAuthorizationException", after);
      }
    }
  }

  /**
   * KIP-939's TWO_PHASE_COMMIT ACL operation on a transactional id: createAcls takes it,
   * describeAcls lists it and deleteAcls by it removes it, with 2PC itself not enabled
   * (Kafka 4.4's default). Removed again, so scramLoginAndAcls sees only its own ACLs.
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("brokers")
  void twoPhaseCommitAclOnTransactionalId(Broker b) throws Exception {
    String txnId = Clients.topic("sec-2pc");
    AclBinding binding = allow(ResourceType.TRANSACTIONAL_ID, txnId, AclOperation.TWO_PHASE_COMMIT);
    AclBindingFilter byOperation = new AclBindingFilter(
        new ResourcePatternFilter(ResourceType.TRANSACTIONAL_ID, txnId, PatternType.LITERAL),
        new AccessControlEntryFilter(null, null, AclOperation.TWO_PHASE_COMMIT, AclPermissionType.ANY));
    try (Admin admin = admin(b, "admin", USERS.get("admin"))) {
      admin.createAcls(List.of(binding)).all().get(20, TimeUnit.SECONDS);
      try {
        assertEquals(List.of(binding), List.copyOf(admin.describeAcls(byOperation).values().get(20, TimeUnit.SECONDS)));
      } finally {
        assertEquals(List.of(binding),
            List.copyOf(admin.deleteAcls(List.of(byOperation)).all().get(20, TimeUnit.SECONDS)));
      }
      assertEquals(List.of(), List.copyOf(admin.describeAcls(byOperation).values().get(20, TimeUnit.SECONDS)));
    }
  }
}
