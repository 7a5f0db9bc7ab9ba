/**
 * A TypeScript client of the Orchestrator, with the generated clients in gen/ and connect-node.
 *
 *   ORCHESTRATOR_ADDRESS=127.0.0.1:50051 ORCHESTRATOR_TOKEN=ork_… node --import tsx examples/typescript/client.ts
 *
 * It checks health, runs demo.echo and follows its events, reads the execution back, and shows
 * how to read an error's details (google.rpc.ErrorInfo, BadRequest). The server needs
 * --demo-operations. Run by test/examples/examples.test.ts.
 */
import { toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/health/v1/health_pb.js";
import { ExecutionService, ExecutionState } from "../../gen/orchestrator/v1/execution_service_pb.js";

const address = process.env["ORCHESTRATOR_ADDRESS"] ?? "127.0.0.1:50051";
const token = process.env["ORCHESTRATOR_TOKEN"];

// Every call carries the API key (or JWT) as a bearer token.
const auth: Interceptor = (next) => (req) => {
  if (token !== undefined) req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};
// gRPC over HTTP/2; createConnectTransport speaks the Connect protocol instead.
const transport = createGrpcTransport({ baseUrl: `http://${address}`, interceptors: [auth] });

const health = await createClient(Health, transport).check({ service: "" });
console.log(`health ${HealthCheckResponse_ServingStatus[health.status]}`);

const executions = createClient(ExecutionService, transport);

// Execute streams the execution's events and ends with the terminal one.
let executionId = "";
for await (const { event } of executions.execute({ operation: "demo.echo", input: { message: "hello from TypeScript" } })) {
  if (event === undefined) continue;
  switch (event.kind.case) {
    case "accepted":
      executionId = event.executionId;
      console.log(`event accepted ${executionId}`);
      break;
    case "succeeded":
      console.log(`event succeeded ${JSON.stringify(toJson(ValueSchema, event.kind.value.result!))}`);
      break;
    case "failed":
      console.log(`event failed ${event.kind.value.error?.type}: ${event.kind.value.error?.message}`);
      break;
    default:
      console.log(`event ${event.kind.case}`);
  }
}

const { execution } = await executions.getExecution({ executionId });
console.log(`execution ${executionId} ${ExecutionState[execution!.state]} attempts=${execution!.attempts.length}`);

// Errors are ConnectErrors with a code and google.rpc details.
try {
  for await (const _ of executions.execute({ operation: "demo.echo", input: { wrong: "field" } }));
} catch (e) {
  const err = ConnectError.from(e);
  const info = err.findDetails(ErrorInfoSchema)[0];
  const fields = err.findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations.map((v) => v.field));
  console.log(`error ${Code[err.code]} reason=${info?.reason} violations=${fields.join(",")}`);
}
