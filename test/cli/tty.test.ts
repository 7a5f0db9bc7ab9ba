/**
 * `orchestrator exec` on a real terminal (a pty from util-linux `script`) and piped: the live
 * progress display, and Ctrl-C cancelling the execution on the server.
 */
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecutionService, ExecutionState } from "../../gen/orchestrator/v1/execution_service_pb.js";
import { spawnServer, type ServerProcess } from "../support/server.js";
import { cliOnTty, cliPiped, stripAnsi } from "./run.js";

let server: ServerProcess;
const env = () => ({ ORCHESTRATOR_ADDRESS: server.address });
const client = () => createClient(ExecutionService, createGrpcTransport({ baseUrl: server.baseUrl }));

beforeAll(async () => {
  server = await spawnServer(["--demo-operations"]);
});
afterAll(async () => {
  await server?.stop();
});

const executionIdIn = (text: string): string => {
  const m = /Execution (?:\x1b\[1m)?([0-9a-f-]{36})/.exec(text);
  if (m === null) throw new Error(`no execution id in:\n${text}`);
  return m[1]!;
};

describe("exec on a terminal", () => {
  it("draws a live status line (attempt running, retry countdown) redrawn in place, then the result", async () => {
    const run = cliOnTty(["exec", "demo.flaky", "--input", '{"failures":1}', "--retry-initial-interval", "1500ms"], env());
    const code = await run.exited;
    const raw = run.output();
    expect(code, raw).toBe(0);
    // The status line is erased and redrawn in place ("\r" + erase line), with the countdown.
    expect(raw).toMatch(/\r\x1b\[2K[^\n]*retrying in[^\n]*\d+(ms|\.\ds) \(attempt 2\)/);
    expect(raw).toContain("\x1b["); // styled on a terminal
    const text = stripAnsi(raw);
    expect(text).toMatch(/Execution [0-9a-f-]{36} accepted: demo\.flaky/);
    expect(text).toMatch(/Attempt 1 failed: UNAVAILABLE: .*; retrying in \d/);
    expect(text).toMatch(/✔ Succeeded after 2 attempts/);
    expect(text).toMatch(/"attempt": 2/);
  });

  it("Ctrl-C cancels the execution on the server, waits for CANCELLED, and exits 130", async () => {
    const run = cliOnTty(["exec", "demo.sleep", "--input", '{"durationMs":60000}'], env());
    await run.waitFor(/Attempt 1 started/);
    const id = executionIdIn(run.output());
    run.child.stdin!.write("\x03");
    const code = await run.exited;
    const text = stripAnsi(run.output());
    expect(code, text).toBe(130);
    expect(text).toMatch(/Progress: sleeping 60000 ms \{"durationMs":60000\}\n/);
    expect(text).toMatch(new RegExp(`Cancelling execution ${id}`));
    expect(text).toMatch(/✘ Cancelled after 1 attempt: cancelled from the command line \(Ctrl-C\)/);
    const { execution } = await client().getExecution({ executionId: id });
    expect(execution?.state).toBe(ExecutionState.CANCELLED);
  });
});

describe("exec piped", () => {
  it("prints plain lines, no escape codes, no status line", async () => {
    const run = cliPiped(["exec", "demo.flaky", "--input", '{"failures":1}', "--retry-initial-interval", "200ms"], env());
    const code = await run.exited;
    const out = run.output();
    expect(code, out).toBe(0);
    expect(out).not.toContain("\x1b");
    expect(out).not.toContain("\r");
    const lines = out.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^Execution [0-9a-f-]{36} accepted: demo\.flaky$/);
    expect(lines).toContain("Attempt 1 started");
    expect(lines.some((l) => /^Attempt 1 failed: UNAVAILABLE: .*; retrying in \d+ms$/.test(l))).toBe(true);
    expect(lines).toContain("Attempt 2 started");
    expect(lines.some((l) => /^✔ Succeeded after 2 attempts in /.test(l))).toBe(true);
  });

  it("SIGINT cancels the execution too (CancelExecution), exit 130", async () => {
    const run = cliPiped(["exec", "demo.sleep", "--input", '{"durationMs":60000}', "--output", "json"], env());
    await run.waitFor(/"attemptStarted"/);
    const id = (JSON.parse(run.output().split("\n")[0]!) as { executionId: string }).executionId;
    run.child.kill("SIGINT");
    expect(await run.exited).toBe(130);
    const events = run.output().trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.at(-1)).toMatchObject({ executionId: id, cancelled: { reason: "cancelled from the command line (Ctrl-C)", attempts: 1 } });
    const { execution } = await client().getExecution({ executionId: id });
    expect(execution?.state).toBe(ExecutionState.CANCELLED);
  });

  it("an execution cancelled by someone else exits 5; one that times out exits 1", async () => {
    const run = cliPiped(["exec", "demo.sleep", "--input", '{"durationMs":60000}'], env());
    await run.waitFor(/Attempt 1 started/);
    const id = executionIdIn(run.output());
    await client().cancelExecution({ executionId: id, reason: "someone else" });
    expect(await run.exited).toBe(5);
    expect(run.output()).toMatch(/\n✘ Cancelled after 1 attempt: someone else\n/);

    const timed = cliPiped(["exec", "demo.sleep", "--input", '{"durationMs":60000}', "--timeout", "300ms"], env());
    expect(await timed.exited).toBe(1);
    expect(timed.output()).toMatch(/\n✘ Timed out after 1 attempt: TIMEOUT: /);
  });

  it("a second SIGINT stops waiting at once; the server still cancels the dropped call", async () => {
    // A key that may run but not cancel by id is not needed: two signals in a row take the
    // "drop the call" path whatever CancelExecution does.
    const run = cliPiped(["exec", "demo.sleep", "--input", '{"durationMs":60000}'], env());
    await run.waitFor(/Attempt 1 started/);
    const id = executionIdIn(run.output());
    run.child.kill("SIGINT");
    run.child.kill("SIGINT");
    expect(await run.exited).toBe(130);
    // Either the CancelExecution or the dropped call ends it: CANCELLED both ways.
    for (let i = 0; i < 50; i++) {
      const { execution } = await client().getExecution({ executionId: id });
      if (execution?.state === ExecutionState.CANCELLED) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`execution ${id} did not end CANCELLED`);
  });
});
