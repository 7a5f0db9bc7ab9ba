/**
 * grpcurl (.tools/bin, from .ci/setup) against a real server process, through server
 * reflection only: no -proto or -protoset flag anywhere, so every schema it uses (including
 * google.rpc.ErrorInfo to print error details) comes from the server.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnServer, type ServerProcess } from "../support/server.js";
import { requireTool, run, type RunResult, stopServer } from "./run.js";

let server: ServerProcess;
let grpcurlPath: string;

beforeAll(async () => {
  grpcurlPath = requireTool("bin/grpcurl");
  server = await spawnServer();
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
const UNIMPLEMENTED = 12;

describe("grpcurl via reflection", () => {
  it("lists every served service", async () => {
    const { stdout } = await grpcurlOk([], "list");
    const services = stdout.trim().split("\n");
    expect(services).toEqual(
      expect.arrayContaining([
        "orchestrator.v1.ExecutionService",
        "orchestrator.v1.ScheduleService",
        "orchestrator.v1.AuditService",
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

  it("invokes Execute from JSON and prints UNIMPLEMENTED with the decoded ErrorInfo", async () => {
    const result = await grpcurl(["-d", '{"operation":"demo.echo","input":{"message":"hi"}}'], "orchestrator.v1.ExecutionService/Execute");
    expect(result.code, result.stdout + result.stderr).toBe(exitFor(UNIMPLEMENTED));
    expect(result.stderr).toContain("Code: Unimplemented");
    expect(result.stderr).toContain("issue #3");
    expect(result.stderr).toContain('"@type": "type.googleapis.com/google.rpc.ErrorInfo"');
    expect(result.stderr).toContain('"reason": "NOT_IMPLEMENTED"');
    expect(result.stderr).toContain('"domain": "orchestrator.v1"');
    expect(result.stderr).not.toContain("is not recognized");
  });

  it("prints the status as JSON with -format-error", async () => {
    const result = await grpcurl(["-format-error", "-d", '{"operation":"demo.echo","input":{"message":"hi"}}'], "orchestrator.v1.ExecutionService/Execute");
    expect(result.code, result.stdout + result.stderr).toBe(exitFor(UNIMPLEMENTED));
    const status = JSON.parse(result.stderr) as { code: number; message: string; details: Array<Record<string, unknown>> };
    expect(status.code).toBe(UNIMPLEMENTED);
    expect(status.message).toContain("orchestrator.v1.ExecutionService/Execute is not implemented yet");
    expect(status.details).toContainEqual(
      expect.objectContaining({ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "NOT_IMPLEMENTED", domain: "orchestrator.v1" }),
    );
  });

  it("rejects an unknown JSON field client-side, before any call", async () => {
    const result = await grpcurl(["-d", '{"nope":1}'], "orchestrator.v1.ExecutionService/Execute");
    expect(result.code).not.toBe(0);
    expect(result.code).not.toBe(exitFor(UNIMPLEMENTED));
    expect(result.stderr).toContain("error getting request data");
    expect(result.stderr).toContain("no known field named nope");
  });
});
