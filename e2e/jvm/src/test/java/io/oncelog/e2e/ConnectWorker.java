package io.oncelog.e2e;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.File;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

/**
 * A distributed Kafka Connect worker (org.apache.kafka.connect.cli.ConnectDistributed) in a
 * child JVM, so it can be SIGKILLed and restarted on the same group and internal topics.
 * Its classpath is Kafka's (this module's test classpath) plus the test classes, which hold
 * the connectors (io.oncelog.e2e.connect, found through their META-INF/services files).
 * The REST API listens on a loopback port; the log stays in dir/connect.log.
 */
final class ConnectWorker {
  static final ObjectMapper JSON = new ObjectMapper();

  private final Path dir;
  private final Path props;
  private final Path log;
  private final int port;
  private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
  private Process proc;
  final String groupId;

  private ConnectWorker(Path dir, String groupId) throws Exception {
    this.dir = dir;
    this.groupId = groupId;
    this.props = dir.resolve("worker.properties");
    this.log = dir.resolve("connect.log");
    this.port = Broker.freePort();
  }

  /** The worker's internal topics. */
  String configTopic() {
    return groupId + "-configs";
  }

  String offsetTopic() {
    return groupId + "-offsets";
  }

  String statusTopic() {
    return groupId + "-status";
  }

  /**
   * Writes worker.properties (exactly.once.source.support=enabled, String converters,
   * read_committed sink consumers, 1 s offset commits) plus extra, starts the worker and
   * waits until its REST API says it is healthy.
   */
  static ConnectWorker start(Broker b, Path dir, String groupId, Map<String, String> extra) throws Exception {
    Files.createDirectories(dir);
    ConnectWorker w = new ConnectWorker(dir, groupId);
    Map<String, String> p = new TreeMap<>(Map.ofEntries(
        Map.entry("bootstrap.servers", b.bootstrap()),
        Map.entry("group.id", groupId),
        Map.entry("listeners", "http://127.0.0.1:" + w.port),
        Map.entry("rest.advertised.host.name", "127.0.0.1"),
        Map.entry("config.storage.topic", w.configTopic()),
        Map.entry("offset.storage.topic", w.offsetTopic()),
        Map.entry("status.storage.topic", w.statusTopic()),
        Map.entry("config.storage.replication.factor", "1"),
        Map.entry("offset.storage.replication.factor", "1"),
        Map.entry("status.storage.replication.factor", "1"),
        Map.entry("key.converter", "org.apache.kafka.connect.storage.StringConverter"),
        Map.entry("value.converter", "org.apache.kafka.connect.storage.StringConverter"),
        // KIP-618: source tasks write their records and offsets in transactions; the
        // leader fences a task's earlier producers before it starts the new generation.
        Map.entry("exactly.once.source.support", "enabled"),
        // Sink tasks see only committed source transactions.
        Map.entry("consumer.isolation.level", "read_committed"),
        // A SIGKILLed worker's sink consumer stays in its group until its session times
        // out; the restarted one's join waits for that: 6 s, not the default 45 s.
        Map.entry("consumer.session.timeout.ms", "6000"),
        Map.entry("consumer.heartbeat.interval.ms", "2000"),
        Map.entry("offset.flush.interval.ms", "1000"),
        // A restarted worker is a new member: reassign the lost tasks at once, not after
        // the default 5 minutes, and notice the dead member after 6 s (Kafka's minimum).
        Map.entry("scheduled.rebalance.max.delay.ms", "0"),
        Map.entry("session.timeout.ms", "6000"),
        Map.entry("heartbeat.interval.ms", "2000"),
        // The connectors are on the classpath with their service files: no reflective scan.
        Map.entry("plugin.discovery", "service_load")));
    p.putAll(extra);
    StringBuilder sb = new StringBuilder();
    p.forEach((k, v) -> sb.append(k).append('=').append(v).append('\n'));
    Files.writeString(w.props, sb.toString());
    w.launch();
    return w;
  }

  private void launch() throws Exception {
    String testClasses = Path.of(ConnectWorker.class.getProtectionDomain().getCodeSource().getLocation().toURI()).toString();
    Path log4j = dir.resolve("log4j2.properties");
    if (!Files.exists(log4j)) {
      Files.writeString(log4j, String.join("\n",
          "appender.out.type=Console",
          "appender.out.name=out",
          "appender.out.layout.type=PatternLayout",
          "appender.out.layout.pattern=[%d] %p %m (%c)%n",
          "rootLogger.level=INFO",
          "rootLogger.appenderRef.out.ref=out",
          // The REST server's access log and Jetty/Jersey chatter.
          "logger.jetty.name=org.eclipse.jetty",
          "logger.jetty.level=WARN",
          "logger.reflections.name=org.reflections",
          "logger.reflections.level=ERROR",
          // -De2e.connect.debugTxn=true: the transactional producers' requests and state changes.
          "logger.txn.name=org.apache.kafka.clients.producer.internals.TransactionManager",
          "logger.txn.level=" + (Boolean.getBoolean("e2e.connect.debugTxn") ? "DEBUG" : "INFO"),
          ""));
    }
    List<String> cmd = new ArrayList<>(List.of(
        Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "-Xms256m", "-Xmx768m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
        "-Dlog4j2.configurationFile=" + log4j,
        "-cp", KafkaBroker.classpath() + File.pathSeparator + testClasses,
        "org.apache.kafka.connect.cli.ConnectDistributed", props.toString()));
    Files.writeString(log, "---- start " + Instant.now() + "\n", java.nio.file.StandardOpenOption.CREATE,
        java.nio.file.StandardOpenOption.APPEND);
    proc = new ProcessBuilder(cmd).redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
    Instant deadline = Instant.now().plus(Duration.ofMinutes(2));
    Exception last = null;
    while (Instant.now().isBefore(deadline)) {
      if (!proc.isAlive()) {
        throw new IllegalStateException("connect worker exited with " + proc.exitValue() + "; see " + log);
      }
      try {
        // GET /health (KIP-1017) answers 200 once the worker has read its internal topics
        // and joined its group; /connectors can answer before the topics exist.
        HttpResponse<String> r = request("GET", "/health", null);
        if (r.statusCode() == 200) {
          return;
        }
        last = new IllegalStateException("GET /health: " + r.statusCode() + " " + r.body());
      } catch (Exception e) {
        last = e;
      }
      Thread.sleep(250);
    }
    proc.destroyForcibly();
    throw new IllegalStateException("connect worker did not answer within 2 minutes; see " + log, last);
  }

  /** SIGKILL the worker JVM: no task stop, no offset flush, no group leave. */
  void kill() throws Exception {
    proc.destroyForcibly().waitFor(30, TimeUnit.SECONDS);
  }

  /** Starts the worker again with the same properties (same group, topics and REST port). */
  void restart() throws Exception {
    launch();
  }

  HttpResponse<String> request(String method, String path, Object body) throws Exception {
    HttpRequest.Builder rb = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path))
        .timeout(Duration.ofSeconds(30)).header("Content-Type", "application/json").header("Accept", "application/json");
    rb.method(method, body == null ? HttpRequest.BodyPublishers.noBody()
        : HttpRequest.BodyPublishers.ofString(JSON.writeValueAsString(body)));
    return http.send(rb.build(), HttpResponse.BodyHandlers.ofString());
  }

  /**
   * PUT /connectors/name/config (create or update), retrying while the worker answers 409
   * (a rebalance is in progress) or 5xx (not joined yet).
   */
  void putConnector(String name, Map<String, String> config) throws Exception {
    Instant deadline = Instant.now().plus(Duration.ofSeconds(60));
    while (true) {
      HttpResponse<String> r = request("PUT", "/connectors/" + name + "/config", config);
      if (r.statusCode() == 200 || r.statusCode() == 201) {
        return;
      }
      if ((r.statusCode() != 409 && r.statusCode() < 500) || Instant.now().isAfter(deadline)) {
        throw new IllegalStateException("PUT connector " + name + ": " + r.statusCode() + " " + r.body());
      }
      Thread.sleep(250);
    }
  }

  /** GET /connectors/name/status, or null while the worker does not know it yet. */
  JsonNode status(String name) throws Exception {
    HttpResponse<String> r = request("GET", "/connectors/" + name + "/status", null);
    return r.statusCode() == 200 ? JSON.readTree(r.body()) : null;
  }

  /** The state of task 0 of the connector ("RUNNING", "FAILED", ...), or "" when not assigned. */
  String taskState(String name) throws Exception {
    JsonNode s = status(name);
    if (s == null || s.path("tasks").isEmpty()) {
      return "";
    }
    return s.path("tasks").get(0).path("state").asText();
  }

  /** Waits until the connector and its task 0 are RUNNING; fails at once on FAILED. */
  void awaitRunning(String name, Duration limit) throws Exception {
    Instant deadline = Instant.now().plus(limit);
    JsonNode s = null;
    while (Instant.now().isBefore(deadline)) {
      s = status(name);
      if (s != null) {
        String c = s.path("connector").path("state").asText();
        String t = s.path("tasks").isEmpty() ? "" : s.path("tasks").get(0).path("state").asText();
        if (c.equals("FAILED") || t.equals("FAILED")) {
          throw new IllegalStateException(name + " failed: " + s + "; see " + log);
        }
        if (c.equals("RUNNING") && t.equals("RUNNING")) {
          return;
        }
      }
      Thread.sleep(200);
    }
    throw new IllegalStateException(name + " not RUNNING within " + limit + ": " + s + "; see " + log);
  }

  Path log() {
    return log;
  }

  /** Stops the worker cleanly (SIGTERM, SIGKILL after 20 s). */
  void close() throws Exception {
    Broker.stop(proc);
  }
}
