/**
 * Port: rate-limit state. check-and-consume is one atomic step, so a limit of N admits exactly
 * N under any concurrency. The in-memory Layer is the default; the interceptors issue (#4)
 * adds Redis, GCRA tuning and per-role overrides.
 */
import { Clock, Context, Effect, Layer, Schedule } from "effect";

export interface RateLimit {
  /** Requests admitted per window. */
  readonly limit: number;
  readonly windowMs: number;
}

export interface RateDecision {
  readonly allowed: boolean;
  readonly limit: number;
  readonly remaining: number;
  /** When refused: how long until one more would be admitted. */
  readonly retryAfterMs: number;
  /** How long until the limit is fully replenished. */
  readonly resetMs: number;
}

export interface RateLimiterShape {
  readonly consume: (key: string, limit: RateLimit) => Effect.Effect<RateDecision>;
  /** Keys currently holding state (memory is bounded by it). */
  readonly size: () => number;
}

export class RateLimiter extends Context.Tag("orchestrator/RateLimiter")<RateLimiter, RateLimiterShape>() {}

/**
 * In-memory GCRA (generic cell rate algorithm). Chosen over a token bucket because it keeps one
 * number per key (the theoretical arrival time) and needs no refill timer: a decision is one
 * read and one write, which on Node's single thread is atomic. A limit of N per window W
 * admits a burst of N, then one every W/N. Keys whose arrival time has passed hold no state
 * worth keeping and are swept, so memory is bounded by the keys active within one window.
 */
export const makeMemoryRateLimiter = Effect.gen(function* () {
  const tat = new Map<string, number>();
  const consume = (key: string, { limit, windowMs }: RateLimit) =>
    Effect.map(Clock.currentTimeMillis, (now): RateDecision => {
      const interval = windowMs / limit;
      const current = Math.max(tat.get(key) ?? now, now);
      const next = current + interval;
      if (next - now > windowMs) {
        return { allowed: false, limit, remaining: 0, retryAfterMs: Math.ceil(next - now - windowMs), resetMs: Math.ceil(current - now) };
      }
      tat.set(key, next);
      return {
        allowed: true,
        limit,
        remaining: Math.floor((windowMs - (next - now)) / interval + 1e-9),
        retryAfterMs: 0,
        resetMs: Math.ceil(next - now),
      };
    });
  const sweep = Effect.map(Clock.currentTimeMillis, (now) => {
    for (const [k, t] of tat) if (t <= now) tat.delete(k);
  });
  yield* sweep.pipe(Effect.repeat(Schedule.spaced("1 minute")), Effect.forkScoped);
  return RateLimiter.of({ consume, size: () => tat.size });
});

export const RateLimiterMemory = Layer.scoped(RateLimiter, makeMemoryRateLimiter);
