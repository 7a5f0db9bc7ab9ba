/**
 * The core's telemetry without any server: its Effect metrics (executions, attempts, in-flight,
 * policy denials, rate-limit decisions) and the execution's trace id (the caller's span's, or a
 * trace of its own), under TestClock.
 */
import { describe, expect, it } from "@effect/vitest";
import { Effect, Fiber, Layer, Metric, MetricLabel, Option, TestClock, Tracer } from "effect";
import { Orchestrator } from "../../src/core/Orchestrator.js";
import * as CoreMetrics from "../../src/core/metrics.js";
import { PolicyDenied } from "../../src/core/errors.js";
import { PolicyService } from "../../src/ports/PolicyService.js";
import { ExecutionStore } from "../../src/ports/ExecutionStore.js";
import { admin, coreDeps, makeProbe } from "../support/core.js";

const denyAll = Layer.succeed(
  PolicyService,
  PolicyService.of({ check: () => Effect.fail(new PolicyDenied({ rule: "no-flaky", reason: "not today" })), usage: () => Effect.void, record: () => Effect.void }),
);

/** The Orchestrator over in-memory ports (with an operation rate limit), `policy` replacing allow-all. */
const withCore = <A, E>(
  body: Effect.Effect<A, E, Orchestrator | ExecutionStore>,
  options: { readonly limit?: number; readonly policy?: Layer.Layer<PolicyService> } = {},
) =>
  Effect.gen(function* () {
    const probe = yield* makeProbe;
    const deps = Layer.merge(coreDeps(probe, { operationRateLimit: { limit: options.limit ?? 100, windowMs: 60_000 } }), options.policy ?? Layer.empty);
    return yield* body.pipe(Effect.provide(Layer.merge(Orchestrator.Default.pipe(Layer.provide(deps)), deps)));
  });

// Effect's metric registry is process-wide: compare before and after.
const count = (metric: Metric.Metric.Counter<number>, labels: Record<string, string>) =>
  Metric.value(Metric.taggedWithLabels(metric, Object.entries(labels).map(([k, v]) => MetricLabel.make(k, v)))).pipe(Effect.map((s) => s.count));

describe("core metrics", () => {
  it.effect("an execution with one retry: executions by outcome, attempts by outcome, in flight while it runs, the rate-limit decision", () =>
    withCore(
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const before = {
          succeeded: yield* count(CoreMetrics.executions, { operation: "demo.flaky", outcome: "SUCCEEDED" }),
          failedAttempts: yield* count(CoreMetrics.attempts, { operation: "demo.flaky", outcome: "failed" }),
          okAttempts: yield* count(CoreMetrics.attempts, { operation: "demo.flaky", outcome: "succeeded" }),
          allowed: yield* count(CoreMetrics.rateLimitDecisions, { limit: "execution", decision: "allow" }),
          inFlight: yield* count(CoreMetrics.executionsInFlight, {}),
        };
        const fiber = yield* o
          .execute("demo.flaky", { failures: 1 }, { principal: admin, retry: { initialIntervalMs: 1_000 } })
          .pipe(Effect.fork);
        yield* TestClock.adjust("10 millis");
        // Backing off between its attempts: it is in flight.
        expect(yield* count(CoreMetrics.executionsInFlight, {})).toBe(before.inFlight + 1);
        yield* TestClock.adjust("1 second");
        yield* Fiber.join(fiber);

        expect(yield* count(CoreMetrics.executions, { operation: "demo.flaky", outcome: "SUCCEEDED" })).toBe(before.succeeded + 1);
        expect(yield* count(CoreMetrics.attempts, { operation: "demo.flaky", outcome: "failed" })).toBe(before.failedAttempts + 1);
        expect(yield* count(CoreMetrics.attempts, { operation: "demo.flaky", outcome: "succeeded" })).toBe(before.okAttempts + 1);
        expect(yield* count(CoreMetrics.rateLimitDecisions, { limit: "execution", decision: "allow" })).toBe(before.allowed + 1);
        expect(yield* count(CoreMetrics.executionsInFlight, {})).toBe(before.inFlight);
      }),
    ),
  );

  it.effect("a policy denial is counted by operation and rule, and nothing else runs", () =>
    withCore(
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const denials = yield* count(CoreMetrics.policyDenials, { operation: "demo.echo", rule: "no-flaky" });
        const decisions = yield* count(CoreMetrics.rateLimitDecisions, { limit: "execution", decision: "allow" });
        const error = yield* Effect.flip(o.execute("demo.echo", { message: "x" }, { principal: admin }));
        expect(error._tag).toBe("PolicyDenied");
        expect(yield* count(CoreMetrics.policyDenials, { operation: "demo.echo", rule: "no-flaky" })).toBe(denials + 1);
        // Refused before the rate limit: nothing was counted against it.
        expect(yield* count(CoreMetrics.rateLimitDecisions, { limit: "execution", decision: "allow" })).toBe(decisions);
      }),
      { policy: denyAll },
    ),
  );

  it.effect("a refused rate limit is counted as deny", () =>
    withCore(
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const denied = yield* count(CoreMetrics.rateLimitDecisions, { limit: "execution", decision: "deny" });
        yield* o.execute("demo.echo", { message: "1" }, { principal: admin });
        const error = yield* Effect.flip(o.execute("demo.echo", { message: "2" }, { principal: admin }));
        expect(error._tag).toBe("RateLimited");
        expect(yield* count(CoreMetrics.rateLimitDecisions, { limit: "execution", decision: "deny" })).toBe(denied + 1);
      }),
      { limit: 1 },
    ),
  );
});

describe("the execution's trace id", () => {
  const latest = Effect.gen(function* () {
    const store = yield* ExecutionStore;
    const page = yield* store.list({}, "CREATE_TIME_DESCENDING", 1, undefined);
    return page.items[0]!;
  });

  it.effect("is the caller's trace when the caller has a span", () =>
    withCore(
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const parent = Tracer.externalSpan({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7" });
        yield* o.execute("demo.echo", { message: "x" }, { principal: admin }).pipe(Effect.withParentSpan(parent));
        expect((yield* latest).traceId).toBe("4bf92f3577b34da6a3ce929d0e0e4736");
      }),
    ),
  );

  it.effect("is a trace of its own for an in-process caller without a span", () =>
    withCore(
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        expect(Option.isNone(yield* Effect.option(Effect.currentSpan))).toBe(true);
        yield* o.execute("demo.echo", { message: "y" }, { principal: admin });
        yield* o.execute("demo.echo", { message: "z" }, { principal: admin });
        const store = yield* ExecutionStore;
        const traceIds = (yield* store.list({}, "CREATE_TIME_DESCENDING", 10, undefined)).items.map((r) => r.traceId);
        expect(traceIds).toHaveLength(2);
        for (const t of traceIds) expect(t).toMatch(/^[0-9a-f]{32}$/);
        expect(new Set(traceIds).size).toBe(2);
      }),
    ),
  );
});
