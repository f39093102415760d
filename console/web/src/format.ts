import type { Shown } from "./api";

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function time(ms: number): string {
  if (!ms || ms < 0) return "–";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function duration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  const m = Math.round(s / 60);
  return m < 120 ? `${m} min` : `${Math.round(m / 60)} h`;
}

export function shown(s: Shown | null): string {
  if (!s) return "null";
  const body = s.text ?? `base64:${s.base64}`;
  return s.truncated ? `${body}… (${bytes(s.size)})` : body;
}

export function num(n: number | undefined): string {
  return n === undefined ? "–" : Math.round(n).toLocaleString("en-US");
}
