/**
 * Test servers: in-process (fast, logs captured for assertions) or a real child process
 * (`node --import tsx src/main.ts`) when a test needs signals, restarts or its exit code.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { createLogger } from "../../src/log.js";
import { loadConfig } from "../../src/config.js";
import { startApp } from "../../src/app.js";
import type { RunningServer } from "../../src/transport/server.js";
import type { HealthStatuses } from "../../src/transport/health.js";
import type { AppRuntime } from "../../src/runtime.js";
import type { SpanProcessor } from "@opentelemetry/sdk-trace-base";
import type { TelemetryShape } from "../../src/telemetry/Telemetry.js";

export const repoRoot = new URL("../../", import.meta.url).pathname;

/**
 * Tests of features other than authentication run with `--auth none` (every caller is the local
 * admin); a test that passes any `--auth…` or `--jwt-…` flag gets exactly what it asked for.
 */
export const defaultAuthArgs = (args: ReadonlyArray<string>): ReadonlyArray<string> =>
  args.some((a) => /^--(auth|jwt-)/.test(a)) ? [] : ["--auth", "none"];

export interface TestServer extends RunningServer {
  readonly baseUrl: string;
  readonly health: HealthStatuses;
  readonly runtime: AppRuntime;
  readonly dataDir: string;
  /** Every log line written so far, parsed. */
  readonly logs: Array<Record<string, unknown>>;
  /** What the server wrote for humans (the first-run key). */
  readonly stderr: Array<string>;
  /** Tracer, meter and the metrics URL (with `--metrics-port 0`). */
  readonly telemetry: TelemetryShape;
}

/**
 * The real server in-process on a free port, with a fresh data dir and the demo operations.
 * `args` are extra command-line flags (e.g. ["--operation-rate-limit", "10/1m"]);
 * `spanProcessors` record the spans (e.g. an InMemorySpanExporter's).
 */
export async function startTestServer(
  overrides: { maxMessageBytes?: number; drainTimeoutMs?: number; args?: ReadonlyArray<string>; dataDir?: string; spanProcessors?: ReadonlyArray<SpanProcessor> } = {},
): Promise<TestServer> {
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger("debug", (line) => logs.push(JSON.parse(line) as Record<string, unknown>));
  const stderr: Array<string> = [];
  const dataDir = overrides.dataDir ?? mkdtempSync(join(tmpdir(), "orchestrator-test-"));
  const args = overrides.args ?? [];
  const config = {
    ...loadConfig(["--port", "0", "--data-dir", dataDir, "--demo-operations", ...defaultAuthArgs(args), ...args], {}),
    ...(overrides.maxMessageBytes === undefined ? {} : { maxMessageBytes: overrides.maxMessageBytes }),
    drainTimeoutMs: overrides.drainTimeoutMs ?? 2_000,
  };
  const traced = overrides.spanProcessors === undefined ? config : { ...config, telemetry: { ...config.telemetry, spanProcessors: overrides.spanProcessors } };
  const app = await startApp(traced, logger, { stderr: (t) => void stderr.push(t) });
  return {
    ...app.server,
    baseUrl: `http://127.0.0.1:${app.server.port}`,
    health: app.health,
    runtime: app.runtime,
    dataDir,
    logs,
    stderr,
    telemetry: app.telemetry,
    shutdown: app.shutdown,
  };
}

export interface ServerProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly baseUrl: string;
  readonly address: string;
  readonly dataDir: string;
  /** Every log line so far, parsed (non-JSON lines are kept as { raw }). */
  readonly logs: Array<Record<string, unknown>>;
  /** Everything written to stderr so far. */
  stderr(): string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `src/main.ts` on a free port and waits for its "listening" line. */
export async function spawnServer(args: ReadonlyArray<string> = [], env: NodeJS.ProcessEnv = {}): Promise<ServerProcess> {
  const dataDir = mkdtempSync(join(tmpdir(), "orchestrator-test-"));
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts", "--port", "0", "--data-dir", dataDir, ...defaultAuthArgs(args), ...args], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: Array<Record<string, unknown>> = [];
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 30 s; stderr: ${stderr}`)), 30_000);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        entry = { raw: line };
      }
      logs.push(entry);
      if (entry["msg"] === "listening") {
        clearTimeout(timer);
        resolve(entry["port"] as number);
      }
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening; stderr: ${stderr}`));
    });
  });
  return {
    child,
    port,
    baseUrl: `http://127.0.0.1:${port}`,
    address: `127.0.0.1:${port}`,
    dataDir,
    logs,
    stderr: () => stderr,
    exited,
    stop: (signal = "SIGTERM") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
