import { useEffect, useRef, useState } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { get, type Metrics } from "../api";

// A series derived from two successive scrapes of the broker's metrics.
interface Derived {
  title: string;
  unit: string;
  testid: string;
  compute: (prev: Metrics, cur: Metrics) => number | null;
}

const rate = (name: string, scale = 1) => (prev: Metrics, cur: Metrics) => {
  const dt = (cur.time_ms - prev.time_ms) / 1000;
  const dv = (cur.values[name] ?? 0) - (prev.values[name] ?? 0);
  return dt > 0 ? (dv / dt) * scale : null;
};

const mean = (histogram: string, scale = 1) => (prev: Metrics, cur: Metrics) => {
  const dc = (cur.values[`${histogram}_count`] ?? 0) - (prev.values[`${histogram}_count`] ?? 0);
  const ds = (cur.values[`${histogram}_sum`] ?? 0) - (prev.values[`${histogram}_sum`] ?? 0);
  return dc > 0 ? (ds / dc) * scale : null;
};

const charts: Derived[] = [
  { title: "Produce", unit: "records/s", testid: "chart-produce", compute: rate("oncelog_produce_records_appended_total") },
  { title: "Fetch", unit: "MiB/s", testid: "chart-fetch", compute: rate("oncelog_bytes_out_total", 1 / (1 << 20)) },
  { title: "fsync latency (mean)", unit: "ms", testid: "chart-fsync", compute: mean("oncelog_fsync_duration_seconds", 1000) },
  { title: "Group commit size (mean)", unit: "requests per fsync", testid: "chart-group-commit", compute: mean("oncelog_group_commit_waiters") },
];

const pollMs = 2000;
const keep = 150; // points: five minutes at 2 s

export function Charts() {
  const [points, setPoints] = useState<{ t: number[]; series: (number | null)[][] }>({ t: [], series: charts.map(() => []) });
  const [error, setError] = useState<string | null>(null);
  const prev = useRef<Metrics | null>(null);
  useEffect(() => {
    let live = true;
    const poll = async () => {
      try {
        const cur = await get<Metrics>("/api/metrics");
        if (!live) return;
        setError(null);
        const last = prev.current;
        prev.current = cur;
        if (!last) return;
        setPoints((p) => ({
          t: [...p.t, cur.time_ms / 1000].slice(-keep),
          series: charts.map((c, i) => [...p.series[i], c.compute(last, cur)].slice(-keep)),
        }));
      } catch (e) {
        if (live) setError((e as Error).message);
      }
    };
    poll();
    const id = setInterval(poll, pollMs);
    return () => {
      live = false;
      clearInterval(id);
    };
  }, []);
  return (
    <>
      <h1>Live charts</h1>
      <p className="muted">From the broker's own metrics (/metrics), every {pollMs / 1000} s.</p>
      {error && <p className="error" role="alert">{error}</p>}
      <div className="charts">
        {charts.map((c, i) => (
          <Chart key={c.testid} title={c.title} unit={c.unit} testid={c.testid} t={points.t} y={points.series[i]} />
        ))}
      </div>
    </>
  );
}

function Chart({ title, unit, testid, t, y }: { title: string; unit: string; testid: string; t: number[]; y: (number | null)[] }) {
  const el = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    if (!el.current) return;
    plot.current = new uPlot(
      {
        width: 520,
        height: 200,
        series: [{}, { label: unit, stroke: "#2f6fde", width: 2, spanGaps: true }],
        // One sample would otherwise span years of axis: show a minute.
        scales: { x: { time: true, range: (_u, min, max) => (max - min < 60 ? [max - 60, max] : [min, max]) } },
        axes: [{}, { size: 60 }],
        legend: { show: true },
      },
      [[], []],
      el.current,
    );
    return () => plot.current?.destroy();
  }, [unit]);
  useEffect(() => {
    plot.current?.setData([t, y]);
  }, [t, y]);
  const latest = y.length ? y[y.length - 1] : null;
  return (
    <div className="chart" data-testid={testid}>
      <h3>
        {title}: <span data-testid={`${testid}-latest`}>{latest === null ? "–" : latest.toFixed(latest < 10 ? 2 : 0)}</span> {unit}
      </h3>
      <div ref={el} />
    </div>
  );
}
