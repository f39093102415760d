import type { ReactNode } from "react";
import type { Loaded } from "../hooks";

// Show renders a loaded endpoint: its error, a placeholder while the first
// answer is on its way, then children(data).
export function Show<T>({ loaded, children }: { loaded: Loaded<T>; children: (data: T) => ReactNode }) {
  if (loaded.error) return <p className="error" role="alert">{loaded.error}</p>;
  if (loaded.data === null) return <p className="muted">Loading…</p>;
  return <>{children(loaded.data)}</>;
}

export function Table({ head, children, testid }: { head: string[]; children: ReactNode; testid?: string }) {
  return (
    <table data-testid={testid}>
      <thead>
        <tr>{head.map((h) => <th key={h}>{h}</th>)}</tr>
      </thead>
      <tbody>{children}</tbody>
    </table>
  );
}

export function Stat({ label, value, testid }: { label: string; value: ReactNode; testid?: string }) {
  return (
    <div className="stat" data-testid={testid}>
      <div className="stat-value">{value}</div>
      <div className="stat-label">{label}</div>
    </div>
  );
}
