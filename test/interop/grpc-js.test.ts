/**
 * @grpc/grpc-js with @grpc/proto-loader (the stack most Node gRPC callers use, unrelated to
 * connect-es) against a real server process. The schemas are loaded at run time from proto/
 * and from grpc-health-check's health.proto, so the caller shares nothing with the server but
 * the .proto files.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { ErrorInfoSchema, type ErrorInfo } from "../../gen/google/rpc/error_details_pb.js";
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
 * details. The message grpc-js reports (err.details) must be the same text: the server encodes
 * grpc-message the way the gRPC spec says, which grpc-js's decodeURI reads back exactly.
 */
function decodeStatus(err: grpc.ServiceError): { message: string; infos: ErrorInfo[] } {
  const values = err.metadata.get("grpc-status-details-bin");
  expect(values, "grpc-status-details-bin trailer").toHaveLength(1);
  const bytes = values[0];
  if (!Buffer.isBuffer(bytes)) throw new Error("grpc-status-details-bin is not binary");
  const status = fromBinary(StatusSchema, bytes);
  expect(status.code).toBe(err.code);
  expect(err.details).toBe(status.message);
  return { message: status.message, infos: status.details.flatMap((d) => anyUnpack(d, ErrorInfoSchema) ?? []) };
}

let server: ServerProcess;
let health: grpc.Client;
let executions: grpc.Client;

beforeAll(async () => {
  server = await spawnServer();
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
});

afterAll(async () => {
  health?.close();
  executions?.close();
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

  it("gets UNIMPLEMENTED with an ErrorInfo for GetExecution (unary)", async () => {
    const err = await rejection(unary(executions, "GetExecution", { executionId: "x" }));
    expect(err.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(err.code).toBe(12);
    const { message, infos } = decodeStatus(err);
    expect(message).toContain("issue #3");
    expect(decodeURIComponent(err.details)).toContain("issue #3");
    const [info, ...more] = infos;
    expect(more).toEqual([]);
    expect(info?.reason).toBe("NOT_IMPLEMENTED");
    expect(info?.domain).toBe("orchestrator.v1");
    expect(info?.metadata["method"]).toBe("orchestrator.v1.ExecutionService/GetExecution");
  });

  it("gets UNIMPLEMENTED with an ErrorInfo for Execute (server streaming, Struct input)", async () => {
    const call = method<StreamMethod>(executions, "Execute")(
      {
        operation: "demo.echo",
        // google.protobuf.Struct in proto-loader's object form (it has no JSON mapping for Struct).
        input: { fields: { message: { stringValue: "hi" }, n: { numberValue: 1 }, ok: { boolValue: true } } },
        labels: { team: "interop" },
      },
      deadline(),
    );
    const err = await rejection(drain(call));
    expect(err.code).toBe(grpc.status.UNIMPLEMENTED);
    const { message, infos } = decodeStatus(err);
    expect(message).toBe("orchestrator.v1.ExecutionService/Execute is not implemented yet; it lands with issue #3 (Execute)");
    const [info] = infos;
    expect(info?.reason).toBe("NOT_IMPLEMENTED");
    expect(info?.metadata["method"]).toBe("orchestrator.v1.ExecutionService/Execute");
  });
});
