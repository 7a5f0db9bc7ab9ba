/**
 * Demo operations, for examples and tests of the orchestrator itself (retries, cancellation,
 * progress, token accounting). Registered only when the configuration enables them: they do
 * nothing useful and `demo.sleep` can hold a slot for an hour.
 */
import { Clock, Duration, Effect, Schema } from "effect";
import type { TokenUsage } from "../core/model.js";
import { classifyOperationError, defineOperation, OperationError, type Operation } from "../core/operation.js";
import { JsonValueSchema } from "./json-schema.js";

/** The common rule of thumb of ~4 characters per token; the point is a deterministic number. */
const tokensOf = (text: string): number => Math.ceil(text.length / 4);

export const EchoInput = Schema.Struct(
  { message: Schema.String },
  // Any other JSON fields ride along and come back untouched.
  Schema.Record({ key: Schema.String, value: JsonValueSchema }),
);

export const demoEcho = defineOperation({
  name: "demo.echo",
  description:
    "Returns its input as {echo: input}. Reports token usage as if a model had read and repeated `message` " +
    "(ceil(length / 4) tokens each way), to exercise token accounting without calling a model.",
  input: EchoInput,
  classify: classifyOperationError,
  estimateTokens: (input) => 2 * tokensOf(input.message),
  run: (input, ctx) =>
    Effect.gen(function* () {
      const tokens = tokensOf(input.message);
      const usage: TokenUsage = { inputTokens: tokens, outputTokens: tokens, totalTokens: 2 * tokens };
      yield* ctx.reportUsage(usage);
      return { echo: input };
    }),
});

export const SleepInput = Schema.Struct({
  durationMs: Schema.Int.pipe(Schema.between(0, 3_600_000)),
});

export const demoSleep = defineOperation({
  name: "demo.sleep",
  description:
    "Waits durationMs (0 to 3,600,000) and returns {sleptMs}. Emits a progress event when it starts; " +
    "cancelling it interrupts the wait and logs \"demo.sleep interrupted\", showing that cleanup runs.",
  input: SleepInput,
  classify: classifyOperationError,
  run: (input, ctx) =>
    Effect.gen(function* () {
      yield* ctx.progress(`sleeping ${input.durationMs} ms`, { durationMs: input.durationMs });
      const start = yield* Clock.currentTimeMillis;
      // Effect.sleep, not a timer: the Clock decides (TestClock in tests) and interruption stops it.
      yield* Effect.sleep(Duration.millis(input.durationMs)).pipe(
        Effect.onInterrupt(() =>
          Clock.currentTimeMillis.pipe(
            Effect.flatMap((now) => ctx.log("demo.sleep interrupted", { durationMs: input.durationMs, elapsedMs: now - start })),
          ),
        ),
      );
      const end = yield* Clock.currentTimeMillis;
      return { sleptMs: end - start };
    }),
});

/** Error types with a known retryability; any other type must say whether it is retryable. */
const knownFlakyTypes: Readonly<Record<string, boolean>> = { UNAVAILABLE: true, INVALID: false };

export const FlakyInput = Schema.Struct({
  failures: Schema.Int.pipe(Schema.between(0, 1000)),
  errorType: Schema.optionalWith(
    Schema.String.pipe(Schema.pattern(/^[A-Z][A-Z0-9_]{0,63}$/, { message: () => "must be UPPER_SNAKE_CASE, at most 64 characters" })),
    { exact: true, default: () => "UNAVAILABLE" },
  ),
  retryable: Schema.optionalWith(Schema.Boolean, { exact: true }),
  retryAfterMs: Schema.optionalWith(Schema.Int.pipe(Schema.between(0, 3_600_000)), { exact: true }),
  key: Schema.optionalWith(Schema.String.pipe(Schema.maxLength(200)), { exact: true }),
}).pipe(
  Schema.filter((i) =>
    i.retryable === undefined && !(i.errorType in knownFlakyTypes)
      ? { path: ["retryable"], message: `is required when errorType is not UNAVAILABLE or INVALID` }
      : undefined,
  ),
);

export const demoFlaky = defineOperation({
  name: "demo.flaky",
  description:
    "Fails its first `failures` attempts, then returns {attempt, failures, key?}. Each failure has type errorType: " +
    "UNAVAILABLE (default, retryable), INVALID (not retryable), or any UPPER_SNAKE type with `retryable` set; " +
    "retryAfterMs asks for a minimum delay as Retry-After would. `key` labels the run in errors and results. " +
    "The count is the execution's attempt number, so separate executions never share state.",
  input: FlakyInput,
  classify: classifyOperationError,
  run: (input, ctx) =>
    Effect.gen(function* () {
      const keyed = input.key === undefined ? {} : { key: input.key };
      if (ctx.attempt <= input.failures) {
        const retryable = input.retryable ?? knownFlakyTypes[input.errorType] ?? false;
        return yield* new OperationError({
          type: input.errorType,
          message: `demo.flaky${input.key === undefined ? "" : ` "${input.key}"`} failed attempt ${ctx.attempt} of ${input.failures} planned failures`,
          retryable,
          details: { attempt: ctx.attempt, failures: input.failures, ...keyed },
          ...(input.retryAfterMs === undefined ? {} : { retryAfterMs: input.retryAfterMs }),
        });
      }
      return { attempt: ctx.attempt, failures: input.failures, ...keyed };
    }),
});

export const demoOperations: ReadonlyArray<Operation> = [demoEcho, demoSleep, demoFlaky];
