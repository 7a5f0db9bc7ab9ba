/**
 * The audit log: durable appends per second, and fan-out to many live subscribers.
 *
 *   node --import tsx bench/audit.ts
 *
 * appends   The same N events (realistic rows: principal, execution id, trace id, small
 *           details) written (a) through the AuditLogger on SQLite — `log` for each, then `flush`,
 *           timed until the flush returns, so every event is committed — and (b) as the floor:
 *           raw better-sqlite3, one prepared INSERT per row in transactions of 4,096 rows, the JSON
 *           columns stringified the same way, into a second audit database set up by the same
 *           code (audit.db: same schema, 16 KiB pages, WAL, synchronous=NORMAL). Rounds
 *           alternate; the median of each is reported, and their ratio. Target: ≥ 200,000
 *           events/s through the logger.
 *           The logger writes on a thread of its own (src/ports/sqlite/audit-writer.ts) while
 *           the main thread prepares events (scrubbing, JSON), so on two cores it may beat the
 *           raw floor, which does all of it on one thread: the ratio says how much of the
 *           second core the pipeline uses, not overhead. With one core it is below 1.
 * fan-out   S subscribers (Subscribe from now, no filter, in this process, through AuditLog)
 *           while events are logged at R events/s for D seconds through the same SQLite logger.
 *           Latency per delivery: from the `log` call to the subscriber's stream handing it over.
 *           Every subscriber must receive every event once, in order. Target: p99 ≤ 100 ms.
 *
 * AUDIT_BENCH_EVENTS (default 300,000), AUDIT_BENCH_ROUNDS (3), AUDIT_BENCH_SUBSCRIBERS (1,000),
 * AUDIT_BENCH_RATE (5,000 events/s), AUDIT_BENCH_SECONDS (10, timed, after AUDIT_BENCH_WARMUP_SECONDS = 2 at
 * the same rate whose deliveries are checked but not timed).
 */
import { Chunk, Effect, Fiber, Layer, Logger, ManagedRuntime, Stream } from "effect";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuditConfig } from "../src/core/audit/AuditConfig.js";
import { AuditLog } from "../src/core/audit/AuditLog.js";
import type { Principal } from "../src/core/model.js";
import { AuditLogger, type AuditEntry } from "../src/ports/AuditLogger.js";
import { auditDatabaseFileName, auditPragmas } from "../src/ports/sqlite/AuditDatabase.js";
import { auditLoggerSqlite } from "../src/ports/sqlite/AuditLoggerSqlite.js";
import { SqliteDatabase } from "../src/ports/sqlite/SqliteDatabase.js";
import { envInt, RawDatabase } from "./lib.js";


const events = envInt("AUDIT_BENCH_EVENTS", 300_000);
const rounds = envInt("AUDIT_BENCH_ROUNDS", 3);
const subscribers = envInt("AUDIT_BENCH_SUBSCRIBERS", 1_000);
const rate = envInt("AUDIT_BENCH_RATE", 5_000);
const seconds = envInt("AUDIT_BENCH_SECONDS", 10);
const warmupSeconds = envInt("AUDIT_BENCH_WARMUP_SECONDS", 2);

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "orchestrator-bench-audit-"));
  dirs.push(d);
  return d;
};
process.on("exit", () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const principals: ReadonlyArray<Principal> = Array.from({ length: 100 }, (_, i) => ({ subject: `user-${i}`, tenant: `tenant-${i % 10}`, roles: ["operator"] }));
const types = ["EXECUTION_ACCEPTED", "EXECUTION_ATTEMPT_STARTED", "EXECUTION_SUCCEEDED", "POLICY_EVALUATED", "RATE_LIMIT_CHECKED"] as const;
const entry = (i: number): AuditEntry => ({
  type: types[i % types.length]!,
  principal: principals[i % principals.length]!,
  operation: "demo.echo",
  executionId: `0b8f3c2e-6f1a-4d0e-9c3b-${String(i).padStart(12, "0")}`,
  traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  decision: "ALLOW",
  details: { attempt: 1, rule: "default", policy_version: 3 },
});
const rows = Array.from({ length: events }, (_, i) => entry(i));

const quiet = Logger.replace(Logger.defaultLogger, Logger.none);
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

// ---------------------------------------------------------------------------------------------
// appends

async function throughLogger(): Promise<number> {
  const runtime = ManagedRuntime.make(auditLoggerSqlite({}).pipe(Layer.provide(SqliteDatabase.layer(tempDir())), Layer.provide(quiet)));
  const audit = await runtime.runPromise(AuditLogger);
  const start = performance.now();
  await runtime.runPromise(
    Effect.gen(function* () {
      for (const e of rows) yield* audit.log(e);
      yield* audit.flush;
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  const stored = await runtime.runPromise(audit.bounds);
  if (stored.last !== rows.length) throw new Error(`logger stored ${stored.last} of ${rows.length}`);
  await runtime.dispose();
  return rows.length / elapsed;
}

/** The same audit database (created and migrated by the same code), then raw better-sqlite3 on that file. */
async function raw(): Promise<number> {
  const dir = tempDir();
  const migrated = ManagedRuntime.make(auditLoggerSqlite({}).pipe(Layer.provide(SqliteDatabase.layer(dir)), Layer.provide(quiet)));
  await migrated.runtime();
  await migrated.dispose();
  const db = new RawDatabase(join(dir, auditDatabaseFileName));
  for (const p of auditPragmas) db.pragma(p);
  const insert = db.prepare(
    "INSERT INTO audit_events (sequence, time, type, principal, principal_subject, tenant, operation, execution_id, schedule_id, trace_id, decision, reason, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
  );
  let seq = 0;
  const batch = db.transaction((from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const e = rows[i]!;
      insert.run(++seq, Date.now(), e.type, JSON.stringify(e.principal), e.principal?.subject ?? null, e.principal?.tenant ?? null, e.operation ?? null, e.executionId ?? null, e.scheduleId ?? null, e.traceId ?? null, e.decision ?? null, e.reason ?? null, JSON.stringify(e.details));
    }
  });
  const start = performance.now();
  for (let i = 0; i < rows.length; i += 4096) batch(i, Math.min(rows.length, i + 4096));
  const elapsed = (performance.now() - start) / 1000;
  db.close();
  return rows.length / elapsed;
}

const cases = (process.env["AUDIT_BENCH_CASES"] ?? "appends,fanout").split(",");
const loggerRates: number[] = [];
const rawRates: number[] = [];
if (cases.includes("appends")) {
  await throughLogger(); // warm-up (JIT)
  await raw();
  for (let r = 0; r < rounds; r++) {
    rawRates.push(await raw());
    loggerRates.push(await throughLogger());
  }
}

// ---------------------------------------------------------------------------------------------
// fan-out

interface FanOut {
  readonly logged: number;
  readonly deliveries: number;
  readonly complete: number;
  readonly outOfOrder: number;
  readonly failed: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly achievedRate: number;
}

async function fanOut(): Promise<FanOut> {
  const runtime = ManagedRuntime.make(
    AuditLog.Default.pipe(
      Layer.provideMerge(auditLoggerSqlite({}).pipe(Layer.provide(SqliteDatabase.layer(tempDir())))),
      Layer.provide(AuditConfig.layer({ retentionMaxAgeMs: undefined, ...(process.env["AUDIT_BENCH_DELIVERY_MS"] === undefined ? {} : { deliveryIntervalMs: Number(process.env["AUDIT_BENCH_DELIVERY_MS"]) }) })),
      Layer.provide(quiet),
    ),
  );
  const { audit, log } = await runtime.runPromise(Effect.all({ audit: AuditLogger, log: AuditLog }));
  const admin: Principal = { subject: "bench", tenant: "bench", roles: ["admin"] };
  // Latency histogram in 0.1 ms buckets up to 10 s.
  const buckets = new Float64Array(100_001);
  // The first warmupSeconds of events are delivered and checked but not timed (JIT, heap growth).
  const warm = rate * warmupSeconds;
  const sentAt = new Float64Array(rate * (warmupSeconds + seconds) + 1);
  let deliveries = 0;
  let timed = 0;
  let outOfOrder = 0;
  let failed = 0;
  let complete = 0;
  const n = rate * (warmupSeconds + seconds);
  const subs = await runtime.runPromise(
    Effect.forEach(
      Array.from({ length: subscribers }, (_, i) => i),
      () => {
        let last = 0;
        let count = 0;
        // Daemons: they outlive the runPromise that starts them.
        return Effect.forkDaemon(
          log.subscribe(admin, {}, { _tag: "Now" }).pipe(
            // A chunk at a time, as a consumer in this process would (one Effect per event would
            // measure Effect's per-element overhead, not delivery).
            Stream.runForEachChunk((chunk) =>
              Effect.sync(() => {
                const now = performance.now();
                const items = Chunk.toReadonlyArray(chunk);
                for (let k = 0; k < items.length; k++) {
                  const item = items[k]!;
                  if (item._tag !== "Event") continue;
                  // Only the producer writes to this fresh log: event i has sequence i + 1.
                  const seq = item.event.sequence;
                  if (seq !== last + 1 && last !== 0) outOfOrder++;
                  last = seq;
                  count++;
                  if (seq > warm) {
                    buckets[Math.min(100_000, ((now - sentAt[seq - 1]!) * 10) | 0)]!++;
                    timed++;
                  }
                }
                deliveries += items.length;
                return last >= n;
              }).pipe(Effect.flatMap((done) => (done ? Effect.fail("done" as const) : Effect.void))),
            ),
            // Ends at the last event (sequence n): Stream.takeUntil would copy every chunk.
            Effect.catchIf((e) => e === "done", () => Effect.void),
            Effect.tap(() => Effect.sync(() => (count === n ? complete++ : undefined))),
            Effect.catchAll(() => Effect.sync(() => void failed++)),
          ),
        );
      },
      { concurrency: "unbounded" },
    ),
  );
  while ((await runtime.runPromise(Effect.sync(() => log.subscribers()))) < subscribers) await new Promise((r) => setTimeout(r, 10));

  // The producer: holds the rate by catching up with the clock every millisecond or so.
  const start = performance.now();
  await runtime.runPromise(
    Effect.gen(function* () {
      let sent = 0;
      while (sent < n) {
        const due = Math.min(n, Math.floor(((performance.now() - start) / 1000) * rate));
        for (; sent < due; sent++) {
          sentAt[sent] = performance.now();
          yield* audit.log({ type: "EXECUTION_SUCCEEDED", principal: admin, executionId: `e${sent}`, details: { i: sent } });
        }
        yield* Effect.sleep("1 millis");
      }
    }),
  );
  const achievedRate = n / ((performance.now() - start) / 1000);
  // Each subscriber ends at the last event (i = n - 1).
  await runtime.runPromise(Effect.forEach(subs, (f) => Fiber.join(f).pipe(Effect.timeout("60 seconds"), Effect.ignore), { concurrency: "unbounded" }));
  await runtime.dispose();

  const quantile = (q: number) => {
    const target = q * timed;
    let acc = 0;
    for (let b = 0; b < buckets.length; b++) {
      acc += buckets[b]!;
      if (acc >= target) return b / 10;
    }
    return Number.NaN;
  };
  let maxB = 0;
  for (let b = 0; b < buckets.length; b++) if (buckets[b]! > 0) maxB = b;
  return { logged: n, deliveries, complete, outOfOrder, failed, p50Ms: quantile(0.5), p99Ms: quantile(0.99), maxMs: maxB / 10, achievedRate };
}

console.log(`audit: node ${process.version}`);
if (cases.includes("appends")) {
  const loggerRate = median(loggerRates);
  const rawRate = median(rawRates);
  console.log(`appends: ${fmt(events)} events per round, ${rounds} rounds (median)`);
  console.log(`  through AuditLogger (SQLite writer thread, group commit, durable at flush): ${fmt(loggerRate)} events/s   [${loggerRates.map(fmt).join(", ")}]`);
  console.log(`  raw better-sqlite3 batch inserts, one thread (same rows, 4,096 per tx):     ${fmt(rawRate)} events/s   [${rawRates.map(fmt).join(", ")}]`);
  console.log(`  ratio logger / raw: ${(loggerRate / rawRate).toFixed(2)}×   target ≥ 200,000 events/s: ${loggerRate >= 200_000 ? "met" : "NOT met"}`);
}
if (cases.includes("fanout")) {
  const f = await fanOut();
  console.log(
  `fan-out: ${fmt(subscribers)} subscribers, ${fmt(f.logged)} events at ${fmt(f.achievedRate)} events/s (asked ${fmt(rate)}) for ${warmupSeconds} s warm-up + ${seconds} s timed: ` +
    `${fmt(f.deliveries)} deliveries of ${fmt(f.logged * subscribers)}; ${f.complete} subscribers got every event, ${f.failed} cut off, ${f.outOfOrder} out of order`,
);
  console.log(`  delivery latency (log call → subscriber): p50 ${f.p50Ms.toFixed(1)} ms, p99 ${f.p99Ms.toFixed(1)} ms, max ${f.maxMs.toFixed(1)} ms   target p99 ≤ 100 ms, nothing lost: ${f.p99Ms <= 100 && f.complete === subscribers ? "met" : "NOT met"}`);
}
