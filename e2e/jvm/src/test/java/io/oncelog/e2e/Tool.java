package io.oncelog.e2e;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** One of Kafka's command-line tools, run as its shell script runs it: its main class in a fresh JVM. */
final class Tool {
  final int exit;
  final String output;

  private Tool(int exit, String output) {
    this.exit = exit;
    this.output = output;
  }

  static Tool run(String stdin, String mainClass, String... args) throws Exception {
    List<String> cmd = new ArrayList<>(List.of(
        Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
        "-cp", KafkaBroker.classpath(), mainClass));
    cmd.addAll(List.of(args));
    Path out = Files.createTempFile(Files.createDirectories(Broker.targetDir().resolve("tools")), "tool-", ".log");
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(out.toFile()).start();
    if (stdin != null) {
      p.getOutputStream().write(stdin.getBytes(StandardCharsets.UTF_8));
    }
    p.getOutputStream().close();
    if (!p.waitFor(2, TimeUnit.MINUTES)) {
      p.destroyForcibly();
      return new Tool(-1, "timed out: " + Files.readString(out));
    }
    return new Tool(p.exitValue(), Files.readString(out));
  }

  @Override
  public String toString() {
    return "exit " + exit + ":\n" + output;
  }
}
