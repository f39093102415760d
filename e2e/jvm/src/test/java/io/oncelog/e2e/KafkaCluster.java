package io.oncelog.e2e;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.common.Uuid;

/**
 * Apache Kafka as a cluster of n combined broker+controller KRaft nodes on loopback
 * (replication factor n for internal topics, min.insync.replicas n-1), each in its own
 * child JVM: every node is formatted with the same --initial-controllers voter set.
 */
public final class KafkaCluster extends Broker {
  private final Path dir;
  private final int[] ports;
  private final Path[] props;
  private final Process[] procs;

  private KafkaCluster(Path dir, int n) {
    this.dir = dir;
    this.ports = new int[n];
    this.props = new Path[n];
    this.procs = new Process[n];
  }

  public static KafkaCluster start(int n) throws Exception {
    Path dir = Files.createTempDirectory(Files.createDirectories(targetDir().resolve("brokers")), "kafka-cluster-");
    KafkaCluster c = new KafkaCluster(dir, n);
    int[] cports = new int[n];
    String[] dirIds = new String[n];
    List<String> voters = new ArrayList<>();
    List<String> bootstrapControllers = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      c.ports[i] = freePort();
      cports[i] = freePort();
      dirIds[i] = Uuid.randomUuid().toString();
      voters.add((i + 1) + "@127.0.0.1:" + cports[i] + ":" + dirIds[i]);
      bootstrapControllers.add("127.0.0.1:" + cports[i]);
    }
    String clusterId = Uuid.randomUuid().toString();
    for (int i = 0; i < n; i++) {
      Path nodeDir = Files.createDirectories(dir.resolve("node" + (i + 1)));
      c.props[i] = nodeDir.resolve("server.properties");
      Files.writeString(c.props[i], String.join("\n",
          "process.roles=broker,controller",
          "node.id=" + (i + 1),
          "controller.quorum.bootstrap.servers=" + String.join(",", bootstrapControllers),
          "listeners=PLAINTEXT://127.0.0.1:" + c.ports[i] + ",CONTROLLER://127.0.0.1:" + cports[i],
          "advertised.listeners=PLAINTEXT://127.0.0.1:" + c.ports[i],
          "controller.listener.names=CONTROLLER",
          "inter.broker.listener.name=PLAINTEXT",
          "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
          "log.dirs=" + nodeDir.resolve("data"),
          "num.partitions=1",
          "default.replication.factor=" + n,
          "min.insync.replicas=" + (n - 1),
          "auto.create.topics.enable=false",
          "offsets.topic.replication.factor=" + n,
          "offsets.topic.num.partitions=3",
          "transaction.state.log.replication.factor=" + n,
          "transaction.state.log.min.isr=" + (n - 1),
          "transaction.state.log.num.partitions=3",
          "group.initial.rebalance.delay.ms=0",
          ""));
      Process fmt = KafkaBroker.javaIn(nodeDir, "kafka.tools.StorageTool", "format", "-t", clusterId,
              "-c", c.props[i].toString(), "--initial-controllers", String.join(",", voters))
          .redirectOutput(nodeDir.resolve("format.log").toFile()).start();
      if (!fmt.waitFor(3, TimeUnit.MINUTES) || fmt.exitValue() != 0) {
        throw new IllegalStateException("kafka-storage format failed: " + Files.readString(nodeDir.resolve("format.log")));
      }
      // The format command names the log dir's directory.id itself; the voter set
      // must carry that id, so rewrite meta.properties with ours.
      Path meta = nodeDir.resolve("data").resolve("meta.properties");
      String m = Files.readString(meta).replaceAll("directory\\.id=.*", "directory.id=" + dirIds[i]);
      Files.writeString(meta, m);
    }
    for (int i = 0; i < n; i++) {
      Path nodeDir = dir.resolve("node" + (i + 1));
      c.procs[i] = KafkaBroker.javaIn(nodeDir, "kafka.Kafka", c.props[i].toString())
          .redirectOutput(ProcessBuilder.Redirect.appendTo(nodeDir.resolve("kafka.log").toFile())).start();
    }
    try {
      for (int i = 0; i < n; i++) {
        awaitReady("127.0.0.1:" + c.ports[i], c.procs[i], Duration.ofMinutes(3), dir.resolve("node" + (i + 1)).resolve("kafka.log"));
      }
    } catch (Exception e) {
      c.close();
      throw e;
    }
    return c;
  }

  @Override
  public String name() {
    return "kafka-cluster";
  }

  @Override
  public String bootstrap() {
    List<String> s = new ArrayList<>();
    for (int p : ports) {
      s.add("127.0.0.1:" + p);
    }
    return String.join(",", s);
  }

  /** SIGKILLs node id (1-based) and leaves it down. */
  public void kill(int nodeId) throws Exception {
    procs[nodeId - 1].destroyForcibly().waitFor(30, TimeUnit.SECONDS);
  }

  @Override
  public void close() throws Exception {
    for (Process p : procs) {
      if (p != null) {
        p.destroy();
      }
    }
    for (Process p : procs) {
      stop(p);
    }
  }
}
