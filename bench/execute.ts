/**
 * Execute throughput: orchestrator.v1.ExecutionService/Execute of `demo.echo` through the
 * orchestrator's server against bare connect-node servers, in the same run.
 *
 *   npm run bench:execute     (node --import tsx bench/execute.ts)
 *
 * Each server runs in its own child process on 127.0.0.1; the load generator runs here.
 * Servers:
 *   baseline-health   bench/baseline-server.ts: bare connect-node, grpc.health.v1.Health/Check
 *                     (the bare echo baseline of bench/unary.ts), measured with Health/Check
 *   baseline-execute  bench/baseline-execute-server.ts: bare connect-node whose Execute streams
 *                     the same 3 events without any core, measured with Execute
 *   subject           src/main.ts --demo-operations --log-level warn, fresh --data-dir,
 *                     --auth none (every caller is the local admin), no rate limit
 * The subject's Execute request is {operation: "demo.echo", input: {message: "hi"}}; each call
 * reads the stream to its end and must see accepted, attempt_started, succeeded. Every such
 * call runs the whole core (authorize, validate, policy, store, audit, retry loop) and writes to
 * SQLite: the rows per Execute are counted in the database after the run, and the statements
 * (and the time inside them) on a separate, unmeasured instance (bench/sqlite-census.ts).
 * subject / baseline-execute isolates the core and SQLite; baseline-execute / baseline-health is
 * the cost of a three-message server stream over a unary call.
 *
 * Load: at most BENCH_CALLS (5,000) calls and BENCH_MEASURE_S (3) seconds per measurement,
 * whichever ends first, BENCH_CONCURRENCY (50) in flight over one HTTP/2 connection; gRPC
 * (createGrpcTransport) and Connect binary (createConnectTransport, httpVersion "2"). Each
 * server first gets BENCH_WARMUP (1,000) calls, for at most BENCH_WARMUP_S (4) seconds, per
 * protocol and client (JIT), and every measurement starts with min(500, BENCH_WARMUP) calls,
 * for at most 0.5 s, unmeasured, on its fresh connection.
 * BENCH_ROUNDS (3) rounds, servers alternated (order rotated each round); medians over rounds.
 * If h2load is on PATH (and BENCH_H2LOAD is not "0"), the same calls are also driven by h2load
 * (a far cheaper client: on 2 cores the client competes with the server); its call count is
 * sized from the warm-up rate to take about BENCH_MEASURE_S, and since h2load does not read
 * grpc-status, a stream counts as failed when too few response bytes came back.
 * BENCH_CPU_PROF=DIR starts the measured servers with --cpu-prof into DIR/<server>/ and prints
 * a summary of the subject's profile at the end (bench/cpuprofile-summary.ts, also a CLI).
 * BENCH_SQL_CENSUS=0 skips the statement census; BENCH_CENSUS_CALLS (500) sizes it.
 *
 * Prints a table and, last, one JSON line with every number. Exits 0 on success, 1 on failed
 * calls or when BENCH_DEADLINE_S (default 240) passes.
 */
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient, type Transport } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/health/v1/health_pb.js";
import {
  ExecuteRequestSchema,
  ExecuteResponseSchema,
  ExecutionService,
  type ExecuteResponse,
} from "../gen/orchestrator/v1/execution_service_pb.js";
import { summarizeCpuProfile } from "./cpuprofile-summary.js";
import {
  armDeadline,
  cpuSeconds,
  drive,
  envInt,
  envelope,
  fail,
  fmt,
  freePort,
  h2loadArgs,
  h2loadAvailable,
  makeTransport,
  measureConnectNode,
  median,
  parseH2load,
  protocols,
  registerTmpDir,
  round1,
  round3,
  runH2load,
  startServer,
  stopServer,
  stopServers,
  warmConnectNode,
  type Call,
  type Client,
  type Protocol,
  type Running,
  type Sample,
} from "./lib.js";
import type { Census } from "./sqlite-census.js";
import { auditDatabaseFileName } from "../src/ports/sqlite/AuditDatabase.js";
import { SqliteDatabase } from "../src/ports/sqlite/SqliteDatabase.js";
import { Http2SessionManager } from "@connectrpc/connect-node";

const config = {
  calls: envInt("BENCH_CALLS", 5_000),
  measureS: envInt("BENCH_MEASURE_S", 3),
  warmup: envInt("BENCH_WARMUP", 1_000),
  warmupS: envInt("BENCH_WARMUP_S", 4),
  concurrency: envInt("BENCH_CONCURRENCY", 50),
  rounds: envInt("BENCH_ROUNDS", 3),
  deadlineS: envInt("BENCH_DEADLINE_S", 240),
  censusCalls: envInt("BENCH_CENSUS_CALLS", 500),
};
const connectionWarmup = Math.min(500, config.warmup);
/** Time bound of the unmeasured calls that start each measurement. */
const connectionWarmupS = 0.5;
const census = process.env["BENCH_SQL_CENSUS"] !== "0";
const cpuProfDir = process.env["BENCH_CPU_PROF"];
const callTimeoutMs = 10_000;

type ServerName = "baseline-health" | "baseline-execute" | "subject";
const serverNames: ReadonlyArray<ServerName> = ["baseline-health", "baseline-execute", "subject"];
const rpcOf = (s: ServerName): string =>
  s === "baseline-health" ? "grpc.health.v1.Health/Check" : "orchestrator.v1.ExecutionService/Execute";

const executeRequest = create(ExecuteRequestSchema, { operation: "demo.echo", input: { message: "hi" } });
const expectedEvents = ["accepted", "attemptStarted", "succeeded"] as const;

// ---------------------------------------------------------------------------------------------
// Servers

function subjectArgs(port: number): string[] {
  const dataDir = mkdtempSync(join(tmpdir(), "orchestrator-bench-"));
  registerTmpDir(dataDir);
  return ["--port", String(port), "--data-dir", dataDir, "--demo-operations", "--log-level", "warn", "--auth", "none"];
}
const dataDirOf = (args: ReadonlyArray<string>): string => args[args.indexOf("--data-dir") + 1]!;

async function start(name: ServerName): Promise<Running & { readonly dataDir?: string }> {
  const port = await freePort();
  if (name === "baseline-health") return startServer(name, port, "bench/baseline-server.ts", ["--port", String(port)], { cpuProfDir });
  if (name === "baseline-execute") return startServer(name, port, "bench/baseline-execute-server.ts", ["--port", String(port)], { cpuProfDir });
  const args = subjectArgs(port);
  return { ...(await startServer(name, port, "src/main.ts", args, { cpuProfDir })), dataDir: dataDirOf(args) };
}

// ---------------------------------------------------------------------------------------------
// Calls

const healthCall = (transport: Transport): Call => {
  const client = createClient(Health, transport);
  return async () => (await client.check({}, { timeoutMs: callTimeoutMs })).status === ServingStatus.SERVING;
};

/** One Execute, its stream read to the end; true when it carried exactly the three expected events. */
const executeCall = (transport: Transport): Call => {
  const client = createClient(ExecutionService, transport);
  return async () => {
    let i = 0;
    let ok = true;
    for await (const res of client.execute(executeRequest, { timeoutMs: callTimeoutMs })) {
      if (res.event?.kind.case !== expectedEvents[i]) ok = false;
      i++;
    }
    return ok && i === expectedEvents.length;
  };
};

const callOf = (s: ServerName) => (s === "baseline-health" ? healthCall : executeCall);

/** The responses of one Execute, for the response size (and a check that the server answers). */
async function probe(port: number): Promise<ExecuteResponse[]> {
  const manager = new Http2SessionManager(`http://127.0.0.1:${port}`);
  try {
    const out: ExecuteResponse[] = [];
    for await (const r of createClient(ExecutionService, makeTransport("grpc", port, manager)).execute(executeRequest, { timeoutMs: callTimeoutMs })) out.push(r);
    return out;
  } finally {
    manager.abort();
  }
}

// ---------------------------------------------------------------------------------------------
// h2load: request bodies and the minimum response DATA bytes of a successful call

const healthRequest = Buffer.from([0x0a, 0x00]); // HealthCheckRequest{service: ""}, never an empty body
const executeRequestBytes = toBinary(ExecuteRequestSchema, executeRequest);

function bodies(dir: string): void {
  writeFileSync(join(dir, "baseline-health-grpc.bin"), envelope(healthRequest));
  writeFileSync(join(dir, "baseline-health-connect.bin"), healthRequest);
  for (const s of ["baseline-execute", "subject"]) {
    // Connect server streaming: the request is one enveloped message too.
    writeFileSync(join(dir, `${s}-grpc.bin`), envelope(executeRequestBytes));
    writeFileSync(join(dir, `${s}-connect.bin`), envelope(executeRequestBytes));
  }
}

function serverH2loadArgs(server: ServerName, protocol: Protocol, port: number, calls: number, bodyDir: string): string[] {
  const unary = server === "baseline-health";
  const headers =
    protocol === "grpc"
      ? ["content-type: application/grpc", "te: trailers"]
      : [`content-type: application/${unary ? "proto" : "connect+proto"}`, "connect-protocol-version: 1"];
  return h2loadArgs(`http://127.0.0.1:${port}/${rpcOf(server)}`, headers, join(bodyDir, `${server}-${protocol}.bin`), calls, config.concurrency);
}

interface Ctx {
  readonly bodyDir: string;
  /** Per server: response DATA bytes below which an h2load call counts as failed (0: HTTP status only). */
  readonly minBytes: Map<ServerName, number>;
  /** Per server and protocol: h2load calls per second in the warm-up, to size measurements. */
  readonly h2loadRate: Map<string, number>;
}

function h2loadFailed(server: ServerName, ctx: Ctx, calls: number, succeeded: number, dataBytes: number): number {
  const min = ctx.minBytes.get(server) ?? 0;
  const byStatus = calls - succeeded;
  if (min === 0 || dataBytes >= min * calls) return byStatus;
  return Math.max(byStatus, calls - Math.floor(dataBytes / min));
}

/** h2load calls that take about `seconds` at the warm-up's rate (bounded by `calls`). */
function h2loadCalls(ctx: Ctx, server: ServerName, protocol: Protocol, calls: number, seconds: number): number {
  const rate = ctx.h2loadRate.get(`${server}/${protocol}`) ?? 100;
  return Math.max(Math.min(calls, 100), Math.min(calls, Math.round(rate * seconds)));
}

/** Warm-up: a short probe for the rate, then calls for about BENCH_WARMUP_S (at most BENCH_WARMUP). */
async function warmH2load(server: Running & { name: ServerName }, protocol: Protocol, ctx: Ctx): Promise<number> {
  let failed = 0;
  let done = 0;
  for (const calls of [Math.min(200, config.warmup), 0]) {
    const n = calls > 0 ? calls : h2loadCalls(ctx, server.name, protocol, config.warmup - done, config.warmupS);
    if (n <= 0) break;
    const r = parseH2load(await runH2load(serverH2loadArgs(server.name, protocol, server.port, n, ctx.bodyDir)));
    ctx.h2loadRate.set(`${server.name}/${protocol}`, r.reqPerSec);
    failed += h2loadFailed(server.name, ctx, n, r.succeeded, r.dataBytes);
    done += n;
  }
  return failed;
}

async function measureH2load(protocol: Protocol, server: Running & { name: ServerName }, ctx: Ctx): Promise<Sample> {
  const calls = h2loadCalls(ctx, server.name, protocol, config.calls, config.measureS);
  const warm = h2loadCalls(ctx, server.name, protocol, connectionWarmup, connectionWarmupS);
  await runH2load(serverH2loadArgs(server.name, protocol, server.port, warm, ctx.bodyDir));
  const cpu0 = cpuSeconds(server.child.pid);
  const r = parseH2load(await runH2load(serverH2loadArgs(server.name, protocol, server.port, calls, ctx.bodyDir)));
  const cpu = cpuSeconds(server.child.pid) - cpu0;
  return {
    calls,
    reqPerSec: r.reqPerSec,
    p50Ms: r.meanMs, // mean
    p99Ms: Number.NaN,
    failed: h2loadFailed(server.name, ctx, calls, r.succeeded, r.dataBytes),
    serverCpuUs: (cpu / calls) * 1e6,
  };
}

// ---------------------------------------------------------------------------------------------
// SQLite context: rows per Execute (from the subject's database) and statements per Execute
// (census on a separate instance)

interface Rows {
  readonly executions: number;
  readonly perExecution: Record<string, number>;
  readonly auditTypesPerExecution: Record<string, number>;
  readonly dbBytes: number;
}

type Db = {
  prepare(sql: string): { all(): Array<Record<string, unknown>>; get(): Record<string, unknown> };
  close(): void;
};
const openDb = (file: string): Db =>
  new (createRequire(import.meta.url)("better-sqlite3") as new (f: string, o: { readonly: boolean }) => Db)(file, { readonly: true });

/** Rows per Execute; the audit log is in a file of its own (src/ports/sqlite/AuditDatabase.ts). */
function countRows(dataDir: string): Rows {
  const file = join(dataDir, SqliteDatabase.databaseFileName);
  const auditFile = join(dataDir, auditDatabaseFileName);
  const db = openDb(file);
  const auditDb = openDb(auditFile);
  try {
    const count = (d: Db, table: string): number => Number(d.prepare(`SELECT count(*) AS n FROM ${table}`).get()["n"]);
    const executions = count(db, "executions");
    const per = (n: number): number => round3(n / executions);
    const audit = auditDb.prepare("SELECT type, count(*) AS n FROM audit_events GROUP BY type ORDER BY type").all();
    const bytes = (f: string) => ["", "-wal", "-shm"].reduce((sum, suffix) => sum + (existsSync(f + suffix) ? statSync(f + suffix).size : 0), 0);
    return {
      executions,
      perExecution: {
        executions: 1,
        execution_attempts: per(count(db, "execution_attempts")),
        audit_events: per(count(auditDb, "audit_events")),
      },
      auditTypesPerExecution: Object.fromEntries(audit.map((r) => [String(r["type"]), per(Number(r["n"]))])),
      dbBytes: bytes(file) + bytes(auditFile),
    };
  } finally {
    db.close();
    auditDb.close();
  }
}

interface CensusResult {
  readonly calls: number;
  readonly statementsPerCall: number;
  /** Per Execute: how many of each kind of statement, and microseconds inside them. */
  readonly byStatement: Record<string, { readonly n: number; readonly us: number }>;
  /** Time inside better-sqlite3 statement calls, per Execute. */
  readonly sqliteUsPerCall: number;
  readonly serverCpuUsPerCall: number;
}

async function runCensus(): Promise<CensusResult> {
  const port = await freePort();
  const args = subjectArgs(port);
  const out = join(dataDirOf(args), "census.json");
  const server = await startServer("subject-census", port, "src/main.ts", args, {
    nodeArgs: ["--import", "./bench/sqlite-census.ts"],
    env: { BENCH_SQL_CENSUS_OUT: out },
  });
  let seq = 0;
  const snapshot = async (): Promise<Census> => {
    seq++;
    server.child.kill("SIGUSR2");
    for (const until = performance.now() + 5000; performance.now() < until; await new Promise((r) => setTimeout(r, 20))) {
      try {
        const s = JSON.parse(readFileSync(out, "utf8")) as { seq: number; statements: Census };
        if (s.seq === seq) return s.statements;
      } catch {
        // not written yet
      }
    }
    return fail("the census server did not write its counts");
  };
  const manager = new Http2SessionManager(`http://127.0.0.1:${port}`);
  try {
    const call = executeCall(makeTransport("grpc", port, manager));
    await drive(call, Math.min(200, config.warmup), config.concurrency, undefined);
    const before = await snapshot();
    const cpu0 = cpuSeconds(server.child.pid);
    const { done, failed } = await drive(call, config.censusCalls, config.concurrency, undefined);
    const cpu = cpuSeconds(server.child.pid) - cpu0;
    const after = await snapshot();
    if (failed > 0) fail(`${failed} census calls failed`);
    const byStatement: Record<string, { n: number; us: number }> = {};
    let count = 0;
    let ns = 0;
    for (const [key, e] of Object.entries(after)) {
      const c = e.count - (before[key]?.count ?? 0);
      if (c === 0) continue;
      const t = e.ns - (before[key]?.ns ?? 0);
      byStatement[key] = { n: round3(c / done), us: round1(t / 1000 / done) };
      count += c;
      ns += t;
    }
    return {
      calls: done,
      statementsPerCall: round3(count / done),
      byStatement: Object.fromEntries(Object.entries(byStatement).sort(([, a], [, b]) => b.us - a.us)),
      sqliteUsPerCall: round1(ns / 1000 / done),
      serverCpuUsPerCall: round1((cpu / done) * 1e6),
    };
  } finally {
    manager.abort();
    await stopServer(server.child);
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const disarm = armDeadline(config.deadlineS);
  const started = performance.now();
  const elapsed = (): number => round1((performance.now() - started) / 1000);
  const clients: Client[] = ["connect-node", ...(h2loadAvailable ? (["h2load"] as const) : [])];
  process.stdout.write(
    `execute bench: Execute demo.echo {message:"hi"} (3 events/stream) vs bare connect-node servers; ` +
      `per measurement <= ${config.calls} calls and <= ${config.measureS} s (after <= ${connectionWarmup} calls, ${connectionWarmupS} s unmeasured), ` +
      `${config.concurrency} concurrent, 1 HTTP/2 connection, ${config.rounds} rounds, warm-up <= ${config.warmup} calls, ${config.warmupS} s per server, protocol and client; ` +
      `clients: ${clients.join(", ")}${h2loadAvailable ? "" : " (h2load not found)"}; node ${process.version}\n`,
  );

  const bodyDir = mkdtempSync(join(tmpdir(), "orchestrator-bench-body-"));
  registerTmpDir(bodyDir);
  bodies(bodyDir);

  const servers = new Map<ServerName, Running & { readonly name: ServerName; readonly dataDir?: string }>();
  for (const name of serverNames) servers.set(name, { ...(await start(name)), name });

  // Response size of one Execute stream per server: the baseline must send what the subject sends.
  const ctx: Ctx = { bodyDir, minBytes: new Map(), h2loadRate: new Map() };
  const responseBytes: Record<string, number> = {};
  for (const name of ["baseline-execute", "subject"] as const) {
    const events = await probe(servers.get(name)!.port);
    const kinds = events.map((e) => e.event?.kind.case);
    if (JSON.stringify(kinds) !== JSON.stringify(expectedEvents)) fail(`${name}: Execute streamed ${JSON.stringify(kinds)}`);
    const bytes = events.reduce((sum, e) => sum + 5 + toBinary(ExecuteResponseSchema, e).length, 0);
    responseBytes[name] = bytes;
    ctx.minBytes.set(name, Math.floor(0.8 * bytes)); // an error ends the stream with far fewer bytes
  }
  process.stdout.write(
    `  response bytes per Execute stream (gRPC framing): subject ${responseBytes["subject"]}, baseline-execute ${responseBytes["baseline-execute"]}\n`,
  );

  // JIT warm-up of every server with every client and protocol; nothing measured.
  let failedTotal = 0;
  for (const server of servers.values()) {
    for (const client of clients) {
      for (const protocol of protocols) {
        failedTotal +=
          client === "h2load"
            ? await warmH2load(server, protocol, ctx)
            : await warmConnectNode(protocol, server.port, callOf(server.name), config.warmup, config.concurrency, config.warmupS);
      }
    }
  }
  process.stdout.write(`  warm-up done (${elapsed()} s)\n`);

  const samples = new Map<string, Sample[]>();
  const key = (c: Client, p: Protocol, s: ServerName): string => `${c}/${p}/${s}`;
  for (let r = 0; r < config.rounds; r++) {
    const order = serverNames.map((_, i) => serverNames[(i + r) % serverNames.length]!);
    for (const client of clients) {
      for (const protocol of protocols) {
        for (const name of order) {
          const server = servers.get(name)!;
          const sample =
            client === "connect-node"
              ? await measureConnectNode(protocol, server, callOf(name), {
                  calls: config.calls,
                  concurrency: config.concurrency,
                  warmup: connectionWarmup,
                  warmupMaxSeconds: connectionWarmupS,
                  maxSeconds: config.measureS,
                })
              : await measureH2load(protocol, server, ctx);
          failedTotal += sample.failed;
          const k = key(client, protocol, name);
          samples.set(k, [...(samples.get(k) ?? []), sample]);
          process.stdout.write(
            `  round ${r + 1} ${k.padEnd(38)} ${sample.reqPerSec.toFixed(0).padStart(6)} calls/s ${sample.serverCpuUs.toFixed(0).padStart(5)} us server CPU/call` +
              ` (${sample.calls} calls)${sample.failed > 0 ? `  FAILED ${sample.failed}` : ""}\n`,
          );
        }
      }
    }
  }
  process.stdout.write(`  measurements done (${elapsed()} s)\n`);

  const rows = countRows(servers.get("subject")!.dataDir!);
  const sql = census ? await runCensus() : undefined;
  await stopServers();

  // -------------------------------------------------------------------------------------------
  // Report

  const results: Array<Record<string, unknown>> = [];
  const lines: string[] = [];
  const header =
    `${"client".padEnd(13)}${"protocol".padEnd(9)}${"server".padEnd(17)}${"calls/s".padStart(8)}${"p50 ms".padStart(8)}${"p99 ms".padStart(8)}` +
    `${"cpu us".padStart(8)}${"r/health".padStart(9)}${"r/exec".padStart(8)}${"cpu/hlth".padStart(9)}${"cpu/exec".padStart(9)}   calls/s per round`;
  lines.push(header, "-".repeat(header.length + 4));
  const summary: string[] = [];
  for (const client of clients) {
    for (const protocol of protocols) {
      const stat = (name: ServerName) => {
        const ss = samples.get(key(client, protocol, name)) ?? [];
        return {
          ss,
          rps: median(ss.map((s) => s.reqPerSec)),
          p50: median(ss.map((s) => s.p50Ms)),
          p99: median(ss.map((s) => s.p99Ms)),
          cpu: median(ss.map((s) => s.serverCpuUs)),
        };
      };
      const health = stat("baseline-health");
      const exec = stat("baseline-execute");
      for (const name of serverNames) {
        const { ss, rps, p50, p99, cpu } = stat(name);
        const ratioHealth = rps / health.rps;
        const ratioExec = rps / exec.rps;
        const cpuHealth = cpu / health.cpu;
        const cpuExec = cpu / exec.cpu;
        const isExec = name !== "baseline-health";
        results.push({
          client,
          protocol,
          server: name,
          rpc: rpcOf(name),
          calls_per_s: round1(rps),
          ...(client === "h2load" ? { mean_ms: round3(p50) } : { p50_ms: round3(p50), p99_ms: round3(p99) }),
          server_cpu_us_per_call: round1(cpu),
          ratio_vs_baseline_health: round3(ratioHealth),
          cpu_ratio_vs_baseline_health: round3(cpuHealth),
          ...(isExec ? { ratio_vs_baseline_execute: round3(ratioExec), cpu_ratio_vs_baseline_execute: round3(cpuExec) } : {}),
          rounds_calls_per_s: ss.map((s) => round1(s.reqPerSec)),
          rounds_server_cpu_us: ss.map((s) => round1(s.serverCpuUs)),
          rounds_calls: ss.map((s) => s.calls),
        });
        lines.push(
          `${client.padEnd(13)}${protocol.padEnd(9)}${name.padEnd(17)}${fmt(rps, 0).padStart(8)}${fmt(p50, 2).padStart(8)}${fmt(p99, 2).padStart(8)}` +
            `${fmt(cpu, 0).padStart(8)}${fmt(ratioHealth, 3).padStart(9)}${(isExec ? fmt(ratioExec, 3) : "").padStart(8)}` +
            `${fmt(cpuHealth, 2).padStart(9)}${(isExec ? fmt(cpuExec, 2) : "").padStart(9)}   ` +
            ss.map((s) => s.reqPerSec.toFixed(0)).join(" "),
        );
        if (name === "subject") {
          summary.push(
            `${`${client}/${protocol}`.padEnd(21)} subject ${fmt(rps, 0)} calls/s = ${fmt(ratioHealth, 3)} x bare Health/Check, ` +
              `${fmt(ratioExec, 3)} x bare Execute stream; CPU ${fmt(cpu, 0)} us/call = ${fmt(cpuHealth, 1)} x, ${fmt(cpuExec, 1)} x`,
          );
        }
      }
    }
  }
  lines.push(
    "r/health, r/exec = calls/s / the baseline's calls/s (same client and protocol); cpu us = server CPU (all threads) per call;",
    "cpu/hlth, cpu/exec = cpu us / the baseline's. All medians of rounds. h2load reports no percentiles: its p50 column is the mean.",
    "",
    ...summary,
    "",
    `SQLite per Execute (subject database after the run, ${rows.executions} executions, ${round1(rows.dbBytes / 1048576)} MiB incl. WAL): ` +
      Object.entries(rows.perExecution).map(([t, n]) => `${n} ${t}`).join(" + ") +
      ` rows; audit events: ${Object.entries(rows.auditTypesPerExecution).map(([t, n]) => `${t} ${n}`).join(", ")}`,
  );
  if (sql !== undefined) {
    lines.push(
      `SQLite statements per Execute (census: ${sql.calls} calls on a separate instance): ${sql.statementsPerCall} = ` +
        Object.entries(sql.byStatement).map(([k, { n, us }]) => `${k} ${n} (${us} us)`).join(", "),
      `  time inside SQLite statements: ${sql.sqliteUsPerCall} us per Execute, of ${sql.serverCpuUsPerCall} us server CPU per Execute on that instance ` +
        `(${fmt((100 * sql.sqliteUsPerCall) / sql.serverCpuUsPerCall, 0)}%)`,
    );
  }
  process.stdout.write("\n" + lines.join("\n") + "\n");

  let profile: ReturnType<typeof summarizeCpuProfile> | undefined;
  if (cpuProfDir !== undefined && cpuProfDir !== "") {
    profile = summarizeCpuProfile(join(cpuProfDir, "subject"));
    process.stdout.write(`\nsubject CPU profile (${profile.file}):\n${profile.text}\n`);
  }

  process.stdout.write(
    JSON.stringify({
      bench: "execute",
      rpc: "orchestrator.v1.ExecutionService/Execute",
      request: { operation: "demo.echo", input: { message: "hi" } },
      config: { ...config, connectionWarmup, connectionWarmupS, h2load: h2loadAvailable, node: process.version },
      results,
      response_bytes_per_stream: responseBytes,
      sqlite: {
        executions: rows.executions,
        rows_per_execute: rows.perExecution,
        audit_events_per_execute: rows.auditTypesPerExecution,
        db_bytes: rows.dbBytes,
        ...(sql === undefined
          ? {}
          : {
              census_calls: sql.calls,
              statements_per_execute: sql.statementsPerCall,
              statements_by_kind: sql.byStatement,
              sqlite_us_per_execute: sql.sqliteUsPerCall,
              census_server_cpu_us_per_execute: sql.serverCpuUsPerCall,
            }),
      },
      ...(profile === undefined ? {} : { cpu_profile: profile.json }),
      failed_calls: failedTotal,
      elapsed_s: elapsed(),
    }) + "\n",
  );
  if (failedTotal > 0) fail(`${failedTotal} calls failed`);
  disarm();
}

main().catch((e: unknown) => fail(e instanceof Error ? (e.stack ?? e.message) : String(e)));
