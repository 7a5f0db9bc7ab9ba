/** A recording ExecutionContext for running operations outside the orchestrator. */
import { Effect, Schema } from "effect";
import type { JsonObject, JsonValue, TokenUsage } from "../../src/core/model.js";
import type { ExecutionContext, Operation } from "../../src/core/operation.js";

export interface Recorded {
  readonly ctx: ExecutionContext;
  readonly logs: Array<{ readonly message: string; readonly fields: Record<string, unknown> | undefined }>;
  readonly progress: Array<{ readonly message: string; readonly data: JsonObject | undefined }>;
  readonly usage: TokenUsage[];
}

export const recordingContext = (attempt = 1): Recorded => {
  const logs: Recorded["logs"] = [];
  const progress: Recorded["progress"] = [];
  const usage: TokenUsage[] = [];
  const ctx: ExecutionContext = {
    executionId: "exec-test",
    attempt,
    principal: { subject: "tester", tenant: "test", roles: [] },
    labels: {},
    log: (message, fields) => Effect.sync(() => void logs.push({ message, fields })),
    progress: (message, data) => Effect.sync(() => void progress.push({ message, data })),
    reportUsage: (u) => Effect.sync(() => void usage.push(u)),
  };
  return { ctx, logs, progress, usage };
};

/** Decodes like the core does (excess properties rejected), then runs; bad input is a defect here. */
export const runOperation = <I, E>(op: Operation<I, E>, input: unknown, ctx: ExecutionContext): Effect.Effect<JsonValue, E> =>
  Schema.decodeUnknown(op.input, { errors: "all", onExcessProperty: "error" })(input).pipe(
    Effect.orDie,
    Effect.flatMap((decoded) => op.run(decoded, ctx)),
  );
