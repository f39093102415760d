package io.oncelog.e2e;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * cmd/oncelog-faultproxy (the Go fault proxy, internal/faultproxy) as a child process in
 * front of one broker: it loses a fraction of the responses of one API and closes the
 * client's connection, which is what a lost ack looks like to the client. The broker
 * must advertise {@link #addr()} so that clients come back through the proxy after
 * reading metadata.
 */
final class FaultProxy {
  private static Path binary;

  private final Process proc;
  private final String addr;
  private final BufferedReader stdout;
  private long dropped = -1;

  private FaultProxy(Process proc, String addr, BufferedReader stdout) {
    this.proc = proc;
    this.addr = addr;
    this.stdout = stdout;
  }

  /** Starts a proxy to target that drops the responses of apiKey with probability prob. */
  static FaultProxy start(String target, int apiKey, double prob, long seed, Path dir) throws Exception {
    Process p = new ProcessBuilder(binary().toString(), "--target", target, "--api-key", String.valueOf(apiKey),
            "--drop-response-prob", String.valueOf(prob), "--seed", String.valueOf(seed))
        .redirectError(ProcessBuilder.Redirect.appendTo(dir.resolve("faultproxy.log").toFile())).start();
    BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
    String line = CompletableFuture.supplyAsync(() -> {
      try {
        return r.readLine();
      } catch (Exception e) {
        return null;
      }
    }).get(60, TimeUnit.SECONDS);
    if (line == null || !line.startsWith("listening ")) {
      p.destroyForcibly();
      throw new IllegalStateException("oncelog-faultproxy did not start: " + line + "; see " + dir.resolve("faultproxy.log"));
    }
    return new FaultProxy(p, line.substring("listening ".length()).trim(), r);
  }

  /** host:port the proxy accepts on. */
  String addr() {
    return addr;
  }

  /** How many responses the proxy dropped; known after {@link #close()}. */
  long dropped() {
    return dropped;
  }

  /** SIGTERM; the proxy prints its counters as it exits. */
  void close() throws Exception {
    if (!proc.isAlive()) {
      return;
    }
    // SIGTERM through the handle: Process.destroy would also close our end of the
    // proxy's stdout before we read its counters.
    proc.toHandle().destroy();
    if (!proc.waitFor(20, TimeUnit.SECONDS)) {
      proc.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
      return;
    }
    for (String line; (line = stdout.readLine()) != null; ) {
      Matcher m = Pattern.compile("\"dropped_responses\":(\\d+)").matcher(line);
      if (m.find()) {
        dropped = Long.parseLong(m.group(1));
      }
    }
  }

  private static synchronized Path binary() throws Exception {
    if (binary == null) {
      binary = OncelogBroker.goBuild("./cmd/oncelog-faultproxy", "oncelog-faultproxy");
    }
    return binary;
  }
}
