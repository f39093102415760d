package io.oncelog.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.function.UnaryOperator;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.junit.jupiter.api.Test;

/**
 * Kafka's command-line tools, run as a user runs them (their main classes in a fresh JVM),
 * against oncelog and against Kafka with the same topic, group and transactional id
 * names: every step must exit 0 on both, and print the same thing once what legitimately
 * differs (addresses, producer ids, times, throughput figures) is normalised.
 */
class CliToolsTest {
  /** One tool run: its label, exit status and normalised output. */
  record Step(String label, int exit, String output, String raw) {}

  @Test
  void cliToolsPrintWhatTheyPrintAgainstKafka() throws Exception {
    String run = UUID.randomUUID().toString().substring(0, 8);
    Map<String, List<Step>> byBroker = new LinkedHashMap<>();
    for (Broker b : Brokers.get()) {
      byBroker.put(b.name(), scenario(b, run));
    }
    List<Step> o = byBroker.get("oncelog");
    List<Step> k = byBroker.get("kafka");
    assertEquals(k.size(), o.size());
    List<String> problems = new ArrayList<>();
    Path dir = Files.createDirectories(Broker.targetDir().resolve("cli-outputs"));
    for (int i = 0; i < k.size(); i++) {
      Step ks = k.get(i);
      Step os = o.get(i);
      boolean same = ks.output.equals(os.output);
      System.out.println("cli step " + ks.label + ": kafka exit " + ks.exit + ", oncelog exit " + os.exit
          + (same ? ", same output" : ", DIFFERENT output"));
      Files.writeString(dir.resolve(String.format("%02d-kafka.txt", i)), ks.label + "\n" + ks.raw);
      Files.writeString(dir.resolve(String.format("%02d-oncelog.txt", i)), os.label + "\n" + os.raw);
      if (ks.exit != 0 || os.exit != 0 || !same) {
        problems.add(ks.label + " (exit: kafka " + ks.exit + ", oncelog " + os.exit + ")\n--- kafka:\n" + ks.output
            + "\n--- oncelog:\n" + os.output);
      }
    }
    assertTrue(problems.isEmpty(), "steps that failed or printed differently:\n" + String.join("\n\n", problems));
  }

  private static List<Step> scenario(Broker b, String run) throws Exception {
    String bs = b.bootstrap();
    String t = "cli-" + run;
    String tx = "cli-tx-" + run;
    String perf = "cli-perf-" + run;
    String group = "cli-group-" + run;
    String txid = "cli-txid-" + run;
    List<Step> steps = new ArrayList<>();
    UnaryOperator<String> addr = s -> s.replace(bs, "<bootstrap>").replaceAll("127\\.0\\.0\\.1:\\d+", "<addr>");

    // kafka-topics
    steps.add(step("kafka-topics --create", addr, null, "org.apache.kafka.tools.TopicCommand",
        "--bootstrap-server", bs, "--create", "--topic", t, "--partitions", "1", "--replication-factor", "1"));
    steps.add(step("kafka-topics --create (transactions)", addr, null, "org.apache.kafka.tools.TopicCommand",
        "--bootstrap-server", bs, "--create", "--topic", tx, "--partitions", "1", "--replication-factor", "1"));

    // kafka-console-producer, keyed, idempotent acks=all
    steps.add(step("kafka-console-producer", addr, "k1:v1\nk2:v2\nk3:v3\n", "org.apache.kafka.tools.ConsoleProducer",
        "--bootstrap-server", bs, "--topic", t, "--property", "parse.key=true", "--property", "key.separator=:",
        "--producer-property", "enable.idempotence=true", "--producer-property", "acks=all"));
    // An aborted and a committed transaction after them (Java producer).
    try (KafkaProducer<String, String> p = Clients.producer(b, Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txid + "-w"))) {
      p.initTransactions();
      p.beginTransaction();
      p.send(new ProducerRecord<>(t, "ka", "aborted1"));
      p.send(new ProducerRecord<>(t, "ka", "aborted2"));
      p.flush();
      p.abortTransaction();
      p.beginTransaction();
      p.send(new ProducerRecord<>(t, "kc", "committed1"));
      p.commitTransaction();
    }

    // kafka-console-consumer: read_committed skips the aborted records; the group commits.
    steps.add(step("kafka-console-consumer read_committed", addr, null, "org.apache.kafka.tools.consumer.ConsoleConsumer",
        "--bootstrap-server", bs, "--topic", t, "--from-beginning", "--max-messages", "4", "--group", group,
        "--consumer-property", "isolation.level=read_committed", "--property", "print.key=true", "--timeout-ms", "60000"));
    steps.add(step("kafka-console-consumer read_uncommitted", addr, null, "org.apache.kafka.tools.consumer.ConsoleConsumer",
        "--bootstrap-server", bs, "--topic", t, "--from-beginning", "--max-messages", "6",
        "--consumer-property", "isolation.level=read_uncommitted", "--property", "print.key=true", "--timeout-ms", "60000"));

    // kafka-consumer-groups
    String groups = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
    steps.add(step("kafka-consumer-groups --describe", addr, null, groups, "--bootstrap-server", bs, "--describe", "--group", group));
    steps.add(step("kafka-consumer-groups --describe --state", addr, null, groups, "--bootstrap-server", bs, "--describe", "--group", group, "--state"));
    steps.add(step("kafka-consumer-groups --list", s -> onlyLinesWith(s, group), null, groups, "--bootstrap-server", bs, "--list"));
    steps.add(step("kafka-consumer-groups --reset-offsets --to-datetime", addr, null, groups, "--bootstrap-server", bs,
        "--reset-offsets", "--group", group, "--topic", t, "--to-datetime", "2000-01-01T00:00:00.000", "--execute"));
    steps.add(step("kafka-consumer-groups --reset-offsets --shift-by", addr, null, groups, "--bootstrap-server", bs,
        "--reset-offsets", "--group", group, "--topic", t, "--shift-by", "2", "--execute"));
    steps.add(step("kafka-consumer-groups --describe after reset", addr, null, groups, "--bootstrap-server", bs, "--describe", "--group", group));
    steps.add(step("kafka-consumer-groups --delete", addr, null, groups, "--bootstrap-server", bs, "--delete", "--group", group));

    // kafka-configs on a topic
    String configs = "org.apache.kafka.tools.ConfigCommand";
    steps.add(step("kafka-configs --describe", addr, null, configs, "--bootstrap-server", bs, "--describe", "--entity-type", "topics", "--entity-name", t));
    steps.add(step("kafka-configs --alter --add-config", addr, null, configs, "--bootstrap-server", bs, "--alter", "--entity-type", "topics",
        "--entity-name", t, "--add-config", "retention.ms=86400000,cleanup.policy=compact"));
    // Kafka applies an altered config through its metadata log: describe until it shows.
    Step described = null;
    for (int i = 0; i < 20; i++) {
      described = step("kafka-configs --describe after alter", addr, null, configs, "--bootstrap-server", bs, "--describe",
          "--entity-type", "topics", "--entity-name", t);
      if (described.output.contains("retention.ms=86400000")) {
        break;
      }
      Thread.sleep(200);
    }
    steps.add(described);
    steps.add(step("kafka-configs --alter --delete-config", addr, null, configs, "--bootstrap-server", bs, "--alter", "--entity-type", "topics",
        "--entity-name", t, "--delete-config", "cleanup.policy"));

    // kafka-get-offsets and kafka-delete-records
    String getOffsets = "org.apache.kafka.tools.GetOffsetShell";
    steps.add(step("kafka-get-offsets latest", addr, null, getOffsets, "--bootstrap-server", bs, "--topic", t));
    steps.add(step("kafka-get-offsets earliest", addr, null, getOffsets, "--bootstrap-server", bs, "--topic", t, "--time", "-2"));
    Path json = Files.createTempFile(Broker.targetDir(), "delete-records-", ".json");
    Files.writeString(json, "{\"partitions\":[{\"topic\":\"" + t + "\",\"partition\":0,\"offset\":2}],\"version\":1}");
    steps.add(step("kafka-delete-records", addr, null, "org.apache.kafka.tools.DeleteRecordsCommand",
        "--bootstrap-server", bs, "--offset-json-file", json.toString()));
    steps.add(step("kafka-get-offsets earliest after delete", addr, null, getOffsets, "--bootstrap-server", bs, "--topic", t, "--time", "-2"));

    // kafka-transactions, around a transaction left open
    String txns = "org.apache.kafka.tools.TransactionsCommand";
    UnaryOperator<String> txnNorm = s -> normaliseTxnTable(addr.apply(s));
    try (KafkaProducer<String, String> open = Clients.producer(b, Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txid))) {
      open.initTransactions();
      open.beginTransaction();
      open.send(new ProducerRecord<>(tx, "open")).get();
      steps.add(step("kafka-transactions list", s -> onlyLinesWith(txnNorm.apply(s), txid, "TransactionalId"), null, txns,
          "--bootstrap-server", bs, "list"));
      steps.add(step("kafka-transactions describe", txnNorm, null, txns, "--bootstrap-server", bs, "describe", "--transactional-id", txid));
      steps.add(step("kafka-transactions describe-producers", txnNorm, null, txns, "--bootstrap-server", bs,
          "describe-producers", "--topic", tx, "--partition", "0"));
      steps.add(step("kafka-transactions find-hanging", txnNorm, null, txns, "--bootstrap-server", bs, "find-hanging", "--broker-id", "1"));
      steps.add(step("kafka-transactions abort", txnNorm, null, txns, "--bootstrap-server", bs,
          "abort", "--topic", tx, "--partition", "0", "--start-offset", "0"));
      steps.add(step("kafka-console-consumer read_committed after abort", addr, null, "org.apache.kafka.tools.consumer.ConsoleConsumer",
          "--bootstrap-server", bs, "--topic", tx, "--from-beginning", "--consumer-property", "isolation.level=read_committed",
          "--timeout-ms", "5000"));
    }

    // kafka-producer-perf-test, idempotent acks=all
    steps.add(step("kafka-topics --create (perf)", addr, null, "org.apache.kafka.tools.TopicCommand",
        "--bootstrap-server", bs, "--create", "--topic", perf, "--partitions", "1", "--replication-factor", "1"));
    steps.add(step("kafka-producer-perf-test", CliToolsTest::normalisePerf, null, "org.apache.kafka.tools.ProducerPerformance",
        "--topic", perf, "--num-records", "5000", "--record-size", "100", "--throughput", "-1",
        "--producer-props", "bootstrap.servers=" + bs, "enable.idempotence=true", "acks=all"));
    steps.add(step("kafka-get-offsets after perf-test", addr, null, getOffsets, "--bootstrap-server", bs, "--topic", perf));

    // kafka-topics --alter, --delete
    steps.add(step("kafka-topics --alter --partitions", addr, null, "org.apache.kafka.tools.TopicCommand",
        "--bootstrap-server", bs, "--alter", "--topic", t, "--partitions", "2"));
    steps.add(step("kafka-topics --delete", addr, null, "org.apache.kafka.tools.TopicCommand",
        "--bootstrap-server", bs, "--delete", "--topic", perf));
    return steps;
  }

  private static Step step(String label, UnaryOperator<String> normalise, String stdin, String mainClass, String... args) throws Exception {
    Tool r = Tool.run(stdin, mainClass, args);
    String out = r.output.lines()
        .filter(l -> !l.isBlank())
        .filter(l -> !NOISE.matcher(l).find())
        .map(l -> l.strip().replaceAll("\\s+", " "))
        .collect(Collectors.joining("\n"));
    return new Step(label, r.exit, normalise.apply(out), r.output);
  }

  /** Client log lines (log4j WARN/INFO from the tool's own clients) are not the tool's output. */
  private static final Pattern NOISE = Pattern.compile("^\\[?\\d{4}-\\d{2}-\\d{2}[ T]\\d{2}:\\d{2}|^(WARN|INFO|DEBUG) |SLF4J");

  private static String onlyLinesWith(String s, String... needles) {
    return s.lines().filter(l -> {
      for (String n : needles) {
        if (l.contains(n)) {
          return true;
        }
      }
      return false;
    }).collect(Collectors.joining("\n"));
  }

  /**
   * Producer ids (allocated in a different order when other tests ran first), times
   * and durations differ between brokers; the rest of each table must not. Rows are
   * sorted: the tools print them in the order the brokers answer.
   */
  private static String normaliseTxnTable(String s) {
    Set<String> masked = Set.of("ProducerId", "LastTimestamp", "CurrentTransactionStartTimeMs",
        "TransactionDurationMs", "Duration(min)");
    List<String> lines = s.lines().toList();
    int header = -1;
    for (int i = 0; i < lines.size() && header < 0; i++) {
      for (String col : lines.get(i).split(" ")) {
        if (masked.contains(col)) {
          header = i;
        }
      }
    }
    if (header < 0) {
      return s;
    }
    String[] cols = lines.get(header).split(" ");
    List<String> rows = new ArrayList<>();
    for (String line : lines.subList(header + 1, lines.size())) {
      String[] v = line.split(" ");
      if (v.length == cols.length) {
        for (int c = 0; c < cols.length; c++) {
          if (masked.contains(cols[c])) {
            v[c] = "<" + cols[c] + ">";
          }
        }
      }
      rows.add(String.join(" ", v));
    }
    rows.sort(null);
    List<String> out = new ArrayList<>(lines.subList(0, header + 1));
    out.addAll(rows);
    return String.join("\n", out);
  }

  /** Throughput and latency figures vary; the record count and the shape of each line must not. */
  private static String normalisePerf(String s) {
    return s.lines().filter(l -> l.contains("records sent"))
        .filter(l -> l.startsWith("5000 records sent"))
        .map(l -> l.replaceAll("\\d+(\\.\\d+)?", "N"))
        .collect(Collectors.joining("\n"));
  }
}
