/**
 * `orchestrator audit list|tail` (the real binary) against real server processes: filters,
 * paging, json; tail following live events, resuming by itself across a server restart from
 * the last sequence seen (nothing lost, nothing twice), and ending on Ctrl-C.
 */
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecutionService } from "../../gen/orchestrator/v1/execution_service_pb.js";
import { collect } from "../support/rpc.js";
import { spawnServer, type ServerProcess } from "../support/server.js";
import { cli, cliPiped } from "./run.js";

let server: ServerProcess;
const env = () => ({ ORCHESTRATOR_ADDRESS: server.address });
const echo = async (s: ServerProcess, message: string): Promise<string> => {
  const events = await collect(createClient(ExecutionService, createGrpcTransport({ baseUrl: s.baseUrl })), { operation: "demo.echo", input: { message } });
  return events[0]!.executionId;
};

interface JsonEvent {
  sequence: string;
  type: string;
  executionId?: string;
  operation?: string;
}
const jsonLines = (text: string) => text.trim().split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as JsonEvent);

beforeAll(async () => {
  server = await spawnServer(["--demo-operations"]);
});
afterAll(async () => {
  await server?.stop();
});

describe("orchestrator audit list", () => {
  it("lists an execution's events in order (text and json), filtered by type or execution, paged", async () => {
    const id = await echo(server, "audited");
    const text = await cli(["audit", "list", "--execution", id], { env: env() });
    expect(text.code, text.stderr).toBe(0);
    const lines = text.stdout.trimEnd().split("\n");
    expect(lines.map((l) => l.split(/\s+/).filter((x) => x !== "")[2])).toEqual(
      expect.arrayContaining(["EXECUTION_ACCEPTED", "EXECUTION_ATTEMPT_STARTED", "EXECUTION_SUCCEEDED"]),
    );
    expect(lines.at(-1)).toMatch(new RegExp(`^\\s*\\d+  \\S+Z  EXECUTION_SUCCEEDED  local@default  operation=demo\\.echo  execution=${id}  \\{`));

    const json = await cli(["audit", "list", "--type", "execution-succeeded", "--type", "EXECUTION_ACCEPTED", "-o", "json"], { env: env() });
    const { events } = JSON.parse(json.stdout) as { events: JsonEvent[] };
    expect(new Set(events.map((e) => e.type))).toEqual(new Set(["AUDIT_EVENT_TYPE_EXECUTION_ACCEPTED", "AUDIT_EVENT_TYPE_EXECUTION_SUCCEEDED"]));
    const sequences = events.map((e) => BigInt(e.sequence));
    expect(sequences).toEqual([...sequences].sort((a, b) => (a < b ? -1 : 1)));

    const page = await cli(["audit", "list", "--order", "desc", "--page-size", "1"], { env: env() });
    expect(page.stdout).toMatch(/\nMore: --page-token \S+ \(or --all\)\n$/);
    const all = JSON.parse((await cli(["audit", "list", "--page-size", "2", "--all", "-o", "json"], { env: env() })).stdout) as { events: JsonEvent[]; nextPageToken?: string };
    expect(all.events.length).toBeGreaterThan(2);
    expect(all.nextPageToken ?? "").toBe("");

    expect((await cli(["audit", "list", "--type", "nonsense"], { env: env() })).code).toBe(2);
  });
});

describe("orchestrator audit tail", () => {
  it("--from-sequence N prints from N on; --limit stops it", async () => {
    const { events } = JSON.parse((await cli(["audit", "list", "-o", "json"], { env: env() })).stdout) as { events: JsonEvent[] };
    const from = events[1]!.sequence;
    const r = await cli(["audit", "tail", "--from-sequence", from, "--limit", "3", "-o", "json"], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    expect(jsonLines(r.stdout).map((e) => e.sequence)).toEqual(events.slice(1, 4).map((e) => e.sequence));
    expect((await cli(["audit", "tail", "--from-sequence", "0"], { env: env() })).code).toBe(2);
  });

  it("follows live events, resubscribes after a server restart from the last sequence seen, and ends on Ctrl-C (exit 0)", async () => {
    // Its own server: stopped and started again on the same port and data dir.
    const first = await spawnServer(["--demo-operations"]);
    const port = String(first.port);
    const dataDir = first.dataDir;
    let second: ServerProcess | undefined;
    const tail = cliPiped(["audit", "tail", "--from-earliest", "--type", "execution-succeeded", "-o", "json"], { ORCHESTRATOR_ADDRESS: first.address });
    try {
      const a = await echo(first, "one");
      await tail.waitFor(new RegExp(a));
      await first.stop();
      await tail.waitFor(/"reconnecting"/);

      second = await spawnServer(["--demo-operations", "--port", port, "--data-dir", dataDir]);
      const b = await echo(second, "two");
      const c = await echo(second, "three");
      await tail.waitFor(new RegExp(c), 30_000);

      tail.child.kill("SIGINT");
      expect(await tail.exited).toBe(0);
      const delivered = jsonLines(tail.output().split("\n").filter((l) => l.startsWith('{"sequence"')).join("\n"));
      expect(delivered.map((e) => e.executionId)).toEqual([a, b, c]); // in order, none twice
      const reconnect = tail
        .output()
        .split("\n")
        .find((l) => l.startsWith('{"reconnecting"'));
      // Resumes after what it saw: the event's sequence, or a later heartbeat's.
      const after = (JSON.parse(reconnect!) as { reconnecting: { afterSequence: string } }).reconnecting.afterSequence;
      expect(BigInt(after)).toBeGreaterThanOrEqual(BigInt(delivered[0]!.sequence));
      expect(BigInt(after)).toBeLessThan(BigInt(delivered[1]!.sequence));
    } finally {
      if (tail.child.exitCode === null) tail.child.kill("SIGKILL");
      await second?.stop();
      await first.stop();
    }
  }, 90_000);
});
