import { useState } from "react";
import { enc, get, type KeyEntry, type KeyWindow } from "../api";
import { useApi } from "../hooks";
import { num, time } from "../format";
import { Show, Table } from "./common";

export function KeyWindowPage() {
  const loaded = useApi<KeyWindow>("/api/keywindow", 5000);
  const [topic, setTopic] = useState("");
  const [key, setKey] = useState("");
  const [result, setResult] = useState<{ entry?: KeyEntry; error?: string } | null>(null);
  const lookup = async () => {
    try {
      setResult({ entry: await get<KeyEntry>(`/api/keys/${enc(topic)}/${enc(key)}`) });
    } catch (e) {
      setResult({ error: (e as Error).message });
    }
  };
  return (
    <>
      <h1>Key window</h1>
      <p className="muted">
        Records carrying an idempotency key (topic config <span className="mono">oncelog.dedup.key</span>) are stored once per
        key within <span className="mono">oncelog.dedup.window.ms</span>, whatever producer sends them.
      </p>
      <Show loaded={loaded}>
        {(k) => (
          <>
            <Table head={["metric", "value", "meaning"]} testid="key-metrics">
              {k.metrics.map((m) => (
                <tr key={m.name}><td className="mono">{m.name}</td><td>{num(m.value)}</td><td className="muted">{m.help}</td></tr>
              ))}
            </Table>
            <h2>Look a key up</h2>
            {k.lookup_enabled ? (
              <form className="controls" onSubmit={(e) => { e.preventDefault(); lookup(); }}>
                <input placeholder="topic" value={topic} onChange={(e) => setTopic(e.target.value)} aria-label="topic" data-testid="key-topic" />
                <input placeholder="key" value={key} onChange={(e) => setKey(e.target.value)} aria-label="key" data-testid="key-key" />
                <button type="submit" disabled={!topic || !key} data-testid="key-lookup">Look up</button>
              </form>
            ) : (
              <p className="muted">Key lookup needs the HTTP ingest listener (<span className="mono">serve --http-listen</span>).</p>
            )}
            {result?.error && <p className="error" role="alert" data-testid="key-result">{result.error}</p>}
            {result?.entry && (
              <p data-testid="key-result">
                <span className="mono">{result.entry.key}</span> was written to partition {result.entry.partition} at offset{" "}
                {result.entry.offset} ({time(result.entry.timestamp)}), digest <span className="mono">{result.entry.digest.slice(0, 16)}…</span>
              </p>
            )}
          </>
        )}
      </Show>
    </>
  );
}
