/**
 * grpcurl (.tools/bin, from .ci/setup) against a real server process, through server
 * reflection only: no -proto or -protoset flag anywhere, so every schema it uses (including
 * google.rpc.ErrorInfo and BadRequest to print error details) comes from the server. The server
 * runs with --demo-operations (demo.echo, demo.flaky) and --auth none (the test helper's
 * default), so every caller is the local admin; a second server requires API keys, and grpcurl
 * sends its first-run key with -H.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnServer, type ServerProcess } from "../support/server.js";
import { requireTool, run, type RunResult, stopServer } from "./run.js";

let server: ServerProcess;
let grpcurlPath: string;

beforeAll(async () => {
  grpcurlPath = requireTool("bin/grpcurl");
  server = await spawnServer(["--demo-operations"]);
});
afterAll(async () => {
  await stopServer(server);
});

/** `grpcurl -plaintext FLAGS… ADDRESS VERB-OR-METHOD…`; resolves with any exit code. */
function grpcurl(flags: ReadonlyArray<string>, ...rest: ReadonlyArray<string>): Promise<RunResult> {
  return run(grpcurlPath, ["-plaintext", "-max-time", "20", ...flags, server.address, ...rest], { timeoutMs: 30_000 });
}

/** The same, failing on a non-zero exit (with grpcurl's output in the error). */
async function grpcurlOk(flags: ReadonlyArray<string>, ...rest: ReadonlyArray<string>): Promise<RunResult> {
  const result = await grpcurl(flags, ...rest);
  expect(result.code, `grpcurl ${[...flags, ...rest].join(" ")}\n${result.stdout}${result.stderr}`).toBe(0);
  return result;
}

/** grpcurl exits 64 + the gRPC status code when the RPC fails. */
const exitFor = (grpcCode: number) => 64 + grpcCode;
const INVALID_ARGUMENT = 3;
const NOT_FOUND = 5;

type Json = Record<string, unknown>;

/**
 * The messages grpcurl printed for a server stream: one indented JSON object each, the next
 * following the closing brace that ends the previous one at column 0.
 */
function jsonMessages(stdout: string): Json[] {
  return stdout
    .split(/^\}$/m)
    .map((chunk) => chunk.trim())
    .filter((chunk) => chunk !== "")
    .map((chunk) => JSON.parse(`${chunk}\n}`) as Json);
}

/** An ExecuteResponse in proto3 JSON: the name of its event's `kind` case (lowerCamelCase) and that case. */
function eventOf(response: Json): { executionId: string; kind: string; body: Json } {
  const event = response["event"] as Json;
  const kinds = Object.keys(event).filter((k) => k !== "executionId" && k !== "time");
  expect(kinds, JSON.stringify(event)).toHaveLength(1);
  const kind = kinds[0]!;
  return { executionId: event["executionId"] as string, kind, body: event[kind] as Json };
}

interface JsonStatus {
  code: number;
  message: string;
  details: Json[];
}

describe("grpcurl via reflection", () => {
  it("lists every served service", async () => {
    const { stdout } = await grpcurlOk([], "list");
    const services = stdout.trim().split("\n");
    expect(services).toEqual(
      expect.arrayContaining([
        "orchestrator.v1.ExecutionService",
        "orchestrator.v1.ScheduleService",
        "orchestrator.v1.AuditService",
        "orchestrator.v1.PolicyService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
      ]),
    );
  });

  it("describes a service and a message", async () => {
    const service = await grpcurlOk([], "describe", "orchestrator.v1.ExecutionService");
    expect(service.stdout).toContain("orchestrator.v1.ExecutionService is a service");
    expect(service.stdout).toMatch(/rpc Execute \( \.orchestrator\.v1\.ExecuteRequest \) returns \( stream \.orchestrator\.v1\.ExecuteResponse \)/);
    for (const rpc of ["GetExecution", "ListExecutions", "CancelExecution"]) expect(service.stdout).toContain(`rpc ${rpc} (`);

    const message = await grpcurlOk([], "describe", "orchestrator.v1.ExecuteRequest");
    expect(message.stdout).toContain("orchestrator.v1.ExecuteRequest is a message");
    expect(message.stdout).toContain("string operation = 1;");
    expect(message.stdout).toContain(".google.protobuf.Struct input = 2;");
  });

  it("checks health", async () => {
    const result = await grpcurlOk(["-d", '{"service":""}'], "grpc.health.v1.Health/Check");
    expect(JSON.parse(result.stdout)).toEqual({ status: "SERVING" });
  });

  it("streams Execute of demo.echo from JSON, then GetExecution says SUCCEEDED", async () => {
    const result = await grpcurlOk(["-d", '{"operation":"demo.echo","input":{"message":"hi"}}'], "orchestrator.v1.ExecutionService/Execute");
    const events = jsonMessages(result.stdout).map(eventOf);
    expect(events.map((e) => e.kind)).toEqual(["accepted", "attemptStarted", "succeeded"]);
    const [accepted, started, succeeded] = events as [ReturnType<typeof eventOf>, ReturnType<typeof eventOf>, ReturnType<typeof eventOf>];
    const execution = accepted.body["execution"] as Json;
    const id = execution["executionId"] as string;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(events.map((e) => e.executionId)).toEqual([id, id, id]);
    expect(execution).toMatchObject({ operation: "demo.echo", input: { message: "hi" }, state: "EXECUTION_STATE_PENDING" });
    expect(started.body).toEqual({ attempt: 1 });
    expect(succeeded.body).toMatchObject({ result: { echo: { message: "hi" } }, attempts: 1 });

    const got = await grpcurlOk(["-d", JSON.stringify({ executionId: id })], "orchestrator.v1.ExecutionService/GetExecution");
    const { execution: stored } = JSON.parse(got.stdout) as { execution: Json };
    expect(stored).toMatchObject({ executionId: id, state: "EXECUTION_STATE_SUCCEEDED", result: { echo: { message: "hi" } } });
    expect(stored["attempts"]).toHaveLength(1);
  });

  it("streams the retries of demo.flaky as JSON events (attemptFailed, then succeeded)", async () => {
    const result = await grpcurlOk(
      ["-d", '{"operation":"demo.flaky","input":{"failures":1},"retryPolicy":{"initialInterval":"0.01s","jitter":0}}'],
      "orchestrator.v1.ExecutionService/Execute",
    );
    const events = jsonMessages(result.stdout).map(eventOf);
    expect(events.map((e) => e.kind)).toEqual(["accepted", "attemptStarted", "attemptFailed", "attemptStarted", "succeeded"]);
    expect(events[2]?.body).toMatchObject({ attempt: 1, willRetry: true, error: { retryable: true } });
    expect(events[3]?.body).toEqual({ attempt: 2 });
    expect(events[4]?.body).toMatchObject({ attempts: 2 });
  });

  it("prints NOT_FOUND with ErrorInfo EXECUTION_NOT_FOUND for GetExecution of an unknown id", async () => {
    const result = await grpcurl(["-d", '{"executionId":"no-such-execution"}'], "orchestrator.v1.ExecutionService/GetExecution");
    expect(result.code, result.stdout + result.stderr).toBe(exitFor(NOT_FOUND));
    expect(result.stderr).toContain("Code: NotFound");
    expect(result.stderr).toContain('"@type": "type.googleapis.com/google.rpc.ErrorInfo"');
    expect(result.stderr).toContain('"reason": "EXECUTION_NOT_FOUND"');
    expect(result.stderr).toContain('"execution_id": "no-such-execution"');
    expect(result.stderr).not.toContain("is not recognized");
  });

  it("prints NOT_FOUND with ErrorInfo OPERATION_NOT_FOUND for Execute of an unknown operation (-format-error)", async () => {
    const result = await grpcurl(["-format-error", "-d", '{"operation":"no.such.operation"}'], "orchestrator.v1.ExecutionService/Execute");
    expect(result.code, result.stdout + result.stderr).toBe(exitFor(NOT_FOUND));
    expect(result.stdout).toBe("");
    const status = JSON.parse(result.stderr) as JsonStatus;
    expect(status.code).toBe(NOT_FOUND);
    expect(status.details).toContainEqual(
      expect.objectContaining({ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "OPERATION_NOT_FOUND", metadata: { operation: "no.such.operation" } }),
    );
  });

  it("prints INVALID_ARGUMENT with the decoded BadRequest for an input that does not match the schema", async () => {
    const args = ["-d", '{"operation":"demo.echo","input":{"message":5}}'];
    const text = await grpcurl(args, "orchestrator.v1.ExecutionService/Execute");
    expect(text.code, text.stdout + text.stderr).toBe(exitFor(INVALID_ARGUMENT));
    expect(text.stderr).toContain("Code: InvalidArgument");
    expect(text.stderr).toContain('"@type": "type.googleapis.com/google.rpc.BadRequest"');
    expect(text.stderr).toContain('"field": "input.message"');
    expect(text.stderr).not.toContain("is not recognized");

    const json = await grpcurl(["-format-error", ...args], "orchestrator.v1.ExecutionService/Execute");
    expect(json.code).toBe(exitFor(INVALID_ARGUMENT));
    const status = JSON.parse(json.stderr) as JsonStatus;
    expect(status.code).toBe(INVALID_ARGUMENT);
    expect(status.details).toContainEqual(expect.objectContaining({ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "INVALID_ARGUMENT" }));
    const badRequest = status.details.find((d) => d["@type"] === "type.googleapis.com/google.rpc.BadRequest") as
      | { fieldViolations: Array<{ field: string; description: string }> }
      | undefined;
    expect(badRequest?.fieldViolations.map((v) => v.field)).toEqual(["input.message"]);
  });

  it("invokes ScheduleService/GetSchedule of an unknown schedule and prints NOT_FOUND with the decoded ErrorInfo", async () => {
    const result = await grpcurl(["-d", '{"scheduleId":"x"}'], "orchestrator.v1.ScheduleService/GetSchedule");
    expect(result.code, result.stdout + result.stderr).toBe(exitFor(NOT_FOUND));
    expect(result.stderr).toContain("Code: NotFound");
    expect(result.stderr).toContain('Message: no schedule "x"');
    expect(result.stderr).toContain('"@type": "type.googleapis.com/google.rpc.ErrorInfo"');
    expect(result.stderr).toContain('"reason": "SCHEDULE_NOT_FOUND"');
    expect(result.stderr).toContain('"domain": "orchestrator.v1"');
    expect(result.stderr).not.toContain("is not recognized");
  });

  it("prints the status as JSON with -format-error", async () => {
    const result = await grpcurl(["-format-error", "-d", '{"scheduleId":"x"}'], "orchestrator.v1.ScheduleService/GetSchedule");
    expect(result.code, result.stdout + result.stderr).toBe(exitFor(NOT_FOUND));
    const status = JSON.parse(result.stderr) as JsonStatus;
    expect(status.code).toBe(NOT_FOUND);
    expect(status.message).toBe('no schedule "x"');
    expect(status.details).toContainEqual(
      expect.objectContaining({ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "SCHEDULE_NOT_FOUND", domain: "orchestrator.v1" }),
    );
  });

  it("rejects an unknown JSON field client-side, before any call", async () => {
    const result = await grpcurl(["-d", '{"nope":1}'], "orchestrator.v1.ExecutionService/Execute");
    expect(result.code).not.toBe(0);
    // Not a gRPC status: grpcurl never made the call.
    expect(result.code).toBeLessThan(64);
    expect(result.stderr).toContain("error getting request data");
    expect(result.stderr).toContain("no known field named nope");
  });
});

describe("grpcurl with an API key", () => {
  let secured: ServerProcess;
  let key: string;
  beforeAll(async () => {
    secured = await spawnServer(["--demo-operations", "--auth", "api-keys"]);
    key = /ork_[a-z0-9]{12}_[A-Za-z0-9]{43}/.exec(secured.stderr())![0];
  });
  afterAll(async () => {
    await stopServer(secured);
  });
  const call = (flags: ReadonlyArray<string>, ...rest: ReadonlyArray<string>) =>
    run(grpcurlPath, ["-plaintext", "-max-time", "20", ...flags, secured.address, ...rest], { timeoutMs: 30_000 });

  it("runs Execute with the first-run key in -H; without it: UNAUTHENTICATED with ErrorInfo; reflection stays open", async () => {
    const ok = await call(["-H", `authorization: Bearer ${key}`, "-d", '{"operation":"demo.echo","input":{"message":"key"}}'], "orchestrator.v1.ExecutionService/Execute");
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(jsonMessages(ok.stdout).map((m) => eventOf(m).kind).at(-1)).toBe("succeeded");
    const refused = await call(["-format-error", "-d", '{"operation":"demo.echo","input":{"message":"nokey"}}'], "orchestrator.v1.ExecutionService/Execute");
    expect(refused.code, refused.stdout + refused.stderr).toBe(exitFor(16));
    const status = JSON.parse(refused.stderr) as JsonStatus;
    expect(status.message).toMatch(/^no credentials/);
    expect(status.details).toContainEqual(expect.objectContaining({ reason: "UNAUTHENTICATED", domain: "orchestrator.v1" }));
    expect((await call([], "list")).code).toBe(0);
  });
});
