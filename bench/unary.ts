/**
 * Unary throughput baseline: grpc.health.v1.Health/Check through the orchestrator's server
 * against a bare connect-node echo server (bench/baseline-server.ts), in the same run.
 *
 *   npm run bench            (node --import tsx bench/unary.ts)
 *
 * Each server runs in its own child process on 127.0.0.1; the load generator runs here.
 * Servers:
 *   baseline      bare connectNodeAdapter on node:http2
 *   subject-warn  src/main.ts --log-level warn  (no per-RPC log line)
 *   subject-info  src/main.ts --log-level info  (one JSON log line per RPC, stdout -> /dev/null)
 * Load: BENCH_CALLS (10,000) calls, BENCH_CONCURRENCY (50) in flight, over one HTTP/2
 * connection; for gRPC (createGrpcTransport) and Connect binary (createConnectTransport,
 * httpVersion "2"). Each server first gets BENCH_WARMUP (2,000) calls per protocol and client
 * (JIT), and every measurement starts with 500 unmeasured calls on its fresh connection.
 * BENCH_ROUNDS (3) rounds, servers alternated (order rotated each round); medians over rounds.
 * BENCH_CPU_PROF=DIR starts the servers with --cpu-prof into DIR/<server>/ (written when they
 * stop; the largest file is the main thread, the other is tsx's loader thread). If h2load is on PATH (and BENCH_H2LOAD is
 * not "0"), the same calls are also driven by h2load, whose client costs far less CPU than
 * connect-node's (on 2 cores the client competes with the server).
 *
 * Prints a table and, last, one JSON line with every number. Exits 0 on success, 1 on failed
 * calls or when BENCH_DEADLINE_S (default 270) passes.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient, type Transport } from "@connectrpc/connect";
import { Http2SessionManager, createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/health/v1/health_pb.js";

const envInt = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
};

const config = {
  calls: envInt("BENCH_CALLS", 10_000),
  warmup: envInt("BENCH_WARMUP", 2_000),
  concurrency: envInt("BENCH_CONCURRENCY", 50),
  rounds: envInt("BENCH_ROUNDS", 3),
  deadlineS: envInt("BENCH_DEADLINE_S", 270),
};
const connectionWarmup = Math.min(500, config.warmup);
const cpuProfDir = process.env["BENCH_CPU_PROF"];
const callTimeoutMs = 10_000;
const root = fileURLToPath(new URL("..", import.meta.url));

type ServerName = "baseline" | "subject-warn" | "subject-info";
type Protocol = "grpc" | "connect";
type Client = "connect-node" | "h2load";
const serverNames: ReadonlyArray<ServerName> = ["baseline", "subject-warn", "subject-info"];
const protocols: ReadonlyArray<Protocol> = ["grpc", "connect"];

interface Sample {
  readonly reqPerSec: number;
  /** Milliseconds; h2load reports no percentiles, only the mean (kept in p50, p99 is NaN). */
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly failed: number;
  /** Server CPU (user + system, all threads) per measured call, microseconds; NaN off Linux. */
  readonly serverCpuUs: number;
}

// Server CPU from /proc/<pid>/stat (utime + stime, in clock ticks): unlike req/s it barely moves
// when something else on the machine competes for the cores.
const clockTicks = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout?.trim()) || 100;
function cpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / clockTicks; // fields 14 and 15 of stat
  } catch {
    return Number.NaN;
  }
}

// ---------------------------------------------------------------------------------------------
// Servers

interface Running {
  readonly name: ServerName;
  readonly port: number;
  readonly child: ChildProcess;
}

const children = new Set<ChildProcess>();
const tmpDirs: string[] = [];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function startServer(name: ServerName): Promise<Running> {
  // The subject logs "listening" at info, so at --log-level warn it prints nothing on start:
  // the port is chosen here and readiness is a successful Health/Check.
  const port = await freePort();
  let args: string[];
  if (name === "baseline") {
    args = ["--import", "tsx", "bench/baseline-server.ts", "--port", String(port)];
  } else {
    const dataDir = mkdtempSync(join(tmpdir(), "orchestrator-bench-"));
    tmpDirs.push(dataDir);
    const level = name === "subject-warn" ? "warn" : "info";
    args = ["--import", "tsx", "src/main.ts", "--port", String(port), "--data-dir", dataDir, "--log-level", level];
  }
  const devNull = openSync("/dev/null", "w");
  const prof = cpuProfDir === undefined || cpuProfDir === "" ? [] : ["--cpu-prof", "--cpu-prof-dir", join(cpuProfDir, name)];
  const child = spawn(process.execPath, [...prof, ...args], {
    cwd: root,
    stdio: ["ignore", devNull, "inherit"],
    env: { ...process.env, NODE_ENV: "production" },
  });
  closeSync(devNull);
  children.add(child);
  child.on("exit", (code, signal) => {
    children.delete(child);
    if (!shuttingDown) fail(`${name} server exited during the run (code ${code}, signal ${signal})`);
  });

  const until = performance.now() + 20_000;
  for (;;) {
    const manager = new Http2SessionManager(`http://127.0.0.1:${port}`);
    try {
      const client = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}`, sessionManager: manager }));
      const res = await client.check({}, { timeoutMs: 1000 });
      if (res.status === ServingStatus.SERVING) return { name, port, child };
    } catch {
      // not up yet
    } finally {
      manager.abort();
    }
    if (performance.now() > until) fail(`${name} server did not answer Health/Check within 20 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let shuttingDown = false;
async function stopServers(): Promise<void> {
  shuttingDown = true;
  await Promise.all(
    [...children].map(
      (c) =>
        new Promise<void>((resolve) => {
          const t = setTimeout(() => c.kill("SIGKILL"), 5000);
          c.once("exit", () => {
            clearTimeout(t);
            resolve();
          });
          c.kill("SIGTERM");
        }),
    ),
  );
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
}

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  shuttingDown = true;
  for (const c of children) c.kill("SIGKILL");
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
  process.exit(1);
}

// ---------------------------------------------------------------------------------------------
// Load generator: connect-node clients in this process

function makeTransport(protocol: Protocol, port: number, sessionManager: Http2SessionManager): Transport {
  const baseUrl = `http://127.0.0.1:${port}`;
  return protocol === "grpc"
    ? createGrpcTransport({ baseUrl, sessionManager })
    : createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, sessionManager });
}

async function drive(
  client: ReturnType<typeof createClient<typeof Health>>,
  calls: number,
  latencies: Float64Array | undefined,
): Promise<number> {
  let next = 0;
  let failed = 0;
  const worker = async (): Promise<void> => {
    while (next < calls) {
      const i = next++;
      const t0 = performance.now();
      try {
        const res = await client.check({}, { timeoutMs: callTimeoutMs });
        if (res.status !== ServingStatus.SERVING) failed++;
      } catch (e) {
        if (failed++ === 0) process.stderr.write(`bench: call failed: ${String(e)}\n`);
      }
      if (latencies !== undefined) latencies[i] = performance.now() - t0;
    }
  };
  await Promise.all(Array.from({ length: Math.min(config.concurrency, calls) }, worker));
  return failed;
}

async function measureConnectNode(protocol: Protocol, { port, child }: Running, warmup: number): Promise<Sample> {
  const manager = new Http2SessionManager(`http://127.0.0.1:${port}`);
  try {
    const client = createClient(Health, makeTransport(protocol, port, manager));
    await drive(client, warmup, undefined);
    const latencies = new Float64Array(config.calls);
    const cpu0 = cpuSeconds(child.pid);
    const t0 = performance.now();
    const failed = await drive(client, config.calls, latencies);
    const seconds = (performance.now() - t0) / 1000;
    const cpu = cpuSeconds(child.pid) - cpu0;
    latencies.sort();
    return {
      reqPerSec: config.calls / seconds,
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
      failed,
      serverCpuUs: (cpu / config.calls) * 1e6,
    };
  } finally {
    manager.abort();
  }
}

/** Unmeasured calls; returns the number that failed. */
async function warm(client: Client, protocol: Protocol, port: number, bodyDir: string): Promise<number> {
  if (client === "h2load") {
    await runH2load(h2loadArgs(protocol, port, config.warmup, bodyDir));
    return 0;
  }
  const manager = new Http2SessionManager(`http://127.0.0.1:${port}`);
  try {
    return await drive(createClient(Health, makeTransport(protocol, port, manager)), config.warmup, undefined);
  } finally {
    manager.abort();
  }
}

function percentile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

// ---------------------------------------------------------------------------------------------
// Optional load generator: h2load (nghttp2-client), one connection, BENCH_CONCURRENCY streams

const h2loadAvailable =
  process.env["BENCH_H2LOAD"] !== "0" && spawnSync("h2load", ["--version"], { stdio: "ignore" }).status === 0;

// HealthCheckRequest{service: ""} written out explicitly (0a 00) so the body is never empty.
const requestMessage = Buffer.from([0x0a, 0x00]);
const grpcFrame = Buffer.concat([Buffer.from([0, 0, 0, 0, requestMessage.length]), requestMessage]);

function h2loadArgs(protocol: Protocol, port: number, calls: number, bodyDir: string): string[] {
  const body = join(bodyDir, `${protocol}.bin`);
  const headers =
    protocol === "grpc"
      ? ["-H", "content-type: application/grpc", "-H", "te: trailers"]
      : ["-H", "content-type: application/proto", "-H", "connect-protocol-version: 1"];
  return [
    "-n", String(calls), "-c", "1", "-t", "1", "-m", String(config.concurrency),
    ...headers, "-d", body, `http://127.0.0.1:${port}/grpc.health.v1.Health/Check`,
  ];
}

function runH2load(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("h2load", args, { stdio: ["ignore", "pipe", "pipe"] });
    children.add(child);
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("exit", (code) => {
      children.delete(child);
      if (code === 0) resolve(out);
      else reject(new Error(`h2load exited ${code}: ${out}`));
    });
  });
}

async function measureH2load(protocol: Protocol, { port, child }: Running, bodyDir: string, warmup: number): Promise<Sample> {
  await runH2load(h2loadArgs(protocol, port, warmup, bodyDir));
  const cpu0 = cpuSeconds(child.pid);
  const out = await runH2load(h2loadArgs(protocol, port, config.calls, bodyDir));
  const cpu = cpuSeconds(child.pid) - cpu0;
  const rps = /finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out);
  const reqs = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
  const lat = /time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/.exec(out);
  if (rps === null || reqs === null || lat === null) throw new Error(`cannot parse h2load output:\n${out}`);
  const toMs = (v: string | undefined, unit: string | undefined): number =>
    Number(v) * (unit === "us" ? 0.001 : unit === "s" ? 1000 : 1);
  const succeeded = Number(reqs[1]);
  return {
    reqPerSec: Number(rps[1]),
    p50Ms: toMs(lat[5], lat[6]), // mean
    p99Ms: Number.NaN,
    failed: config.calls - succeeded,
    serverCpuUs: (cpu / config.calls) * 1e6,
  };
}

// ---------------------------------------------------------------------------------------------

const median = (xs: ReadonlyArray<number>): number => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const round1 = (x: number): number => Math.round(x * 10) / 10;
const round3 = (x: number): number => Math.round(x * 1000) / 1000;

async function main(): Promise<void> {
  const deadline = setTimeout(() => fail(`deadline of ${config.deadlineS} s passed`), config.deadlineS * 1000);
  deadline.unref();
  const started = performance.now();
  const clients: Client[] = ["connect-node", ...(h2loadAvailable ? (["h2load"] as const) : [])];
  process.stdout.write(
    `unary bench: grpc.health.v1.Health/Check, ${config.calls} calls (+${config.warmup} warm-up), ` +
      `${config.concurrency} concurrent, 1 HTTP/2 connection, ${config.rounds} rounds; ` +
      `clients: ${clients.join(", ")}${h2loadAvailable ? "" : " (h2load not found)"}; node ${process.version}\n`,
  );

  const bodyDir = mkdtempSync(join(tmpdir(), "orchestrator-bench-body-"));
  tmpDirs.push(bodyDir);
  writeFileSync(join(bodyDir, "grpc.bin"), grpcFrame);
  writeFileSync(join(bodyDir, "connect.bin"), requestMessage);

  const servers = new Map<ServerName, Running>();
  for (const name of serverNames) servers.set(name, await startServer(name));
  // JIT warm-up of every server with every client and protocol; nothing measured.
  let failedTotal = 0;
  for (const { port } of servers.values()) {
    for (const client of clients) {
      for (const protocol of protocols) failedTotal += await warm(client, protocol, port, bodyDir);
    }
  }
  process.stdout.write(`  warm-up done (${round1((performance.now() - started) / 1000)} s)\n`);

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
              ? await measureConnectNode(protocol, server, connectionWarmup)
              : await measureH2load(protocol, server, bodyDir, connectionWarmup);
          failedTotal += sample.failed;
          const k = key(client, protocol, name);
          samples.set(k, [...(samples.get(k) ?? []), sample]);
          process.stdout.write(
            `  round ${r + 1} ${k.padEnd(34)} ${sample.reqPerSec.toFixed(0).padStart(6)} req/s ${sample.serverCpuUs.toFixed(0).padStart(5)} us server CPU/call` +
              `${sample.failed > 0 ? `  FAILED ${sample.failed}` : ""}\n`,
          );
        }
      }
    }
  }
  await stopServers();

  const results: Array<Record<string, unknown>> = [];
  const lines: string[] = [];
  const fmt = (x: number, d: number): string => (Number.isNaN(x) ? "-" : x.toFixed(d));
  const header =
    `${"client".padEnd(13)}${"protocol".padEnd(9)}${"server".padEnd(14)}${"req/s".padStart(7)}${"p50 ms".padStart(8)}` +
    `${"p99 ms".padStart(8)}${"ratio".padStart(7)}${"cpu us".padStart(8)}${"cpu x".padStart(7)}   req/s per round`;
  lines.push(header, "-".repeat(header.length + 4));
  for (const client of clients) {
    for (const protocol of protocols) {
      const base = samples.get(key(client, protocol, "baseline")) ?? [];
      const baseRps = median(base.map((s) => s.reqPerSec));
      const baseCpu = median(base.map((s) => s.serverCpuUs));
      for (const name of serverNames) {
        const ss = samples.get(key(client, protocol, name)) ?? [];
        const rps = median(ss.map((s) => s.reqPerSec));
        const p50 = median(ss.map((s) => s.p50Ms));
        const p99 = median(ss.map((s) => s.p99Ms));
        const cpu = median(ss.map((s) => s.serverCpuUs));
        const ratio = rps / baseRps;
        const cpuRatio = cpu / baseCpu;
        results.push({
          client,
          protocol,
          server: name,
          req_per_s: round1(rps),
          ...(client === "h2load" ? { mean_ms: round3(p50) } : { p50_ms: round3(p50), p99_ms: round3(p99) }),
          ratio_vs_baseline: round3(ratio),
          server_cpu_us_per_call: round1(cpu),
          cpu_ratio_vs_baseline: round3(cpuRatio),
          rounds_req_per_s: ss.map((s) => round1(s.reqPerSec)),
          rounds_server_cpu_us: ss.map((s) => round1(s.serverCpuUs)),
        });
        lines.push(
          `${client.padEnd(13)}${protocol.padEnd(9)}${name.padEnd(14)}${fmt(rps, 0).padStart(7)}${fmt(p50, 2).padStart(8)}` +
            `${fmt(p99, 2).padStart(8)}${fmt(ratio, 3).padStart(7)}${fmt(cpu, 0).padStart(8)}${fmt(cpuRatio, 3).padStart(7)}   ` +
            ss.map((s) => s.reqPerSec.toFixed(0)).join(" "),
        );
      }
    }
  }
  lines.push(
    "ratio = subject req/s / baseline req/s; cpu us = server CPU (all threads) per call; cpu x = subject cpu / baseline cpu.",
    "All medians of rounds. h2load reports no percentiles: its p50 column is the mean latency.",
  );
  process.stdout.write("\n" + lines.join("\n") + "\n");
  const elapsedS = round1((performance.now() - started) / 1000);
  process.stdout.write(
    JSON.stringify({
      bench: "unary",
      rpc: "grpc.health.v1.Health/Check",
      config: { ...config, h2load: h2loadAvailable, node: process.version },
      results,
      failed_calls: failedTotal,
      elapsed_s: elapsedS,
    }) + "\n",
  );
  if (failedTotal > 0) fail(`${failedTotal} calls failed`);
  clearTimeout(deadline);
}

process.on("SIGINT", () => fail("interrupted"));
main().catch((e: unknown) => fail(e instanceof Error ? (e.stack ?? e.message) : String(e)));
