/**
 * The generated TypeScript client over each protocol the port serves: gRPC (HTTP/2),
 * gRPC-Web and Connect (each over HTTP/1.1 and HTTP/2), unary and server-streaming.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/health/v1/health_pb.js";
import { ExecutionService, ExecutionState } from "../../gen/orchestrator/v1/execution_service_pb.js";
import { toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { ScheduleService } from "../../gen/orchestrator/v1/schedule_service_pb.js";
import { AuditService } from "../../gen/orchestrator/v1/audit_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { failure } from "../support/rpc.js";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.shutdown());

const transports: Record<string, () => Transport> = {
  "gRPC": () => createGrpcTransport({ baseUrl: server.baseUrl }),
  "gRPC-Web over HTTP/1.1": () => createGrpcWebTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" }),
  "gRPC-Web over HTTP/2": () => createGrpcWebTransport({ baseUrl: server.baseUrl, httpVersion: "2" }),
  "Connect over HTTP/1.1": () => createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" }),
  "Connect over HTTP/2": () => createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "2" }),
  "Connect JSON over HTTP/1.1": () =>
    createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1", useBinaryFormat: false }),
};

describe.each(Object.entries(transports))("%s", (name, makeTransport) => {
  it("answers a unary call (health Check)", async () => {
    const health = createClient(Health, makeTransport());
    expect((await health.check({ service: "" })).status).toBe(Status.SERVING);
    expect((await health.check({ service: "orchestrator.v1.ExecutionService" })).status).toBe(Status.SERVING);
  });

  it("answers NOT_FOUND for a service health does not know", async () => {
    const health = createClient(Health, makeTransport());
    const err = await failure(health.check({ service: "no.such.Service" }));
    expect(err.code).toBe(Code.NotFound);
  });

  it("streams server messages as they happen (health Watch)", async () => {
    const service = `test.Watched.${name.replace(/\W/g, "")}`;
    server.health.set(service, Status.SERVING);
    const abort = new AbortController();
    const health = createClient(Health, makeTransport());
    const stream = health.watch({ service }, { signal: abort.signal })[Symbol.asyncIterator]();
    expect((await stream.next()).value?.status).toBe(Status.SERVING);
    server.health.set(service, Status.NOT_SERVING);
    expect((await stream.next()).value?.status).toBe(Status.NOT_SERVING);
    abort.abort();
  });

  it("carries a service's error with ErrorInfo, unary and streaming (ScheduleService, unknown schedule)", async () => {
    const schedules = createClient(ScheduleService, makeTransport());
    const err = await failure(schedules.getSchedule({ scheduleId: "s" }));
    expect(err.code).toBe(Code.NotFound);
    expect(err.rawMessage).toBe('no schedule "s"');
    const [info] = err.findDetails(ErrorInfoSchema);
    expect(info?.reason).toBe("SCHEDULE_NOT_FOUND");
    expect(info?.domain).toBe("orchestrator.v1");
    expect(info?.metadata["schedule_id"]).toBe("s");

    // Server-streaming RPCs too: the stream ends with the status.
    const streamErr = await failure(
      (async () => {
        for await (const _ of schedules.watchSchedule({ scheduleId: "s" })) void _;
      })(),
    );
    expect(streamErr.code).toBe(Code.NotFound);
    expect(streamErr.findDetails(ErrorInfoSchema)[0]?.reason).toBe("SCHEDULE_NOT_FOUND");

    // AuditService is served (issue #7): test/audit covers it.
    const audit = createClient(AuditService, makeTransport());
    expect((await audit.listAuditEvents({ pageSize: 1 })).events.length).toBeLessThanOrEqual(1);
  });

  it("runs an execution end to end, unary and streaming", async () => {
    const executions = createClient(ExecutionService, makeTransport());
    const events = [];
    for await (const res of executions.execute({ operation: "demo.echo", input: { message: name } })) events.push(res.event);
    expect(events.map((e) => e?.kind.case)).toEqual(["accepted", "attemptStarted", "succeeded"]);
    const id = events[0]!.executionId;
    const got = await executions.getExecution({ executionId: id });
    expect(got.execution?.operation).toBe("demo.echo");
    expect(toJson(ValueSchema, got.execution!.result!)).toEqual({ echo: { message: name } });
    expect(got.execution?.state).toBe(ExecutionState.SUCCEEDED);
    const err = await failure(executions.getExecution({ executionId: "nope" }));
    expect(err.code).toBe(Code.NotFound);
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("EXECUTION_NOT_FOUND");
  });
});

describe("RPC log", () => {
  it("writes one JSON line per RPC with method, protocol, code and duration", async () => {
    const before = server.logs.length;
    const health = createClient(Health, createGrpcTransport({ baseUrl: server.baseUrl }));
    await health.check({ service: "" });
    await failure(createClient(ExecutionService, createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" })).cancelExecution({ executionId: "e" }));
    const lines = server.logs.slice(before).filter((l) => l["msg"] === "rpc");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ method: "/grpc.health.v1.Health/Check", protocol: "grpc", http: "2.0", code: "ok", level: "info" });
    expect(lines[1]).toMatchObject({
      method: "/orchestrator.v1.ExecutionService/CancelExecution",
      protocol: "connect",
      http: "1.1",
      code: "not_found",
    });
    for (const l of lines) expect(typeof l["duration_ms"]).toBe("number");
  });
});
