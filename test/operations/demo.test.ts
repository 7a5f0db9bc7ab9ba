import { describe, expect, it } from "@effect/vitest";
import { Effect, Either, Fiber, Option, ParseResult, Schema, TestClock } from "effect";
import { classifyOperationError, OperationError, OperationRegistry } from "../../src/core/operation.js";
import { demoEcho, demoFlaky, demoSleep } from "../../src/operations/demo.js";
import { builtinOperations } from "../../src/operations/index.js";
import { recordingContext, runOperation } from "./context.js";

const issuesOf = (schema: Schema.Schema<any, any>, input: unknown) =>
  Schema.decodeUnknownEither(schema, { errors: "all", onExcessProperty: "error" })(input).pipe(
    Either.match({
      onLeft: (e) => ParseResult.ArrayFormatter.formatErrorSync(e).map((i) => i.path.join(".")),
      onRight: () => [],
    }),
  );

describe("demo.echo", () => {
  it.effect("returns the input and reports ceil(length / 4) tokens each way", () =>
    Effect.gen(function* () {
      const { ctx, usage } = recordingContext();
      const result = yield* runOperation(demoEcho, { message: "hello world", extra: { n: [1, true, null] } }, ctx);
      expect(result).toEqual({ echo: { message: "hello world", extra: { n: [1, true, null] } } });
      expect(usage).toEqual([{ inputTokens: 3, outputTokens: 3, totalTokens: 6 }]);
      expect(demoEcho.estimateTokens?.({ message: "hello world" })).toBe(6);
    }),
  );

  it("requires a string message", () => {
    expect(issuesOf(demoEcho.input, {})).toEqual(["message"]);
    expect(issuesOf(demoEcho.input, { message: 3 })).toEqual(["message"]);
  });
});

describe("demo.sleep", () => {
  it.effect("sleeps on the Clock: done only once TestClock has moved the whole duration", () =>
    Effect.gen(function* () {
      const { ctx, progress } = recordingContext();
      const fiber = yield* Effect.fork(runOperation(demoSleep, { durationMs: 1000 }, ctx));
      yield* TestClock.adjust("999 millis");
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true);
      expect(progress).toEqual([{ message: "sleeping 1000 ms", data: { durationMs: 1000 } }]);
      yield* TestClock.adjust("1 millis");
      expect(yield* Fiber.join(fiber)).toEqual({ sleptMs: 1000 });
    }),
  );

  it.effect("interruption stops the wait and runs the finalizer", () =>
    Effect.gen(function* () {
      const { ctx, logs } = recordingContext();
      const fiber = yield* Effect.fork(runOperation(demoSleep, { durationMs: 60_000 }, ctx));
      yield* TestClock.adjust("500 millis");
      yield* Fiber.interrupt(fiber);
      expect(logs).toEqual([{ message: "demo.sleep interrupted", fields: { durationMs: 60_000, elapsedMs: 500 } }]);
    }),
  );

  it("bounds durationMs to 0..3,600,000 whole milliseconds", () => {
    expect(issuesOf(demoSleep.input, { durationMs: 0 })).toEqual([]);
    expect(issuesOf(demoSleep.input, { durationMs: 3_600_001 })).toEqual(["durationMs"]);
    expect(issuesOf(demoSleep.input, { durationMs: -1 })).toEqual(["durationMs"]);
    expect(issuesOf(demoSleep.input, { durationMs: 1.5 })).toEqual(["durationMs"]);
  });
});

describe("demo.flaky", () => {
  const attempt = (input: unknown, n: number) => runOperation(demoFlaky, input, recordingContext(n).ctx);

  it.effect("UNAVAILABLE (default): attempts 1..failures fail retryably, the next succeeds", () =>
    Effect.gen(function* () {
      for (const n of [1, 2]) {
        const error = yield* Effect.flip(attempt({ failures: 2, key: "k" }, n));
        expect(error).toBeInstanceOf(OperationError);
        expect(classifyOperationError(error)).toEqual({
          detail: {
            type: "UNAVAILABLE",
            message: `demo.flaky "k" failed attempt ${n} of 2 planned failures`,
            retryable: true,
            details: { attempt: n, failures: 2, key: "k" },
          },
        });
      }
      expect(yield* attempt({ failures: 2, key: "k" }, 3)).toEqual({ attempt: 3, failures: 2, key: "k" });
      expect(yield* attempt({ failures: 0 }, 1)).toEqual({ attempt: 1, failures: 0 });
    }),
  );

  it.effect("INVALID fails without retry; custom types carry their retryable flag and retryAfterMs", () =>
    Effect.gen(function* () {
      const invalid = yield* Effect.flip(attempt({ failures: 1, errorType: "INVALID" }, 1));
      expect(invalid).toMatchObject({ type: "INVALID", retryable: false });
      expect(yield* attempt({ failures: 1, errorType: "INVALID" }, 2)).toEqual({ attempt: 2, failures: 1 });

      const custom = yield* Effect.flip(attempt({ failures: 3, errorType: "QUOTA_EXCEEDED", retryable: true, retryAfterMs: 2500 }, 3));
      expect(classifyOperationError(custom)).toMatchObject({ detail: { type: "QUOTA_EXCEEDED", retryable: true }, retryAfterMs: 2500 });
    }),
  );

  it("a custom errorType must say whether it is retryable", () => {
    expect(issuesOf(demoFlaky.input, { failures: 1, errorType: "QUOTA_EXCEEDED" })).toEqual(["retryable"]);
    expect(issuesOf(demoFlaky.input, { failures: 1, errorType: "not snake" })).toEqual(["errorType"]);
    expect(issuesOf(demoFlaky.input, { failures: -1 })).toEqual(["failures"]);
  });
});

describe("builtinOperations", () => {
  it("registers demo operations only when enabled", () => {
    const http = { allowlist: [] };
    expect(OperationRegistry.make(builtinOperations({ demo: false, http })).names()).toEqual(["http.request"]);
    expect(OperationRegistry.make(builtinOperations({ demo: true, http })).names()).toEqual([
      "demo.echo",
      "demo.flaky",
      "demo.sleep",
      "http.request",
    ]);
  });

  it("refuses an invalid allowlist entry at startup", () => {
    expect(() => builtinOperations({ demo: false, http: { allowlist: ["exa mple.com:99999"] } })).toThrow(/allowlist entry/);
    expect(() => builtinOperations({ demo: false, http: { allowlist: ["*.10.0.0.1"] } })).toThrow(/wildcard/);
  });
});
