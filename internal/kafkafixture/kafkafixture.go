// Package kafkafixture starts a real Apache Kafka (the version e2e/jvm/pom.xml
// pins) on loopback, for Go tests and the bench that compare oncelog with
// the broker it replaces: a single KRaft node, or a cluster of combined
// broker+controller nodes (replication factor n, min.insync.replicas n-1).
//
// It runs Kafka as its shell scripts do, from the Maven Central jars: the
// classpath comes from `mvn dependency:build-classpath` on e2e/jvm (once,
// cached; see Classpath), each node is formatted with
// `kafka.tools.StorageTool format` and then runs `kafka.Kafka
// server.properties` in its own JVM.
//
// # Usage
//
//	c := kafkafixture.StartT(t, kafkafixture.Options{Nodes: 3})
//	cl, _ := kgo.NewClient(kgo.SeedBrokers(c.Bootstrap()...))
//	// ... c.Kill(2); c.Restart(2) ...
//
// StartT skips the test when java or mvn is missing, except under CI (CI
// set), where that fails it. The cluster is stopped when the test ends; if
// the test failed, its directory (server.properties and kafka.log of every
// node) is kept and its path logged. Start is the same without testing, for
// the bench.
package kafkafixture

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/brokerproc"
)

const (
	// readyTimeout bounds how long Start and Restart wait for every node to
	// serve Metadata listing the whole cluster. A cold JVM on a loaded
	// 2-core machine takes 10-40 s.
	readyTimeout = 3 * time.Minute
	// formatTimeout bounds kafka-storage format.
	formatTimeout = 2 * time.Minute
	// stopTimeout bounds a clean shutdown after SIGTERM before SIGKILL.
	stopTimeout = 30 * time.Second
	// tailBytes is how much of a node's log Tail returns.
	tailBytes = 8 << 10
)

// TestJVMFlags start a Kafka JVM quickly and small: what a functional test
// wants on a shared machine. They are the default.
var TestJVMFlags = []string{"-Xms256m", "-Xmx768m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"}

// ServerJVMFlags are kafka-server-start.sh's defaults (KAFKA_HEAP_OPTS and
// KAFKA_JVM_PERFORMANCE_OPTS): what a benchmark against Kafka should use, so
// Kafka runs as its users run it.
var ServerJVMFlags = []string{"-Xmx1G", "-Xms1G", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
	"-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true"}

// Options configure a cluster. Zero values pick the defaults.
type Options struct {
	// Nodes is the number of combined broker+controller nodes; default 1.
	Nodes int
	// Advertise, for a single node only, is the address the node advertises
	// to clients instead of its listener: e.g. a fault proxy's address, so
	// clients come back through the proxy after reading metadata.
	Advertise string
	// Props are added to (and override) every node's server.properties,
	// e.g. "transaction.abort.timed.out.transaction.cleanup.interval.ms".
	Props map[string]string
	// JVMFlags replace TestJVMFlags, e.g. ServerJVMFlags for the bench.
	JVMFlags []string
	// Dir is the directory the nodes live in; default a new temporary one.
	Dir string
	// Repo is the oncelog checkout (for e2e/jvm/pom.xml); default found by
	// RepoRoot.
	Repo string
}

// Cluster is a running (or stopped) Kafka cluster.
type Cluster struct {
	dir       string
	java      string
	classpath string
	flags     []string
	nodes     []*node
}

type node struct {
	id         int
	dir        string
	props      string
	log        string
	addr       string // PLAINTEXT listener
	advertised string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartT starts a cluster for test t and stops it when the test ends. It
// skips t when java or mvn is missing, and fails it instead under CI.
func StartT(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if err := Tools(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("kafkafixture: %v (required in CI)", err)
		}
		t.Skipf("kafkafixture: SKIPPING: %v", err)
	}
	keep := opts.Dir != ""
	c, err := Start(opts)
	if err != nil {
		t.Fatalf("kafkafixture: %v", err)
	}
	t.Cleanup(func() {
		stopErr := c.Stop()
		if stopErr != nil {
			t.Errorf("kafkafixture: %v", stopErr)
		}
		if t.Failed() {
			for _, n := range c.nodes {
				t.Logf("kafkafixture: node %d log (tail) %s:\n%s", n.id, n.log, tail(n.log))
			}
			t.Logf("kafkafixture: kept %s", c.dir)
			return
		}
		if !keep {
			os.RemoveAll(c.dir)
		}
	})
	return c
}

// Start formats and starts a cluster and waits until every node serves
// Metadata listing all nodes. On error nothing is left running; the
// directory is kept for its logs.
func Start(opts Options) (*Cluster, error) {
	n := opts.Nodes
	if n == 0 {
		n = 1
	}
	if n < 1 {
		return nil, fmt.Errorf("nodes %d: want at least 1", n)
	}
	if opts.Advertise != "" && n != 1 {
		return nil, errors.New("kafkafixture: Options.Advertise needs a single node: the nodes of a cluster need addresses of their own")
	}
	java, err := javaBinary()
	if err != nil {
		return nil, fmt.Errorf("java: %w", err)
	}
	repo := opts.Repo
	if repo == "" {
		if repo, err = RepoRoot(); err != nil {
			return nil, err
		}
	}
	cp, err := Classpath(repo)
	if err != nil {
		return nil, err
	}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "oncelog-kafkafixture-"); err != nil {
			return nil, err
		}
	}
	flags := opts.JVMFlags
	if flags == nil {
		flags = TestJVMFlags
	}
	c := &Cluster{dir: dir, java: java, classpath: cp, flags: flags}
	ports, err := brokerproc.PickFreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	var voters []string
	for i := range n {
		voters = append(voters, fmt.Sprintf("%d@127.0.0.1:%d", i+1, ports[n+i]))
	}
	clusterID, err := newClusterID()
	if err != nil {
		return nil, err
	}
	log4j := filepath.Join(dir, "log4j2.properties")
	if err := os.WriteFile(log4j, []byte(log4jConfig), 0o644); err != nil {
		return nil, err
	}
	for i := range n {
		nd := &node{id: i + 1, dir: filepath.Join(dir, "node"+strconv.Itoa(i+1))}
		nd.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i]))
		nd.advertised = nd.addr
		if opts.Advertise != "" {
			nd.advertised = opts.Advertise
		}
		nd.props = filepath.Join(nd.dir, "server.properties")
		nd.log = filepath.Join(nd.dir, "kafka.log")
		if err := os.MkdirAll(nd.dir, 0o755); err != nil {
			return nil, err
		}
		props := map[string]string{
			"process.roles": "broker,controller",
			"node.id":       strconv.Itoa(nd.id),
			// A static voter set: every node knows the whole quorum from
			// its config, so no node needs the others' directory ids at
			// format time.
			"controller.quorum.voters":                         strings.Join(voters, ","),
			"listeners":                                        fmt.Sprintf("PLAINTEXT://%s,CONTROLLER://127.0.0.1:%d", nd.addr, ports[n+i]),
			"advertised.listeners":                             "PLAINTEXT://" + nd.advertised,
			"controller.listener.names":                        "CONTROLLER",
			"inter.broker.listener.name":                       "PLAINTEXT",
			"listener.security.protocol.map":                   "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
			"log.dirs":                                         filepath.Join(nd.dir, "data"),
			"num.partitions":                                   "1",
			"default.replication.factor":                       strconv.Itoa(n),
			"min.insync.replicas":                              strconv.Itoa(max(1, n-1)),
			"auto.create.topics.enable":                        "false",
			"offsets.topic.replication.factor":                 strconv.Itoa(n),
			"offsets.topic.num.partitions":                     "3",
			"transaction.state.log.replication.factor":         strconv.Itoa(n),
			"transaction.state.log.min.isr":                    strconv.Itoa(max(1, n-1)),
			"transaction.state.log.num.partitions":             "3",
			"share.coordinator.state.topic.replication.factor": strconv.Itoa(n),
			"share.coordinator.state.topic.min.isr":            strconv.Itoa(max(1, n-1)),
			"group.initial.rebalance.delay.ms":                 "0",
		}
		for k, v := range opts.Props {
			props[k] = v
		}
		if err := writeProps(nd.props, props); err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		if err := c.format(nd, clusterID, log4j); err != nil {
			return nil, err
		}
	}
	for _, nd := range c.nodes {
		if err := c.launch(nd, log4j); err != nil {
			c.killAll()
			return nil, err
		}
	}
	if err := c.waitReady(); err != nil {
		c.killAll()
		return nil, err
	}
	return c, nil
}

// Bootstrap is the addresses clients should seed with: the advertised
// address of every node.
func (c *Cluster) Bootstrap() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.advertised)
	}
	return out
}

// Addrs is every node's PLAINTEXT listener address (node 1 first), which is
// what a proxy in front of a node forwards to.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.addr)
	}
	return out
}

// Dir is the cluster's directory: node<id>/server.properties, kafka.log, data.
func (c *Cluster) Dir() string { return c.dir }

// Pid is node id's (1-based) JVM process id, or 0 when it is not running:
// the bench reads the broker's CPU time from /proc/<pid>/stat.
func (c *Cluster) Pid(id int) int {
	n, err := c.node(id)
	if err != nil {
		return 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.exited == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// ToolCommand is a command that runs one of Kafka's command-line tools (a
// main class on the broker's classpath, e.g.
// org.apache.kafka.tools.ProducerPerformance, which kafka-producer-perf-test.sh
// runs) with the given JVM flags (nil: TestJVMFlags). repo is as
// Options.Repo. Like the nodes, the JVM dies with the Go process.
func ToolCommand(repo string, jvmFlags []string, mainClass string, args ...string) (*exec.Cmd, error) {
	if err := Tools(); err != nil {
		return nil, err
	}
	java, err := javaBinary()
	if err != nil {
		return nil, err
	}
	if repo == "" {
		if repo, err = RepoRoot(); err != nil {
			return nil, err
		}
	}
	cp, err := Classpath(repo)
	if err != nil {
		return nil, err
	}
	if jvmFlags == nil {
		jvmFlags = TestJVMFlags
	}
	argv := append(append([]string{}, jvmFlags...), "-cp", cp, mainClass)
	cmd := exec.Command(java, append(argv, args...)...)
	cmd.SysProcAttr = sysProcAttr()
	return cmd, nil
}

// Tail returns the last few KiB of node id's (1-based) log.
func (c *Cluster) Tail(id int) string { return tail(c.nodes[id-1].log) }

// Kill sends SIGKILL to node id (1-based) and waits until it is gone.
func (c *Cluster) Kill(id int) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	return n.signalAndWait(syscall.SIGKILL, stopTimeout)
}

// Restart starts node id again on the same data and ports, stopping it
// cleanly first if it runs, and waits until the whole cluster is ready.
func (c *Cluster) Restart(id int) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	if err := n.stop(); err != nil {
		return err
	}
	if err := c.launch(n, filepath.Join(c.dir, "log4j2.properties")); err != nil {
		return err
	}
	return c.waitReady()
}

// Stop shuts every node down (SIGTERM to all, SIGKILL to any node still
// running after 30 s). It reports a node that had to be killed.
func (c *Cluster) Stop() error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	for i, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.stop()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Cluster) node(id int) (*node, error) {
	if id < 1 || id > len(c.nodes) {
		return nil, fmt.Errorf("no node %d in a cluster of %d", id, len(c.nodes))
	}
	return c.nodes[id-1], nil
}

func (c *Cluster) killAll() {
	for _, n := range c.nodes {
		n.signalAndWait(syscall.SIGKILL, stopTimeout)
	}
}

func (c *Cluster) javaCmd(log4j, mainClass string, args ...string) *exec.Cmd {
	argv := append([]string{}, c.flags...)
	argv = append(argv, "-Dlog4j2.configurationFile="+log4j, "-cp", c.classpath, mainClass)
	argv = append(argv, args...)
	cmd := exec.Command(c.java, argv...)
	cmd.SysProcAttr = sysProcAttr()
	return cmd
}

// format runs kafka-storage format on the node's log dir.
func (c *Cluster) format(n *node, clusterID, log4j string) error {
	logPath := filepath.Join(n.dir, "format.log")
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := c.javaCmd(log4j, "kafka.tools.StorageTool", "format", "-t", clusterID, "-c", n.props)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(formatTimeout):
		cmd.Process.Kill()
		err = fmt.Errorf("timed out after %v", formatTimeout)
		<-done
	}
	if err != nil {
		return fmt.Errorf("kafka-storage format of node %d: %w\n%s", n.id, err, tail(logPath))
	}
	return nil
}

// launch starts kafka.Kafka for the node, appending to its log.
func (c *Cluster) launch(n *node, log4j string) error {
	f, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := c.javaCmd(log4j, "kafka.Kafka", n.props)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start node %d: %w", n.id, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		f.Close()
		close(exited)
	}()
	n.mu.Lock()
	n.cmd, n.exited = cmd, exited
	n.mu.Unlock()
	return nil
}

// waitReady waits until every running node answers Metadata listing every
// node of the cluster: the brokers have registered with the controller and
// are unfenced, so they take produce requests and host internal topics.
func (c *Cluster) waitReady() error {
	deadline := time.Now().Add(readyTimeout)
	for _, n := range c.nodes {
		for {
			n.mu.Lock()
			exited := n.exited
			n.mu.Unlock()
			if exited == nil {
				break // never started or killed on purpose: not waited for
			}
			select {
			case <-exited:
				return fmt.Errorf("kafka node %d exited before it was ready; log %s:\n%s", n.id, n.log, tail(n.log))
			default:
			}
			brokers, err := metadataBrokers(n.addr, 3*time.Second)
			if err == nil && brokers == c.running() {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("kafka node %d on %s not ready within %v (metadata brokers %d, err %v); log %s:\n%s",
					n.id, n.addr, readyTimeout, brokers, err, n.log, tail(n.log))
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	return nil
}

// running counts the nodes whose process is up.
func (c *Cluster) running() int {
	k := 0
	for _, n := range c.nodes {
		n.mu.Lock()
		up := n.exited != nil
		n.mu.Unlock()
		if up {
			k++
		}
	}
	return k
}

// stop sends SIGTERM, then SIGKILL after stopTimeout. It does nothing if the
// node is not running.
func (n *node) stop() error {
	if err := n.signalAndWait(syscall.SIGTERM, stopTimeout); err == nil {
		return nil
	}
	if err := n.signalAndWait(syscall.SIGKILL, stopTimeout); err != nil {
		return err
	}
	return fmt.Errorf("kafka node %d did not stop within %v of SIGTERM; killed", n.id, stopTimeout)
}

// signalAndWait signals the node's JVM and waits for it to exit; once it
// has, the node counts as not running.
func (n *node) signalAndWait(sig syscall.Signal, timeout time.Duration) error {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if exited == nil {
		return nil
	}
	select {
	case <-exited:
	default:
		cmd.Process.Signal(sig)
		select {
		case <-exited:
		case <-time.After(timeout):
			return fmt.Errorf("kafka node %d still running %v after %v", n.id, timeout, sig)
		}
	}
	n.mu.Lock()
	if n.exited == exited {
		n.cmd, n.exited = nil, nil
	}
	n.mu.Unlock()
	return nil
}

// newClusterID is a random Kafka Uuid in Kafka's text form (unpadded
// URL-safe base64 of 16 bytes); like Uuid.randomUuid it never starts with
// '-', which the command line would take for a flag.
func newClusterID() (string, error) {
	for {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		id := base64.RawURLEncoding.EncodeToString(b[:])
		if id[0] != '-' {
			return id, nil
		}
	}
}

func writeProps(path string, props map[string]string) error {
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, props[k])
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > tailBytes {
		f.Seek(-tailBytes, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// log4jConfig sends Kafka's log4j2 output to stdout, which is the node's
// kafka.log.
const log4jConfig = `appender.out.type=Console
appender.out.name=out
appender.out.layout.type=PatternLayout
appender.out.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.out.ref=out
`
