package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/oncelog/oncelog/internal/buildinfo"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestParseStartPosition(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want startPosition
	}{
		{"beginning", startPosition{kind: startBeginning}},
		{"earliest", startPosition{kind: startBeginning}},
		{"END", startPosition{kind: startEnd}},
		{"latest", startPosition{kind: startEnd}},
		{"0", startPosition{kind: startOffset, n: 0}},
		{"42", startPosition{kind: startOffset, n: 42}},
		{"-10", startPosition{kind: startTail, n: 10}},
		{"@1717171717000", startPosition{kind: startTimestamp, n: 1717171717000}},
	} {
		got, err := parseStartPosition(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseStartPosition(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "begin", "@", "@x", "@-5", "1.5", "+-3"} {
		if _, err := parseStartPosition(bad); err == nil {
			t.Errorf("parseStartPosition(%q) succeeded, want error", bad)
		}
	}
}

func TestStartPositionResolve(t *testing.T) {
	// A partition holding offsets [10, 20).
	const logStart, logEnd = 10, 20
	for _, tc := range []struct {
		from   string
		atTime int64
		want   int64
	}{
		{"beginning", -1, 10},
		{"end", -1, 20},
		{"15", -1, 15},
		{"3", -1, 10},   // below the start: clamped
		{"99", -1, 20},  // past the end: clamped
		{"-4", -1, 16},  // last 4
		{"-50", -1, 10}, // more than there is
		{"@1000", 13, 13},
		{"@1000", -1, 20}, // nothing at or after the time
	} {
		s, err := parseStartPosition(tc.from)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.resolve(logStart, logEnd, tc.atTime); got != tc.want {
			t.Errorf("--from %s (atTime %d): resolve = %d, want %d", tc.from, tc.atTime, got, tc.want)
		}
	}
}

func TestStartPositionResetOffset(t *testing.T) {
	for from, want := range map[string]kgo.Offset{
		"beginning": kgo.NewOffset().AtStart(),
		"end":       kgo.NewOffset().AtEnd(),
		"7":         kgo.NewOffset().At(7),
		"-3":        kgo.NewOffset().AtEnd().Relative(-3),
		"@5000":     kgo.NewOffset().AfterMilli(5000),
	} {
		s, _ := parseStartPosition(from)
		if got := s.resetOffset(); got.String() != want.String() {
			t.Errorf("--from %s: reset offset %v, want %v", from, got, want)
		}
	}
}

func TestParseHeaders(t *testing.T) {
	got, err := parseHeaders([]string{"a=1", "b=", "a=x=y"})
	if err != nil {
		t.Fatal(err)
	}
	want := []kgo.RecordHeader{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("")}, {Key: "a", Value: []byte("x=y")}}
	if len(got) != len(want) {
		t.Fatalf("got %d headers, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Key != want[i].Key || !bytes.Equal(got[i].Value, want[i].Value) {
			t.Errorf("header %d = %s=%q, want %s=%q", i, got[i].Key, got[i].Value, want[i].Key, want[i].Value)
		}
	}
	for _, bad := range []string{"novalue", "=v"} {
		if _, err := parseHeaders([]string{bad}); err == nil {
			t.Errorf("parseHeaders(%q) succeeded, want error", bad)
		}
	}
}

func TestParseConfigPairs(t *testing.T) {
	got, err := parseConfigPairs([]string{"retention.ms=1000", " cleanup.policy =delete"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || *got["retention.ms"] != "1000" || *got["cleanup.policy"] != "delete" {
		t.Errorf("got %v", got)
	}
	if _, err := parseConfigPairs([]string{"a=1", "a=2"}); err == nil {
		t.Error("duplicate key accepted")
	}
	if _, err := parseConfigPairs([]string{"a"}); err == nil {
		t.Error("missing '=' accepted")
	}
}

func TestBuildAlterConfigs(t *testing.T) {
	alters, err := buildAlterConfigs([]string{"retention.ms=5"}, []string{"segment.bytes"})
	if err != nil {
		t.Fatal(err)
	}
	if len(alters) != 2 ||
		alters[0].Op != kadm.SetConfig || alters[0].Name != "retention.ms" || *alters[0].Value != "5" ||
		alters[1].Op != kadm.DeleteConfig || alters[1].Name != "segment.bytes" || alters[1].Value != nil {
		t.Errorf("got %+v", alters)
	}
	for _, tc := range []struct{ sets, deletes []string }{
		{nil, nil},
		{[]string{"a=1"}, []string{"a"}},
		{[]string{"a"}, nil},
		{nil, []string{" "}},
	} {
		if _, err := buildAlterConfigs(tc.sets, tc.deletes); err == nil {
			t.Errorf("buildAlterConfigs(%q, %q) succeeded, want error", tc.sets, tc.deletes)
		}
	}
}

func TestRecordBuilder(t *testing.T) {
	headers := []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}
	delim := &recordBuilder{topic: "t", keyDelimiter: []byte("::"), headers: headers, partition: -1}

	r := delim.build([]byte("k1::v1::more"))
	if string(r.Key) != "k1" || string(r.Value) != "v1::more" || r.Topic != "t" || len(r.Headers) != 1 {
		t.Errorf("split at first delimiter: key %q value %q", r.Key, r.Value)
	}
	r = delim.build([]byte("no delimiter"))
	if r.Key != nil || string(r.Value) != "no delimiter" {
		t.Errorf("line without delimiter: key %q value %q, want no key", r.Key, r.Value)
	}
	r = delim.build([]byte("::v"))
	if r.Key == nil || len(r.Key) != 0 || string(r.Value) != "v" {
		t.Errorf("empty key: key %q value %q", r.Key, r.Value)
	}

	fixed := &recordBuilder{topic: "t", key: []byte("K"), partition: 3}
	r = fixed.build([]byte("a:b"))
	if string(r.Key) != "K" || string(r.Value) != "a:b" || r.Partition != 3 {
		t.Errorf("fixed key: %+v", r)
	}
	if n := recordBytes(delim.build([]byte("ab::cde"))); n != 2+3+1+1 {
		t.Errorf("recordBytes = %d, want 7", n)
	}
}

func TestProduceFlagConflicts(t *testing.T) {
	o := &produceOptions{keyDelimiter: ":", partition: -1, transactionTimeout: time.Minute}
	if _, err := o.recordBuilder("t", true); exitCode(err) != 2 {
		t.Errorf("--key with --key-delimiter: %v, want usage error", err)
	}
	o = &produceOptions{partition: -2, transactionTimeout: time.Minute}
	if _, err := o.recordBuilder("t", false); exitCode(err) != 2 {
		t.Errorf("--partition -2: %v, want usage error", err)
	}
}

func readAllLines(t *testing.T, in io.Reader) ([]string, error) {
	t.Helper()
	lines := make(chan []byte)
	errc := make(chan error, 1)
	go readLines(in, lines, make(chan struct{}), errc)
	var got []string
	for l := range lines {
		got = append(got, string(l))
	}
	select {
	case err := <-errc:
		return got, err
	default:
		return got, nil
	}
}

func TestReadLines(t *testing.T) {
	long := strings.Repeat("x", 200<<10) // longer than the reader's buffer
	got, err := readAllLines(t, strings.NewReader("a\r\n\nb\n"+long+"\nlast"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a", "", "b", long, "last"}
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d = %.20q, want %.20q", i, got[i], want[i])
		}
	}

	got, _ = readAllLines(t, strings.NewReader("only\n"))
	if len(got) != 1 {
		t.Errorf("a final newline must not make an empty record: %q", got)
	}

	boom := errors.New("boom")
	got, err = readAllLines(t, io.MultiReader(strings.NewReader("a\nb\n"), &failingReader{boom}))
	if !errors.Is(err, boom) || len(got) != 2 {
		t.Errorf("got %q, %v; want 2 lines then %v", got, err, boom)
	}
}

type failingReader struct{ err error }

func (r *failingReader) Read([]byte) (int, error) { return 0, r.err }

func testRecord() *kgo.Record {
	return &kgo.Record{
		Topic:     "orders",
		Partition: 2,
		Offset:    41,
		Timestamp: time.UnixMilli(1717171717123),
		Key:       []byte("k1"),
		Value:     []byte(`{"id":1}`),
		Headers:   []kgo.RecordHeader{{Key: "trace", Value: []byte("abc")}, {Key: "bin", Value: []byte{0xff, 0x00}}},
	}
}

func formatRecord(t *testing.T, format string, r *kgo.Record) string {
	t.Helper()
	f, err := newRecordFormatter(format)
	if err != nil {
		t.Fatalf("newRecordFormatter(%q): %v", format, err)
	}
	var buf bytes.Buffer
	if err := f(&buf, r); err != nil {
		t.Fatalf("format %q: %v", format, err)
	}
	return buf.String()
}

func TestFormatText(t *testing.T) {
	if got := formatRecord(t, "text", testRecord()); got != "{\"id\":1}\n" {
		t.Errorf("text = %q", got)
	}
}

func TestFormatJSON(t *testing.T) {
	got := formatRecord(t, "json", testRecord())
	want := `{"topic":"orders","partition":2,"offset":41,"timestamp":1717171717123,"key":"k1","value":"{\"id\":1}","headers":[{"key":"trace","value":"abc"},{"key":"bin","value":"/wA=","value_encoding":"base64"}]}` + "\n"
	if got != want {
		t.Errorf("json =\n%s\nwant\n%s", got, want)
	}

	r := &kgo.Record{Topic: "t", Value: []byte{0xc3, 0x28}, Timestamp: time.UnixMilli(0)}
	got = formatRecord(t, "json", r)
	want = `{"topic":"t","partition":0,"offset":0,"timestamp":0,"key":null,"value":"wyg=","value_encoding":"base64","headers":[]}` + "\n"
	if got != want {
		t.Errorf("binary value, no key: json =\n%s\nwant\n%s", got, want)
	}
}

func TestFormatTemplate(t *testing.T) {
	r := testRecord()
	for tmpl, want := range map[string]string{
		"{{.Partition}}/{{.Offset}} {{.Key}}={{.Value}}":           "2/41 k1={\"id\":1}\n",
		"{{.Header \"trace\"}}|{{.Header \"missing\"}}\n":          "abc|\n",
		"{{.Timestamp.UnixMilli}} {{len .Headers}}":                "1717171717123 2\n",
		"{{base64 .Key}} {{hex .Key}} {{json .Value}}":             "azE= 6b31 \"{\\\"id\\\":1}\"\n",
		"{{range .Headers}}{{.Key}};{{end}}":                       "trace;bin;\n",
		"{{.Topic}}\t{{.Timestamp.UTC.Format \"2006-01-02\"}}\n\n": "orders\t2024-05-31\n\n",
	} {
		if got := formatRecord(t, tmpl, r); got != want {
			t.Errorf("template %q = %q, want %q", tmpl, got, want)
		}
	}
	for _, bad := range []string{"yaml", "{{.Key", "{{.Nope}}x"} {
		f, err := newRecordFormatter(bad)
		if err == nil {
			err = f(io.Discard, r)
		}
		if err == nil {
			t.Errorf("format %q accepted", bad)
		}
	}
}

func TestParseTopicPartitions(t *testing.T) {
	topic, ps, err := parseTopicPartitions("orders")
	if err != nil || topic != "orders" || ps != nil {
		t.Errorf("orders: %q %v %v", topic, ps, err)
	}
	topic, ps, err = parseTopicPartitions("orders:2, 0,2")
	if err != nil || topic != "orders" || len(ps) != 2 || ps[0] != 0 || ps[1] != 2 {
		t.Errorf("orders:2, 0,2: %q %v %v", topic, ps, err)
	}
	for _, bad := range []string{"", ":1", "orders:", "orders:x", "orders:-1"} {
		if _, _, err := parseTopicPartitions(bad); err == nil {
			t.Errorf("parseTopicPartitions(%q) succeeded", bad)
		}
	}
}

func TestResetTarget(t *testing.T) {
	// A partition holding [10, 20), 14 committed, the first record at or
	// after the --to-datetime time at 17.
	pos := partitionPosition{logStart: 10, logEnd: 20, committed: 14, atTime: 17}
	for _, tc := range []struct {
		flags resetFlags
		want  int64
	}{
		{resetFlags{earliest: true}, 10},
		{resetFlags{latest: true}, 20},
		{resetFlags{toOffsetSet: true, toOffset: 15}, 15},
		{resetFlags{toOffsetSet: true, toOffset: 0}, 10},
		{resetFlags{toOffsetSet: true, toOffset: 25}, 20},
		{resetFlags{shiftBySet: true, shiftBy: -2}, 12},
		{resetFlags{shiftBySet: true, shiftBy: 3}, 17},
		{resetFlags{shiftBySet: true, shiftBy: -100}, 10},
		{resetFlags{shiftBySet: true, shiftBy: 100}, 20},
		{resetFlags{datetime: "2026-12-01T09:00:00Z"}, 17},
	} {
		target, err := parseResetTarget(tc.flags)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := target.newOffset(pos); err != nil || got != tc.want {
			t.Errorf("%+v: new offset %d, %v, want %d", tc.flags, got, err, tc.want)
		}
	}
	// Nothing committed: a shift has no starting point, as in Kafka's tool.
	shift, _ := parseResetTarget(resetFlags{shiftBySet: true, shiftBy: 1})
	if _, err := shift.newOffset(partitionPosition{logStart: 10, logEnd: 20, committed: -1, atTime: -1}); err == nil {
		t.Error("shift without a committed offset accepted")
	}
	// No record that late: the end offset.
	dt, _ := parseResetTarget(resetFlags{datetime: "@1"})
	if got, _ := dt.newOffset(partitionPosition{logStart: 10, logEnd: 20, committed: -1, atTime: -1}); got != 20 {
		t.Errorf("--to-datetime past every record: %d, want the end offset 20", got)
	}
	for _, f := range []resetFlags{
		{}, {earliest: true, latest: true}, {earliest: true, toOffsetSet: true}, {shiftBySet: true, datetime: "@5"},
		{toOffsetSet: true, toOffset: -1}, {datetime: "yesterday"},
	} {
		if _, err := parseResetTarget(f); err == nil {
			t.Errorf("%+v accepted", f)
		}
	}
}

func TestParseDatetime(t *testing.T) {
	plus2 := time.FixedZone("plus2", 2*3600)
	for in, want := range map[string]int64{
		"2026-12-01T09:00:00Z":         time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC).UnixMilli(),
		"2026-12-01T09:00:00.250Z":     time.Date(2026, 12, 1, 9, 0, 0, 250e6, time.UTC).UnixMilli(),
		"2026-12-01T09:00:00+01:00":    time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC).UnixMilli(),
		"2026-12-01T09:00:00.000+0100": time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC).UnixMilli(),
		"2026-12-01T09:00:00":          time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC).UnixMilli(), // in loc
		"2026-12-01T09:00:00.500":      time.Date(2026, 12, 1, 7, 0, 0, 500e6, time.UTC).UnixMilli(),
		"@1764579600000":               1764579600000,
	} {
		if got, err := parseDatetime(in, plus2); err != nil || got != want {
			t.Errorf("parseDatetime(%q) = %d, %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "2026-12-01", "@-1", "@x", "09:00"} {
		if _, err := parseDatetime(in, plus2); err == nil {
			t.Errorf("parseDatetime(%q) accepted", in)
		}
	}
}

func TestEndTrackerDirect(t *testing.T) {
	tr := &endTracker{ends: map[int32]int64{0: 3, 1: 0}, positions: map[int32]int64{0: 1, 1: 0}}
	if tr.done() {
		t.Fatal("done before partition 0 reached offset 3")
	}
	tr.advance(0, 1)
	if tr.done() {
		t.Fatal("done at position 2 of 3")
	}
	if tr.past(0, 2) || !tr.past(0, 3) || !tr.past(7, 0) {
		t.Error("past: offsets at or beyond the end (or of unknown partitions) are past it")
	}
	tr.advance(0, 2) // e.g. a transaction marker
	if !tr.done() {
		t.Fatal("not done at the end offset")
	}
}

func TestEndTrackerGroup(t *testing.T) {
	woken := 0
	tr := &endTracker{
		ends:      map[int32]int64{0: 2, 1: 5},
		positions: map[int32]int64{0: 2, 1: 0},
		assigned:  map[int32]bool{},
		onDone:    func() { woken++ },
	}
	if tr.done() {
		t.Fatal("done before any assignment")
	}
	tr.assign([]int32{0}, true) // partition 0 has nothing left
	if !tr.done() || woken != 1 {
		t.Fatalf("assigned only a finished partition: done %v, woken %d", tr.done(), woken)
	}
	tr.assign([]int32{1}, true)
	if tr.done() {
		t.Fatal("done with partition 1 unread")
	}
	tr.assign([]int32{1}, false) // revoked to another member
	if !tr.done() {
		t.Fatal("not done after the unread partition was revoked")
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 3 << 20: "3.0 MiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// exitCode is the process exit code Execute would use for err.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// cliTimeout bounds every in-process command: a consume that never reaches
// its end must fail the test rather than hang it.
const cliTimeout = 60 * time.Second

// runCLI runs the command line in-process, as `oncelog args...`.
func runCLI(stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	root, mistake := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	root.SetIn(stdin)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.ExecuteContext(ctx)
	if err == nil {
		err = mistake.err
	}
	if ctx.Err() != nil {
		err = errors.Join(err, fmt.Errorf("oncelog %s: still running after %s", strings.Join(args, " "), cliTimeout))
	}
	return out.String(), errOut.String(), err
}

func TestUsageErrorsExitTwo(t *testing.T) {
	t.Setenv(brokersEnv, "")
	for _, args := range [][]string{
		{"produce"},
		{"produce", "a", "b"},
		{"produce", "t", "--key", "k", "--key-delimiter", ":"},
		{"produce", "t", "--header", "nokey"},
		{"produce", "t", "--bogus-flag"},
		{"consume", "t", "--from", "yesterday"},
		{"consume", "t", "--format", "yaml"},
		{"consume", "t", "--output", "json", "--format", "text"},
		{"consume", "t", "--group", "g", "--partition", "1"},
		{"consume", "t", "-n", "-1"},
		{"topic", "nosuchcommand"},
		{"group", "reset", "--help"},
		{"topic", "create"},
		{"topic", "create", "t", "-p", "0"},
		{"topic", "create", "t", "-c", "novalue"},
		{"topic", "list", "--output", "yaml"},
		{"topic", "list", "--brokers", ""},
		{"topic", "alter-config", "t"},
		{"group", "reset-offsets", "g", "--topic", "t"},
		{"group", "reset-offsets", "g", "--topic", "t", "--to-earliest", "--to-latest"},
		{"group", "reset-offsets", "g", "--to-earliest"},
		{"group", "describe"},
		{"producers"},
	} {
		_, _, err := runCLI(nil, args...)
		if code := exitCode(err); code != 2 {
			t.Errorf("oncelog %s: exit code %d (%v), want 2", strings.Join(args, " "), code, err)
		}
	}
}

// TestMistypedSubcommandSuggests: a parent command names the subcommands
// closest to a typo, with --help too (cobra answers --help before it checks
// arguments, and suggests only for the root command).
func TestMistypedSubcommandSuggests(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		suggest string
	}{
		{[]string{"group", "reset"}, "reset-offsets"},
		{[]string{"group", "reset", "--help"}, "reset-offsets"},
		{[]string{"group", "--brokers", "127.0.0.1:1", "reset", "-h"}, "reset-offsets"},
		{[]string{"topic", "descibe", "orders"}, "describe"},
		{[]string{"txn", "lst"}, "list"},
	} {
		stdout, _, err := runCLI(nil, tc.args...)
		if code := exitCode(err); code != 2 {
			t.Errorf("oncelog %s: exit code %d (%v), want 2", strings.Join(tc.args, " "), code, err)
			continue
		}
		if !strings.Contains(err.Error(), "Did you mean this?\n\t"+tc.suggest) {
			t.Errorf("oncelog %s: %q does not suggest %q", strings.Join(tc.args, " "), err, tc.suggest)
		}
		if stdout != "" {
			t.Errorf("oncelog %s printed help as if the command existed:\n%s", strings.Join(tc.args, " "), stdout)
		}
	}
	// Real subcommands still get their own help.
	for _, args := range [][]string{{"group", "reset-offsets", "--help"}, {"group", "--help"}, {"help", "topic"}} {
		stdout, _, err := runCLI(nil, args...)
		if err != nil || !strings.Contains(stdout, "Usage:") {
			t.Errorf("oncelog %s: err %v, help %q", strings.Join(args, " "), err, stdout)
		}
	}
}

// closedAddr returns a local address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestUnreachableBrokerSaysWhatToDo(t *testing.T) {
	addr := closedAddr(t)
	for _, args := range [][]string{
		{"topic", "list", "--brokers", addr},
		{"consume", "t", "--brokers", addr},
		{"produce", "t", "--brokers", addr},
		{"group", "list", "--brokers", addr},
		{"producers", "t", "--brokers", addr},
	} {
		_, _, err := runCLI(strings.NewReader("x\n"), args...)
		if exitCode(err) != 1 || !strings.Contains(err.Error(), "cannot reach broker at "+addr) || !strings.Contains(err.Error(), "oncelog serve") {
			t.Errorf("oncelog %s: %v (exit %d), want a cannot-reach error naming %s", strings.Join(args, " "), err, exitCode(err), addr)
		}
	}
}

func TestBrokersFromEnvironment(t *testing.T) {
	addr := closedAddr(t)
	t.Setenv(brokersEnv, addr)
	_, _, err := runCLI(nil, "topic", "list")
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("with %s=%s: %v, want an error naming %s", brokersEnv, addr, err, addr)
	}
	// An explicit flag wins over the environment.
	other := closedAddr(t)
	_, _, err = runCLI(nil, "topic", "list", "--brokers", other)
	if err == nil || !strings.Contains(err.Error(), other) {
		t.Errorf("--brokers %s: %v, want an error naming it", other, err)
	}
}

func TestHelpHasExamples(t *testing.T) {
	root := NewRootCmd()
	for _, path := range [][]string{
		{"topic", "create"}, {"topic", "list"}, {"topic", "describe"}, {"topic", "delete"}, {"topic", "alter-config"},
		{"produce"}, {"consume"},
		{"group", "list"}, {"group", "describe"}, {"group", "reset-offsets"},
		{"producers"},
	} {
		cmd, _, err := root.Find(path)
		if err != nil || cmd.Name() != path[len(path)-1] {
			t.Errorf("%v: not found (%v)", path, err)
			continue
		}
		if cmd.Example == "" || cmd.Short == "" {
			t.Errorf("%v: missing Short or Example", path)
		}
		for _, flag := range []string{"brokers", "output"} {
			if cmd.Flags().Lookup(flag) == nil && cmd.InheritedFlags().Lookup(flag) == nil {
				t.Errorf("%v: no --%s flag", path, flag)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	info := buildinfo.Info{Version: "v0.4.0", Commit: "b8f9b7bfed81f0ceb61235782e89d4a18b90fe61", CommitTime: "2026-12-01T23:07:20Z", GoVersion: "go1.26.0", Platform: "linux/amd64"}
	var out strings.Builder
	if err := runVersion(&out, "text", info); err != nil {
		t.Fatal(err)
	}
	if want := "oncelog v0.4.0 (commit b8f9b7bfed81, 2026-12-01T23:07:20Z, go1.26.0, linux/amd64)\n"; out.String() != want {
		t.Errorf("version = %q, want %q", out.String(), want)
	}
	// Tests run without VCS stamping, like go run: the output says so.
	for _, args := range [][]string{{"version"}, {"--version"}} {
		stdout, _, err := runCLI(nil, args...)
		if err != nil || !strings.HasPrefix(stdout, "oncelog ") || !strings.Contains(stdout, "no VCS information") {
			t.Errorf("oncelog %v = %q, %v", args, stdout, err)
		}
	}
	stdout, _, err := runCLI(nil, "version", "--output", "json")
	if got := decodeJSON[buildinfo.Info](t, stdout); err != nil || got.GoVersion == "" || got.Commit != "unknown" {
		t.Errorf("version --output json = %q, %v", stdout, err)
	}
	if _, _, err := runCLI(nil, "version", "--output", "yaml"); exitCode(err) != 2 {
		t.Errorf("version --output yaml: %v, want exit 2", err)
	}
}
