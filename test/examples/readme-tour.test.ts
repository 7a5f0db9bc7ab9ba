/**
 * README.md's 5-minute tour, word for word: the shell blocks between `<!-- tour:begin` and
 * `<!-- tour:end -->` are extracted and run by bash from the repository root — the server
 * command in the background, the others in order in one shell (so `export` carries over) — and
 * each command's output is checked. The only difference from a person at a terminal: the
 * environment points the server and the CLI at a free port and a temporary data dir
 * (ORCHESTRATOR_PORT, ORCHESTRATOR_DATA_DIR, ORCHESTRATOR_ADDRESS), and TZ is fixed so the
 * "local time" column is known.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, describe, expect, it } from "vitest";
import { repoRoot } from "../support/server.js";
import { cleanEnv } from "../cli/run.js";

/** The tour's commands: comment and blank lines dropped, `\` continuations joined. */
export function tourCommands(readme: string): string[] {
  const begin = readme.indexOf("<!-- tour:begin");
  const end = readme.indexOf("<!-- tour:end -->");
  if (begin < 0 || end < begin) throw new Error("README.md has no <!-- tour:begin … --> … <!-- tour:end --> section");
  const blocks = [...readme.slice(begin, end).matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  return blocks
    .join("\n")
    .replace(/\\\n\s*/g, "")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

const uuid = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

/** What each command of the tour must print (stdout), keyed by the command exactly as written. */
const expectations: Record<string, (stdout: string) => void> = {
  "export ORCHESTRATOR_TOKEN=$(npx orchestrator keys create --subject me --roles admin --key-only)": (out) => expect(out).toBe(""),
  "npx orchestrator exec demo.echo --input '{\"message\":\"hello\"}'": (out) => {
    expect(out).toMatch(new RegExp(`^Execution ${uuid} accepted: demo\\.echo\\n`));
    expect(out).toMatch(/\n✔ Succeeded after 1 attempt in /);
    expect(out).toContain('Result:\n{\n  "echo": {\n    "message": "hello"\n  }\n}\n');
  },
  "npx orchestrator exec demo.flaky --input '{\"failures\":2}' --retry-initial-interval 500ms": (out) => {
    expect(out).toMatch(/\nAttempt 1 failed: UNAVAILABLE: .*; retrying in \d+ms\n/);
    expect(out).toMatch(/\nAttempt 2 failed: UNAVAILABLE: .*; retrying in \d+(ms|\.\ds)\n/);
    expect(out).toMatch(/\n✔ Succeeded after 3 attempts in /);
  },
  "npx orchestrator executions list": (out) => {
    const lines = out.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^EXECUTION\s+OPERATION\s+STATE\s+ATTEMPTS\s+CREATED\s+DURATION\s+SCHEDULE$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/).slice(1, 4))).toEqual([
      ["demo.flaky", "SUCCEEDED", "3"],
      ["demo.echo", "SUCCEEDED", "1"],
    ]);
  },
  "npx orchestrator schedules create nightly --cron '0 2 * * *' --time-zone Europe/Paris --operation demo.echo --input '{\"message\":\"good night\"}'": (out) => {
    expect(out).toMatch(/^Created schedule nightly\.\n/);
    expect(out).toMatch(/\nCron\s+0 2 \* \* \* in Europe\/Paris\n/);
    expect(out).toMatch(/\nOperation\s+demo\.echo\n/);
    expect(out).toMatch(/\nOwner\s+me \(tenant default; roles admin\)\n/);
  },
  "npx orchestrator schedules preview nightly --count 3": (out) => {
    const lines = out.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^#\s+IN Europe\/Paris\s+LOCAL \(America\/New_York\)$/);
    expect(lines).toHaveLength(4);
    for (const [i, line] of lines.slice(1).entries()) {
      // 02:00 in Paris (+01:00 in winter, +02:00 in summer) is the evening before in New York.
      expect(line).toMatch(new RegExp(`^${i + 1}\\s+\\d{4}-\\d\\d-\\d\\d 02:00:00 \\+0[12]:00\\s+\\d{4}-\\d\\d-\\d\\d (19|20|21):00:00 -0[45]:00$`));
    }
  },
  "npx orchestrator schedules trigger nightly": (out) => expect(out).toMatch(new RegExp(`^Triggered schedule nightly: started, execution ${uuid}\\.\\n$`)),
  "npx orchestrator audit tail --from-earliest --type execution-succeeded --limit 2": (out) => {
    const lines = out.trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(new RegExp(`^\\s*\\d+  \\S+Z  EXECUTION_SUCCEEDED  me@default  operation=demo\\.echo  execution=${uuid}`));
    expect(lines[1]).toMatch(new RegExp(`^\\s*\\d+  \\S+Z  EXECUTION_SUCCEEDED  me@default  operation=demo\\.flaky  execution=${uuid}`));
  },
};

const serverCommand = "npm start -- --demo-operations";
let server: ChildProcess | undefined;
let dataDir: string | undefined;

afterAll(async () => {
  if (server?.pid !== undefined && server.exitCode === null) {
    const exited = new Promise((r) => server!.once("exit", r));
    process.kill(-server.pid, "SIGTERM"); // its process group: bash, npm, node
    await exited;
  }
  if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
});

describe("README.md tour", () => {
  const commands = tourCommands(readFileSync(join(repoRoot, "README.md"), "utf8"));

  it("has the server command first and an expectation for every other command", () => {
    expect(commands[0]).toBe(serverCommand);
    expect(commands.slice(1)).toEqual(Object.keys(expectations));
  });

  it("runs word for word against a fresh server, each command printing what the tour says", async () => {
    const port = await freePort();
    dataDir = mkdtempSync(join(tmpdir(), "orchestrator-tour-"));
    const env = cleanEnv({
      ORCHESTRATOR_PORT: String(port),
      ORCHESTRATOR_DATA_DIR: dataDir,
      ORCHESTRATOR_ADDRESS: `127.0.0.1:${port}`,
      TZ: "America/New_York",
    });

    // Terminal 1.
    server = spawn("bash", ["-c", commands[0]!], { cwd: repoRoot, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    let serverErr = "";
    server.stderr!.on("data", (d: Buffer) => (serverErr += d.toString()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the server did not start: ${serverErr}`)), 60_000);
      createInterface({ input: server!.stdout! }).on("line", (line) => {
        if (line.includes('"msg":"listening"')) {
          clearTimeout(timer);
          resolve();
        }
      });
      server!.once("exit", (code) => reject(new Error(`the server exited (${code}): ${serverErr}`)));
    });

    // Terminal 2: one shell, a marker line around each command.
    const script = commands
      .slice(1)
      .map((c, i) => `echo "@@@ ${i}"; echo "@@@ ${i}" >&2\n${c}\necho "@@@ exit $?"`)
      .join("\n");
    const shell = spawn("bash", ["-c", script], { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    shell.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
    shell.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => shell.once("exit", resolve));
    expect(code, stderr).toBe(0);

    const outputs = stdout.split(/^@@@ \d+\n/m).slice(1);
    const errors = stderr.split(/^@@@ \d+\n/m).slice(1);
    expect(outputs).toHaveLength(commands.length - 1);
    for (const [i, command] of commands.slice(1).entries()) {
      const m = /^([\s\S]*)@@@ exit (\d+)\n$/.exec(outputs[i]!);
      expect(m, `${command}: ${outputs[i]}`).not.toBeNull();
      const [, out, status] = m!;
      expect(status, `${command} exited ${status}:\n${out}\n${errors[i]}`).toBe("0");
      try {
        expectations[command]!(out!);
      } catch (e) {
        throw new Error(`${command}\n--- stdout\n${out}--- stderr\n${errors[i]}\n${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }, 240_000);
});
