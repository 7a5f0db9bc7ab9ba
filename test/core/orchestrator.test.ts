/**
 * The in-process API of the orchestrator core, under TestClock: success, retries, failures,
 * cancellation (during an attempt and during a backoff sleep), deadlines, idempotency,
 * validation, authorization before counting, and exact limits under concurrency.
 */
import { describe, expect, it } from "@effect/vitest";
import { Cause, Chunk, Effect, Exit, Fiber, Layer, Option, Queue, Ref, Stream, TestClock } from "effect";
import { Orchestrator, type ExecuteCommand } from "../../src/core/Orchestrator.js";
import type { ExecutionEvent, ExecutionEventKind } from "../../src/core/model.js";
import { AuditLogger } from "../../src/ports/AuditLogger.js";
import { ExecutionStore } from "../../src/ports/ExecutionStore.js";
import { RateLimiter } from "../../src/ports/RateLimiter.js";
import { admin, coreDeps, coreLayer, makeProbe, otherTenant, viewer, type Probe } from "../support/core.js";

const withCore = <A, E>(
  body: (probe: Probe) => Effect.Effect<A, E, Orchestrator | ExecutionStore | AuditLogger | RateLimiter>,
  settings: Parameters<typeof coreLayer>[1] = {},
) =>
  Effect.gen(function* () {
    const probe = yield* makeProbe;
    return yield* body(probe).pipe(Effect.provide(coreLayer(probe, settings)));
  });

/** Follows an execution's events into a queue; `until(tag)` takes events up to that kind. */
const follow = (cmd: ExecuteCommand) =>
  Effect.gen(function* () {
    const o = yield* Orchestrator;
    const q = yield* Queue.unbounded<ExecutionEvent>();
    const fiber = yield* Stream.runForEach(o.executeStream(cmd), (e) => Queue.offer(q, e)).pipe(Effect.fork);
    const seen: ExecutionEvent[] = [];
    const until = (tag: ExecutionEventKind["_tag"]) =>
      Effect.gen(function* () {
        for (;;) {
          const e = yield* Queue.take(q);
          seen.push(e);
          if (e.kind._tag === tag) return e;
        }
      });
    return { until, seen, fiber };
  });

const kinds = (events: ReadonlyArray<ExecutionEvent>) => events.map((e) => e.kind._tag);

describe("Orchestrator.execute", () => {
  it.effect("runs an operation and returns its result, stored and audited", () =>
    withCore(() =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const result = yield* o.execute("demo.echo", { message: "hello" }, { principal: admin });
        expect(result).toEqual({ echo: { message: "hello" } });

        const store = yield* ExecutionStore;
        const page = yield* store.list({}, "CREATE_TIME_DESCENDING", 10, undefined);
        expect(page.items).toHaveLength(1);
        const r = page.items[0]!;
        expect(r).toMatchObject({ state: "SUCCEEDED", operation: "demo.echo", result: { echo: { message: "hello" } } });
        expect(r.tokenUsage).toEqual({ inputTokens: 2, outputTokens: 2, totalTokens: 4 });
        expect(r.attempts).toHaveLength(1);

        const audit = yield* AuditLogger;
        const types = (yield* audit.read(0, 100)).map((e) => e.type);
        expect(types).toEqual([
          "AUTH_SUCCEEDED",
          "POLICY_EVALUATED",
          "EXECUTION_ACCEPTED",
          "EXECUTION_ATTEMPT_STARTED",
          "EXECUTION_SUCCEEDED",
        ]);
      }),
    ),
  );

  it.effect("retries retryable failures after exactly the policy's delays, then succeeds", () =>
    withCore(() =>
      Effect.gen(function* () {
        const f = yield* follow({
          operation: "demo.flaky",
          input: { failures: 2 },
          principal: admin,
          retry: { initialIntervalMs: 1000, backoffCoefficient: 3, jitter: 0, maximumAttempts: 5 },
        });
        const first = yield* f.until("AttemptFailed");
        expect(first.kind).toMatchObject({ attempt: 1, willRetry: true, retryDelayMs: 1000 });
        yield* TestClock.adjust("1 second");
        const second = yield* f.until("AttemptFailed");
        expect(second.kind).toMatchObject({ attempt: 2, willRetry: true, retryDelayMs: 3000 });
        yield* TestClock.adjust("3 seconds");
        const done = yield* f.until("Succeeded");
        expect(done.kind).toMatchObject({ attempts: 3, result: { attempt: 3, failures: 2 } });
        expect(kinds(f.seen)).toEqual([
          "Accepted",
          "AttemptStarted",
          "AttemptFailed",
          "AttemptStarted",
          "AttemptFailed",
          "AttemptStarted",
          "Succeeded",
        ]);
      }),
    ),
  );

  it.effect("does not start the next attempt before its delay has passed", () =>
    withCore(() =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const fiber = yield* o
          .execute("demo.flaky", { failures: 1 }, { principal: admin, retry: { initialIntervalMs: 5000, jitter: 0 } })
          .pipe(Effect.fork);
        yield* TestClock.adjust("4999 millis");
        expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true);
        yield* TestClock.adjust("1 millis");
        expect(yield* Fiber.join(fiber)).toEqual({ attempt: 2, failures: 1 });
      }),
    ),
  );

  it.effect("stops at once on a non-retryable failure, keeping the operation's own error", () =>
    withCore(() =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const e = yield* o.execute("demo.flaky", { failures: 3, errorType: "INVALID" }, { principal: admin }).pipe(Effect.flip);
        expect(e._tag).toBe("AttemptFailed");
        if (e._tag !== "AttemptFailed") return;
        expect(e.attempt).toBe(1);
        expect(e.error).toMatchObject({ type: "INVALID", retryable: false });
        expect(e.cause).toMatchObject({ _tag: "OperationError", type: "INVALID" });
      }),
    ),
  );

  it.effect("non_retryable_error_types stops retries of an otherwise retryable type", () =>
    withCore(() =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const e = yield* o
          .execute("demo.flaky", { failures: 3 }, { principal: admin, retry: { nonRetryableErrorTypes: ["UNAVAILABLE"] } })
          .pipe(Effect.flip);
        expect(e).toMatchObject({ _tag: "AttemptFailed", attempt: 1 });
      }),
    ),
  );

  it.effect("gives up after maximum_attempts with RetriesExhausted", () =>
    withCore(() =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const fiber = yield* o
          .execute("demo.flaky", { failures: 10 }, { principal: admin, retry: { maximumAttempts: 3, initialIntervalMs: 100, jitter: 0 } })
          .pipe(Effect.flip, Effect.fork);
        yield* TestClock.adjust("1 minute");
        const e = yield* Fiber.join(fiber);
        expect(e).toMatchObject({ _tag: "RetriesExhausted", attempts: 3, lastError: { type: "UNAVAILABLE" } });
      }),
    ),
  );

  it.effect("maximum_attempts 1 means no retry", () =>
    withCore(() =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const e = yield* o.execute("demo.flaky", { failures: 1 }, { principal: admin, retry: { maximumAttempts: 1 } }).pipe(Effect.flip);
        expect(e).toMatchObject({ _tag: "RetriesExhausted", attempts: 1 });
      }),
    ),
  );

  it.effect("maximum_attempts 0 means unlimited", () =>
    withCore(() =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const fiber = yield* o
          .execute("demo.flaky", { failures: 30 }, { principal: admin, retry: { maximumAttempts: 0, initialIntervalMs: 10, maximumIntervalMs: 10, jitter: 0 } })
          .pipe(Effect.fork);
        yield* TestClock.adjust("1 second");
        expect(yield* Fiber.join(fiber)).toEqual({ attempt: 31, failures: 30 });
      }),
    ),
  );

  it.effect("honours a Retry-After longer than the policy's delay", () =>
    withCore(() =>
      Effect.gen(function* () {
        const f = yield* follow({ operation: "demo.flaky", input: { failures: 1, retryAfterMs: 7000 }, principal: admin, retry: { initialIntervalMs: 1000, jitter: 0 } });
        const failed = yield* f.until("AttemptFailed");
        expect(failed.kind).toMatchObject({ retryDelayMs: 7000 });
        yield* TestClock.adjust("7 seconds");
        yield* f.until("Succeeded");
      }),
    ),
  );

  it.effect("max_retry_duration bounds the whole retry budget", () =>
    withCore(() =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const fiber = yield* o
          .execute("demo.flaky", { failures: 10 }, { principal: admin, retry: { initialIntervalMs: 1000, backoffCoefficient: 2, jitter: 0, maxRetryDurationMs: 5000, maximumAttempts: 0 } })
          .pipe(Effect.flip, Effect.fork);
        yield* TestClock.adjust("1 minute");
        // Delays 1 s and 2 s fit in 5 s; the next (4 s, ending at 7 s) does not.
        expect(yield* Fiber.join(fiber)).toMatchObject({ _tag: "RetriesExhausted", attempts: 3 });
      }),
    ),
  );

  it.effect("a thrown exception is an INTERNAL failure that leaks nothing", () =>
    withCore(() =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const e = yield* o.execute("test.crash", {}, { principal: admin }).pipe(Effect.flip);
        expect(e).toMatchObject({ _tag: "AttemptFailed", error: { type: "INTERNAL", retryable: false } });
        if (e._tag === "AttemptFailed") expect(e.error.message).not.toContain("secret");
      }),
    ),
  );
});

describe("cancellation and deadlines", () => {
  it.effect("cancel during an attempt interrupts it, runs its finalizers, ends CANCELLED and audits it", () =>
    withCore((probe) =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const f = yield* follow({ operation: "test.block", input: { tag: "x" }, principal: admin });
        const accepted = yield* f.until("AttemptStarted");
        const record = yield* o.cancel(admin, accepted.executionId, "operator said stop");
        expect(record).toMatchObject({ state: "CANCELLED", cancelReason: "operator said stop" });
        const cancelled = { type: "CANCELLED", message: "operator said stop", retryable: false };
        expect(record.error).toStrictEqual(cancelled);
        expect(record.attempts.at(-1)?.error).toStrictEqual(cancelled);
        expect(yield* Ref.get(probe.finalized)).toEqual([`${accepted.executionId}#1:x`]);
        const ended = yield* f.until("Cancelled");
        expect(ended.kind).toMatchObject({ reason: "operator said stop", attempts: 1 });
        const audit = yield* AuditLogger;
        expect((yield* audit.read(0, 100)).map((e) => e.type)).toContain("EXECUTION_CANCELLED");
        // Cancelling again succeeds and changes nothing (the contract's word).
        expect(yield* o.cancel(admin, accepted.executionId, "another reason")).toStrictEqual(record);
      }),
    ),
  );

  it.effect("cancel during a backoff sleep ends it at once and no further attempt starts", () =>
    withCore(() =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const f = yield* follow({ operation: "demo.flaky", input: { failures: 5 }, principal: admin, retry: { initialIntervalMs: 60_000, jitter: 0 } });
        const failed = yield* f.until("AttemptFailed");
        const store = yield* ExecutionStore;
        expect(Option.getOrThrow(yield* store.get(failed.executionId)).state).toBe("BACKING_OFF");
        const record = yield* o.cancel(admin, failed.executionId, "enough");
        expect(record.state).toBe("CANCELLED");
        expect(record.attempts).toHaveLength(1);
        yield* TestClock.adjust("10 minutes");
        expect(Option.getOrThrow(yield* store.get(failed.executionId)).attempts).toHaveLength(1);
      }),
    ),
  );

  it.effect("interrupting the in-process caller cancels the execution", () =>
    withCore((probe) =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const fiber = yield* o.execute("test.block", {}, { principal: admin }).pipe(Effect.fork);
        yield* TestClock.adjust("1 millis");
        expect(yield* Ref.get(probe.runs)).toBe(1);
        yield* Fiber.interrupt(fiber);
        const store = yield* ExecutionStore;
        const [r] = (yield* store.list({}, "CREATE_TIME_DESCENDING", 10, undefined)).items;
        expect(r).toMatchObject({ state: "CANCELLED", cancelReason: "the caller was interrupted" });
        expect(yield* Ref.get(probe.finalized)).toHaveLength(1);
      }),
    ),
  );

  it.effect("an aborted AbortSignal cancels the execution", () =>
    withCore(() =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const controller = new AbortController();
        const fiber = yield* o.execute("test.block", {}, { principal: admin, signal: controller.signal }).pipe(Effect.flip, Effect.fork);
        yield* TestClock.adjust("1 millis");
        controller.abort();
        expect(yield* Fiber.join(fiber)).toMatchObject({ _tag: "Cancelled", reason: "aborted by the caller's signal" });
      }),
    ),
  );

  it.effect("stopping the event stream early cancels; a detached stream ends after Accepted and the run goes on", () =>
    withCore((probe) =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const firstTwo = yield* Stream.runCollect(o.executeStream({ operation: "test.block", input: {}, principal: admin }).pipe(Stream.take(2)));
        const id = Chunk.unsafeHead(firstTwo).executionId;
        const store = yield* ExecutionStore;
        expect(Option.getOrThrow(yield* store.get(id)).state).toBe("CANCELLED");

        const detached = yield* Stream.runCollect(o.executeStream({ operation: "demo.sleep", input: { durationMs: 1000 }, principal: admin }, { detach: true }));
        expect(Chunk.toReadonlyArray(detached).map((e) => e.kind._tag)).toEqual(["Accepted"]);
        const detachedId = Chunk.unsafeHead(detached).executionId;
        yield* TestClock.adjust("1 second");
        expect(Option.getOrThrow(yield* store.get(detachedId))).toMatchObject({ state: "SUCCEEDED", result: { sleptMs: 1000 } });
        expect(yield* Ref.get(probe.finalized)).toHaveLength(1);
      }),
    ),
  );

  it.effect("the execution timeout ends it TIMED_OUT with DeadlineExceeded", () =>
    withCore(() =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const fiber = yield* o.execute("demo.sleep", { durationMs: 60_000 }, { principal: admin, timeout: "5 seconds" }).pipe(Effect.flip, Effect.fork);
        yield* TestClock.adjust("5 seconds");
        expect(yield* Fiber.join(fiber)).toMatchObject({ _tag: "DeadlineExceeded", timeoutMs: 5000 });
        const store = yield* ExecutionStore;
        const [r] = (yield* store.list({}, "CREATE_TIME_DESCENDING", 10, undefined)).items;
        expect(r).toMatchObject({ state: "TIMED_OUT", error: { type: "TIMEOUT" } });
      }),
    ),
  );

  it.effect("attempt_timeout fails one attempt (retryable TIMEOUT), separately from the overall timeout", () =>
    withCore(() =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const fiber = yield* o
          .execute("demo.sleep", { durationMs: 10_000 }, { principal: admin, attemptTimeout: "1 second", retry: { maximumAttempts: 2, initialIntervalMs: 500, jitter: 0 } })
          .pipe(Effect.flip, Effect.fork);
        yield* TestClock.adjust("1 second");
        yield* TestClock.adjust("500 millis");
        yield* TestClock.adjust("1 second");
        expect(yield* Fiber.join(fiber)).toMatchObject({ _tag: "RetriesExhausted", attempts: 2, lastError: { type: "TIMEOUT", retryable: true } });
      }),
    ),
  );
});

describe("refusals", () => {
  it.effect("an unknown operation is OperationNotFound", () =>
    withCore(() =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        expect(yield* o.execute("no.such", {}, { principal: admin }).pipe(Effect.flip)).toMatchObject({ _tag: "OperationNotFound", operation: "no.such" });
      }),
    ),
  );

  it.effect("invalid input is InvalidInput naming the field", () =>
    withCore(() =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const e = yield* o.execute("demo.echo", { message: 5 }, { principal: admin }).pipe(Effect.flip);
        expect(e._tag).toBe("InvalidInput");
        if (e._tag === "InvalidInput") expect(e.violations.map((v) => v.field)).toEqual(["input.message"]);
        const bad = yield* o.execute("demo.echo", { message: "x" }, { principal: admin, retry: { backoffCoefficient: 0.5, jitter: 2 }, labels: { "Bad Key": "v" } }).pipe(Effect.flip);
        if (bad._tag !== "InvalidInput") throw new Error(`expected InvalidInput, got ${bad._tag}`);
        expect(bad.violations.map((v) => v.field).sort()).toEqual(['labels["Bad Key"]', "retry_policy.backoff_coefficient", "retry_policy.jitter"]);
        // Schedules' runs' request ids (their slots' fence) are not the caller's to use.
        const reserved = yield* o.execute("demo.echo", { message: "x" }, { principal: admin, idempotencyKey: "sch:nightly:cron:1000" }).pipe(Effect.flip);
        expect(reserved).toMatchObject({ _tag: "InvalidInput", violations: [{ field: "request_id", description: expect.stringContaining("reserved") }] });
      }),
    ),
  );

  it.effect("permission denied happens before anything is counted", () =>
    withCore(
      (probe) =>
        Effect.gen(function* () {
          const o = yield* Orchestrator;
          const e = yield* o.execute("test.count", { n: 1 }, { principal: viewer }).pipe(Effect.flip);
          expect(e).toMatchObject({ _tag: "PermissionDenied", permission: "execute:test.count", subject: "vera" });
          expect(yield* Ref.get(probe.runs)).toBe(0);
          const limiter = yield* RateLimiter;
          expect(yield* limiter.size).toBe(0);
          const audit = yield* AuditLogger;
          const events = yield* audit.read(0, 100);
          expect(events.map((x) => x.type)).toEqual(["AUTH_DENIED"]);
          expect(events[0]).toMatchObject({ decision: "DENY", principal: viewer });
        }),
      { operationRateLimit: { limit: 10, windowMs: 60_000 } },
    ),
  );

  it.effect("200 concurrent executions against a limit of 10 per window: exactly 10 run", () =>
    withCore(
      (probe) =>
        Effect.gen(function* () {
          const o = yield* Orchestrator;
          const exits = yield* Effect.all(
            Array.from({ length: 200 }, (_, i) => o.execute("test.count", { n: i }, { principal: admin }).pipe(Effect.exit)),
            { concurrency: "unbounded" },
          );
          const ok = exits.filter(Exit.isSuccess);
          const limited = exits.filter(
            (e) => Exit.isFailure(e) && Option.getOrUndefined(Cause.failureOption(e.cause))?._tag === "RateLimited",
          );
          expect(ok).toHaveLength(10);
          expect(limited).toHaveLength(190);
          expect(yield* Ref.get(probe.runs)).toBe(10);
          // Another principal's key is untouched.
          expect(yield* o.execute("test.count", { n: 0 }, { principal: { ...admin, subject: "bob" } })).toMatchObject({ n: 0 });
        }),
      { operationRateLimit: { limit: 10, windowMs: 60_000 } },
    ),
  );

  it.effect("RateLimited says when to retry", () =>
    withCore(
      () =>
        Effect.gen(function* () {
          const o = yield* Orchestrator;
          yield* o.execute("test.count", { n: 1 }, { principal: admin });
          const e = yield* o.execute("test.count", { n: 2 }, { principal: admin }).pipe(Effect.flip);
          expect(e).toMatchObject({ _tag: "RateLimited", limit: 1, remaining: 0, retryAfterMs: 60_000 });
          yield* TestClock.adjust("60 seconds");
          expect(yield* o.execute("test.count", { n: 3 }, { principal: admin })).toMatchObject({ n: 3 });
        }),
      { operationRateLimit: { limit: 1, windowMs: 60_000 } },
    ),
  );
});

describe("idempotency", () => {
  it.effect("the same principal and request id attaches to the existing execution instead of running twice", () =>
    withCore((probe) =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const a = yield* o.execute("test.count", { n: 7 }, { principal: admin, idempotencyKey: "req-1" });
        const b = yield* o.execute("test.count", { n: 7 }, { principal: admin, idempotencyKey: "req-1" });
        expect(a).toEqual(b);
        expect(yield* Ref.get(probe.runs)).toBe(1);

        const replay = yield* Stream.runCollect(o.executeStream({ operation: "test.count", input: { n: 7 }, principal: admin, requestId: "req-1" }));
        const events = Chunk.toReadonlyArray(replay);
        expect(events.map((e) => e.kind._tag)).toEqual(["Accepted", "Succeeded"]);
        expect(events[0]!.kind).toMatchObject({ deduplicated: true });

        // Another principal's identical request id is its own execution.
        yield* o.execute("test.count", { n: 7 }, { principal: { ...admin, subject: "bob" }, idempotencyKey: "req-1" });
        expect(yield* Ref.get(probe.runs)).toBe(2);

        const reused = yield* o.execute("test.count", { n: 8 }, { principal: admin, idempotencyKey: "req-1" }).pipe(Effect.flip);
        expect(reused).toMatchObject({ _tag: "RequestIdReused", requestId: "req-1" });
      }),
    ),
  );

  it.effect("a retried request attaches to a running execution and sees its live events", () =>
    withCore((probe) =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const cmd: ExecuteCommand = { operation: "demo.sleep", input: { durationMs: 1000 }, principal: admin, requestId: "r" };
        const first = yield* o.executeStream(cmd, { detach: true }).pipe(Stream.runCollect);
        const second = yield* o.executeStream(cmd).pipe(Stream.runCollect, Effect.fork);
        yield* TestClock.adjust("1 second");
        const events = Chunk.toReadonlyArray(yield* Fiber.join(second));
        expect(events[0]!.executionId).toBe(Chunk.unsafeHead(first).executionId);
        expect(events[0]!.kind).toMatchObject({ _tag: "Accepted", deduplicated: true });
        expect(events.at(-1)!.kind._tag).toBe("Succeeded");
        expect(yield* Ref.get(probe.runs)).toBe(0);
      }),
    ),
  );
});

describe("reads", () => {
  it.effect("get and list are scoped to the caller's tenant; list pages with opaque tokens bound to the filter", () =>
    withCore(() =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        for (let i = 0; i < 5; i++) {
          yield* o.execute("demo.echo", { message: `m${i}` }, { principal: admin, labels: { env: i % 2 === 0 ? "prod" : "dev" } });
          yield* TestClock.adjust("1 millis");
        }
        const other = yield* o.executeStream({ operation: "demo.echo", input: { message: "theirs" }, principal: otherTenant }).pipe(Stream.runCollect);
        const otherId = Chunk.unsafeHead(other).executionId;
        expect(yield* o.get(admin, otherId).pipe(Effect.flip)).toMatchObject({ _tag: "ExecutionNotFound" });

        const p1 = yield* o.list(viewer, { filter: {}, pageSize: 2 });
        expect(p1.executions.map((e) => e.input["message"])).toEqual(["m4", "m3"]);
        const p2 = yield* o.list(viewer, { filter: {}, pageSize: 2, pageToken: p1.nextPageToken });
        const p3 = yield* o.list(viewer, { filter: {}, pageSize: 2, pageToken: p2.nextPageToken });
        expect([...p2.executions, ...p3.executions].map((e) => e.input["message"])).toEqual(["m2", "m1", "m0"]);
        expect(p3.nextPageToken).toBe("");

        const prod = yield* o.list(viewer, { filter: { labels: { env: "prod" } }, order: "CREATE_TIME_ASCENDING" });
        expect(prod.executions.map((e) => e.input["message"])).toEqual(["m0", "m2", "m4"]);

        const misuse = yield* o.list(viewer, { filter: { operation: "demo.echo" }, pageSize: 2, pageToken: p1.nextPageToken }).pipe(Effect.flip);
        expect(misuse).toMatchObject({ _tag: "InvalidInput", violations: [{ field: "page_token" }] });
        const garbage = yield* o.list(viewer, { filter: {}, pageToken: "%%%" }).pipe(Effect.flip);
        expect(garbage).toMatchObject({ _tag: "InvalidInput" });
        const negative = yield* o.list(viewer, { filter: {}, pageSize: -1 }).pipe(Effect.flip);
        expect(negative).toMatchObject({ _tag: "InvalidInput", violations: [{ field: "page_size" }] });
      }),
    ),
  );
});

describe("retention", () => {
  it.effect("ended executions are pruned in the background once older than the retention period", () =>
    withCore(
      () =>
        Effect.gen(function* () {
          const o = yield* Orchestrator;
          const store = yield* ExecutionStore;
          const done = yield* o.executeStream({ operation: "demo.echo", input: { message: "old" }, principal: admin }).pipe(Stream.runCollect);
          const id = Chunk.unsafeHead(done).executionId;
          const running = yield* o.executeStream({ operation: "test.block", input: {}, principal: admin, timeoutMs: 86_400_000 }, { detach: true }).pipe(Stream.runCollect);
          const runningId = Chunk.unsafeHead(running).executionId;
          yield* TestClock.adjust("60 minutes");
          expect(Option.isSome(yield* store.get(id))).toBe(true);
          yield* TestClock.adjust("10 minutes");
          expect(Option.isNone(yield* store.get(id))).toBe(true);
          // Only ended executions are pruned.
          expect(Option.isSome(yield* store.get(runningId))).toBe(true);
          expect(o.running()).toBe(1);
        }),
      { retentionMs: 3_600_000, pruneIntervalMs: 600_000 },
    ),
  );
});

describe("restart recovery", () => {
  it.effect("executions left running by a previous process are marked INTERRUPTED and audited at start", () =>
    Effect.gen(function* () {
      const probe = yield* makeProbe;
      const store = yield* ExecutionStore;
      const audit = yield* AuditLogger;
      yield* store.insert({
        executionId: "left-running",
        operation: "demo.sleep",
        input: { durationMs: 1 },
        state: "RUNNING",
        principal: admin,
        labels: {},
        attempts: [{ number: 1, startTime: 0 }],
        createTime: 0,
        startTime: 0,
        retryPolicy: { initialIntervalMs: 1, backoffCoefficient: 2, maximumIntervalMs: 1, maximumAttempts: 1, nonRetryableErrorTypes: [], jitter: 0, maxRetryDurationMs: 0 },
        timeoutMs: 1000,
      });
      // A new Orchestrator (a new process) over the same store.
      const layer = Orchestrator.Default.pipe(
        Layer.provide(Layer.mergeAll(coreDeps(probe), Layer.succeed(ExecutionStore, store), Layer.succeed(AuditLogger, audit))),
      );
      yield* Effect.scoped(Layer.build(layer));
      const r = Option.getOrThrow(yield* store.get("left-running"));
      expect(r).toMatchObject({ state: "INTERRUPTED", error: { type: "INTERRUPTED" } });
      expect(r.attempts[0]?.endTime).toBeDefined();
      expect((yield* audit.read(0, 10)).map((e) => e.type)).toContain("EXECUTION_INTERRUPTED");
    }).pipe(Effect.provide(coreLayer({ runs: Ref.unsafeMake(0), finalized: Ref.unsafeMake<ReadonlyArray<string>>([]) }))),
  );
});
