/**
 * The real grpcurl (.tools/bin, from .ci/setup), through server reflection only, subscribes to
 * the audit log of a real server process and prints its events as JSON (the README's command).
 * A Subscribe stream never ends on its own, so grpcurl's -max-time ends it: exit 64 + 4
 * (DEADLINE_EXCEEDED) after printing what it received.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnServer, type ServerProcess } from "../support/server.js";
import { requireTool, run, stopServer } from "../interop/run.js";

let server: ServerProcess;
let grpcurlPath: string;

beforeAll(async () => {
  grpcurlPath = requireTool("bin/grpcurl");
  server = await spawnServer(["--demo-operations"]);
});
afterAll(async () => {
  await stopServer(server);
});

const grpcurl = (maxTimeSeconds: number, body: unknown, method: string) =>
  run(grpcurlPath, ["-plaintext", "-max-time", String(maxTimeSeconds), "-d", JSON.stringify(body), server.address, method], { timeoutMs: 60_000 });

type Json = Record<string, unknown>;

/** grpcurl prints one indented JSON object per message, each closing brace at column 0. */
const jsonMessages = (stdout: string): Json[] =>
  stdout
    .split(/^\}$/m)
    .map((chunk) => chunk.trim())
    .filter((chunk) => chunk !== "")
    .map((chunk) => JSON.parse(`${chunk}\n}`) as Json);

const DEADLINE_EXCEEDED = 64 + 4;

describe("grpcurl Subscribe", () => {
  it("prints stored and then live audit events as JSON, in sequence order", async () => {
    const executed = await grpcurl(20, { operation: "demo.echo", input: { message: "audited" } }, "orchestrator.v1.ExecutionService/Execute");
    expect(executed.code, executed.stderr).toBe(0);
    const executionId = (jsonMessages(executed.stdout)[0]!["event"] as Json)["executionId"] as string;

    // The README's command: every retained event, then live ones.
    const stored = await grpcurl(3, { from_earliest: {} }, "orchestrator.v1.AuditService/Subscribe");
    expect(stored.code, stored.stderr).toBe(DEADLINE_EXCEEDED);
    const events = jsonMessages(stored.stdout).map((m) => m["event"] as Json);
    // int64 prints as a JSON string, as proto3 JSON says.
    const seqs = events.map((e) => Number(e["sequence"]));
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
    const ours = events.filter((e) => e["executionId"] === executionId);
    expect(ours.map((e) => e["type"])).toEqual([
      "AUDIT_EVENT_TYPE_EXECUTION_ACCEPTED",
      "AUDIT_EVENT_TYPE_EXECUTION_ATTEMPT_STARTED",
      "AUDIT_EVENT_TYPE_EXECUTION_SUCCEEDED",
    ]);
    expect(ours[0]).toMatchObject({ operation: "demo.echo", principal: { subject: "local" }, details: { input: { message: "audited" } } });
    expect(ours[0]!["time"]).toMatch(/^\d{4}-\d\d-\d\dT/);

    // Resume after the last one seen, filtered, while a new execution runs: only what follows.
    const last = seqs[seqs.length - 1]!;
    const following = grpcurl(8, { after_sequence: String(last), filter: { types: ["AUDIT_EVENT_TYPE_EXECUTION_SUCCEEDED"] } }, "orchestrator.v1.AuditService/Subscribe");
    const second = await grpcurl(20, { operation: "demo.echo", input: { message: "live" } }, "orchestrator.v1.ExecutionService/Execute");
    const secondId = (jsonMessages(second.stdout)[0]!["event"] as Json)["executionId"] as string;
    const live = await following;
    expect(live.code, live.stderr).toBe(DEADLINE_EXCEEDED);
    const liveEvents = jsonMessages(live.stdout).filter((m) => m["event"] !== undefined).map((m) => m["event"] as Json);
    expect(liveEvents.map((e) => [e["type"], e["executionId"]])).toEqual([["AUDIT_EVENT_TYPE_EXECUTION_SUCCEEDED", secondId]]);
    expect(Number(liveEvents[0]!["sequence"])).toBeGreaterThan(last);
  });

  it("a bad filter is INVALID_ARGUMENT, with the field grpcurl can print", async () => {
    const bad = await run(grpcurlPath, ["-plaintext", "-format-error", "-max-time", "10", "-d", JSON.stringify({ filter: { types: ["AUDIT_EVENT_TYPE_UNSPECIFIED"] } }), server.address, "orchestrator.v1.AuditService/Subscribe"]);
    expect(bad.code).toBe(64 + 3);
    expect(bad.stdout + bad.stderr).toContain("filter.types[0]");
  });
});
