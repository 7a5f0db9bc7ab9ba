/**
 * The cost of the three interceptors (tracing, outermost; authentication; the request rate
 * limit): orchestrator.v1.ExecutionService/Execute of `demo.echo` through the real server
 * configured with none of them active, then with them switched on one by one, in the same run.
 *
 *   npm run bench:interceptors     (node --import tsx bench/interceptors.ts)
 *
 * Each variant is `src/main.ts --demo-operations --log-level warn` with a fresh --data-dir in its
 * own child process on 127.0.0.1; the load generator runs here. Variants:
 *   none          --auth none, no limits file, tracing off. NOT zero interceptors (none can be
 *                 removed by configuration): the tracing interceptor still runs and gives each
 *                 call an id-only span (nothing recorded), the auth interceptor still runs once
 *                 per call on the Effect runtime with AuthValidator.none (every caller is the local
 *                 admin, no lookup); only the request-limit interceptor is gone (no request limit
 *                 configured: it is the identity).
 *   auth          --auth api-keys with a key made by `src/main.ts keys create` (role operator)
 *                 before the server's first start; every call sends `authorization: Bearer <key>`
 *                 (the key is looked up by id and its SHA-256 compared on every call).
 *   auth+limit    as auth, plus --limits-file {"request": {"limit": 1000000, "window": "1s"}} (the
 *                 largest limit the file accepts: never refuses here): one in-memory GCRA decision
 *                 per call. No execution limits, so the core makes no limiter call of its own.
 *   auth+limit-redis  as auth+limit with --redis-url (a redis-server started here on a free
 *                 loopback port, like test/support/redis.ts): the decision is a Redis round trip.
 *                 Skipped, with a note, when redis-server is not installed or BENCH_REDIS=0.
 *   all           as auth+limit (in memory), plus tracing recording: OTEL_TRACES_EXPORTER=otlp,
 *                 OTEL_EXPORTER_OTLP_ENDPOINT = a loopback OTLP/HTTP sink started here in its own
 *                 process (answers 200 to POST /v1/traces and counts requests, bytes and spans),
 *                 so every span (RPC, core, sql.*) is recorded, batched and exported as JSON.
 * Before measuring, each variant is checked: Execute streams accepted, attempt_started,
 * succeeded; the auth variants refuse a call without the key (UNAUTHENTICATED); the limit
 * variants answer ratelimit-* headers and the others do not; only "all" answers traceresponse.
 * OTEL_* and ORCHESTRATOR_* variables of this process are removed first, so the variants get
 * only what is set here.
 *
 * Load and discipline as bench/execute.ts: at most BENCH_CALLS (5,000) calls and
 * BENCH_MEASURE_S (2) seconds per measurement, BENCH_CONCURRENCY (50) in flight over one HTTP/2
 * connection, protocol BENCH_PROTOCOL (grpc; or connect: Connect binary over HTTP/2). Each server
 * first gets BENCH_WARMUP (1,000) calls, at most BENCH_WARMUP_S (4) seconds (JIT), and every
 * measurement starts with min(500, BENCH_WARMUP) unmeasured calls (at most 0.5 s) on its fresh
 * connection. BENCH_ROUNDS (8) rounds, variants alternated (order rotated each round); medians
 * over rounds of calls/s, p50/p99 latency and server CPU per call (user + system, all threads,
 * from /proc). Ratios and CPU deltas are paired: each round's measurement against the reference
 * ("none", or the variant with one interceptor fewer) measured in the same round, then the median
 * over rounds, with the smallest and largest round as a measure of the noise. One Execute costs
 * milliseconds of server CPU (the core and SQLite; about 6 ms on 2 cores when this was written),
 * so an interceptor that costs tens of
 * microseconds is inside that noise; the spread says so.
 *
 * Prints a table and, last, one JSON line with every number. Exits 0 on success, 1 on failed
 * calls, a failed check, or when BENCH_DEADLINE_S (default 240) passes.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { Http2SessionManager } from "@connectrpc/connect-node";
import { ExecuteRequestSchema, ExecutionService } from "../gen/orchestrator/v1/execution_service_pb.js";
import {
  armDeadline,
  cpuSeconds,
  envInt,
  fail,
  fmt,
  freePort,
  makeTransport,
  measureConnectNode,
  median,
  registerTmpDir,
  root,
  round1,
  round3,
  startServer,
  stopServer,
  stopServers,
  warmConnectNode,
  type Call,
  type Protocol,
  type Running,
  type Sample,
} from "./lib.js";
import { startRedisServer, type RedisServer } from "../test/support/redis.js";

const config = {
  calls: envInt("BENCH_CALLS", 5_000),
  measureS: envInt("BENCH_MEASURE_S", 2),
  warmup: envInt("BENCH_WARMUP", 1_000),
  warmupS: envInt("BENCH_WARMUP_S", 4),
  concurrency: envInt("BENCH_CONCURRENCY", 50),
  rounds: envInt("BENCH_ROUNDS", 8),
  deadlineS: envInt("BENCH_DEADLINE_S", 240),
};
const protocol: Protocol = (() => {
  const p = process.env["BENCH_PROTOCOL"] ?? "grpc";
  if (p !== "grpc" && p !== "connect") throw new Error(`BENCH_PROTOCOL must be grpc or connect, got "${p}"`);
  return p;
})();
const connectionWarmup = Math.min(500, config.warmup);
const connectionWarmupS = 0.5;
const callTimeoutMs = 10_000;
/** The largest request limit a limits file accepts (src/core/limits.ts): far above any rate here. */
const requestLimit = { limit: 1_000_000, window: "1s" };

const executeRequest = create(ExecuteRequestSchema, { operation: "demo.echo", input: { message: "hi" } });
const expectedEvents = ["accepted", "attemptStarted", "succeeded"] as const;

type VariantName = "none" | "auth" | "auth+limit" | "auth+limit-redis" | "all";

interface Variant {
  readonly name: VariantName;
  readonly description: string;
  readonly apiKey: boolean;
  readonly limit: "memory" | "redis" | undefined;
  readonly tracing: boolean;
  /** The variant this one switches one more interceptor on in. */
  readonly addsTo?: VariantName;
}

const allVariants: ReadonlyArray<Variant> = [
  {
    name: "none",
    description: "--auth none (auth interceptor runs, no lookup), no request limit (interceptor is the identity), tracing off (id-only span)",
    apiKey: false,
    limit: undefined,
    tracing: false,
  },
  { name: "auth", description: "API key on every call, no request limit, tracing off", apiKey: true, limit: undefined, tracing: false, addsTo: "none" },
  { name: "auth+limit", description: "API key, request limit in memory (never refuses), tracing off", apiKey: true, limit: "memory", tracing: false, addsTo: "auth" },
  { name: "auth+limit-redis", description: "API key, request limit in Redis (never refuses), tracing off", apiKey: true, limit: "redis", tracing: false, addsTo: "auth" },
  {
    name: "all",
    description: "API key, request limit in memory, tracing recording and exported over OTLP/HTTP to a loopback sink",
    apiKey: true,
    limit: "memory",
    tracing: true,
    addsTo: "auth+limit",
  },
];

// ---------------------------------------------------------------------------------------------
// Child processes of our own besides the servers (lib.ts kills the servers on failure)

const extraChildren = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of extraChildren) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

/** Variables that would configure the variants behind our back. */
function scrubEnvironment(): string[] {
  const removed = Object.keys(process.env).filter((k) => k.startsWith("OTEL_") || k.startsWith("ORCHESTRATOR_"));
  for (const k of removed) delete process.env[k];
  return removed;
}

// ---------------------------------------------------------------------------------------------
// The OTLP/HTTP sink: its own process (its JSON handling must not load the load generator's
// event loop), answers 200 "{}" to POST /v1/traces, counts; GET /stats answers the counts.

const sinkSource = `
const http = require("node:http");
const needle = Buffer.from('"spanId"');
const stats = { requests: 0, bytes: 0, spans: 0, other: 0 };
const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/stats") {
    res.writeHead(200, { "content-type": "application/json" });
    return res.end(JSON.stringify(stats));
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    if (req.method !== "POST" || req.url !== "/v1/traces") {
      stats.other++;
      res.writeHead(404);
      return res.end();
    }
    const body = Buffer.concat(chunks);
    stats.requests++;
    stats.bytes += body.length;
    for (let i = body.indexOf(needle); i >= 0; i = body.indexOf(needle, i + needle.length)) stats.spans++;
    res.writeHead(200, { "content-type": "application/json" });
    res.end("{}");
  });
});
server.listen(0, "127.0.0.1", () => process.stdout.write(JSON.stringify({ port: server.address().port }) + "\\n"));
process.on("SIGTERM", () => process.exit(0));
`;

interface SinkStats {
  readonly requests: number;
  readonly bytes: number;
  readonly spans: number;
  readonly other: number;
}

interface Sink {
  readonly port: number;
  readonly child: ChildProcess;
  stats(): Promise<SinkStats>;
}

function startSink(): Promise<Sink> {
  const child = spawn(process.execPath, ["-e", sinkSource], { stdio: ["ignore", "pipe", "inherit"] });
  extraChildren.add(child);
  return new Promise((resolve, reject) => {
    let out = "";
    const t = setTimeout(() => reject(new Error("the OTLP sink did not start within 10 s")), 10_000);
    child.once("exit", (code) => reject(new Error(`the OTLP sink exited (code ${code})`)));
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf("\n");
      if (nl < 0) return;
      clearTimeout(t);
      const { port } = JSON.parse(out.slice(0, nl)) as { port: number };
      resolve({
        port,
        child,
        stats: async () => (await (await fetch(`http://127.0.0.1:${port}/stats`)).json()) as SinkStats,
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Other load on the machine: CPU busy (all cores, from /proc/stat) minus what our own processes
// used, in cores, over each measurement. Anything well above 0 made that round noisier.

const clockTicks = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout?.trim()) || 100;
function machineBusySeconds(): number {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    return ((f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0)) / clockTicks;
  } catch {
    return Number.NaN;
  }
}
const ownPids = new Set<number>([process.pid]);
const ownCpuSeconds = (): number => [...ownPids].reduce((sum, pid) => sum + (cpuSeconds(pid) || 0), 0);

/** Runs `f`; returns its result and the cores other processes kept busy meanwhile. */
async function withOtherLoad<A>(f: () => Promise<A>): Promise<[A, number]> {
  const busy0 = machineBusySeconds();
  const own0 = ownCpuSeconds();
  const t0 = performance.now();
  const a = await f();
  const wall = (performance.now() - t0) / 1000;
  return [a, Math.max(0, (machineBusySeconds() - busy0 - (ownCpuSeconds() - own0)) / wall)];
}

// ---------------------------------------------------------------------------------------------
// Servers

interface Started extends Running {
  readonly variant: Variant;
  readonly headers: Readonly<Record<string, string>>;
}

/** `keys create --json` on a fresh data dir, before the server's first start; returns the key. */
function createKey(dataDir: string): string {
  const r = spawnSync(
    process.execPath,
    ["--import", "tsx", "src/main.ts", "keys", "create", "--data-dir", dataDir, "--subject", "bench", "--roles", "operator", "--description", "bench/interceptors.ts", "--json"],
    { cwd: root, encoding: "utf8" },
  );
  if (r.status !== 0) fail(`keys create exited ${r.status}: ${r.stderr}`);
  const key = (JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "{}") as { key?: unknown }).key;
  if (typeof key !== "string" || !key.startsWith("ork_")) fail(`keys create printed no key: ${r.stdout}`);
  return key;
}

async function start(variant: Variant, redis: RedisServer | undefined, sink: Sink | undefined): Promise<Started> {
  const dataDir = mkdtempSync(join(tmpdir(), "orchestrator-bench-"));
  registerTmpDir(dataDir);
  const port = await freePort();
  const args = ["--port", String(port), "--data-dir", dataDir, "--demo-operations", "--log-level", "warn"];
  const headers: Record<string, string> = {};
  if (variant.apiKey) {
    args.push("--auth", "api-keys");
    headers["authorization"] = `Bearer ${createKey(dataDir)}`;
  } else {
    args.push("--auth", "none");
  }
  if (variant.limit !== undefined) {
    const file = join(dataDir, "limits.json");
    writeFileSync(file, JSON.stringify({ request: requestLimit }));
    args.push("--limits-file", file);
    if (variant.limit === "redis") args.push("--redis-url", redis!.url);
  }
  const env: Record<string, string> = variant.tracing
    ? { OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${sink!.port}`, OTEL_EXPORTER_OTLP_COMPRESSION: "none" }
    : { OTEL_TRACES_EXPORTER: "none" };
  const running = await startServer(variant.name, port, "src/main.ts", args, { env });
  if (running.child.pid !== undefined) ownPids.add(running.child.pid);
  return { ...running, variant, headers };
}

// ---------------------------------------------------------------------------------------------
// Calls

/** Execute calls made per variant, probes and warm-ups included (for spans per call). */
const callsMade = new Map<VariantName, number>();

/** One Execute with the variant's headers, its stream read to the end; true on the three expected events. */
const executeCall =
  (server: Started) =>
  (transport: Transport): Call => {
    const client = createClient(ExecutionService, transport);
    const options = { timeoutMs: callTimeoutMs, headers: server.headers };
    return async () => {
      callsMade.set(server.variant.name, (callsMade.get(server.variant.name) ?? 0) + 1);
      let i = 0;
      let ok = true;
      for await (const res of client.execute(executeRequest, options)) {
        if (res.event?.kind.case !== expectedEvents[i]) ok = false;
        i++;
      }
      return ok && i === expectedEvents.length;
    };
  };

/** Checks that the variant is what it claims to be; returns what was seen. */
async function check(server: Started): Promise<Record<string, unknown>> {
  const manager = new Http2SessionManager(`http://127.0.0.1:${server.port}`);
  try {
    const client = createClient(ExecutionService, makeTransport(protocol, server.port, manager));
    let header: Headers | undefined;
    const kinds: Array<string | undefined> = [];
    callsMade.set(server.variant.name, (callsMade.get(server.variant.name) ?? 0) + 1);
    for await (const res of client.execute(executeRequest, { timeoutMs: callTimeoutMs, headers: server.headers, onHeader: (h) => (header = h) })) {
      kinds.push(res.event?.kind.case);
    }
    const name = server.variant.name;
    if (JSON.stringify(kinds) !== JSON.stringify(expectedEvents)) fail(`${name}: Execute streamed ${JSON.stringify(kinds)}`);
    const rateLimitHeader = header?.get("ratelimit-limit") ?? undefined;
    const traceResponse = header?.has("traceresponse") === true;
    const traceId = header?.has("x-trace-id") === true;
    if ((rateLimitHeader !== undefined) !== (server.variant.limit !== undefined)) {
      fail(`${name}: ratelimit-limit header ${rateLimitHeader === undefined ? "missing" : `"${rateLimitHeader}" unexpected`}`);
    }
    if (traceResponse !== server.variant.tracing) fail(`${name}: traceresponse header ${traceResponse ? "unexpected" : "missing"} (span recording)`);
    if (!traceId) fail(`${name}: no x-trace-id header`);
    let withoutKey = "OK (every caller is the local admin)";
    if (server.variant.apiKey) {
      try {
        callsMade.set(name, (callsMade.get(name) ?? 0) + 1);
        for await (const _ of client.execute(executeRequest, { timeoutMs: callTimeoutMs })) void _;
        fail(`${name}: Execute without a key was answered`);
      } catch (e) {
        const code = ConnectError.from(e).code;
        if (code !== Code.Unauthenticated) fail(`${name}: Execute without a key failed with ${Code[code]}, expected Unauthenticated`);
        withoutKey = "UNAUTHENTICATED";
      }
    }
    return { ratelimit_limit_header: rateLimitHeader ?? null, traceresponse_header: traceResponse, without_key: withoutKey };
  } finally {
    manager.abort();
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const disarm = armDeadline(config.deadlineS);
  const started = performance.now();
  const elapsed = (): number => round1((performance.now() - started) / 1000);
  const scrubbed = scrubEnvironment();
  const notes: string[] = [
    'none is not zero interceptors: the tracing interceptor cannot be removed by configuration (with tracing off it still ' +
      'parses/creates ids and answers x-trace-id, but records nothing), and --auth none still runs the auth interceptor ' +
      '(AuthValidator.none, no lookup); only the request-limit interceptor is absent. Differences are what switching each on costs.',
  ];
  if (scrubbed.length > 0) notes.push(`removed from the environment before starting servers: ${scrubbed.join(", ")}`);

  let redis: RedisServer | undefined;
  if (process.env["BENCH_REDIS"] === "0") notes.push("auth+limit-redis skipped: BENCH_REDIS=0");
  else {
    try {
      redis = await startRedisServer();
      extraChildren.add(redis.child);
      if (redis.child.pid !== undefined) ownPids.add(redis.child.pid);
    } catch (e) {
      notes.push(`auth+limit-redis skipped: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const variants = allVariants.filter((v) => v.limit !== "redis" || redis !== undefined);
  const sink = await startSink();
  if (sink.child.pid !== undefined) ownPids.add(sink.child.pid);

  process.stdout.write(
    `interceptors bench: Execute demo.echo {message:"hi"} (3 events/stream), ${protocol}, variants ${variants.map((v) => v.name).join(", ")}; ` +
      `per measurement <= ${config.calls} calls and <= ${config.measureS} s (after <= ${connectionWarmup} calls, ${connectionWarmupS} s unmeasured), ` +
      `${config.concurrency} concurrent, 1 HTTP/2 connection, ${config.rounds} rounds, warm-up <= ${config.warmup} calls, ${config.warmupS} s per variant; ` +
      `node ${process.version}${redis === undefined ? "" : `; redis-server on 127.0.0.1:${redis.port}`}; OTLP sink on 127.0.0.1:${sink.port}\n`,
  );
  for (const n of notes) process.stdout.write(`  note: ${n}\n`);

  const servers = new Map<VariantName, Started>();
  const checks: Record<string, Record<string, unknown>> = {};
  for (const v of variants) {
    const s = await start(v, redis, sink);
    servers.set(v.name, s);
    checks[v.name] = await check(s);
  }
  process.stdout.write(`  servers up and checked (${elapsed()} s)\n`);

  let failedTotal = 0;
  for (const s of servers.values()) {
    failedTotal += await warmConnectNode(protocol, s.port, executeCall(s), config.warmup, config.concurrency, config.warmupS);
  }
  process.stdout.write(`  warm-up done (${elapsed()} s)\n`);

  const samples = new Map<VariantName, Sample[]>();
  const otherLoad = new Map<VariantName, number[]>();
  for (let r = 0; r < config.rounds; r++) {
    const order = variants.map((_, i) => variants[(i + r) % variants.length]!);
    for (const v of order) {
      const s = servers.get(v.name)!;
      const [sample, other] = await withOtherLoad(() =>
        measureConnectNode(protocol, s, executeCall(s), {
          calls: config.calls,
          concurrency: config.concurrency,
          warmup: connectionWarmup,
          warmupMaxSeconds: connectionWarmupS,
          maxSeconds: config.measureS,
        }),
      );
      failedTotal += sample.failed;
      samples.set(v.name, [...(samples.get(v.name) ?? []), sample]);
      otherLoad.set(v.name, [...(otherLoad.get(v.name) ?? []), other]);
      process.stdout.write(
        `  round ${r + 1} ${v.name.padEnd(17)} ${sample.reqPerSec.toFixed(0).padStart(6)} calls/s ${sample.serverCpuUs.toFixed(0).padStart(5)} us server CPU/call` +
          ` (${sample.calls} calls; other processes ${other.toFixed(2)} cores)${sample.failed > 0 ? `  FAILED ${sample.failed}` : ""}\n`,
      );
    }
  }
  process.stdout.write(`  measurements done (${elapsed()} s)\n`);

  // Stopping "all" drains its span processor into the sink; then the sink's counts are final.
  await stopServer(servers.get("all")!.child);
  const spans = await sink.stats();
  await stopServers();
  sink.child.kill("SIGTERM");
  await redis?.stop();

  // -------------------------------------------------------------------------------------------
  // Report

  const stat = (name: VariantName) => {
    const ss = samples.get(name) ?? [];
    return {
      ss,
      rps: median(ss.map((s) => s.reqPerSec)),
      p50: median(ss.map((s) => s.p50Ms)),
      p99: median(ss.map((s) => s.p99Ms)),
      cpu: median(ss.map((s) => s.serverCpuUs)),
    };
  };
  // Paired per round: the machine's speed drifts over seconds (all variants of a round move
  // together), so a variant is compared with its reference measured in the same round.
  const paired = (name: VariantName, ref: VariantName, f: (a: Sample, b: Sample) => number): number[] => {
    const a = samples.get(name) ?? [];
    const b = samples.get(ref) ?? [];
    return a.map((s, i) => (b[i] === undefined ? Number.NaN : f(s, b[i]))).filter((x) => !Number.isNaN(x));
  };
  const rpsRatio = (a: Sample, b: Sample) => a.reqPerSec / b.reqPerSec;
  const cpuRatio = (a: Sample, b: Sample) => a.serverCpuUs / b.serverCpuUs;
  const cpuDelta = (a: Sample, b: Sample) => a.serverCpuUs - b.serverCpuUs;
  const range = (xs: ReadonlyArray<number>) => (xs.length === 0 ? [Number.NaN, Number.NaN] : [Math.min(...xs), Math.max(...xs)]);
  const results: Array<Record<string, unknown>> = [];
  const header =
    `${"variant".padEnd(18)}${"calls/s".padStart(8)}${"p50 ms".padStart(8)}${"p99 ms".padStart(8)}${"cpu us".padStart(8)}` +
    `${"r/none".padStart(8)}${"cpu/none".padStart(9)}${"+cpu us [min, max]".padStart(20)}${"step".padStart(7)}  ${"step from".padEnd(12)}calls/s per round`;
  const lines = [header, "-".repeat(header.length + 12)];
  for (const v of variants) {
    const { ss, rps, p50, p99, cpu } = stat(v.name);
    const ratio = median(paired(v.name, "none", rpsRatio));
    const cpuR = median(paired(v.name, "none", cpuRatio));
    const deltas = paired(v.name, "none", cpuDelta);
    const delta = median(deltas);
    const [dMin, dMax] = range(deltas);
    const steps = v.addsTo === undefined ? [] : paired(v.name, v.addsTo, cpuDelta);
    const step = median(steps);
    const [sMin, sMax] = range(steps);
    results.push({
      variant: v.name,
      description: v.description,
      calls_per_s: round1(rps),
      p50_ms: round3(p50),
      p99_ms: round3(p99),
      server_cpu_us_per_call: round1(cpu),
      ratio_vs_none: round3(ratio),
      cpu_ratio_vs_none: round3(cpuR),
      cpu_delta_us_vs_none: round1(delta),
      cpu_delta_us_vs_none_range: [round1(dMin!), round1(dMax!)],
      ...(v.addsTo === undefined ? {} : { adds_to: v.addsTo, cpu_delta_us_vs_adds_to: round1(step), cpu_delta_us_vs_adds_to_range: [round1(sMin!), round1(sMax!)] }),
      checks: checks[v.name],
      rounds_calls_per_s: ss.map((s) => round1(s.reqPerSec)),
      rounds_server_cpu_us: ss.map((s) => round1(s.serverCpuUs)),
      rounds_p50_ms: ss.map((s) => round3(s.p50Ms)),
      rounds_p99_ms: ss.map((s) => round3(s.p99Ms)),
      rounds_calls: ss.map((s) => s.calls),
      rounds_other_load_cores: (otherLoad.get(v.name) ?? []).map(round3),
    });
    lines.push(
      `${v.name.padEnd(18)}${fmt(rps, 0).padStart(8)}${fmt(p50, 2).padStart(8)}${fmt(p99, 2).padStart(8)}${fmt(cpu, 0).padStart(8)}` +
        `${fmt(ratio, 3).padStart(8)}${fmt(cpuR, 3).padStart(9)}` +
        `${(v.name === "none" ? "" : `${fmt(delta, 0)} [${fmt(dMin!, 0)}, ${fmt(dMax!, 0)}]`).padStart(20)}` +
        `${(v.addsTo === undefined ? "" : fmt(step, 0)).padStart(7)}  ${(v.addsTo ?? "").padEnd(12)}` +
        ss.map((s) => s.reqPerSec.toFixed(0)).join(" "),
    );
  }
  const others = [...otherLoad.values()].flat();
  const otherMedian = median(others);
  const otherMax = others.length === 0 ? Number.NaN : Math.max(...others);
  const allCalls = callsMade.get("all") ?? 0;
  const spansPerCall = allCalls > 0 ? spans.spans / allCalls : Number.NaN;
  lines.push(
    "calls/s, p50, p99, cpu us (server CPU, user+system, all threads, per call): medians of rounds. Paired with the reference measured",
    "in the same round, then the median over rounds: r/none = calls/s / none's, cpu/none = cpu us / none's, +cpu us = cpu us - none's",
    "(with the smallest and largest round: differences inside that spread are noise); step = cpu us - that of \"step from\", the",
    "variant it switches one more interceptor on in.",
    `OTLP sink ("all"): ${spans.requests} POST /v1/traces, ${round1(spans.bytes / 1048576)} MiB, ${spans.spans} spans for ${allCalls} Execute calls ` +
      `(${fmt(spansPerCall, 1)} spans/call, health checks included)${spans.other > 0 ? `; ${spans.other} requests to other paths` : ""}`,
    `Other processes on the machine during the measurements: median ${fmt(otherMedian, 2)}, max ${fmt(otherMax, 2)} cores` +
      (otherMax > 0.25 ? " (the machine was not idle: rounds with other load are noisier)" : ""),
    ...notes.map((n) => `note: ${n}`),
  );
  process.stdout.write("\n" + lines.join("\n") + "\n");

  process.stdout.write(
    JSON.stringify({
      bench: "interceptors",
      rpc: "orchestrator.v1.ExecutionService/Execute",
      request: { operation: "demo.echo", input: { message: "hi" } },
      protocol,
      config: { ...config, connectionWarmup, connectionWarmupS, requestLimit, node: process.version, redis: redis !== undefined },
      results,
      other_load_cores: { median: round3(otherMedian), max: round3(otherMax) },
      otlp_sink: { ...spans, execute_calls: allCalls, spans_per_call: round1(spansPerCall) },
      notes,
      failed_calls: failedTotal,
      elapsed_s: elapsed(),
    }) + "\n",
  );
  if (failedTotal > 0) fail(`${failedTotal} calls failed`);
  if (spans.spans === 0) fail("tracing was on in \"all\" but the sink received no spans");
  disarm();
}

main().catch((e: unknown) => fail(e instanceof Error ? (e.stack ?? e.message) : String(e)));
