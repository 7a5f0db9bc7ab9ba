/**
 * Shared by the benchmarks (bench/unary.ts, bench/execute.ts): server child processes on
 * 127.0.0.1, the connect-node load loop, server CPU from /proc, h2load, statistics.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import * as net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient, type Transport } from "@connectrpc/connect";
import { Http2SessionManager, createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/health/v1/health_pb.js";

export const root = fileURLToPath(new URL("..", import.meta.url));

// better-sqlite3 ships no types; the little of it the benchmarks use, typed.
export interface RawStatement {
  run(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}
export interface RawDatabase {
  pragma(text: string): unknown;
  prepare(sql: string): RawStatement;
  transaction<F extends (...args: never[]) => void>(fn: F): F;
  close(): void;
}
/** better-sqlite3 on `file`, for a baseline with no orchestrator code in the way. */
export const RawDatabase = createRequire(import.meta.url)("better-sqlite3") as new (file: string) => RawDatabase;

export const envInt = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
};

export type Protocol = "grpc" | "connect";
export type Client = "connect-node" | "h2load";
export const protocols: ReadonlyArray<Protocol> = ["grpc", "connect"];

export interface Sample {
  /** Calls measured (a time-bounded measurement may stop before its call count). */
  readonly calls: number;
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
export function cpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / clockTicks; // fields 14 and 15 of stat
  } catch {
    return Number.NaN;
  }
}

// ---------------------------------------------------------------------------------------------
// Servers: one child process each, killed on failure, interrupt or the deadline

export interface Running {
  readonly name: string;
  readonly port: number;
  readonly child: ChildProcess;
}

const children = new Set<ChildProcess>();
const tmpDirs: string[] = [];
let shuttingDown = false;

/** Removed when the run ends, however it ends. */
export function registerTmpDir(dir: string): void {
  tmpDirs.push(dir);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface StartOptions {
  /** Node flags after `--import tsx` (so a .ts module can be given to another --import). */
  readonly nodeArgs?: ReadonlyArray<string>;
  /** --cpu-prof into DIR/<name>/ when set and not empty. */
  readonly cpuProfDir?: string | undefined;
  readonly env?: Readonly<Record<string, string>>;
}

/**
 * Starts `node --import tsx [nodeArgs] <script> <args>` in the repository root, stdout to
 * /dev/null, and waits until it answers grpc.health.v1.Health/Check with SERVING (the subject
 * logs nothing on start at --log-level warn, so the port is chosen by the caller).
 */
export async function startServer(name: string, port: number, script: string, args: ReadonlyArray<string>, options: StartOptions = {}): Promise<Running> {
  const devNull = openSync("/dev/null", "w");
  const prof =
    options.cpuProfDir === undefined || options.cpuProfDir === "" ? [] : ["--cpu-prof", "--cpu-prof-dir", join(options.cpuProfDir, name)];
  const child = spawn(process.execPath, [...prof, "--import", "tsx", ...(options.nodeArgs ?? []), script, ...args], {
    cwd: root,
    stdio: ["ignore", devNull, "inherit"],
    env: { ...process.env, NODE_ENV: "production", ...options.env },
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

/** SIGTERM, then SIGKILL after 5 s; resolves when the process is gone. */
export function stopServer(child: ChildProcess): Promise<void> {
  return new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const quiet = !shuttingDown;
    if (quiet) child.removeAllListeners("exit"); // an intended stop is not a failure
    const t = setTimeout(() => child.kill("SIGKILL"), 5000);
    child.once("exit", () => {
      clearTimeout(t);
      children.delete(child);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

/** Stops every server still running and removes the temporary directories. */
export async function stopServers(): Promise<void> {
  shuttingDown = true;
  await Promise.all([...children].map(stopServer));
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
}

export function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  shuttingDown = true;
  for (const c of children) c.kill("SIGKILL");
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
  process.exit(1);
}

/** Fails the run after `seconds`; SIGINT fails it at once. Returns a function that disarms it. */
export function armDeadline(seconds: number): () => void {
  const t = setTimeout(() => fail(`deadline of ${seconds} s passed`), seconds * 1000);
  t.unref();
  process.on("SIGINT", () => fail("interrupted"));
  return () => clearTimeout(t);
}

// ---------------------------------------------------------------------------------------------
// Load generator: connect-node clients in this process, one HTTP/2 connection per measurement

export function makeTransport(protocol: Protocol, port: number, sessionManager: Http2SessionManager): Transport {
  const baseUrl = `http://127.0.0.1:${port}`;
  return protocol === "grpc"
    ? createGrpcTransport({ baseUrl, sessionManager })
    : createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, sessionManager });
}

/** One call; resolves true on the expected answer, false on a wrong one, rejects on an error. */
export type Call = () => Promise<boolean>;

/**
 * Runs up to `calls` calls with `concurrency` in flight; no call starts after `stopAt`
 * (performance.now() milliseconds). Latencies (ms) of the calls made go to `latencies[0..done)`.
 */
export async function drive(
  call: Call,
  calls: number,
  concurrency: number,
  latencies: Float64Array | undefined,
  stopAt = Number.POSITIVE_INFINITY,
): Promise<{ done: number; failed: number }> {
  let next = 0;
  let failed = 0;
  const worker = async (): Promise<void> => {
    while (next < calls && performance.now() < stopAt) {
      const i = next++;
      const t0 = performance.now();
      try {
        if (!(await call())) failed++;
      } catch (e) {
        if (failed++ === 0) process.stderr.write(`bench: call failed: ${String(e)}\n`);
      }
      if (latencies !== undefined) latencies[i] = performance.now() - t0;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, calls) }, worker));
  return { done: next, failed };
}

export interface LoadShape {
  readonly calls: number;
  readonly concurrency: number;
  /** Unmeasured calls first, on the same fresh connection. */
  readonly warmup: number;
  /** Stop starting calls after this many seconds of measurement; unset: count only. */
  readonly maxSeconds?: number;
  /** The same bound for the unmeasured calls. */
  readonly warmupMaxSeconds?: number;
}

const deadlineIn = (seconds: number | undefined): number =>
  seconds === undefined ? Number.POSITIVE_INFINITY : performance.now() + seconds * 1000;

/** Calls `makeCall(transport)` on a fresh connection: `warmup` unmeasured calls, then the measurement. */
export async function measureConnectNode(
  protocol: Protocol,
  { port, child }: Running,
  makeCall: (transport: Transport) => Call,
  shape: LoadShape,
): Promise<Sample> {
  const manager = new Http2SessionManager(`http://127.0.0.1:${port}`);
  try {
    const call = makeCall(makeTransport(protocol, port, manager));
    await drive(call, shape.warmup, shape.concurrency, undefined, deadlineIn(shape.warmupMaxSeconds));
    const latencies = new Float64Array(shape.calls);
    const cpu0 = cpuSeconds(child.pid);
    const t0 = performance.now();
    const { done, failed } = await drive(call, shape.calls, shape.concurrency, latencies, deadlineIn(shape.maxSeconds));
    const seconds = (performance.now() - t0) / 1000;
    const cpu = cpuSeconds(child.pid) - cpu0;
    const measured = latencies.subarray(0, done).sort();
    return {
      calls: done,
      reqPerSec: done / seconds,
      p50Ms: percentile(measured, 0.5),
      p99Ms: percentile(measured, 0.99),
      failed,
      serverCpuUs: (cpu / done) * 1e6,
    };
  } finally {
    manager.abort();
  }
}

/** Unmeasured calls on a fresh connection (none started after maxSeconds); returns the number that failed. */
export async function warmConnectNode(
  protocol: Protocol,
  port: number,
  makeCall: (transport: Transport) => Call,
  calls: number,
  concurrency: number,
  maxSeconds?: number,
): Promise<number> {
  const manager = new Http2SessionManager(`http://127.0.0.1:${port}`);
  try {
    return (await drive(makeCall(makeTransport(protocol, port, manager)), calls, concurrency, undefined, deadlineIn(maxSeconds))).failed;
  } finally {
    manager.abort();
  }
}

// ---------------------------------------------------------------------------------------------
// Optional load generator: h2load (nghttp2-client), one connection, `concurrency` streams

export const h2loadAvailable =
  process.env["BENCH_H2LOAD"] !== "0" && spawnSync("h2load", ["--version"], { stdio: "ignore" }).status === 0;

/** gRPC message framing: flags 0 (or 0x02 for Connect's end-stream), 4-byte big-endian length. */
export function envelope(message: Uint8Array, flags = 0): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

export function h2loadArgs(
  url: string,
  headers: ReadonlyArray<string>,
  bodyFile: string,
  calls: number,
  concurrency: number,
): string[] {
  return [
    "-n", String(calls), "-c", "1", "-t", "1", "-m", String(concurrency),
    ...headers.flatMap((h) => ["-H", h]), "-d", bodyFile, url,
  ];
}

export function runH2load(args: string[]): Promise<string> {
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

export interface H2loadResult {
  readonly reqPerSec: number;
  readonly meanMs: number;
  /** Requests answered with HTTP 2xx/3xx (h2load does not read grpc-status). */
  readonly succeeded: number;
  /** Response DATA bytes, all requests. */
  readonly dataBytes: number;
}

export function parseH2load(out: string): H2loadResult {
  const rps = /finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out);
  const reqs = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
  const lat = /time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/.exec(out);
  const traffic = /traffic: .*?\((\d+)\) data/.exec(out);
  if (rps === null || reqs === null || lat === null || traffic === null) throw new Error(`cannot parse h2load output:\n${out}`);
  const toMs = (v: string | undefined, unit: string | undefined): number =>
    Number(v) * (unit === "us" ? 0.001 : unit === "s" ? 1000 : 1);
  return { reqPerSec: Number(rps[1]), meanMs: toMs(lat[5], lat[6]), succeeded: Number(reqs[1]), dataBytes: Number(traffic[1]) };
}

// ---------------------------------------------------------------------------------------------
// Statistics and formatting

export function percentile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

export const median = (xs: ReadonlyArray<number>): number => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export const round1 = (x: number): number => Math.round(x * 10) / 10;
export const round3 = (x: number): number => Math.round(x * 1000) / 1000;
export const fmt = (x: number, d: number): string => (Number.isNaN(x) ? "-" : x.toFixed(d));
