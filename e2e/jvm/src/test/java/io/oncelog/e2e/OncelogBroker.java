package io.oncelog.e2e;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
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

  private static synchronized Path binary() throws Exception {
    if (binary != null) {
      return binary;
    }
    String override = System.getenv("ONCELOG_TESTBROKER_BINARY");
    if (override != null && !override.isEmpty()) {
      return binary = Path.of(override);
    }
    Path repo = Path.of(System.getProperty("oncelog.repo", "../..")).toAbsolutePath().normalize();
    Path out = targetDir().resolve("oncelog");
    Path buildLog = targetDir().resolve("go-build.log");
    Process p = new ProcessBuilder("go", "build", "-o", out.toString(), "./cmd/oncelog")
        .directory(repo.toFile()).redirectErrorStream(true).redirectOutput(buildLog.toFile()).start();
    if (!p.waitFor(10, TimeUnit.MINUTES) || p.exitValue() != 0) {
      throw new IllegalStateException("go build ./cmd/oncelog failed; see " + buildLog + ":\n" + Files.readString(buildLog));
    }
    return binary = out;
  }

  private void launch() throws Exception {
    List<String> cmd = List.of(binary().toString(), "serve",
        "--listen", "127.0.0.1:" + port,
        "--admin-listen", "127.0.0.1:" + adminPort,
        "--http-listen", "",
        "--data-dir", dataDir.toString(),
        "--auto-create-topics=false");
    proc = new ProcessBuilder(cmd).redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
    awaitReady(bootstrap(), proc, Duration.ofSeconds(60), log);
  }

  @Override
  public String name() {
    return "oncelog";
  }

  @Override
  public String bootstrap() {
    return "127.0.0.1:" + port;
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
  }

  File logFile() {
    return log.toFile();
  }
}
