/**
 * Unary throughput baseline: grpc.health.v1.Health/Check through the orchestrator's server
 * against a bare connect-node echo server (bench/baseline-server.ts), in the same run.
 *
 *   npm run bench:unary      (node --import tsx bench/unary.ts; `npm run bench` runs it, then bench/execute.ts)
 *
 * Each server runs in its own child process on 127.0.0.1; the load generator runs here.
 * Servers:
 *   baseline      bare connectNodeAdapter on node:http2
 *   subject-warn  src/main.ts --log-level warn --auth none  (no per-RPC log line; Health is open anyway)
 *   subject-info  src/main.ts --log-level info --auth none  (one JSON log line per RPC, stdout -> /dev/null)
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
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Transport } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/health/v1/health_pb.js";
import {
  armDeadline,
  cpuSeconds,
  envInt,
  envelope,
  fail,
  fmt,
  freePort,
  h2loadArgs,
  h2loadAvailable,
  measureConnectNode,
  median,
  parseH2load,
  protocols,
  registerTmpDir,
  round1,
  round3,
  runH2load,
  startServer,
  stopServers,
  warmConnectNode,
  type Call,
  type Client,
  type Protocol,
  type Running,
  type Sample,
} from "./lib.js";

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

type ServerName = "baseline" | "subject-warn" | "subject-info";
const serverNames: ReadonlyArray<ServerName> = ["baseline", "subject-warn", "subject-info"];

// ---------------------------------------------------------------------------------------------
// Servers

async function start(name: ServerName): Promise<Running> {
  const port = await freePort();
  if (name === "baseline") return startServer(name, port, "bench/baseline-server.ts", ["--port", String(port)], { cpuProfDir });
  const dataDir = mkdtempSync(join(tmpdir(), "orchestrator-bench-"));
  registerTmpDir(dataDir);
  const level = name === "subject-warn" ? "warn" : "info";
  return startServer(name, port, "src/main.ts", ["--port", String(port), "--data-dir", dataDir, "--log-level", level, "--auth", "none"], { cpuProfDir });
}

// ---------------------------------------------------------------------------------------------
// Load: Health/Check with connect-node clients, or h2load

const healthCall = (transport: Transport): Call => {
  const client = createClient(Health, transport);
  return async () => (await client.check({}, { timeoutMs: callTimeoutMs })).status === ServingStatus.SERVING;
};

// HealthCheckRequest{service: ""} written out explicitly (0a 00) so the body is never empty.
const requestMessage = Buffer.from([0x0a, 0x00]);
const grpcFrame = envelope(requestMessage);

function healthH2loadArgs(protocol: Protocol, port: number, calls: number, bodyDir: string): string[] {
  const headers =
    protocol === "grpc" ? ["content-type: application/grpc", "te: trailers"] : ["content-type: application/proto", "connect-protocol-version: 1"];
  return h2loadArgs(`http://127.0.0.1:${port}/grpc.health.v1.Health/Check`, headers, join(bodyDir, `${protocol}.bin`), calls, config.concurrency);
}

/** Unmeasured calls; returns the number that failed. */
async function warm(client: Client, protocol: Protocol, port: number, bodyDir: string): Promise<number> {
  if (client === "h2load") {
    await runH2load(healthH2loadArgs(protocol, port, config.warmup, bodyDir));
    return 0;
  }
  return warmConnectNode(protocol, port, healthCall, config.warmup, config.concurrency);
}

async function measureH2load(protocol: Protocol, { port, child }: Running, bodyDir: string, warmup: number): Promise<Sample> {
  await runH2load(healthH2loadArgs(protocol, port, warmup, bodyDir));
  const cpu0 = cpuSeconds(child.pid);
  const out = await runH2load(healthH2loadArgs(protocol, port, config.calls, bodyDir));
  const cpu = cpuSeconds(child.pid) - cpu0;
  const r = parseH2load(out);
  return {
    calls: config.calls,
    reqPerSec: r.reqPerSec,
    p50Ms: r.meanMs, // mean
    p99Ms: Number.NaN,
    failed: config.calls - r.succeeded,
    serverCpuUs: (cpu / config.calls) * 1e6,
  };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const disarm = armDeadline(config.deadlineS);
  const started = performance.now();
  const clients: Client[] = ["connect-node", ...(h2loadAvailable ? (["h2load"] as const) : [])];
  process.stdout.write(
    `unary bench: grpc.health.v1.Health/Check, ${config.calls} calls (+${config.warmup} warm-up), ` +
      `${config.concurrency} concurrent, 1 HTTP/2 connection, ${config.rounds} rounds; ` +
      `clients: ${clients.join(", ")}${h2loadAvailable ? "" : " (h2load not found)"}; node ${process.version}\n`,
  );

  const bodyDir = mkdtempSync(join(tmpdir(), "orchestrator-bench-body-"));
  registerTmpDir(bodyDir);
  writeFileSync(join(bodyDir, "grpc.bin"), grpcFrame);
  writeFileSync(join(bodyDir, "connect.bin"), requestMessage);

  const servers = new Map<ServerName, Running>();
  for (const name of serverNames) servers.set(name, await start(name));
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
              ? await measureConnectNode(protocol, server, healthCall, { calls: config.calls, concurrency: config.concurrency, warmup: connectionWarmup })
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
  disarm();
}

main().catch((e: unknown) => fail(e instanceof Error ? (e.stack ?? e.message) : String(e)));
