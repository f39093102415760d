package io.oncelog.e2e;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;

/** A broker under test: oncelog built from this checkout, or Apache Kafka from the Maven jars. */
public abstract class Broker {
  /** Shown in test names, e.g. "oncelog" or "kafka". */
  public abstract String name();

  /** host:port of the Kafka listener. */
  public abstract String bootstrap();

  /** Whether the broker can be killed with SIGKILL and restarted on the same data. */
  public boolean canKill() {
    return false;
  }

  /** kill -9 the broker, then start it again on the same data directory and port. */
  public void killAndRestart() throws Exception {
    throw new UnsupportedOperationException(name() + " cannot be killed and restarted");
  }

  /**
   * Stops the broker cleanly (SIGTERM, SIGKILL after 20 s). Deliberately not
   * AutoCloseable: JUnit closes AutoCloseable arguments after each parameterized
   * invocation, and the brokers are shared by every test.
   */
  public abstract void close() throws Exception;

  @Override
  public String toString() {
    return name();
  }

  /** Client settings for SCRAM-SHA-256 over SASL_PLAINTEXT as user/password. */
  public static Map<String, Object> scram(String user, String password) {
    return Map.of("security.protocol", "SASL_PLAINTEXT", "sasl.mechanism", "SCRAM-SHA-256",
        "sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
            + user + "\" password=\"" + password + "\";");
  }

  public Admin admin() {
    return Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap(),
        AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000,
        AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 20000));
  }

  /** Polls DescribeCluster until the broker answers, or fails when proc dies or time runs out. */
  static void awaitReady(String bootstrap, Process proc, Duration limit, Path log) throws Exception {
    awaitReady(bootstrap, proc, limit, log, Map.of());
  }

  /** awaitReady with extra client settings (e.g. {@link #scram}) for the probe. */
  static void awaitReady(String bootstrap, Process proc, Duration limit, Path log, Map<String, Object> client) throws Exception {
    Instant deadline = Instant.now().plus(limit);
    Exception last = null;
    while (Instant.now().isBefore(deadline)) {
      if (!proc.isAlive()) {
        throw new IllegalStateException("broker exited with " + proc.exitValue() + " before it answered; see " + log);
      }
      Properties p = new Properties();
      p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
      p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 2000);
      p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 3000);
      p.putAll(client);
      try (Admin a = Admin.create(p)) {
        if (a.describeCluster().nodes().get(3, TimeUnit.SECONDS).size() > 0) {
          return;
        }
      } catch (Exception e) {
        last = e;
      }
      Thread.sleep(250);
    }
    throw new IllegalStateException("broker at " + bootstrap + " did not answer within " + limit + "; see " + log, last);
  }

  static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      s.setReuseAddress(true);
      return s.getLocalPort();
    }
  }

  static Path targetDir() {
    return Path.of(System.getProperty("e2e.target.dir", "target")).toAbsolutePath();
  }

  static void stop(Process p) throws InterruptedException {
    if (p == null || !p.isAlive()) {
      return;
    }
    p.destroy();
    if (!p.waitFor(20, TimeUnit.SECONDS)) {
      p.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
    }
  }
}
