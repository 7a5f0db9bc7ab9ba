/**
 * Retry policy: Temporal's RetryPolicy meanings, computed by an Effect Schedule.
 *
 * Delays: initial × coefficient^(n−1), each capped at maximum_interval (a per-delay cap, not a
 * bound on total time), then jittered downwards: drawn uniformly from [d × (1 − jitter), d]
 * with the Random service (seedable in tests). Jitter only ever shortens a delay, so the cap
 * holds after jitter too. maximum_attempts counts attempts (0 = unlimited, 1 = no retry);
 * max_retry_duration bounds the time from the first attempt's start to the start of the next
 * attempt (0 = none).
 *
 * The core steps the schedule itself (rather than Effect.retry) because it must announce each
 * delay (ATTEMPT_FAILED with retry_delay) before sleeping it, and because a server's
 * Retry-After may lengthen a delay.
 */
import { Duration, Effect, Option, Schedule, ScheduleDecision } from "effect";
import type { FieldViolation } from "./errors.js";
import type { RetryPolicy, RetryPolicyInput } from "./model.js";

/** The server's defaults, under the operation's and the request's. */
export const serverRetryDefaults: RetryPolicy = {
  initialIntervalMs: 1_000,
  backoffCoefficient: 2,
  maximumIntervalMs: 100_000,
  maximumAttempts: 5,
  nonRetryableErrorTypes: [],
  jitter: 0.2,
  maxRetryDurationMs: 0,
};

/**
 * Request over operation over server. An unset maximum_interval is 100 × the resolved initial
 * interval unless a lower level set it explicitly.
 */
export function resolveRetryPolicy(
  request: RetryPolicyInput | undefined,
  operation: RetryPolicyInput | undefined,
  server: RetryPolicy = serverRetryDefaults,
): RetryPolicy {
  const pick = <K extends keyof RetryPolicy>(k: K): RetryPolicy[K] | undefined => request?.[k] ?? operation?.[k];
  const initialIntervalMs = pick("initialIntervalMs") ?? server.initialIntervalMs;
  return {
    initialIntervalMs,
    backoffCoefficient: pick("backoffCoefficient") ?? server.backoffCoefficient,
    maximumIntervalMs: pick("maximumIntervalMs") ?? 100 * initialIntervalMs,
    maximumAttempts: pick("maximumAttempts") ?? server.maximumAttempts,
    nonRetryableErrorTypes: [
      ...new Set([...(operation?.nonRetryableErrorTypes ?? []), ...(request?.nonRetryableErrorTypes ?? [])]),
    ],
    jitter: pick("jitter") ?? server.jitter,
    maxRetryDurationMs: pick("maxRetryDurationMs") ?? server.maxRetryDurationMs,
  };
}

const hour = 3_600_000;
const day = 24 * hour;

/** Field violations of a requested policy (limits as the v1 contract states them), named under `prefix`. */
export function validateRetryPolicy(p: RetryPolicyInput | undefined, prefix = "retry_policy"): FieldViolation[] {
  if (p === undefined) return [];
  const out: FieldViolation[] = [];
  const bad = (field: string, description: string) => out.push({ field: `${prefix}.${field}`, description });
  const span = (field: string, v: number | undefined, max: number, maxText: string) => {
    if (v === undefined) return;
    if (!Number.isFinite(v) || v < 0) bad(field, "must not be negative");
    else if (v > max) bad(field, `must be at most ${maxText}`);
  };
  span("initial_interval", p.initialIntervalMs, day, "24 hours");
  span("maximum_interval", p.maximumIntervalMs, day, "24 hours");
  span("max_retry_duration", p.maxRetryDurationMs, 7 * day, "7 days");
  if ((p.nonRetryableErrorTypes?.length ?? 0) > 64) bad("non_retryable_error_types", "at most 64 entries");
  if (p.initialIntervalMs !== undefined && p.initialIntervalMs > 0 && p.initialIntervalMs < 1) bad("initial_interval", "must be at least 1ms");
  if (p.backoffCoefficient !== undefined && !(p.backoffCoefficient >= 1 && p.backoffCoefficient <= 100)) {
    bad("backoff_coefficient", "must be between 1 and 100");
  }
  if (p.maximumAttempts !== undefined && !(Number.isInteger(p.maximumAttempts) && p.maximumAttempts >= 0)) {
    bad("maximum_attempts", "must be a whole number ≥ 0 (0 = unlimited, 1 = no retry)");
  }
  if (p.jitter !== undefined && !(p.jitter >= 0 && p.jitter <= 1)) bad("jitter", "must be between 0 and 1");
  if (
    p.maximumIntervalMs !== undefined &&
    p.initialIntervalMs !== undefined &&
    p.maximumIntervalMs > 0 &&
    p.maximumIntervalMs < p.initialIntervalMs
  ) {
    bad("maximum_interval", "must not be less than initial_interval");
  }
  (p.nonRetryableErrorTypes ?? []).forEach((t, i) => {
    if (t.length === 0 || t.length > 128) bad(`non_retryable_error_types[${i}]`, "must be 1 to 128 characters");
  });
  return out;
}

/** The delays between attempts, as a Schedule whose output is each (capped, jittered) delay. */
export function retrySchedule(policy: RetryPolicy): Schedule.Schedule<Duration.Duration> {
  const base = Schedule.exponential(Duration.millis(policy.initialIntervalMs), policy.backoffCoefficient).pipe(
    Schedule.modifyDelay((d) => Duration.min(d, Duration.millis(policy.maximumIntervalMs))),
  );
  const jittered =
    policy.jitter > 0 ? base.pipe(Schedule.jitteredWith({ min: 1 - policy.jitter, max: 1 })) : base;
  if (policy.maximumAttempts === 0) return Schedule.delays(jittered);
  return Schedule.delays(jittered.pipe(Schedule.intersect(Schedule.recurs(policy.maximumAttempts - 1))));
}

/**
 * Steps a policy's schedule one failure at a time: `next(now)` answers the delay before the
 * next attempt, or None when the policy is exhausted.
 */
export interface RetryStepper {
  readonly next: (now: number) => Effect.Effect<Option.Option<number>>;
}

export const makeRetryStepper = (policy: RetryPolicy): RetryStepper => {
  const schedule = retrySchedule(policy);
  let state: unknown = schedule.initial;
  return {
    next: (now) =>
      schedule.step(now, undefined, state).pipe(
        Effect.map(([nextState, delay, decision]) => {
          state = nextState;
          // Whole milliseconds: delays end up in Timestamps and Durations, and ms is the unit everywhere.
          return ScheduleDecision.isDone(decision) ? Option.none() : Option.some(Math.round(Duration.toMillis(delay)));
        }),
      ),
  };
};

/** The delays a policy yields for `failures` consecutive retryable failures (previews, tests). */
export const retryDelays = (policy: RetryPolicy, failures: number): Effect.Effect<ReadonlyArray<number>> =>
  Effect.gen(function* () {
    const stepper = makeRetryStepper(policy);
    const out: number[] = [];
    for (let i = 0; i < failures; i++) {
      const d = yield* stepper.next(0);
      if (Option.isNone(d)) break;
      out.push(d.value);
    }
    return out;
  });
