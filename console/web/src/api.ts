// Typed calls to the console's JSON API (console/api.go).

export class ApiError extends Error {
  status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

// The CSRF token of the session (GET /api/session, POST /api/login): sent
// on every state-changing request in the X-CSRF-Token header.
let csrfToken = "";
export const setCsrfToken = (t: string) => {
  csrfToken = t;
};

// A 401 that asks for a login (session expired, logged out elsewhere)
// fires this event on window; the app then shows the login form.
export const loginRequiredEvent = "oncelog-login-required";

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken;
  const resp = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let data: unknown;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    throw new ApiError(resp.status, text || resp.statusText);
  }
  if (!resp.ok) {
    const msg = (data as { error?: string } | null)?.error ?? resp.statusText;
    if (resp.status === 401 && (data as { login_required?: boolean } | null)?.login_required && path !== "/api/login") {
      window.dispatchEvent(new Event(loginRequiredEvent));
    }
    throw new ApiError(resp.status, msg);
  }
  return data as T;
}

export const get = <T,>(path: string) => call<T>("GET", path);
export const post = <T,>(path: string, body: unknown) => call<T>("POST", path, body);

export interface Session {
  login_required: boolean; user?: string; mechanism?: string; csrf_token?: string;
  idle_timeout_s?: number; expires_at_ms?: number;
}

export interface Listener { name: string; protocol: string; address: string; advertise: string }
export interface Overview {
  version: string; cluster_id: string; controller: number;
  brokers: { id: number; host: string; port: number }[];
  listeners: Listener[] | null; topics: number; partitions: number; groups: number;
  totals: Record<string, number>;
}
export interface TopicSummary { name: string; id: string; internal: boolean; partitions: number; records: number; size_bytes: number }
export interface PartitionDetail {
  partition: number; leader: number; leader_epoch: number; start_offset: number; high_watermark: number;
  last_stable_offset: number; log_end_offset: number | null; size_bytes: number | null; error?: string;
}
export interface ConfigEntry { name: string; value: string; source: string; sensitive: boolean; read_only: boolean }
export interface TopicDetail extends TopicSummary { partition_details: PartitionDetail[]; configs: ConfigEntry[] | null }
export interface Shown { text?: string; base64?: string; size: number; truncated?: boolean }
export interface ShownRecord {
  partition: number; offset: number; timestamp: number; key: Shown | null; value: Shown | null;
  headers: { key: string; value: Shown | null }[];
}
export interface Browse {
  records: ShownRecord[]; start_offset: number; high_watermark: number; last_stable_offset: number;
  from: number; next: number; isolation: string;
}
export interface ProducerRow {
  partition: number; producer_id: number; producer_epoch: number; last_sequence: number;
  last_timestamp: number; coordinator_epoch: number; current_txn_start_offset: number;
}
export interface PartitionDuplicates {
  partition: number; duplicate_batches: number; duplicate_records: number; key_window_records: number | null;
}
export interface Producers { producers: ProducerRow[]; partitions: PartitionDuplicates[]; duplicates_dropped: number }
export interface TxnRow {
  transactional_id: string; state: string; producer_id: number; producer_epoch: number;
  timeout_ms: number; start_timestamp: number; partitions: string[];
}
export interface OpenRow {
  topic: string; partition: number; producer_id: number; producer_epoch: number; coordinator_epoch: number;
  start_offset: number; last_timestamp: number; duration_ms: number; transactional_id?: string; reason: string; hanging: boolean;
}
export interface Transactions {
  transactions: TxnRow[]; open: OpenRow[]; open_truncated: boolean; open_unreadable: string[] | null;
  committed: number; aborted: number; timed_out: number;
}
export interface GroupRow { group: string; state: string; protocol_type: string; type: string; members: number; lag: number }
export interface GroupDetail {
  group: string; type?: string; state: string; protocol_type: string; protocol: string; coordinator: number; lag: number;
  epoch?: number;
  members: {
    member_id: string; instance_id?: string; client_id: string; host: string; assignments: string[];
    member_epoch?: number; subscribed?: string[]; target_assignment?: string[];
  }[];
  offsets: { topic: string; partition: number; committed: number; end: number; lag: number; member_id?: string; error?: string }[];
  share_offsets?: { topic: string; partition: number; start_offset: number; lag: number; error?: string }[];
}
export interface KeyWindow { metrics: { name: string; help: string; value: number }[]; lookup_enabled: boolean }
export interface KeyEntry { key: string; partition: number; offset: number; timestamp: number; digest: string }
export interface Metrics { time_ms: number; values: Record<string, number> }

export const enc = encodeURIComponent;
