/**
 * Schedules: fire lag and memory, in one Node process with the embedded stores (the server's
 * SQLite layers: executions, audit, schedules).
 *
 *   node --import tsx bench/schedules.ts
 *
 * 1. Fire lag: SCHEDULE_BENCH_SCHEDULES (default 1,000) schedules firing every second
 *    (`* * * * * *`, demo.echo, ALLOW_ALL) for SCHEDULE_BENCH_SECONDS (default 10; the first 2 s
 *    are warm-up). Lag of a run = its execution's create_time − the time it was due: the nominal
 *    time, plus its jitter in the jittered case. Two cases:
 *      aligned   no jitter: every schedule's slot is the same instant, so each second 1,000 runs
 *                are due at once and start one after another (the lag is the queue);
 *      jittered  spec.jitter = 1 s: each run is due at nominal + jitterFor(…), spread over the second.
 *    Also checked: exactly one execution per schedule and slot.
 * 2. Memory: RSS with SCHEDULE_BENCH_HELD (default 100,000) schedules held (hourly, so none fires
 *    while measured), in the SQLite store (the default) and in the memory store; after a GC when
 *    run with --expose-gc. Each in a fresh child process (this script, SCHEDULE_BENCH_HELD_CASE=
 *    sqlite|memory): in the process that ran the lag cases, RSS would also count what their
 *    backlogs left behind in the heap.
 *
 * 3. Floor (the baseline of the aligned case): what the database alone needs for one second of
 *    1,000 aligned fires, with no orchestrator code at all: raw better-sqlite3 on a database
 *    migrated by the server's own code, in ONE transaction, per schedule: the schedule row
 *    advanced (its stored record rewritten, as firing does), its claim inserted, its execution row
 *    inserted. A run starts only once its claim and execution are committed (that is what makes
 *    a slot fire once across a crash), so 1,000 runs due at one instant cannot all have started
 *    sooner than this after it, whatever the engine does.
 *
 * 4. Core floor (the baseline of both cases, from the orchestrator's side): the same runtime and
 *    stores with no schedule at all; N runs of the same action submitted at one instant straight
 *    to Orchestrator.submit (admission: permission, validation, policy, rate limits, the execution
 *    row, its audit), then awaited to their ends. Printed: when the p99-th and the last of them
 *    had their execution created, counted from the instant they were submitted — what the
 *    aligned case's p99 cannot beat, since a fire is that submit plus the scheduler's own work —
 *    and the main thread's busy time per run, to its end: at 1,000 runs a second, more than
 *    1,000 µs of it per run is more than one second of work per second on the one JavaScript
 *    thread, so no scheduler keeps the jittered case's backlog from growing.
 *
 * Targets (issue #6): p99 lag ≤ 10 ms with 1,000 schedules firing every second; ≤ 300 MB RSS
 * with 100,000 schedules held.
 */
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as SqlClient from "@effect/sql/SqlClient";
import { Clock, Effect, Either, Layer, Logger, LogLevel, ManagedRuntime } from "effect";
import { Orchestrator } from "../src/core/Orchestrator.js";
import { OrchestratorConfig } from "../src/core/OrchestratorConfig.js";
import { OperationRegistry } from "../src/core/operation.js";
import type { Principal } from "../src/core/model.js";
import { Scheduler, SchedulerConfig, type ScheduleInput } from "../src/core/schedule/Scheduler.js";
import type { ScheduleRecord } from "../src/core/schedule/model.js";
import { compileSpec, jitterFor } from "../src/core/schedule/spec.js";
import { demoOperations } from "../src/operations/demo.js";
import { PolicyService } from "../src/ports/PolicyService.js";
import { RateLimiterMemory } from "../src/ports/RateLimiter.js";
import { ScheduleStore } from "../src/ports/ScheduleStore.js";
import { ScheduleStoreMemory } from "../src/ports/memory/ScheduleStoreMemory.js";
import { AuditLoggerSqlite } from "../src/ports/sqlite/AuditLoggerSqlite.js";
import { ExecutionStoreSqlite } from "../src/ports/sqlite/ExecutionStoreSqlite.js";
import { ScheduleStoreSqlite } from "../src/ports/sqlite/ScheduleStoreSqlite.js";
import { SqliteDatabase } from "../src/ports/sqlite/SqliteDatabase.js";
import { RawDatabase } from "./lib.js";


const envInt = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
};
/** Comma-separated counts of every-second schedules, one lag case each. */
const firingCounts = (process.env["SCHEDULE_BENCH_SCHEDULES"] ?? "100,1000").split(",").map((x) => {
  const n = Number(x);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`SCHEDULE_BENCH_SCHEDULES: expected counts like 100,1000, got "${x}"`);
  return n;
});
const seconds = envInt("SCHEDULE_BENCH_SECONDS", 10);
const held = envInt("SCHEDULE_BENCH_HELD", 100_000);
const warmupMs = 2_000;
/** Which cases run (default all): a comma-separated subset of floor, core, aligned, jittered, held. */
const cases = new Set((process.env["SCHEDULE_BENCH_CASES"] ?? "floor,core,aligned,jittered,held").split(","));

const owner: Principal = { subject: "bench", tenant: "bench", roles: ["admin"] };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mb = (bytes: number) => Math.round(bytes / 1024 / 1024);
const gc = () => (globalThis as { gc?: () => void }).gc?.();
const percentile = (sorted: ReadonlyArray<number>, p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

function runtimeFor(dir: string, scheduleStore: "sqlite" | "memory") {
  const database = SqliteDatabase.layer(dir);
  const stores = Layer.mergeAll(ExecutionStoreSqlite, AuditLoggerSqlite, scheduleStore === "sqlite" ? ScheduleStoreSqlite : ScheduleStoreMemory).pipe(Layer.provideMerge(database));
  const deps = Layer.mergeAll(OrchestratorConfig.layer({}), OperationRegistry.layer(demoOperations), stores, RateLimiterMemory, PolicyService.allowAll);
  const app = Scheduler.Default.pipe(Layer.provideMerge(Orchestrator.Default), Layer.provideMerge(SchedulerConfig.layer({ leaseMs: 10_000 })), Layer.provideMerge(deps));
  return ManagedRuntime.make(Layer.merge(app, Logger.minimumLogLevel(LogLevel.Warning)));
}

const definition = (cron: string, jitterMs: number | undefined, startTime?: number, endTime?: number): ScheduleInput => ({
  spec: {
    cronExpressions: [cron],
    timeZone: "UTC",
    ...(jitterMs === undefined ? {} : { jitterMs }),
    ...(startTime === undefined ? {} : { startTime }),
    ...(endTime === undefined ? {} : { endTime }),
  },
  action: { operation: "demo.echo", input: { message: "tick" }, labels: {} },
  policy: { overlap: "ALLOW_ALL", catchupWindowMs: 300_000, pauseOnFailure: false },
  state: { paused: false, note: "" },
});

async function lagCase(name: string, firing: number, jitterMs: number | undefined) {
  const dir = mkdtempSync(join(tmpdir(), "bench-schedules-"));
  const rt = runtimeFor(dir, (process.env["SCHEDULE_BENCH_STORE"] ?? "sqlite") as "sqlite" | "memory");
  try {
    // All start together at `begin` (spec.start_time), after they are all created: creating them
    // while the first ones already fire would measure the creation loop too.
    const begin = Math.ceil((Date.now() + 1_000 + firing * 5) / 1000) * 1000;
    const creating = Date.now();
    await rt.runPromise(
      Effect.gen(function* () {
        const s = yield* Scheduler;
        // end_time: the slots stop with the window, so an engine that fell behind drains its backlog.
        const end = begin + warmupMs + seconds * 1000 - 1000;
        for (let i = 0; i < firing; i++) yield* s.create(owner, { scheduleId: `b-${i}`, schedule: definition("* * * * * *", jitterMs, begin, end) });
      }),
    );
    process.stderr.write(`  ${name} ${firing}: ${firing} schedules created in ${Date.now() - creating} ms\n`);
    if (Date.now() > begin) console.log(`(creating ${firing} schedules took past their start time)`);
    const created = Date.now();
    const cpu0 = process.cpuUsage();
    const elu0 = performance.eventLoopUtilization();
    const from = begin + warmupMs;
    await sleep(from + seconds * 1000 - Date.now() + 500);
    const to = from + seconds * 1000 - 1000; // last slot measured
    const expected = firing * ((to - from) / 1000 + 1);
    // Wait for the backlog, if any, to drain (bounded): every slot of the window has run.
    const countRuns = () => rt.runPromise(
      Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ n: number }>`SELECT COUNT(*) AS n FROM executions WHERE nominal_time >= ${from} AND nominal_time <= ${to}`),
    );
    for (let i = 0; i < 600 && (await countRuns())[0]!.n < expected; i++) await sleep(1_000);
    const cpu = process.cpuUsage(cpu0);
    // The main thread's busy time (the engine, the core, the stores' statements): its capacity.
    // Process CPU also counts the audit writer's thread and GC helpers.
    const mainBusyMs = performance.eventLoopUtilization(elu0).active;
    const fired = await rt.runPromise(
      Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ n: number }>`SELECT COUNT(*) AS n FROM executions WHERE create_time >= ${created}`),
    );
    const cpuPerFireUs = Math.round((cpu.user + cpu.system) / Math.max(1, fired[0]!.n));
    const mainPerFireUs = Math.round((mainBusyMs * 1000) / Math.max(1, fired[0]!.n));
    const rows = await rt.runPromise(
      Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql<{ schedule_id: string; nominal_time: number; create_time: number }>`
          SELECT schedule_id, nominal_time, create_time FROM executions WHERE nominal_time >= ${from} AND nominal_time <= ${to}`,
      ),
    );
    const lags = rows
      .map((r) => r.create_time - (r.nominal_time + (jitterMs === undefined ? 0 : jitterFor(r.schedule_id, r.nominal_time, jitterMs, r.nominal_time + 1000))))
      .sort((a, b) => a - b);
    const perSlot = new Map<string, number>();
    for (const r of rows) perSlot.set(`${r.schedule_id}@${r.nominal_time}`, (perSlot.get(`${r.schedule_id}@${r.nominal_time}`) ?? 0) + 1);
    const duplicates = [...perSlot.values()].filter((n) => n > 1).length;
    const rss = process.memoryUsage().rss;
    console.log(
      `${name.padEnd(9)} ${firing} schedules × ${(to - from) / 1000 + 1} s: runs ${rows.length}/${expected}, duplicates ${duplicates}; ` +
        `lag p50 ${percentile(lags, 50)} ms, p99 ${percentile(lags, 99)} ms, max ${lags.at(-1)} ms; CPU ${cpuPerFireUs} µs per fire (main thread busy ${mainPerFireUs} µs); RSS ${mb(rss)} MB`,
    );
    return { p50: percentile(lags, 50), p99: percentile(lags, 99), runs: rows.length, expected, duplicates };
  } finally {
    await rt.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** See "Floor" in the header: the median over rounds, in ms, for `firing` schedules. */
async function floorCase(firing: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "bench-schedules-floor-"));
  const rt = runtimeFor(dir, "sqlite");
  try {
    // Real schedules, stored by the server's code (hourly: none fires while measured).
    await rt.runPromise(
      Effect.gen(function* () {
        const s = yield* Scheduler;
        for (let i = 0; i < firing; i++) yield* s.create(owner, { scheduleId: `f-${i}`, schedule: definition("0 * * * *", undefined) });
      }),
    );
  } finally {
    await rt.dispose();
  }
  const db = new RawDatabase(join(dir, SqliteDatabase.databaseFileName));
  db.pragma("synchronous = NORMAL");
  const schedules = db.prepare("SELECT schedule_id, record FROM schedules").all() as Array<{ schedule_id: string; record: string }>;
  const advance = db.prepare("UPDATE schedules SET next_fire_time = ?, rev = rev + 1, record = ? WHERE schedule_id = ?");
  const claim = db.prepare("INSERT INTO schedule_claims (schedule_id, claim_id, nominal_time, kind, overlap, instance_id, lease_until) VALUES (?, ?, ?, 'CRON', NULL, 'bench', ?)");
  const columns = ["execution_id", "operation", "state", "principal_subject", "principal_tenant", "principal", "labels", "request_id", "schedule_id", "nominal_time", "input", "result", "error", "token_usage", "trace_id", "create_time", "start_time", "end_time", "retry_policy", "timeout_ms", "attempt_timeout_ms", "next_attempt_time", "cancel_reason"];
  const insert = db.prepare(`INSERT INTO executions (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})`);
  const principal = JSON.stringify(owner);
  const retry = JSON.stringify({ maxAttempts: 3, initialIntervalMs: 1000, backoffCoefficient: 2, maxIntervalMs: 60000, nonRetryableErrorTypes: [] });
  const second = db.transaction((t: number) => {
    for (const s of schedules) {
      const record = JSON.parse(s.record) as ScheduleRecord;
      advance.run(t + 1000, JSON.stringify({ ...record, nextFireTime: t + 1000, runCount: record.runCount + 1 }), s.schedule_id);
      claim.run(s.schedule_id, `cron:${t}`, t, t + 10_000);
      insert.run(randomUUID(), "demo.echo", "PENDING", owner.subject, owner.tenant, principal, "{}", null, s.schedule_id, t, '{"message":"tick"}', null, null, null, null, t, null, null, retry, 60_000, null, null, null);
    }
  });
  const times: number[] = [];
  for (let round = 0; round < 7; round++) {
    const start = performance.now();
    second(1_800_000_000_000 + round * 1000);
    times.push(performance.now() - start);
  }
  db.close();
  rmSync(dir, { recursive: true, force: true });
  return [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)]!;
}

/** See "Core floor" in the header: medians over rounds for `n` runs submitted at one instant. */
async function coreFloorCase(n: number): Promise<{ p99Ms: number; lastMs: number; mainPerRunUs: number }> {
  const dir = mkdtempSync(join(tmpdir(), "bench-schedules-core-"));
  const rt = runtimeFor(dir, "sqlite");
  const action = definition("* * * * * *", undefined).action;
  const burst = (count: number) =>
    rt.runPromise(
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const t0 = yield* Clock.currentTimeMillis;
        const started = yield* Effect.forEach(
          Array.from({ length: count }, (_, i) => i),
          (i) => o.submit({ operation: action.operation, input: action.input, principal: owner, scheduleId: "core-floor", nominalTime: t0 + i }),
          { concurrency: "unbounded" },
        );
        yield* Effect.forEach(started, (s) => o.awaitEnd(s.executionId), { concurrency: "unbounded", discard: true });
        const created = started.map((s) => s.accepted.createTime - t0).sort((a, b) => a - b);
        return { p99Ms: percentile(created, 99), lastMs: created.at(-1)! };
      }),
    );
  try {
    await burst(n); // warm-up
    const rounds: Array<{ p99Ms: number; lastMs: number; mainPerRunUs: number }> = [];
    for (let round = 0; round < 5; round++) {
      const elu0 = performance.eventLoopUtilization();
      const r = await burst(n);
      rounds.push({ ...r, mainPerRunUs: (performance.eventLoopUtilization(elu0).active * 1000) / n });
    }
    const median = (f: (r: (typeof rounds)[number]) => number) => [...rounds.map(f)].sort((a, b) => a - b)[Math.floor(rounds.length / 2)]!;
    return { p99Ms: median((r) => r.p99Ms), lastMs: median((r) => r.lastMs), mainPerRunUs: median((r) => r.mainPerRunUs) };
  } finally {
    await rt.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function heldCase(store: "sqlite" | "memory") {
  const dir = mkdtempSync(join(tmpdir(), "bench-schedules-held-"));
  const rt = runtimeFor(dir, store);
  try {
    await rt.runPromise(Effect.void);
    gc();
    const before = process.memoryUsage().rss;
    const spec = definition("0 * * * *", undefined);
    const compiled = Either.getOrThrow(compileSpec(spec.spec));
    // Straight into the store (CreateSchedule would also validate, audit and answer an RPC each).
    await rt.runPromise(
      Effect.gen(function* () {
        const st = yield* ScheduleStore;
        const now = yield* Clock.currentTimeMillis;
        const sql = store === "sqlite" ? yield* SqlClient.SqlClient : undefined;
        const record = (i: number): ScheduleRecord => ({
          scheduleId: `held-${String(i).padStart(6, "0")}`,
          ...spec,
          owner,
          createTime: now,
          updateTime: now,
          version: 1,
          rev: 1,
          nextFireTime: compiled.next(now + 3_600_000),
          runCount: 0,
          missedCount: 0,
          overlapSkippedCount: 0,
          recentRuns: [],
          running: [],
          buffer: [],
        });
        for (let i = 0; i < held; i += 1000) {
          const batch = Effect.forEach(Array.from({ length: Math.min(1000, held - i) }, (_, j) => record(i + j)), (r) => st.insert(r), { discard: true });
          yield* sql === undefined ? batch : sql.withTransaction(batch);
        }
      }),
    );
    await sleep(2_000); // the engine looks at the queue (nothing is due for an hour)
    gc();
    const after = process.memoryUsage().rss;
    const count = await rt.runPromise(Effect.flatMap(ScheduleStore, (s) => s.count()));
    console.log(`held      ${count} schedules in the ${store} store: RSS ${mb(after)} MB (${mb(before)} MB before, +${mb(after - before)} MB)`);
    return after;
  } finally {
    await rt.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** heldCase in a child process of its own (see the header); its RSS in bytes. */
const heldInChild = (store: "sqlite" | "memory"): number => {
  const out = execFileSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
    env: { ...process.env, SCHEDULE_BENCH_HELD_CASE: store },
    stdio: ["ignore", "pipe", "inherit"],
    encoding: "utf8",
  });
  const lines = out.trim().split("\n");
  for (const line of lines.slice(0, -1)) console.log(line);
  return Number(JSON.parse(lines.at(-1)!).rss);
};

const onlyHeld = process.env["SCHEDULE_BENCH_HELD_CASE"];
if (onlyHeld === "sqlite" || onlyHeld === "memory") {
  const rss = await heldCase(onlyHeld);
  console.log(JSON.stringify({ rss }));
  process.exit(0);
}

console.log(`node ${process.version}, ${(globalThis as { gc?: unknown }).gc === undefined ? "no --expose-gc (RSS without a forced GC)" : "--expose-gc"}`);
const results: string[] = [];
for (const n of firingCounts) {
  const floor = cases.has("floor") ? await floorCase(n) : undefined;
  if (floor !== undefined) console.log(`floor     ${n} schedules: advance + claim + execution row, raw better-sqlite3, one transaction: ${floor.toFixed(1)} ms (${((floor * 1000) / n).toFixed(1)} µs per fire)`);
  const core = cases.has("core") ? await coreFloorCase(n) : undefined;
  if (core !== undefined) {
    console.log(
      `core      ${n} runs submitted at one instant, no scheduler: p99 created after ${core.p99Ms} ms, the last after ${core.lastMs} ms; ` +
        `main thread busy ${core.mainPerRunUs.toFixed(0)} µs per run to its end (${((core.mainPerRunUs * n) / 1000).toFixed(0)} ms per second at ${n} runs a second)`,
    );
  }
  const aligned = cases.has("aligned") ? await lagCase("aligned", n, undefined) : undefined;
  const jittered = cases.has("jittered") ? await lagCase("jittered", n, 1_000) : undefined;
  const parts: string[] = [];
  if (aligned !== undefined) {
    const ratios = [
      ...(floor === undefined ? [] : [`${(aligned.p99 / floor).toFixed(1)}× the database floor of ${floor.toFixed(1)} ms`]),
      ...(core === undefined ? [] : [`${(aligned.p99 / Math.max(1, core.p99Ms)).toFixed(1)}× the core floor of ${core.p99Ms} ms`]),
    ];
    parts.push(`aligned p99 ${aligned.p99} ms${ratios.length === 0 ? "" : ` (${ratios.join(", ")})`}`);
  }
  if (jittered !== undefined) parts.push(`jittered p99 ${jittered.p99} ms`);
  if (parts.length > 0) results.push(`${n} schedules: ${parts.join(", ")}`);
}
if (results.length > 0) {
  console.log("");
  console.log(`target p99 ≤ 10 ms with 1,000 schedules firing every second: ${results.join("; ")}`);
}
if (cases.has("held")) {
  const sqliteRss = heldInChild("sqlite");
  const memoryRss = heldInChild("memory");
  console.log(`target RSS ≤ 300 MB with ${held} schedules: SQLite store ${mb(sqliteRss)} MB, memory store ${mb(memoryRss)} MB`);
}
