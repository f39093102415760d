package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// cell is one target's figure for one row. An absent cell means the target
// cannot run that workload ("n/a").
type cell struct {
	Value    float64 `json:"value"` // the figure ratios are taken from, in the row's unit
	MBPerSec float64 `json:"mb_per_s,omitempty"`
	Records  int64   `json:"records,omitempty"` // records moved, for throughput cells
	// BrokerCores is the broker process's average CPU use during the run,
	// measured for oncelog (a subprocess) only. BenchCores is the bench
	// process's: the clients, plus the broker itself for kfake and NATS.
	BrokerCores float64 `json:"broker_cpu_cores,omitempty"`
	BenchCores  float64 `json:"bench_cpu_cores,omitempty"`
	// BrokerCPUPerMB is the broker's CPU milliseconds per MB of record
	// values moved (consume rows, subprocess brokers only).
	BrokerCPUPerMB float64 `json:"broker_cpu_ms_per_mb,omitempty"`
	// RecordsPerBatch and RecordsPerRequest are the produce runs' average
	// record batch and Produce request, as the kgo clients wrote them.
	RecordsPerBatch   float64 `json:"records_per_batch,omitempty"`
	RecordsPerRequest float64 `json:"records_per_request,omitempty"`
	Text              string  `json:"text"`
	Error             string  `json:"error,omitempty"`
}

type row struct {
	Section       string           `json:"section"`
	Name          string           `json:"name"`
	Unit          string           `json:"unit"`
	LowerIsBetter bool             `json:"lower_is_better,omitempty"`
	Cells         map[string]*cell `json:"cells"`
}

// check is one of the targets, checked on oncelog; Others holds the
// same figure on the other Kafka-protocol targets, for context.
type check struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Goal  float64 `json:"goal"`
	Unit  string  `json:"unit"`
	Pass  bool    `json:"pass"`
	// AtMost: the goal is an upper bound (value <= goal), not a floor.
	AtMost bool               `json:"at_most,omitempty"`
	Missed bool               `json:"missed,omitempty"` // not measured (an error or n/a)
	Others map[string]float64 `json:"others,omitempty"`
}

type targetInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

type report struct {
	Generated time.Time    `json:"generated"`
	Profile   string       `json:"profile"`
	Duration  string       `json:"duration"`
	Machine   machine      `json:"machine"`
	Targets   []targetInfo `json:"targets"`
	Rows      []*row       `json:"rows"`
	Checks    []*check     `json:"checks"`
	Notes     []string     `json:"notes"`
}

func (r *report) addRow(section, name, unit string, lowerIsBetter bool) *row {
	rw := &row{Section: section, Name: name, Unit: unit, LowerIsBetter: lowerIsBetter, Cells: map[string]*cell{}}
	r.Rows = append(r.Rows, rw)
	return rw
}

func throughputCell(t throughput) *cell {
	c := &cell{
		Value:       t.RecordsPerSec(),
		MBPerSec:    t.MBPerSec(),
		Records:     t.Records,
		BrokerCores: t.BrokerCores(),
		BenchCores:  t.ClientCores(),
		Text:        fmt.Sprintf("%s rec/s, %.1f MB/s", humanCount(t.RecordsPerSec()), t.MBPerSec()),
	}
	if t.Batches > 0 && t.Requests > 0 {
		c.RecordsPerBatch = float64(t.Records) / float64(t.Batches)
		c.RecordsPerRequest = float64(t.Records) / float64(t.Requests)
	}
	return c
}

// consumeCell is throughputCell with the broker's CPU time per consumed MB
// (record values), when the broker is a subprocess whose CPU was measured.
func consumeCell(t throughput) *cell {
	c := throughputCell(t)
	if t.BrokerCPU > 0 && t.Bytes > 0 {
		c.BrokerCPUPerMB = t.BrokerCPU.Seconds() * 1000 / (float64(t.Bytes) / 1e6)
		c.Text += fmt.Sprintf(", %.2f ms broker CPU/MB", c.BrokerCPUPerMB)
	}
	return c
}

func durationCell(d time.Duration) *cell {
	return &cell{Value: d.Seconds() * 1000, Text: humanDuration(d)}
}

func errorCell(err error) *cell {
	return &cell{Text: "error", Error: err.Error()}
}

func humanCount(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func humanDuration(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", d.Seconds()*1000)
	default:
		return fmt.Sprintf("%.2f ms", d.Seconds()*1000)
	}
}

// ratio is oncelog's figure over the peer's, or "" when either is missing.
func (rw *row) ratio(peer string) string {
	a, b := rw.Cells["oncelog"], rw.Cells[peer]
	if a == nil || b == nil || a.Error != "" || b.Error != "" || b.Value == 0 {
		return ""
	}
	return fmt.Sprintf("%.2fx", a.Value/b.Value)
}

func (rw *row) text(target string) string {
	if c := rw.Cells[target]; c != nil {
		return c.Text
	}
	return "n/a"
}

func (c *check) valueText(v float64) string {
	if c.Unit == "x" {
		return fmt.Sprintf("%.2fx", v)
	}
	return fmt.Sprintf("%s %s", humanCount(v), c.Unit)
}

// goalText is the goal with its direction.
func (c *check) goalText() string {
	if c.AtMost {
		return "<= " + c.valueText(c.Goal)
	}
	return ">= " + c.valueText(c.Goal)
}

func (c *check) verdict() string {
	switch {
	case c.Missed:
		return "not measured"
	case c.Pass:
		return "yes"
	default:
		return "no"
	}
}

// peers are the targets other than oncelog, in column order.
func (r *report) peers() []string {
	var names []string
	for _, t := range r.Targets {
		if t.Name != "oncelog" {
			names = append(names, t.Name)
		}
	}
	return names
}

// writeText prints the results as aligned plain-text tables.
func (r *report) writeText(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "profile %s, %s; %s x %d, %s, synced writes %s, %s, load average at start %s\n\n",
		r.Profile, r.Generated.UTC().Format("2006-01-02 15:04 UTC"), m.CPUModel, m.NumCPU, m.Memory, m.DiskSyncWrite, m.GoVersion, m.LoadAverage)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := []string{"workload", "oncelog"}
	for _, p := range r.peers() {
		header = append(header, p, "oncelog/"+p)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	section := ""
	for _, rw := range r.Rows {
		if rw.Section != section {
			section = rw.Section
			fmt.Fprintf(tw, "[%s]\n", section)
		}
		cols := []string{"  " + rw.Name, rw.text("oncelog")}
		for _, p := range r.peers() {
			cols = append(cols, rw.text(p), rw.ratio(p))
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target check\toncelog\tgoal\tmet\tother targets")
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, c.valueText(c.Value), c.goalText(), c.verdict(), c.othersText(r.peers()))
	}
	tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note: "+n)
	}
}

// othersText lists the check's figure on the other targets, in column order.
func (c *check) othersText(peers []string) string {
	var parts []string
	for _, name := range peers {
		if v, ok := c.Others[name]; ok {
			parts = append(parts, fmt.Sprintf("%s %s", name, c.valueText(v)))
		}
	}
	return strings.Join(parts, ", ")
}

// writeMarkdown writes the machine, targets, results and checks as Markdown.
func (r *report) writeMarkdown(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "Profile `%s`, run %s, took %s.\n\n", r.Profile, r.Generated.UTC().Format("2006-01-02 15:04 UTC"), r.Duration)
	fmt.Fprintf(w, "| machine | |\n|---|---|\n")
	fmt.Fprintf(w, "| CPU | %s, %d cores (nproc) |\n| memory | %s |\n| disk | %s |\n| disk, synced sequential writes | %s (1 MiB O_DSYNC writes, measured at the start of the run) |\n| OS | %s |\n| Go | %s |\n| load average at the start | %s |\n\n",
		m.CPUModel, m.NumCPU, m.Memory, m.Disk, m.DiskSyncWrite, m.Kernel, m.GoVersion, m.LoadAverage)
	fmt.Fprintf(w, "| target | what it is |\n|---|---|\n")
	for _, t := range r.Targets {
		fmt.Fprintf(w, "| %s | %s |\n", t.Name, t.Description)
	}
	fmt.Fprintln(w)

	header := "| workload | oncelog |"
	rule := "|---|---:|"
	for _, p := range r.peers() {
		header += fmt.Sprintf(" %s | oncelog/%s |", p, p)
		rule += "---:|---:|"
	}
	fmt.Fprintln(w, header)
	fmt.Fprintln(w, rule)
	section := ""
	for _, rw := range r.Rows {
		if rw.Section != section {
			section = rw.Section
			fmt.Fprintf(w, "| **%s** |%s\n", section, strings.Repeat(" |", 1+2*len(r.peers())))
		}
		line := fmt.Sprintf("| %s | %s |", rw.Name, rw.text("oncelog"))
		for _, p := range r.peers() {
			line += fmt.Sprintf(" %s | %s |", rw.text(p), rw.ratio(p))
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target check | oncelog | goal | met | other targets |")
	fmt.Fprintln(w, "|---|---:|---:|---|---|")
	for _, c := range r.Checks {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", c.Name, c.valueText(c.Value), c.goalText(), c.verdict(), c.othersText(r.peers()))
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.Notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

func (r *report) writeFiles(jsonPath, markdownPath string) error {
	if jsonPath != "" {
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if markdownPath != "" {
		var sb strings.Builder
		r.writeMarkdown(&sb)
		if err := os.WriteFile(markdownPath, []byte(sb.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}
