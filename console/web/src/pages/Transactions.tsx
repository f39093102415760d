import { useState } from "react";
import { post, type OpenRow, type Transactions as TxnData } from "../api";
import { useApi } from "../hooks";
import { duration, num, time } from "../format";
import { Show, Stat, Table } from "./common";

export function Transactions() {
  const loaded = useApi<TxnData>("/api/transactions", 5000);
  const [message, setMessage] = useState<{ ok: boolean; text: string } | null>(null);
  const abort = async (o: OpenRow) => {
    if (!window.confirm(`Write an ABORT marker for producer ${o.producer_id} on ${o.topic}/${o.partition}?`)) return;
    try {
      await post("/api/transactions/abort", { topic: o.topic, partition: o.partition, producer_id: o.producer_id });
      setMessage({ ok: true, text: `aborted the transaction of producer ${o.producer_id} on ${o.topic}/${o.partition}` });
      loaded.reload();
    } catch (e) {
      setMessage({ ok: false, text: (e as Error).message });
    }
  };
  return (
    <>
      <h1>Transactions</h1>
      {message && <p className={message.ok ? "ok" : "error"} role="status" data-testid="txn-message">{message.text}</p>}
      <Show loaded={loaded}>
        {(t) => (
          <>
            <div className="stats">
              <Stat label="committed" value={num(t.committed)} testid="stat-committed" />
              <Stat label="aborted" value={num(t.aborted)} testid="stat-aborted" />
              <Stat label="timed out" value={num(t.timed_out)} />
              <Stat label="hanging" value={num(t.open.filter((o) => o.hanging).length)} testid="stat-hanging" />
            </div>
            <h2>Transactional ids</h2>
            <Table head={["transactional id", "state", "producer id", "epoch", "timeout", "started", "partitions"]} testid="txns">
              {t.transactions.map((x) => (
                <tr key={x.transactional_id}>
                  <td className="mono">{x.transactional_id}</td><td>{x.state}</td><td>{x.producer_id}</td><td>{x.producer_epoch}</td>
                  <td>{duration(x.timeout_ms)}</td><td>{time(x.start_timestamp)}</td><td className="mono">{x.partitions.join(", ")}</td>
                </tr>
              ))}
            </Table>
            <h2>Open on partitions</h2>
            {t.open_truncated && <p className="muted">Only the first 2000 partitions were scanned.</p>}
            {t.open_unreadable && t.open_unreadable.length > 0 && (
              <p className="muted" data-testid="open-unreadable">
                Not scanned (you may not READ them, which DescribeProducers needs): {t.open_unreadable.join(", ")}
              </p>
            )}
            <Table head={["partition", "producer id", "epoch", "start offset", "open for", "transactional id", "status", ""]} testid="open-txns">
              {t.open.map((o) => (
                <tr key={`${o.topic}-${o.partition}-${o.producer_id}`} className={o.hanging ? "hanging" : ""}>
                  <td className="mono">{o.topic}/{o.partition}</td><td>{o.producer_id}</td><td>{o.producer_epoch}</td>
                  <td>{o.start_offset}</td><td>{duration(o.duration_ms)}</td><td className="mono">{o.transactional_id ?? "–"}</td>
                  <td>{o.hanging ? `hanging: ${o.reason}` : "tracked by its coordinator"}</td>
                  <td>{o.hanging && <button className="danger" onClick={() => abort(o)} data-testid="abort">Abort</button>}</td>
                </tr>
              ))}
            </Table>
          </>
        )}
      </Show>
    </>
  );
}
