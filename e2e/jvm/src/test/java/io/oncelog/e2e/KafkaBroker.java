package io.oncelog.e2e;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.common.Uuid;

/**
 * Apache Kafka (the version of kafka_2.13 in the pom) as a single KRaft node (broker and
 * controller in one process) on loopback, in a child JVM whose classpath is this module's
 * test classpath: kafka-storage format, then kafka.Kafka. Its logs stay under
 * target/brokers/kafka-* for after-the-fact reading.
 */
public final class KafkaBroker extends Broker {
  private final Path dir;
  private final Path log;
  private final int port;
  private Path props;
  private Process proc;
  private FaultProxy proxy;
  /** Set by startSasl: the SASL_PLAINTEXT port, the super user and its password. */
  private int saslPort;
  private java.util.Map<String, Object> probeClient = java.util.Map.of();

  private KafkaBroker(Path dir, int port) {
    this.dir = dir;
    this.log = dir.resolve("kafka.log");
    this.port = port;
  }

  public static KafkaBroker start() throws Exception {
    return start(-1, 0);
  }

  /**
   * Kafka behind a {@link FaultProxy} that drops Produce responses with probability
   * dropProduceProb; advertised.listeners names the proxy, so {@link #bootstrap()} is the proxy.
   */
  public static KafkaBroker startBehindProxy(double dropProduceProb, long seed) throws Exception {
    return start(dropProduceProb, seed);
  }

  /**
   * Kafka with a SASL_PLAINTEXT listener (SCRAM-SHA-256; users from kafka-storage format
   * --add-scram) beside PLAINTEXT, StandardAuthorizer and super.users=User:superUser.
   * User:ANONYMOUS is a super user too: the controller listener and the inter-broker
   * listener are PLAINTEXT (the node's own BrokerRegistration etc. must be allowed); the
   * tests use only {@link #bootstrap()}, the SASL_PLAINTEXT listener.
   */
  public static KafkaBroker startSasl(java.util.Map<String, String> users, String superUser) throws Exception {
    Path dir = Files.createTempDirectory(Files.createDirectories(targetDir().resolve("brokers")), "kafka-sasl-");
    KafkaBroker b = new KafkaBroker(dir, freePort());
    b.saslPort = freePort();
    b.probeClient = scram(superUser, users.get(superUser));
    int controllerPort = freePort();
    Path props = dir.resolve("server.properties");
    b.props = props;
    Files.writeString(props, String.join("\n",
        "process.roles=broker,controller",
        "node.id=1",
        "controller.quorum.bootstrap.servers=127.0.0.1:" + controllerPort,
        "listeners=PLAINTEXT://127.0.0.1:" + b.port + ",SASL_PLAINTEXT://127.0.0.1:" + b.saslPort
            + ",CONTROLLER://127.0.0.1:" + controllerPort,
        "advertised.listeners=PLAINTEXT://127.0.0.1:" + b.port + ",SASL_PLAINTEXT://127.0.0.1:" + b.saslPort,
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms=SCRAM-SHA-256",
        "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config="
            + "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:" + superUser + ";User:ANONYMOUS",
        "log.dirs=" + dir.resolve("data"),
        "num.partitions=1",
        "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=3",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=3",
        "group.initial.rebalance.delay.ms=0",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        ""));
    List<String> fmtArgs = new ArrayList<>(List.of("format", "-t", Uuid.randomUuid().toString(),
        "-c", props.toString(), "--standalone"));
    for (var u : users.entrySet()) {
      fmtArgs.addAll(List.of("--add-scram", "SCRAM-SHA-256=[name=" + u.getKey() + ",password=" + u.getValue() + "]"));
    }
    Process fmt = b.java("kafka.tools.StorageTool", fmtArgs.toArray(new String[0]))
        .redirectOutput(dir.resolve("format.log").toFile()).start();
    if (!fmt.waitFor(3, TimeUnit.MINUTES) || fmt.exitValue() != 0) {
      throw new IllegalStateException("kafka-storage format failed: " + Files.readString(dir.resolve("format.log")));
    }
    b.launch();
    return b;
  }

  private static KafkaBroker start(double dropProduceProb, long seed) throws Exception {
    Path dir = Files.createTempDirectory(Files.createDirectories(targetDir().resolve("brokers")), "kafka-");
    KafkaBroker b = new KafkaBroker(dir, freePort());
    String advertised = "127.0.0.1:" + b.port;
    if (dropProduceProb >= 0) {
      b.proxy = FaultProxy.start(advertised, 0, dropProduceProb, seed, dir);
      advertised = b.proxy.addr();
    }
    int controllerPort = freePort();
    Path props = dir.resolve("server.properties");
    b.props = props;
    Files.writeString(props, String.join("\n",
        "process.roles=broker,controller",
        "node.id=1",
        "controller.quorum.bootstrap.servers=127.0.0.1:" + controllerPort,
        "listeners=PLAINTEXT://127.0.0.1:" + b.port + ",CONTROLLER://127.0.0.1:" + controllerPort,
        "advertised.listeners=PLAINTEXT://" + advertised,
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs=" + dir.resolve("data"),
        "num.partitions=1",
        "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=3",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=3",
        "group.initial.rebalance.delay.ms=0",
        // Abort a transaction past its transaction.timeout.ms within a second (default 10 s).
        "transaction.abort.timed.out.transaction.cleanup.interval.ms=1000",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "") );
    String clusterId = Uuid.randomUuid().toString();
    Process fmt = b.java("kafka.tools.StorageTool", "format", "-t", clusterId, "-c", props.toString(), "--standalone")
        .redirectOutput(dir.resolve("format.log").toFile()).start();
    if (!fmt.waitFor(3, TimeUnit.MINUTES) || fmt.exitValue() != 0) {
      throw new IllegalStateException("kafka-storage format failed: " + Files.readString(dir.resolve("format.log")));
    }
    b.launch();
    return b;
  }

  private void launch() throws Exception {
    proc = java("kafka.Kafka", props.toString())
        .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
    try {
      awaitReady(bootstrap(), proc, Duration.ofMinutes(3), log, probeClient);
    } catch (Exception e) {
      proc.destroyForcibly();
      throw e;
    }
  }

  @Override
  public boolean canKill() {
    return true;
  }

  /** SIGKILL the broker JVM, then start kafka.Kafka again on the same log.dirs and ports. */
  @Override
  public void killAndRestart() throws Exception {
    proc.destroyForcibly().waitFor(30, TimeUnit.SECONDS);
    launch();
  }

  /** The test classpath: the file maven-dependency-plugin wrote, else this JVM's own. */
  static String classpath() throws Exception {
    String f = System.getProperty("kafka.classpath.file");
    if (f != null && Files.exists(Path.of(f))) {
      return Files.readString(Path.of(f)).trim();
    }
    return System.getProperty("java.class.path");
  }

  /** A child JVM running mainClass with Kafka's jars. */
  ProcessBuilder java(String mainClass, String... args) throws Exception {
    return javaIn(dir, mainClass, args);
  }

  /** A child JVM running mainClass with Kafka's jars, logging (log4j2) to stdout, config in dir. */
  static ProcessBuilder javaIn(Path dir, String mainClass, String... args) throws Exception {
    List<String> cmd = new ArrayList<>(List.of(
        Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "-Xms256m", "-Xmx768m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
        "-Dlog4j2.configurationFile=" + writeLog4j(dir),
        "-cp", classpath(), mainClass));
    cmd.addAll(List.of(args));
    return new ProcessBuilder(cmd).redirectErrorStream(true);
  }

  private static String writeLog4j(Path dir) throws Exception {
    Path p = dir.resolve("log4j2.properties");
    if (!Files.exists(p)) {
      Files.writeString(p, String.join("\n",
          "appender.out.type=Console",
          "appender.out.name=out",
          "appender.out.layout.type=PatternLayout",
          "appender.out.layout.pattern=[%d] %p %m (%c)%n",
          "rootLogger.level=INFO",
          "rootLogger.appenderRef.out.ref=out",
          ""));
    }
    return p.toString();
  }

  @Override
  public String name() {
    return "kafka";
  }

  @Override
  public String bootstrap() {
    if (saslPort != 0) {
      return "127.0.0.1:" + saslPort;
    }
    return proxy != null ? proxy.addr() : "127.0.0.1:" + port;
  }

  FaultProxy proxy() {
    return proxy;
  }

  /** Stops the broker cleanly (SIGTERM, SIGKILL after 20 s). */
  @Override
  public void close() throws Exception {
    stop(proc);
    if (proxy != null) {
      proxy.close();
    }
  }
}
