import { useState } from "react";
import { enc, post, type Browse, type Producers, type TopicDetail, type TopicSummary } from "../api";
import { useApi } from "../hooks";
import { bytes, num, shown, time } from "../format";
import { Show, Table } from "./common";

export function Topics() {
  const loaded = useApi<TopicSummary[]>("/api/topics", 10000);
  const [showInternal, setShowInternal] = useState(false);
  return (
    <>
      <h1>Topics</h1>
      <label className="inline">
        <input type="checkbox" checked={showInternal} onChange={(e) => setShowInternal(e.target.checked)} /> internal topics
      </label>
      <Show loaded={loaded}>
        {(topics) => (
          <Table head={["name", "partitions", "records", "size", "id"]} testid="topics">
            {topics.filter((t) => showInternal || !t.internal).map((t) => (
              <tr key={t.name}>
                <td><a href={`#/topics/${enc(t.name)}`}>{t.name}</a>{t.internal && <span className="tag">internal</span>}</td>
                <td>{t.partitions}</td>
                <td>{num(t.records)}</td>
                <td>{bytes(t.size_bytes)}</td>
                <td className="mono">{t.id}</td>
              </tr>
            ))}
          </Table>
        )}
      </Show>
    </>
  );
}

const tabs = ["partitions", "configs", "records", "producers"];

export function Topic({ name, tab }: { name: string; tab: string }) {
  const loaded = useApi<TopicDetail>(`/api/topics/${enc(name)}`);
  return (
    <>
      <h1>{name}</h1>
      <div className="tabs">
        {tabs.map((t) => (
          <a key={t} href={`#/topics/${enc(name)}/${t}`} className={t === tab ? "active" : ""} data-testid={`tab-${t}`}>{t}</a>
        ))}
      </div>
      <Show loaded={loaded}>
        {(d) => {
          switch (tab) {
            case "configs":
              return <Configs topic={d} reload={loaded.reload} />;
            case "records":
              return <Records topic={d} />;
            case "producers":
              return <ProducersTab topic={name} />;
            default:
              return <Partitions topic={d} />;
          }
        }}
      </Show>
    </>
  );
}

function Partitions({ topic }: { topic: TopicDetail }) {
  return (
    <>
      <p className="muted">id {topic.id} · {num(topic.records)} records · {bytes(topic.size_bytes)} on disk</p>
      <Table head={["partition", "leader", "epoch", "start", "LEO", "HW", "LSO", "size", "error"]} testid="partitions">
        {topic.partition_details.map((p) => (
          <tr key={p.partition}>
            <td>{p.partition}</td><td>{p.leader}</td><td>{p.leader_epoch}</td><td>{num(p.start_offset)}</td>
            <td>{p.log_end_offset === null ? "–" : num(p.log_end_offset)}</td><td>{num(p.high_watermark)}</td>
            <td>{num(p.last_stable_offset)}</td><td>{bytes(p.size_bytes)}</td><td className="error">{p.error}</td>
          </tr>
        ))}
      </Table>
    </>
  );
}

function Configs({ topic, reload }: { topic: TopicDetail; reload: () => void }) {
  const [edits, setEdits] = useState<Record<string, string>>({});
  const [message, setMessage] = useState<{ ok: boolean; text: string } | null>(null);
  const apply = async (body: { set?: Record<string, string>; delete?: string[] }) => {
    try {
      await post(`/api/topics/${enc(topic.name)}/configs`, body);
      setMessage({ ok: true, text: "saved" });
      setEdits({});
      reload();
    } catch (e) {
      setMessage({ ok: false, text: (e as Error).message });
    }
  };
  return (
    <>
      {message && <p className={message.ok ? "ok" : "error"} role="status" data-testid="config-message">{message.text}</p>}
      <Table head={["name", "value", "source", ""]} testid="configs">
        {(topic.configs ?? []).map((c) => {
          const editing = c.name in edits;
          return (
            <tr key={c.name} data-testid={`config-${c.name}`}>
              <td className="mono">{c.name}</td>
              <td>
                {editing ? (
                  <input aria-label={`value of ${c.name}`} value={edits[c.name]} onChange={(e) => setEdits({ ...edits, [c.name]: e.target.value })} />
                ) : (
                  <span className="mono">{c.sensitive ? "(sensitive)" : c.value}</span>
                )}
              </td>
              <td className="muted">{c.source}</td>
              <td>
                {editing ? (
                  <>
                    <button onClick={() => apply({ set: { [c.name]: edits[c.name] } })}>Save</button>
                    <button className="secondary" onClick={() => setEdits(Object.fromEntries(Object.entries(edits).filter(([k]) => k !== c.name)))}>Cancel</button>
                  </>
                ) : (
                  <>
                    <button className="secondary" onClick={() => setEdits({ ...edits, [c.name]: c.value })}>Edit</button>
                    {c.source === "DYNAMIC_TOPIC_CONFIG" && (
                      <button className="secondary" onClick={() => apply({ delete: [c.name] })}>Reset</button>
                    )}
                  </>
                )}
              </td>
            </tr>
          );
        })}
      </Table>
    </>
  );
}

function Records({ topic }: { topic: TopicDetail }) {
  const [partition, setPartition] = useState(0);
  const [mode, setMode] = useState<"offset" | "timestamp">("offset");
  const [from, setFrom] = useState("");
  const [committed, setCommitted] = useState(false);
  const [limit, setLimit] = useState(50);
  const [query, setQuery] = useState<string | null>(null);
  const loaded = useApi<Browse>(query);
  const load = (fromOffset?: number) => {
    const q = new URLSearchParams({ partition: String(partition), limit: String(limit), isolation: committed ? "read_committed" : "read_uncommitted" });
    if (fromOffset !== undefined) q.set("offset", String(fromOffset));
    else if (from !== "" && mode === "offset") q.set("offset", from);
    else if (from !== "" && mode === "timestamp") q.set("timestamp", String(new Date(from).getTime()));
    setQuery(`/api/topics/${enc(topic.name)}/records?${q}`);
  };
  return (
    <>
      <form className="controls" onSubmit={(e) => { e.preventDefault(); load(); }}>
        <label>partition
          <select value={partition} onChange={(e) => setPartition(Number(e.target.value))} data-testid="browse-partition">
            {topic.partition_details.map((p) => <option key={p.partition} value={p.partition}>{p.partition}</option>)}
          </select>
        </label>
        <label>from
          <select value={mode} onChange={(e) => { setMode(e.target.value as "offset" | "timestamp"); setFrom(""); }}>
            <option value="offset">offset</option>
            <option value="timestamp">timestamp</option>
          </select>
        </label>
        <input
          type={mode === "offset" ? "number" : "datetime-local"} min={0} value={from} placeholder="start"
          onChange={(e) => setFrom(e.target.value)} aria-label="from" data-testid="browse-from"
        />
        <label>limit <input type="number" min={1} max={500} value={limit} onChange={(e) => setLimit(Number(e.target.value))} /></label>
        <label className="inline">
          <input type="checkbox" checked={committed} onChange={(e) => setCommitted(e.target.checked)} data-testid="browse-committed" /> read_committed
        </label>
        <button type="submit" data-testid="browse-load">Load</button>
      </form>
      {query && (
        <Show loaded={loaded}>
          {(b) => (
            <>
              <p className="muted" data-testid="browse-summary">
                {b.records.length} records from offset {b.from} ({b.isolation}) · start {b.start_offset} · HW {b.high_watermark} · LSO {b.last_stable_offset}
              </p>
              <Table head={["offset", "timestamp", "key", "value", "headers"]} testid="records">
                {b.records.map((r) => (
                  <tr key={r.offset}>
                    <td>{r.offset}</td><td>{time(r.timestamp)}</td>
                    <td className="mono">{shown(r.key)}</td>
                    <td className="mono value">{shown(r.value)}</td>
                    <td className="mono">{r.headers.map((h) => `${h.key}=${shown(h.value)}`).join(", ")}</td>
                  </tr>
                ))}
              </Table>
              {b.next < (b.isolation === "read_committed" ? b.last_stable_offset : b.high_watermark) && (
                <button onClick={() => load(b.next)} data-testid="browse-next">Next page (from {b.next})</button>
              )}
            </>
          )}
        </Show>
      )}
    </>
  );
}

function ProducersTab({ topic }: { topic: string }) {
  const loaded = useApi<Producers>(`/api/topics/${enc(topic)}/producers`, 5000);
  return (
    <Show loaded={loaded}>
      {(p) => (
        <>
          <p className="muted" data-testid="duplicates-dropped">
            {num(p.duplicates_dropped)} retried batches recognised and not stored again (all topics)
          </p>
          {p.partitions.length > 0 && (
            <>
              <h3>Duplicates dropped per partition (since the broker started)</h3>
              <Table head={["partition", "retried batches", "their records", "key window records"]} testid="partition-duplicates">
                {p.partitions.map((d) => (
                  <tr key={d.partition}>
                    <td>{d.partition}</td><td>{num(d.duplicate_batches)}</td><td>{num(d.duplicate_records)}</td>
                    <td>{d.key_window_records === null ? "–" : num(d.key_window_records)}</td>
                  </tr>
                ))}
              </Table>
            </>
          )}
          <Table head={["partition", "producer id", "epoch", "last sequence", "last write", "open transaction from"]} testid="producers">
            {p.producers.map((r) => (
              <tr key={`${r.partition}-${r.producer_id}`}>
                <td>{r.partition}</td><td>{r.producer_id}</td><td>{r.producer_epoch}</td><td>{r.last_sequence}</td>
                <td>{time(r.last_timestamp)}</td><td>{r.current_txn_start_offset < 0 ? "–" : r.current_txn_start_offset}</td>
              </tr>
            ))}
          </Table>
        </>
      )}
    </Show>
  );
}
