/**
 * Running the real `orchestrator` binary (src/cli/orchestrator.js, the package's "bin") as a
 * child process: piped, or on a pseudo-terminal through util-linux `script`.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { repoRoot } from "../support/server.js";

export const bin = join(repoRoot, "src/cli/orchestrator.js");

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The environment without any ORCHESTRATOR_* variable of the machine running the tests. */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("ORCHESTRATOR_") && k !== "NO_COLOR") env[k] = v;
  return { ...env, ...extra };
}

/** Runs `orchestrator …args` to completion (stdout and stderr are pipes, not a terminal). */
export function cli(args: ReadonlyArray<string>, options: { env?: NodeJS.ProcessEnv; stdin?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      process.execPath,
      [bin, ...args],
      { cwd: repoRoot, env: cleanEnv(options.env), timeout: options.timeoutMs ?? 30_000, killSignal: "SIGKILL", encoding: "utf8", maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err === null) return resolve({ code: 0, stdout, stderr });
        if (typeof err.code === "number") return resolve({ code: err.code, stdout, stderr });
        reject(new Error(`orchestrator ${args.join(" ")}: ${err.killed ? "timed out" : err.message}\n${stdout}\n${stderr}`));
      },
    );
    if (options.stdin !== undefined) child.stdin!.end(options.stdin);
    else child.stdin!.end();
  });
}

/** A running child whose output is collected as it comes, for tests that interact with it. */
export interface Interactive {
  readonly child: ChildProcess;
  output(): string;
  /** Resolves once the output matches; rejects after timeoutMs. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  readonly exited: Promise<number | null>;
}

function interactive(child: ChildProcess): Interactive {
  let out = "";
  const waiters = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d.toString();
    for (const w of waiters) w();
  };
  child.stdout!.on("data", onData);
  child.stderr?.on("data", onData);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    output: () => out,
    exited,
    waitFor: (pattern, timeoutMs = 20_000) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (pattern.test(out)) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no ${pattern} in:\n${out}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
  };
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * `orchestrator …args` on a pseudo-terminal: `script -q -e -c "node bin …" /dev/null` (util-linux),
 * so the CLI sees a TTY on stdin and stdout. Writing "\x03" to the child's stdin is a Ctrl-C
 * typed at that terminal (the line discipline sends SIGINT to the foreground process).
 */
export function cliOnTty(args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}): Interactive {
  const command = [process.execPath, bin, ...args].map(shellQuote).join(" ");
  const child = spawn("script", ["-q", "-e", "-c", command, "/dev/null"], {
    cwd: repoRoot,
    env: cleanEnv({ ...env, SHELL: "/bin/sh", TERM: "xterm" }),
    stdio: ["pipe", "pipe", "pipe"],
  });
  return interactive(child);
}

/** `orchestrator …args` with pipes, kept running for interaction (signals). */
export function cliPiped(args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}): Interactive {
  const child = spawn(process.execPath, [bin, ...args], { cwd: repoRoot, env: cleanEnv(env), stdio: ["pipe", "pipe", "pipe"] });
  return interactive(child);
}

/** Removes ANSI escapes and carriage returns. */
export const stripAnsi = (s: string): string => s.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "").replace(/\r/g, "");
