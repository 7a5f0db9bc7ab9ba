/**
 * ExecutionService handlers: proto → command, call the core, domain → proto. No rule lives here.
 */
import { Effect, Stream, type ManagedRuntime } from "effect";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { Orchestrator } from "../core/Orchestrator.js";
import { InvalidInput } from "../core/errors.js";
import {
  CancelExecutionResponseSchema,
  ExecuteResponseSchema,
  type ExecuteResponse,
  ExecutionService,
  GetExecutionResponseSchema,
  ListExecutionsResponseSchema,
} from "../../gen/orchestrator/v1/execution_service_pb.js";
import { principalOf } from "./auth-interceptor.js";
import {
  executeCommandFromPb,
  executionEventToPb,
  executionToPb,
  orderFromPb,
  statesFromPb,
  Violations,
} from "./convert.js";
import { runRpc, runStream } from "./run-rpc.js";
import { toConnectError } from "./error-mapping.js";
import { rpcSpanOf } from "./tracing-interceptor.js";

/** The runtime handlers run on (see run-rpc.ts for why its error type is unknown). */
export type OrchestratorRuntime = ManagedRuntime.ManagedRuntime<Orchestrator, unknown>;

const invalid = (violations: Violations) => Effect.fail(new InvalidInput({ violations: violations.list }));

/** Why a streaming call stopped early, for the execution's cancel reason. */
function abortReason(signal: AbortSignal): string {
  const r: unknown = signal.reason;
  return r instanceof ConnectError && r.code === Code.DeadlineExceeded
    ? "the call's deadline passed"
    : "the client cancelled the call";
}

export function executionService(runtime: OrchestratorRuntime) {
  return {
    async *execute(req, ctx): AsyncGenerator<ExecuteResponse> {
      const principal = principalOf(ctx);
      // The execution's trace id is its RPC's; without the tracing interceptor, the core's own.
      const { cmd, violations } = executeCommandFromPb(req, principal, rpcSpanOf(ctx)?.traceId);
      if (violations.length > 0) throw toConnectError(new InvalidInput({ violations }));
      // A client cancel or deadline ends the stream, which cancels the execution (unless detached).
      yield* runStream(
        runtime,
        ctx,
        Stream.unwrap(
          Effect.map(Orchestrator, (o) => o.executeStream(cmd, { detach: req.detach, cancelReason: () => abortReason(ctx.signal) })),
        ).pipe(Stream.map((e) => create(ExecuteResponseSchema, { event: executionEventToPb(e) }))),
      );
    },

    async getExecution(req, ctx) {
      const principal = principalOf(ctx);
      return runRpc(
        runtime,
        ctx,
        Effect.gen(function* () {
          if (req.executionId === "") return yield* invalidField("execution_id", "is required");
          const o = yield* Orchestrator;
          const record = yield* o.get(principal, req.executionId);
          return create(GetExecutionResponseSchema, { execution: executionToPb(record) });
        }),
      );
    },

    async listExecutions(req, ctx) {
      const principal = principalOf(ctx);
      return runRpc(
        runtime,
        ctx,
        Effect.gen(function* () {
          const v = new Violations();
          const states = statesFromPb(req.states, v);
          const order = orderFromPb(req.order, v);
          if (v.list.length > 0) return yield* invalid(v);
          const o = yield* Orchestrator;
          const page = yield* o.list(principal, {
            filter: {
              ...(req.operation === "" ? {} : { operation: req.operation }),
              ...(states.length === 0 ? {} : { states }),
              ...(req.scheduleId === "" ? {} : { scheduleId: req.scheduleId }),
              ...(req.principalSubject === "" ? {} : { principalSubject: req.principalSubject }),
              ...(Object.keys(req.labels).length === 0 ? {} : { labels: req.labels }),
            },
            order,
            pageSize: req.pageSize,
            pageToken: req.pageToken,
          });
          return create(ListExecutionsResponseSchema, {
            executions: page.executions.map(executionToPb),
            nextPageToken: page.nextPageToken,
          });
        }),
      );
    },

    async cancelExecution(req, ctx) {
      const principal = principalOf(ctx);
      return runRpc(
        runtime,
        ctx,
        Effect.gen(function* () {
          if (req.executionId === "") return yield* invalidField("execution_id", "is required");
          // A repeat is harmless (cancelling a CANCELLED execution returns it unchanged), so the
          // request_id needs no record of its own; only its form is checked.
          if (!/^[\x20-\x7e]{0,128}$/.test(req.requestId)) return yield* invalidField("request_id", "must be at most 128 printable ASCII characters");
          const o = yield* Orchestrator;
          const record = yield* o.cancel(principal, req.executionId, req.reason);
          return create(CancelExecutionResponseSchema, { execution: executionToPb(record) });
        }),
      );
    },
  } satisfies ServiceImpl<typeof ExecutionService>;
}

const invalidField = (field: string, description: string) =>
  Effect.fail(new InvalidInput({ violations: [{ field, description }] }));
