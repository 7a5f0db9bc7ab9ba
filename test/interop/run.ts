/**
 * Running the interop callers (grpcurl, Python, Go, buf) as child processes: bounded by a
 * timeout, output captured, the exit code returned. A missing tool is an error, never a skip:
 * CI installs every one of them with .ci/setup first.
 */
import { execFile } from "node:child_process";
import { accessSync, constants, rmSync } from "node:fs";
import { join } from "node:path";
import { repoRoot, type ServerProcess } from "../support/server.js";

export { repoRoot };

/** Where .ci/setup installs the tools. */
export const toolsDir = join(repoRoot, ".tools");

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Kill the command after this long (default 30 s); the run then rejects. */
  readonly timeoutMs?: number;
}

/**
 * Runs a command to completion. Resolves with its exit code, whatever it is; rejects when it
 * cannot start (e.g. not installed), times out, or dies of a signal.
 */
export function run(file: string, args: ReadonlyArray<string>, options: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        cwd: options.cwd ?? repoRoot,
        env: { ...process.env, ...options.env },
        timeout: timeoutMs,
        killSignal: "SIGKILL",
        maxBuffer: 16 * 1024 * 1024,
        encoding: "utf8",
      },
      (err, stdout, stderr) => {
        if (err === null) return resolve({ code: 0, stdout, stderr });
        if (typeof err.code === "number") return resolve({ code: err.code, stdout, stderr });
        const why = err.killed ? `timed out after ${timeoutMs} ms` : (err.code ?? err.signal ?? err.message);
        reject(new Error(`${file} ${args.join(" ")}: ${why}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`));
      },
    );
  });
}

/** Like run, but a non-zero exit is an error that shows the command's output. */
export async function runOk(file: string, args: ReadonlyArray<string>, options: RunOptions = {}): Promise<RunResult> {
  const result = await run(file, args, options);
  if (result.code !== 0) {
    throw new Error(`${file} ${args.join(" ")} exited ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`);
  }
  return result;
}

/** The path of an installed tool; throws (failing the test) when .ci/setup has not installed it. */
export function requireTool(relativeToTools: string): string {
  const path = join(toolsDir, relativeToTools);
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`${path} is missing or not executable: run .ci/setup first`);
  }
  return path;
}

/** The last line of the output that parses as a JSON object (the callers' summary line). */
export function summaryLine(stdout: string): Record<string, unknown> {
  const lines = stdout.trim().split("\n").reverse();
  for (const line of lines) {
    try {
      const value: unknown = JSON.parse(line);
      if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
    } catch {
      // not the summary
    }
  }
  throw new Error(`no JSON summary line in:\n${stdout}`);
}

/** Stops a spawnServer() process (SIGTERM, drain) and removes its data directory. */
export async function stopServer(server: ServerProcess | undefined): Promise<void> {
  if (server === undefined) return;
  await server.stop();
  rmSync(server.dataDir, { recursive: true, force: true });
}
