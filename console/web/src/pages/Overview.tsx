import type { Overview as OverviewData } from "../api";
import { useApi } from "../hooks";
import { num } from "../format";
import { Show, Stat, Table } from "./common";

export function Overview() {
  const loaded = useApi<OverviewData>("/api/overview", 5000);
  return (
    <Show loaded={loaded}>
      {(o) => (
        <>
          <h1>Overview</h1>
          <p className="muted" data-testid="cluster">
            cluster {o.cluster_id || "–"} · controller {o.controller} · {o.version}
          </p>
          <div className="stats">
            <Stat label="topics" value={num(o.topics)} testid="stat-topics" />
            <Stat label="partitions" value={num(o.partitions)} />
            <Stat label="consumer groups" value={num(o.groups)} />
            <Stat label="records appended" value={num(o.totals["oncelog_produce_records_appended_total"])} />
            <Stat label="retried batches dropped" value={num(o.totals["oncelog_produce_duplicate_batches_total"])} testid="stat-duplicates" />
            <Stat label="transactions committed" value={num(o.totals["oncelog_transactions_committed_total"])} />
            <Stat label="transactions aborted" value={num(o.totals["oncelog_transactions_aborted_total"])} />
            <Stat label="connections" value={num(o.totals["oncelog_connections"])} />
          </div>
          <h2>Brokers</h2>
          <Table head={["id", "host", "port"]} testid="brokers">
            {o.brokers.map((b) => (
              <tr key={b.id}><td>{b.id}</td><td>{b.host}</td><td>{b.port}</td></tr>
            ))}
          </Table>
          <h2>Listeners</h2>
          <Table head={["name", "protocol", "bound", "advertised"]} testid="listeners">
            {(o.listeners ?? []).map((l) => (
              <tr key={l.name}><td>{l.name}</td><td>{l.protocol}</td><td>{l.address}</td><td>{l.advertise}</td></tr>
            ))}
          </Table>
        </>
      )}
    </Show>
  );
}
