package io.oncelog.e2e;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** oncelog built from this checkout (go build), serving on loopback from a temp data dir. */
public final class OncelogBroker extends Broker {
  private static Path binary;

  private final Path dir;
  private final Path dataDir;
  private final Path log;
  private final int port;
  private final int adminPort;
  private Process proc;
  private FaultProxy proxy;
  /** Set by startSasl: the SASL_PLAINTEXT port, the super user and its password. */
  private int saslPort;
  private String superUser;
  private String superPassword;

  private OncelogBroker(Path dir) throws Exception {
    this.dir = dir;
    this.dataDir = dir.resolve("data");
    this.log = dir.resolve("oncelog.log");
    this.port = freePort();
    this.adminPort = freePort();
  }

  /** Builds target/oncelog once per JVM (go caches the build) and starts a broker. */
  public static OncelogBroker start() throws Exception {
    Path dir = Files.createTempDirectory(Files.createDirectories(targetDir().resolve("brokers")), "oncelog-");
    OncelogBroker b = new OncelogBroker(dir);
    b.launch();
    return b;
  }

  /**
   * oncelog behind a {@link FaultProxy} that drops Produce responses with probability
   * dropProduceProb; oncelog advertises the proxy, so {@link #bootstrap()} is the proxy.
   */
  public static OncelogBroker startBehindProxy(double dropProduceProb, long seed) throws Exception {
    Path dir = Files.createTempDirectory(Files.createDirectories(targetDir().resolve("brokers")), "oncelog-proxied-");
    OncelogBroker b = new OncelogBroker(dir);
    b.proxy = FaultProxy.start("127.0.0.1:" + b.port, 0, dropProduceProb, seed, dir);
    b.launch();
    return b;
  }

  /**
   * oncelog with a PLAINTEXT and a SASL_PLAINTEXT listener (SCRAM-SHA-256 users created
   * with `oncelog user create` before the first start) and `--authorizer acl
   * --super-users User:superUser`. {@link #bootstrap()} is the SASL_PLAINTEXT listener.
   */
  public static OncelogBroker startSasl(java.util.Map<String, String> users, String superUser) throws Exception {
    Path dir = Files.createTempDirectory(Files.createDirectories(targetDir().resolve("brokers")), "oncelog-sasl-");
    OncelogBroker b = new OncelogBroker(dir);
    b.saslPort = freePort();
    b.superUser = superUser;
    b.superPassword = users.get(superUser);
    for (var u : users.entrySet()) {
      Process p = new ProcessBuilder(binary().toString(), "user", "create", u.getKey(),
          "--mechanism", "SCRAM-SHA-256", "--password-stdin", "--data-dir", b.dataDir.toString())
          .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(b.log.toFile())).start();
      try (var in = p.getOutputStream()) {
        in.write((u.getValue() + "\n").getBytes(java.nio.charset.StandardCharsets.UTF_8));
      }
      if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
        throw new IllegalStateException("oncelog user create " + u.getKey() + " failed; see " + b.log);
      }
    }
    b.launch();
    return b;
  }

  FaultProxy proxy() {
    return proxy;
  }

  private static synchronized Path binary() throws Exception {
    if (binary != null) {
      return binary;
    }
    String override = System.getenv("ONCELOG_TESTBROKER_BINARY");
    if (override != null && !override.isEmpty()) {
      return binary = Path.of(override);
    }
    return binary = goBuild("./cmd/oncelog", "oncelog");
  }

  /** go build of pkg (a main package of this checkout) into target/name. */
  static Path goBuild(String pkg, String name) throws Exception {
    Path repo = Path.of(System.getProperty("oncelog.repo", "../..")).toAbsolutePath().normalize();
    Path out = targetDir().resolve(name);
    Path buildLog = targetDir().resolve("go-build-" + name + ".log");
    Process p = new ProcessBuilder("go", "build", "-o", out.toString(), pkg)
        .directory(repo.toFile()).redirectErrorStream(true).redirectOutput(buildLog.toFile()).start();
    if (!p.waitFor(10, TimeUnit.MINUTES) || p.exitValue() != 0) {
      throw new IllegalStateException("go build " + pkg + " failed; see " + buildLog + ":\n" + Files.readString(buildLog));
    }
    return out;
  }

  private void launch() throws Exception {
    List<String> cmd = new ArrayList<>(List.of(binary().toString(), "serve",
        "--admin-listen", "127.0.0.1:" + adminPort,
        "--http-listen", "",
        "--data-dir", dataDir.toString(),
        "--auto-create-topics=false",
        // As the Kafka fixture's transaction.abort.timed.out.transaction.cleanup.interval.ms:
        // a transaction past its transaction.timeout.ms is aborted within a second.
        "--transaction-timeout-check-interval=1s",
        // As the Kafka fixture's group.initial.rebalance.delay.ms=0.
        "--group-initial-rebalance-delay=0s"));
    if (saslPort != 0) {
      cmd.addAll(List.of("--listeners", "PLAINTEXT://127.0.0.1:" + port + ",SASL_PLAINTEXT://127.0.0.1:" + saslPort,
          "--authorizer", "acl", "--super-users", "User:" + superUser));
    } else {
      cmd.addAll(List.of("--listen", "127.0.0.1:" + port));
    }
    if (proxy != null) {
      cmd.addAll(List.of("--advertise", proxy.addr()));
    }
    proc = new ProcessBuilder(cmd).redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
    awaitReady(bootstrap(), proc, Duration.ofSeconds(60), log,
        saslPort != 0 ? scram(superUser, superPassword) : java.util.Map.of());
  }

  @Override
  public String name() {
    return "oncelog";
  }

  @Override
  public String bootstrap() {
    if (saslPort != 0) {
      return "127.0.0.1:" + saslPort;
    }
    return proxy != null ? proxy.addr() : "127.0.0.1:" + port;
  }

  @Override
  public boolean canKill() {
    return true;
  }

  /** SIGKILL (Process.destroyForcibly on Unix), then a fresh process on the same data dir and port. */
  @Override
  public void killAndRestart() throws Exception {
    proc.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
    launch();
  }

  /** Stops the broker cleanly (SIGTERM, SIGKILL after 20 s). */
  @Override
  public void close() throws Exception {
    stop(proc);
    if (proxy != null) {
      proxy.close();
    }
  }

  File logFile() {
    return log.toFile();
  }
}
