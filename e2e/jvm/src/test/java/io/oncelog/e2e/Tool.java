package io.oncelog.e2e;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.kafka.common.utils.internals.Exit;

/**
 * One of Kafka's command-line tools, run as its shell script runs it: its main class with
 * the user's arguments. By default in this JVM, as Kafka's own tool tests do (stdin,
 * stdout and stderr redirected, Exit's procedures recording the status), because a
 * fresh JVM per run costs 2-4 s on a loaded 2-core machine; -De2e.tools.fork=true runs
 * each in a fresh JVM instead, exactly as the scripts do.
 */
final class Tool {
  final int exit;
  final String output;

  private Tool(int exit, String output) {
    this.exit = exit;
    this.output = output;
  }

  static Tool run(String stdin, String mainClass, String... args) throws Exception {
    if (Boolean.getBoolean("e2e.tools.fork")) {
      return fork(stdin, mainClass, args);
    }
    return inProcess(stdin, mainClass, args);
  }

  private static synchronized Tool inProcess(String stdin, String mainClass, String... args) throws Exception {
    ByteArrayOutputStream buf = new ByteArrayOutputStream();
    PrintStream capture = new PrintStream(buf, true, StandardCharsets.UTF_8);
    PrintStream out = System.out;
    PrintStream err = System.err;
    InputStream in = System.in;
    // The first Exit.exit is the status the JVM would have ended with. The procedure
    // returns, as in Kafka's tool tests: the tools call it last (TopicCommand even
    // from a finally block whose exception its caller would otherwise print).
    AtomicInteger exited = new AtomicInteger(Integer.MIN_VALUE);
    int[] status = {0};
    Thread t = new Thread(() -> {
      try {
        Class.forName(mainClass).getMethod("main", String[].class).invoke(null, (Object) args);
      } catch (InvocationTargetException e) {
        e.getCause().printStackTrace(capture);
        status[0] = 1;
      } catch (Exception e) {
        e.printStackTrace(capture);
        status[0] = 1;
      }
    }, "tool-" + mainClass);
    Exit.setExitProcedure((code, msg) -> exited.compareAndSet(Integer.MIN_VALUE, code));
    Exit.setHaltProcedure((code, msg) -> exited.compareAndSet(Integer.MIN_VALUE, code));
    // The tools' shutdown hooks (the console producer closes, and so flushes, its
    // producer in one) run when main returns, as they would when its JVM exits.
    List<Runnable> hooks = new ArrayList<>();
    Exit.setShutdownHookAdder((name, hook) -> hooks.add(hook));
    System.setOut(capture);
    System.setErr(capture);
    System.setIn(new ByteArrayInputStream(stdin == null ? new byte[0] : stdin.getBytes(StandardCharsets.UTF_8)));
    try {
      t.start();
      t.join(TimeUnit.MINUTES.toMillis(2));
      if (t.isAlive()) {
        t.interrupt();
        return new Tool(-1, "timed out: " + buf.toString(StandardCharsets.UTF_8));
      }
      for (Runnable hook : hooks) {
        try {
          hook.run();
        } catch (Exception e) {
          e.printStackTrace(capture);
        }
      }
    } finally {
      System.setOut(out);
      System.setErr(err);
      System.setIn(in);
      Exit.resetExitProcedure();
      Exit.resetHaltProcedure();
      Exit.resetShutdownHookAdder();
    }
    return new Tool(exited.get() != Integer.MIN_VALUE ? exited.get() : status[0], buf.toString(StandardCharsets.UTF_8));
  }

  private static Tool fork(String stdin, String mainClass, String... args) throws Exception {
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
