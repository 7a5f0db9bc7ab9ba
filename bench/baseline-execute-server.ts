/**
 * The Execute benchmark's transport baseline: a bare connect-node server (node:http2 +
 * connectNodeAdapter, default options, no logging, no interceptors) whose
 * orchestrator.v1.ExecutionService/Execute streams the same three events the orchestrator sends
 * for `demo.echo` (accepted, attempt_started, succeeded: same fields, same sizes within a few
 * bytes) without any core: no validation, policy, store, audit or Effect runtime. Subject minus
 * this baseline is the cost of the core and its SQLite persistence; this baseline minus the
 * bare Health/Check one is the cost of a three-message server stream.
 * grpc.health.v1.Health/Check answers SERVING (for readiness).
 *
 *   node --import tsx bench/baseline-execute-server.ts [--port N] [--host H]
 *
 * Prints {"msg":"listening","port":N} on stdout once bound; exits on SIGTERM/SIGINT.
 */
import { randomUUID } from "node:crypto";
import { create, fromJson } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { serveBare } from "./bare-server.js";
import { Health, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/health/v1/health_pb.js";
import { PrincipalSchema, RetryPolicySchema, TokenUsageSchema } from "../gen/orchestrator/v1/common_pb.js";
import {
  ExecuteResponseSchema,
  ExecutionSchema,
  ExecutionService,
  ExecutionState,
  type ExecuteRequest,
  type ExecuteResponse,
  type ExecutionEvent,
} from "../gen/orchestrator/v1/execution_service_pb.js";


const serving = create(HealthCheckResponseSchema, { status: ServingStatus.SERVING });
const principal = create(PrincipalSchema, { subject: "local", tenant: "default", roles: ["admin"] });
const retryPolicy = create(RetryPolicySchema, {
  initialInterval: durationFromMs(1000),
  backoffCoefficient: 2,
  maximumInterval: durationFromMs(100_000),
  maximumAttempts: 5,
  jitter: 0.2,
  maxRetryDuration: durationFromMs(0),
});
const timeout = durationFromMs(3_600_000);
const usage = create(TokenUsageSchema, { inputTokens: 1n, outputTokens: 1n, totalTokens: 2n });

function event(executionId: string, kind: ExecutionEvent["kind"]): ExecuteResponse {
  return create(ExecuteResponseSchema, { event: { executionId, time: timestampFromMs(Date.now()), kind } });
}

async function* execute(req: ExecuteRequest): AsyncGenerator<ExecuteResponse> {
  const executionId = randomUUID();
  const input = req.input ?? {};
  const execution = create(ExecutionSchema, {
    executionId,
    operation: req.operation,
    input,
    state: ExecutionState.PENDING,
    principal,
    createTime: timestampFromMs(Date.now()),
    retryPolicy,
    timeout,
  });
  yield event(executionId, { case: "accepted", value: { $typeName: "orchestrator.v1.ExecutionAccepted", execution, deduplicated: false } });
  yield event(executionId, { case: "attemptStarted", value: { $typeName: "orchestrator.v1.AttemptStarted", attempt: 1 } });
  yield event(executionId, {
    case: "succeeded",
    value: {
      $typeName: "orchestrator.v1.ExecutionSucceeded",
      result: fromJson(ValueSchema, { echo: input }),
      tokenUsage: usage,
      attempts: 1,
    },
  });
}

const routes = (router: ConnectRouter): void => {
  router.service(Health, { check: () => serving });
  router.rpc(ExecutionService.method.execute, execute);
};

serveBare(routes);
