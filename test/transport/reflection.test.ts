/**
 * gRPC reflection v1 and v1alpha answered from the embedded descriptors.
 * (grpcurl drives the same service end to end in test/interop.)
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.shutdown());

type Req = v1.ServerReflectionRequest["messageRequest"];

async function* each<T>(items: T[]): AsyncGenerator<T> {
  yield* items;
}

/** Sends the requests on one stream and returns the answers in order. */
async function ask(requests: Req[], version: "v1" | "v1alpha" = "v1") {
  const transport = createGrpcTransport({ baseUrl: server.baseUrl });
  if (version === "v1") {
    const client = createClient(v1.ServerReflection, transport);
    const out: v1.ServerReflectionResponse[] = [];
    for await (const r of client.serverReflectionInfo(each(requests.map((m) => create(v1.ServerReflectionRequestSchema, { messageRequest: m }))))) out.push(r);
    return out;
  }
  const client = createClient(v1alpha.ServerReflection, transport);
  const out: v1alpha.ServerReflectionResponse[] = [];
  for await (const r of client.serverReflectionInfo(each(requests.map((m) => create(v1alpha.ServerReflectionRequestSchema, { messageRequest: m as never }))))) out.push(r);
  return out;
}

const fileNames = (r: v1.ServerReflectionResponse | v1alpha.ServerReflectionResponse): string[] =>
  r.messageResponse.case === "fileDescriptorResponse"
    ? r.messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b).name)
    : [];

const expectedServices = [
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
  "orchestrator.v1.AuditService",
  "orchestrator.v1.ExecutionService",
  "orchestrator.v1.PolicyService",
  "orchestrator.v1.ScheduleService",
];

describe.each(["v1", "v1alpha"] as const)("reflection %s", (version) => {
  it("lists every service on the port", async () => {
    const [r] = await ask([{ case: "listServices", value: "" }], version);
    expect(r?.messageResponse.case).toBe("listServicesResponse");
    const names = r?.messageResponse.case === "listServicesResponse" ? r.messageResponse.value.service.map((s) => s.name) : [];
    expect(names).toEqual(expectedServices);
  });

  it("answers file_containing_symbol with the file and its transitive imports", async () => {
    const [r] = await ask([{ case: "fileContainingSymbol", value: "orchestrator.v1.ExecutionService" }], version);
    const names = fileNames(r!);
    expect(names[0]).toBe("orchestrator/v1/execution_service.proto");
    expect(names).toContain("orchestrator/v1/common.proto");
    expect(names).toContain("google/protobuf/struct.proto");
    expect(new Set(names).size).toBe(names.length);
  });
});

describe("reflection lookups", () => {
  it("finds methods, nested types, fields and enum types by symbol", async () => {
    const answers = await ask([
      { case: "fileContainingSymbol", value: "orchestrator.v1.ExecutionService.Execute" },
      { case: "fileContainingSymbol", value: "orchestrator.v1.ExecuteRequest.operation" },
      { case: "fileContainingSymbol", value: "grpc.health.v1.HealthCheckResponse.ServingStatus" },
      { case: "fileContainingSymbol", value: "google.rpc.ErrorInfo" },
    ]);
    expect(answers.map((a) => fileNames(a)[0])).toEqual([
      "orchestrator/v1/execution_service.proto",
      "orchestrator/v1/execution_service.proto",
      "health/v1/health.proto",
      "google/rpc/error_details.proto",
    ]);
  });

  it("does not send a dependency twice on one stream", async () => {
    const [first, second] = await ask([
      { case: "fileContainingSymbol", value: "orchestrator.v1.ExecutionService" },
      { case: "fileContainingSymbol", value: "orchestrator.v1.ScheduleService" },
    ]);
    const sentFirst = new Set(fileNames(first!));
    const sentSecond = fileNames(second!);
    expect(sentSecond[0]).toBe("orchestrator/v1/schedule_service.proto");
    expect(sentFirst.has("orchestrator/v1/common.proto")).toBe(true);
    expect(sentSecond).not.toContain("orchestrator/v1/common.proto");
  });

  it("answers file_by_filename and NOT_FOUND for unknown names and symbols", async () => {
    const [byName, unknownFile, unknownSymbol, ext] = await ask([
      { case: "fileByFilename", value: "orchestrator/v1/audit_service.proto" },
      { case: "fileByFilename", value: "nope.proto" },
      { case: "fileContainingSymbol", value: "orchestrator.v1.Nope" },
      { case: "allExtensionNumbersOfType", value: "orchestrator.v1.ExecuteRequest" },
    ]);
    expect(fileNames(byName!)[0]).toBe("orchestrator/v1/audit_service.proto");
    for (const r of [unknownFile, unknownSymbol]) {
      expect(r?.messageResponse.case).toBe("errorResponse");
      expect(r?.messageResponse.value).toMatchObject({ errorCode: 5 });
    }
    expect(ext?.messageResponse.case).toBe("allExtensionNumbersResponse");
    expect(ext?.messageResponse.value).toMatchObject({ baseTypeName: "orchestrator.v1.ExecuteRequest", extensionNumber: [] });
  });
});
