/**
 * Preload for a server process (`node --import tsx --import ./bench/sqlite-census.ts ...`):
 * counts the SQLite statements better-sqlite3 runs, by kind and table, and the time spent inside
 * them (they are synchronous, so that time is main-thread time: CPU, plus any I/O wait). The
 * audit log's inserts run on its writer thread (src/ports/sqlite/audit-writer.ts) and are not
 * counted: only the main thread's statements are.
 * On SIGUSR2 it writes {seq, statements: {key: {count, ns}}} to $BENCH_SQL_CENSUS_OUT, seq
 * counting the dumps, so a benchmark can take a snapshot before and after a batch of calls.
 *
 * Used only by bench/execute.ts on a separate server instance, never on a measured one.
 */
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";

interface Entry {
  count: number;
  ns: number;
}

export type Census = Record<string, Entry>;

const out = process.env["BENCH_SQL_CENSUS_OUT"];
const counts: Census = {};

/** "INSERT audit_events", "UPDATE executions", "SELECT", "BEGIN", ... */
export function statementKey(source: string): string {
  const s = source.trimStart();
  const m = /^(INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+["`]?(\w+)/i.exec(s);
  if (m !== null) return `${m[1]!.split(/\s+/)[0]!.toUpperCase()} ${m[2]}`;
  return (/^\w+/.exec(s)?.[0] ?? "?").toUpperCase();
}

const record = (source: string, t0: bigint): void => {
  const key = statementKey(source);
  const e = (counts[key] ??= { count: 0, ns: 0 });
  e.count++;
  e.ns += Number(process.hrtime.bigint() - t0);
};

type Fn = (this: { source: string }, ...args: unknown[]) => unknown;

// better-sqlite3 is loaded once per process (the CommonJS cache), so patching the prototype of
// its Statement class here covers the statements @effect/sql-sqlite-node prepares later.
const require = createRequire(import.meta.url);
const Database = require("better-sqlite3") as {
  new (file: string): { prepare(sql: string): object; close(): void };
  prototype: { exec: Fn };
};
const probe = new Database(":memory:");
const statementProto = Object.getPrototypeOf(probe.prepare("SELECT 1")) as Record<string, Fn>;
probe.close();
for (const method of ["run", "all", "get", "iterate"]) {
  const original = statementProto[method]!;
  statementProto[method] = function (this: { source: string }, ...args: unknown[]) {
    const t0 = process.hrtime.bigint();
    try {
      return original.apply(this, args);
    } finally {
      record(this.source, t0);
    }
  };
}
const exec = Database.prototype.exec;
Database.prototype.exec = function (this: { source: string }, ...args: unknown[]) {
  const t0 = process.hrtime.bigint();
  try {
    return exec.apply(this, args);
  } finally {
    record(String(args[0]), t0);
  }
};

let seq = 0;
if (out !== undefined && out !== "") {
  process.on("SIGUSR2", () => {
    writeFileSync(out, JSON.stringify({ seq: ++seq, statements: counts }));
  });
}
