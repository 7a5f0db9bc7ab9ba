/**
 * What the CLI prints and how it ends: exit codes, tables, times, durations, JSON.
 */
import type { Timestamp, Duration } from "@bufbuild/protobuf/wkt";
import { timestampDate } from "@bufbuild/protobuf/wkt";

/** Exit codes of every command (README, "Command line"). */
export const ExitCode = {
  /** Done; for `exec`: the execution SUCCEEDED (or was accepted, with --detach). */
  ok: 0,
  /** `exec`: the execution ended FAILED, TIMED_OUT or INTERRUPTED. */
  executionFailed: 1,
  /** Bad flags or arguments, unreadable --input: nothing was sent. */
  usage: 2,
  /** The server answered with an error (printed with its code and details). */
  rpcError: 3,
  /** The server could not be reached (UNAVAILABLE, connection refused, TLS failure). */
  unavailable: 4,
  /** `exec`: the execution ended CANCELLED by someone else (CancelExecution, a deadline). */
  executionCancelled: 5,
  /** Interrupted by Ctrl-C (SIGINT); for `exec`, the execution was cancelled. */
  interrupted: 130,
} as const;

/** A mistake in the command line: printed with the usage hint, exit code 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

export interface Io {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

export const processIo: Io = { out: (t) => void process.stdout.write(t), err: (t) => void process.stderr.write(t) };

/** ANSI styling, only on a terminal and unless NO_COLOR is set. */
export interface Style {
  readonly bold: (s: string) => string;
  readonly dim: (s: string) => string;
  readonly red: (s: string) => string;
  readonly green: (s: string) => string;
  readonly yellow: (s: string) => string;
}

const sgr = (open: number, close: number) => (s: string) => `\x1b[${open}m${s}\x1b[${close}m`;
export const ansi: Style = { bold: sgr(1, 22), dim: sgr(2, 22), red: sgr(31, 39), green: sgr(32, 39), yellow: sgr(33, 39) };
const identity = (s: string) => s;
export const plain: Style = { bold: identity, dim: identity, red: identity, green: identity, yellow: identity };

export function styleFor(stream: NodeJS.WriteStream, env: NodeJS.ProcessEnv = process.env): Style {
  return stream.isTTY === true && (env["NO_COLOR"] ?? "") === "" ? ansi : plain;
}

/** Left-aligned columns, two spaces apart; a header row first. */
export function table(header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all.map((r) => r.map((c, i) => (c ?? "").padEnd(widths[i]!)).join("  ").trimEnd()).join("\n") + "\n";
}

/** A Timestamp as ISO 8601 UTC with milliseconds; "" when unset. */
export const iso = (t: Timestamp | undefined): string => (t === undefined ? "" : timestampDate(t).toISOString());

export const durationMs = (d: Duration | undefined): number =>
  d === undefined ? 0 : Number(d.seconds) * 1000 + Math.round(d.nanos / 1_000_000);

/** 1.2s, 350ms, 2m05s, 1h02m. */
export function humanDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** `500ms`, `10s`, `5m`, `2h`, `1d` (a bare number is seconds) → a protobuf Duration init. */
export function parseDuration(flag: string, text: string): { seconds: bigint; nanos: number } {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (m === null) throw new UsageError(`${flag}: expected a duration like 500ms, 10s, 5m or 1h, got "${text}"`);
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  const ms = Math.round(Number(m[1]) * unit[m[2] ?? "s"]!);
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

/** `key=value` flags → a map; a flag without `=` is a usage error. */
export function parseLabels(flag: string, pairs: ReadonlyArray<string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const i = p.indexOf("=");
    if (i <= 0) throw new UsageError(`${flag}: expected key=value, got "${p}"`);
    out[p.slice(0, i)] = p.slice(i + 1);
  }
  return out;
}

/** An RFC 3339 time (or `now`) → a protobuf Timestamp init. */
export function parseTime(flag: string, text: string, now: Date = new Date()): { seconds: bigint; nanos: number } {
  const date = text === "now" ? now : new Date(text);
  if (Number.isNaN(date.getTime()) || (text !== "now" && !/^\d{4}-\d{2}-\d{2}/.test(text))) {
    throw new UsageError(`${flag}: expected an RFC 3339 time like 2026-01-31T09:00:00Z (or now), got "${text}"`);
  }
  const ms = date.getTime();
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

/** Pretty JSON for people; compact for machines. */
export const jsonText = (value: unknown, pretty: boolean): string => JSON.stringify(value, null, pretty ? 2 : undefined) + "\n";

/** An UPPER_SNAKE enum name without its prefix: EXECUTION_STATE_RUNNING → RUNNING. */
export const enumLabel = (name: string | undefined, prefix: string): string =>
  name === undefined ? "" : name.startsWith(prefix) ? name.slice(prefix.length) : name;

/**
 * Accepts an enum value as its full name, without the prefix, in any case, with - or _:
 * `running`, `RUNNING`, `EXECUTION_STATE_RUNNING`, `buffer-one`.
 */
export function parseEnum<E extends Record<string, string | number>>(
  flag: string,
  enumObject: E,
  prefix: string,
  text: string,
): E[keyof E] {
  const wanted = text.trim().toUpperCase().replace(/-/g, "_");
  const full = wanted.startsWith(prefix) ? wanted : `${prefix}${wanted}`;
  const names = Object.keys(enumObject).filter((k) => Number.isNaN(Number(k)) && !k.endsWith("UNSPECIFIED"));
  // protobuf-es enums are keyed by the name without the prefix (RUNNING); match either form.
  for (const k of names) {
    if (k === wanted || `${prefix}${k}` === full) return enumObject[k] as E[keyof E];
  }
  throw new UsageError(`${flag}: expected one of ${names.map((n) => n.toLowerCase().replace(/_/g, "-")).join(", ")}, got "${text}"`);
}
