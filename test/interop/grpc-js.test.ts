/**
 * @grpc/grpc-js with @grpc/proto-loader (the stack most Node gRPC callers use, unrelated to
 * connect-es) against a real server process. The schemas are loaded at run time from proto/
 * and from grpc-health-check's health.proto, so the caller shares nothing with the server but
 * the .proto files. The server runs with --demo-operations (demo.echo, demo.flaky) and
 * --auth none (the test helper's default), so every caller is the local admin.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { BadRequestSchema, ErrorInfoSchema, type BadRequest, type ErrorInfo } from "../../gen/google/rpc/error_details_pb.js";
import { repoRoot, spawnServer, type ServerProcess } from "../support/server.js";
import { stopServer } from "./run.js";

const protoDir = join(repoRoot, "proto");
const healthProto = join(repoRoot, "node_modules/grpc-health-check/proto/health/v1/health.proto");

const loaderOptions: protoLoader.Options = {
  // google/protobuf/* come bundled with proto-loader; google-proto-files covers anything else.
  includeDirs: [protoDir, join(repoRoot, "node_modules/google-proto-files")],
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** Finds a service client constructor by its full name in a loaded package definition. */
function serviceClient(root: grpc.GrpcObject, fullName: string): grpc.ServiceClientConstructor {
  let node: grpc.GrpcObject | grpc.ServiceClientConstructor | grpc.ProtobufTypeDefinition | undefined = root;
  for (const part of fullName.split(".")) {
    if (node === undefined || typeof node === "function" || "format" in node) break;
    node = (node as grpc.GrpcObject)[part];
  }
  if (typeof node !== "function" || !("service" in node)) throw new Error(`service ${fullName} not in the loaded protos`);
  return node;
}

type Callback = (err: grpc.ServiceError | null, response?: Record<string, unknown>) => void;
type UnaryMethod = (request: Record<string, unknown>, options: grpc.CallOptions, callback: Callback) => grpc.ClientUnaryCall;
type StreamMethod = (request: Record<string, unknown>, options: grpc.CallOptions) => grpc.ClientReadableStream<Record<string, unknown>>;

function method<M>(client: grpc.Client, name: string): M {
  const fn = (client as unknown as Record<string, unknown>)[name];
  if (typeof fn !== "function") throw new Error(`no method ${name}`);
  return (fn as (...args: unknown[]) => unknown).bind(client) as M;
}

const deadline = (): grpc.CallOptions => ({ deadline: Date.now() + 20_000 });

function unary(client: grpc.Client, name: string, request: Record<string, unknown>): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    method<UnaryMethod>(client, name)(request, deadline(), (err, response) => (err !== null ? reject(err) : resolve(response ?? {})));
  });
}

/** Reads a server stream to its end; resolves with the messages or rejects with the status. */
function drain(call: grpc.ClientReadableStream<Record<string, unknown>>): Promise<Array<Record<string, unknown>>> {
  const messages: Array<Record<string, unknown>> = [];
  return new Promise((resolve, reject) => {
    call.on("data", (m: Record<string, unknown>) => messages.push(m));
    call.on("error", reject);
    call.on("end", () => resolve(messages));
  });
}

async function rejection(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (e) {
    return e as grpc.ServiceError;
  }
  throw new Error("expected the call to fail");
}

/**
 * Decodes grpc-status-details-bin (a google.rpc.Status): its exact message and its ErrorInfo
 * and BadRequest details. The message grpc-js reports (err.details) must be the same text: the
 * server encodes grpc-message the way the gRPC spec says, which grpc-js's decodeURI reads back
 * exactly.
 */
function decodeStatus(err: grpc.ServiceError): { message: string; infos: ErrorInfo[]; badRequests: BadRequest[] } {
  const values = err.metadata.get("grpc-status-details-bin");
  expect(values, "grpc-status-details-bin trailer").toHaveLength(1);
  const bytes = values[0];
  if (!Buffer.isBuffer(bytes)) throw new Error("grpc-status-details-bin is not binary");
  const status = fromBinary(StatusSchema, bytes);
  expect(status.code).toBe(err.code);
  expect(err.details).toBe(status.message);
  return {
    message: status.message,
    infos: status.details.flatMap((d) => anyUnpack(d, ErrorInfoSchema) ?? []),
    badRequests: status.details.flatMap((d) => anyUnpack(d, BadRequestSchema) ?? []),
  };
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type PbObject = Record<string, unknown>;

/** google.protobuf.Value in proto-loader's object form (oneofs: true names the case in `kind`) → JSON. */
function fromValue(v: PbObject): Json {
  switch (v["kind"]) {
    case "nullValue":
      return null;
    case "numberValue":
      return v["numberValue"] as number;
    case "stringValue":
      return v["stringValue"] as string;
    case "boolValue":
      return v["boolValue"] as boolean;
    case "structValue":
      return fromStruct(v["structValue"] as PbObject);
    case "listValue":
      return ((v["listValue"] as PbObject)["values"] as PbObject[]).map(fromValue);
    default:
      throw new Error(`google.protobuf.Value without a kind: ${JSON.stringify(v)}`);
  }
}

/** google.protobuf.Struct in proto-loader's object form → JSON object. */
function fromStruct(s: PbObject): { [key: string]: Json } {
  return Object.fromEntries(Object.entries(s["fields"] as Record<string, PbObject>).map(([k, v]) => [k, fromValue(v)]));
}

/** An ExecutionEvent: its oneof case (`kind`, camelCase) and that case's message. */
interface Event {
  readonly executionId: string;
  readonly kind: string;
  readonly body: PbObject;
}

function events(responses: ReadonlyArray<PbObject>): Event[] {
  return responses.map((r) => {
    const event = r["event"] as PbObject | null;
    if (event === null || event === undefined) throw new Error(`ExecuteResponse without an event: ${JSON.stringify(r)}`);
    const kind = event["kind"] as string;
    return { executionId: event["executionId"] as string, kind, body: event[kind] as PbObject };
  });
}

/** Execute, read to its end: the events, or a rejection with the status. */
function execute(request: Record<string, unknown>): Promise<Event[]> {
  return drain(method<StreamMethod>(executions, "Execute")(request, deadline())).then(events);
}

/** A google.protobuf.Duration in proto-loader's object form (longs: String) → milliseconds. */
const durationMs = (d: PbObject): number => Number(d["seconds"]) * 1000 + (d["nanos"] as number) / 1e6;

let server: ServerProcess;
let health: grpc.Client;
let executions: grpc.Client;
let schedules: grpc.Client;

beforeAll(async () => {
  server = await spawnServer(["--demo-operations"]);
  const orchestrator = grpc.loadPackageDefinition(
    protoLoader.loadSync(
      ["orchestrator/v1/execution_service.proto", "orchestrator/v1/schedule_service.proto", "orchestrator/v1/audit_service.proto"],
      loaderOptions,
    ),
  );
  const healthPkg = grpc.loadPackageDefinition(protoLoader.loadSync(healthProto, loaderOptions));
  const credentials = grpc.credentials.createInsecure();
  // Loopback only: never an HTTP proxy from the environment.
  const options = { "grpc.enable_http_proxy": 0 };
  health = new (serviceClient(healthPkg, "grpc.health.v1.Health"))(server.address, credentials, options);
  executions = new (serviceClient(orchestrator, "orchestrator.v1.ExecutionService"))(server.address, credentials, options);
  schedules = new (serviceClient(orchestrator, "orchestrator.v1.ScheduleService"))(server.address, credentials, options);
});

afterAll(async () => {
  health?.close();
  executions?.close();
  schedules?.close();
  await stopServer(server);
});

describe("@grpc/grpc-js + @grpc/proto-loader", () => {
  it("checks health (unary)", async () => {
    expect(await unary(health, "Check", { service: "" })).toEqual({ status: "SERVING" });
    expect(await unary(health, "Check", { service: "orchestrator.v1.ExecutionService" })).toEqual({ status: "SERVING" });
    const err = await rejection(unary(health, "Check", { service: "no.such.Service" }));
    expect(err.code).toBe(grpc.status.NOT_FOUND);
  });

  it("watches health (server streaming): the first message is SERVING", async () => {
    const call = method<StreamMethod>(health, "Watch")({ service: "" }, deadline());
    const first = await new Promise<Record<string, unknown>>((resolve, reject) => {
      call.once("data", resolve);
      call.once("error", reject);
      call.once("end", () => reject(new Error("Watch ended before its first message")));
    });
    expect(first).toEqual({ status: "SERVING" });
    // The stream does not end on its own: cancel it and see the cancellation come back.
    const ended = new Promise<grpc.ServiceError>((resolve) => call.on("error", resolve));
    call.cancel();
    expect((await ended).code).toBe(grpc.status.CANCELLED);
  });

  it("streams Execute of demo.echo (Struct input) to `succeeded`, then GetExecution says SUCCEEDED", async () => {
    const stream = await execute({
      operation: "demo.echo",
      // google.protobuf.Struct in proto-loader's object form (it has no JSON mapping for Struct).
      input: { fields: { message: { stringValue: "hi" } } },
      labels: { team: "interop" },
    });
    expect(stream.map((e) => e.kind)).toEqual(["accepted", "attemptStarted", "succeeded"]);
    const [accepted, started, succeeded] = stream as [Event, Event, Event];
    const execution = accepted.body["execution"] as PbObject;
    const id = execution["executionId"] as string;
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(stream.map((e) => e.executionId)).toEqual([id, id, id]);
    expect(execution).toMatchObject({ operation: "demo.echo", state: "EXECUTION_STATE_PENDING", labels: { team: "interop" } });
    expect(fromStruct(execution["input"] as PbObject)).toEqual({ message: "hi" });
    expect(accepted.body["deduplicated"]).toBe(false);
    expect(started.body).toEqual({ attempt: 1 });
    expect(fromValue(succeeded.body["result"] as PbObject)).toEqual({ echo: { message: "hi" } });
    expect(succeeded.body["attempts"]).toBe(1);

    const got = (await unary(executions, "GetExecution", { executionId: id }))["execution"] as PbObject;
    expect(got).toMatchObject({ executionId: id, operation: "demo.echo", state: "EXECUTION_STATE_SUCCEEDED", labels: { team: "interop" } });
    expect(fromValue(got["result"] as PbObject)).toEqual({ echo: { message: "hi" } });
    expect((got["attempts"] as PbObject[]).map((a) => a["number"])).toEqual([1]);
    expect(got["error"]).toBeNull();
  });

  it("retries demo.flaky per the request's retry policy (Duration, optional double jitter = 0)", async () => {
    const stream = await execute({
      operation: "demo.flaky",
      input: { fields: { failures: { numberValue: 1 } } },
      retryPolicy: { initialInterval: { seconds: 0, nanos: 10_000_000 }, jitter: 0 },
    });
    expect(stream.map((e) => e.kind)).toEqual(["accepted", "attemptStarted", "attemptFailed", "attemptStarted", "succeeded"]);
    const [accepted, , failed, second, succeeded] = stream as [Event, Event, Event, Event, Event];
    // The explicit jitter 0 (proto3 optional) reached the server: the effective policy says so.
    const policy = (accepted.body["execution"] as PbObject)["retryPolicy"] as PbObject;
    expect(policy["jitter"]).toBe(0);
    expect(durationMs(policy["initialInterval"] as PbObject)).toBe(10);
    expect(failed.body).toMatchObject({ attempt: 1, willRetry: true });
    expect((failed.body["error"] as PbObject)["retryable"]).toBe(true);
    expect(durationMs(failed.body["retryDelay"] as PbObject)).toBe(10);
    expect(second.body).toEqual({ attempt: 2 });
    expect(succeeded.body["attempts"]).toBe(2);
  });

  it("gets NOT_FOUND with ErrorInfo EXECUTION_NOT_FOUND for GetExecution of an unknown id (unary)", async () => {
    const err = await rejection(unary(executions, "GetExecution", { executionId: "no-such-execution" }));
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    const { infos, badRequests } = decodeStatus(err);
    expect(badRequests).toEqual([]);
    const [info, ...more] = infos;
    expect(more).toEqual([]);
    expect(info?.reason).toBe("EXECUTION_NOT_FOUND");
    expect(info?.domain).toBe("orchestrator.v1");
    expect(info?.metadata["execution_id"]).toBe("no-such-execution");
  });

  it("gets NOT_FOUND with ErrorInfo OPERATION_NOT_FOUND for Execute of an unknown operation (streaming)", async () => {
    const err = await rejection(execute({ operation: "no.such.operation" }));
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    const [info] = decodeStatus(err).infos;
    expect(info?.reason).toBe("OPERATION_NOT_FOUND");
    expect(info?.domain).toBe("orchestrator.v1");
    expect(info?.metadata["operation"]).toBe("no.such.operation");
  });

  it("gets INVALID_ARGUMENT with a BadRequest violation on input.message for a bad input (streaming)", async () => {
    const err = await rejection(execute({ operation: "demo.echo", input: { fields: { message: { numberValue: 5 } } } }));
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    const { infos, badRequests } = decodeStatus(err);
    expect(infos.map((i) => i.reason)).toEqual(["INVALID_ARGUMENT"]);
    const [badRequest, ...more] = badRequests;
    expect(more).toEqual([]);
    expect(badRequest?.fieldViolations.map((v) => v.field)).toEqual(["input.message"]);
    expect(badRequest?.fieldViolations[0]?.description).not.toBe("");
  });

  it("gets NOT_FOUND with an ErrorInfo for ScheduleService/GetSchedule of an unknown schedule (unary)", async () => {
    const err = await rejection(unary(schedules, "GetSchedule", { scheduleId: "x" }));
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(err.code).toBe(5);
    const { message, infos } = decodeStatus(err);
    expect(message).toBe('no schedule "x"');
    expect(err.details).toBe('no schedule "x"');
    const [info, ...more] = infos;
    expect(more).toEqual([]);
    expect(info?.reason).toBe("SCHEDULE_NOT_FOUND");
    expect(info?.domain).toBe("orchestrator.v1");
    expect(info?.metadata["schedule_id"]).toBe("x");
  });
});
