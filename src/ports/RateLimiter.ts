/**
 * Port: rate-limit state. One decision checks several limits and, optionally, takes a
 * concurrency slot, all or nothing, in one atomic step: admitted, every limit is consumed and
 * the slot is taken; refused, nothing is consumed. So a limit of N admits exactly N under any
 * concurrency, and a refusal by one limit never eats another's quota.
 *
 * Layers: in memory (here, the default; one process) and Redis (src/ports/redis/; several
 * instances share the limits exactly).
 *
 * The algorithm is GCRA (generic cell rate algorithm), in both Layers. Chosen over a token
 * bucket because it keeps one number per key — the theoretical arrival time (TAT) of the next
 * request — and needs no refill timer: a decision is one read and one conditional write, which
 * is what makes it cheap to do atomically (on Node's single thread here, in one Lua script in
 * Redis), and a key whose TAT has passed carries no information, so it can simply expire.
 * A limit of N per window W admits a burst of N, then one every W/N (the same shape as a token
 * bucket of N refilled at N/W).
 *
 * The arithmetic is exact: times are integer milliseconds, and the TAT is kept as a + b/N ms
 * with integers a and 0 ≤ b < N (see `gcra`), so W/N needs no rounding and the N-th request of
 * a burst is never refused by a float error. Config bounds limit × window (≤ 2^52) so that
 * every intermediate value is an exact integer in a double (and in Redis's Lua numbers).
 */
import { Clock, Context, Effect, Layer, Schedule } from "effect";

export interface RateLimit {
  /** Requests admitted per window (a whole number ≥ 1). */
  readonly limit: number;
  /** Whole milliseconds ≥ 1. */
  readonly windowMs: number;
}

/**
 * What a key counts. It names the limit in audit events, logs and errors:
 * `request` (RPCs of a principal), `operation` (executions of one operation by a principal),
 * `interval` (minimum time between those), `tenant` (executions in a tenant), `model`
 * (executions using a model), `in_flight` (running executions of a principal).
 */
export type LimitScope = "request" | "operation" | "interval" | "tenant" | "model" | "in_flight";

/** One GCRA limit on one key. */
export interface RateCheck {
  readonly scope: LimitScope;
  readonly key: string;
  readonly limit: RateLimit;
}

/** At most `max` slots held at once on one key. */
export interface ConcurrencyCheck {
  readonly scope: LimitScope;
  readonly key: string;
  readonly max: number;
}

export interface LimitRequest {
  readonly rates: ReadonlyArray<RateCheck>;
  readonly concurrency?: ConcurrencyCheck | undefined;
}

export interface CheckOutcome {
  readonly scope: LimitScope;
  readonly key: string;
  readonly allowed: boolean;
  readonly limit: number;
  /** Requests still admitted now (after this one, when admitted). */
  readonly remaining: number;
  /** When refused: how long until one more would be admitted. */
  readonly retryAfterMs: number;
  /** How long until the limit is fully replenished. */
  readonly resetMs: number;
}

/** A concurrency slot held by an admitted decision. Release it when the work ends (idempotent). */
export interface Lease {
  readonly release: Effect.Effect<void>;
}

/** What a decision is when the state cannot be reached: refuse (fail closed) or admit (fail open). */
export type FailureMode = "deny" | "allow";

/** The backend could not be asked; the configured failure mode decided instead. */
export interface Degradation {
  readonly error: string;
  readonly onError: FailureMode;
}

export interface LimitDecision {
  readonly allowed: boolean;
  /** One outcome per rate check, in order, then the concurrency check's. Empty when degraded. */
  readonly checks: ReadonlyArray<CheckOutcome>;
  /** The slot taken, when admitted with a concurrency check (never when degraded). */
  readonly lease: Lease | undefined;
  readonly degraded: Degradation | undefined;
}

export interface RateLimiterShape {
  /** Check-and-consume, all or nothing, atomically. Never fails: a backend error is `degraded`. */
  readonly decide: (request: LimitRequest) => Effect.Effect<LimitDecision>;
  /** Keys currently holding state (rate keys and concurrency keys). */
  readonly size: Effect.Effect<number>;
}

export class RateLimiter extends Context.Tag("orchestrator/RateLimiter")<RateLimiter, RateLimiterShape>() {}

/** A concurrency refusal has no natural retry time: the caller is told to try again after this. */
export const concurrencyRetryHintMs = 1000;

/**
 * The outcome that decided: when refused, the refusal with the longest wait (the caller must
 * wait for all of them); when admitted, the check closest to its limit.
 */
export function bindingOutcome(decision: LimitDecision): CheckOutcome | undefined {
  let best: CheckOutcome | undefined;
  for (const c of decision.checks) {
    if (decision.allowed) {
      if (best === undefined || c.remaining < best.remaining) best = c;
    } else if (!c.allowed && (best === undefined || c.retryAfterMs > best.retryAfterMs)) {
      best = c;
    }
  }
  return best;
}

/** A TAT of a + b/limit ms, 0 ≤ b < limit. */
export interface Tat {
  a: number;
  b: number;
}

export interface GcraStep {
  readonly allowed: boolean;
  readonly remaining: number;
  readonly retryAfterMs: number;
  readonly resetMs: number;
  /** The TAT to store when admitted. */
  readonly next: Tat | undefined;
}

/**
 * One GCRA decision at `now` (integer ms) for a key whose stored TAT is `tat`. Counting in
 * units of 1/N ms, one request costs W and the burst tolerance is W × N: d0 is how far the TAT
 * is ahead of now, d1 = d0 + W where it would be after this request, admitted iff d1 ≤ W × N.
 * The Lua script in src/ports/redis/RateLimiterRedis.ts is the same computation, line by line.
 */
export function gcra(now: number, tat: Tat | undefined, { limit: n, windowMs: w }: RateLimit): GcraStep {
  const d0 = tat === undefined ? 0 : Math.max(0, (tat.a - now) * n + tat.b);
  const d1 = d0 + w;
  const cap = w * n;
  if (d1 > cap) {
    return { allowed: false, remaining: 0, retryAfterMs: Math.ceil((d1 - cap) / n), resetMs: Math.ceil(d0 / n), next: undefined };
  }
  let q = Math.floor(d1 / n);
  let r = d1 - q * n;
  // Guard the float division: q must be exactly floor(d1 / n).
  if (r < 0) {
    q -= 1;
    r += n;
  } else if (r >= n) {
    q += 1;
    r -= n;
  }
  return { allowed: true, remaining: Math.floor((cap - d1) / w), retryAfterMs: 0, resetMs: Math.ceil(d1 / n), next: { a: now + q, b: r } };
}

/** Largest limit × window (see the module comment). */
export const maxLimitTimesWindow = 2 ** 52;

export interface MemoryRateLimiterOptions {
  /**
   * Most rate keys held. Keys expire on their own (a passed TAT is swept); this bound only bites
   * when more keys are active within one window than it allows. Then the keys whose TAT is
   * earliest — the closest to carrying no information — are dropped, down to 90% of the bound
   * (each dropped key then admits as if fresh, so keep the bound above the active keys), and a
   * warning is logged. Default 100,000 (~10 MB).
   */
  readonly maxKeys?: number;
  /** How often passed TATs are swept. Default 1 minute. */
  readonly sweepIntervalMs?: number;
}

const noChecks: LimitDecision = { allowed: true, checks: [], lease: undefined, degraded: undefined };

/** GCRA and concurrency slots in this process's memory. */
export const makeMemoryRateLimiter = (options: MemoryRateLimiterOptions = {}) =>
  Effect.gen(function* () {
    const maxKeys = options.maxKeys ?? 100_000;
    // Entries are updated in place, never deleted and re-inserted: V8's Map keeps deleted
    // entries in their bucket's chain until it rehashes, so re-inserting a hot key (a tenant's)
    // on every decision made its lookups slow down ~10×.
    const tats = new Map<string, Tat>();
    const slots = new Map<string, number>();

    const sweep = (now: number) => {
      for (const [k, t] of tats) if (t.a < now || (t.a === now && t.b === 0)) tats.delete(k);
    };

    /** Makes room for `adding` new keys; returns how many live keys had to be dropped. */
    const makeRoom = (now: number, adding: number): number => {
      if (tats.size + adding <= maxKeys) return 0;
      sweep(now);
      if (tats.size + adding <= maxKeys) return 0;
      // Drop a batch at once, so that a full table costs one sort per 10% of inserts, not per insert.
      const keep = Math.max(0, Math.floor(maxKeys * 0.9) - adding);
      const byTat = [...tats].sort(([, x], [, y]) => x.a - y.a);
      const drop = byTat.length - keep;
      for (let i = 0; i < drop; i++) tats.delete(byTat[i]![0]);
      return drop;
    };

    const decideAt = (now: number, request: LimitRequest): { decision: LimitDecision; dropped: number } => {
      const steps = request.rates.map((c) => gcra(now, tats.get(c.key), c.limit));
      const checks: CheckOutcome[] = request.rates.map((c, i) => {
        const s = steps[i]!;
        return { scope: c.scope, key: c.key, allowed: s.allowed, limit: c.limit.limit, remaining: s.remaining, retryAfterMs: s.retryAfterMs, resetMs: s.resetMs };
      });
      let allowed = steps.every((s) => s.allowed);
      const conc = request.concurrency;
      if (conc !== undefined) {
        const held = slots.get(conc.key) ?? 0;
        const free = held < conc.max;
        allowed &&= free;
        checks.push({
          scope: conc.scope,
          key: conc.key,
          allowed: free,
          limit: conc.max,
          remaining: Math.max(0, conc.max - held - (allowed ? 1 : 0)),
          retryAfterMs: free ? 0 : concurrencyRetryHintMs,
          resetMs: free ? 0 : concurrencyRetryHintMs,
        });
      }
      if (!allowed) return { decision: { allowed, checks, lease: undefined, degraded: undefined }, dropped: 0 };

      const dropped = makeRoom(now, request.rates.reduce((n, c) => n + (tats.has(c.key) ? 0 : 1), 0));
      request.rates.forEach((c, i) => {
        const next = steps[i]!.next!;
        const held = tats.get(c.key);
        if (held === undefined) tats.set(c.key, next);
        else {
          held.a = next.a;
          held.b = next.b;
        }
      });
      let lease: Lease | undefined;
      if (conc !== undefined) {
        slots.set(conc.key, (slots.get(conc.key) ?? 0) + 1);
        let released = false;
        lease = {
          release: Effect.sync(() => {
            if (released) return;
            released = true;
            const n = (slots.get(conc.key) ?? 1) - 1;
            if (n <= 0) slots.delete(conc.key);
            else slots.set(conc.key, n);
          }),
        };
      }
      return { decision: { allowed, checks, lease, degraded: undefined }, dropped };
    };

    const decide = (request: LimitRequest): Effect.Effect<LimitDecision> => {
      if (request.rates.length === 0 && request.concurrency === undefined) return Effect.succeed(noChecks);
      return Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const { decision, dropped } = decideAt(now, request);
        return dropped === 0
          ? Effect.succeed(decision)
          : Effect.as(Effect.logWarning(`rate limiter: more than ${maxKeys} active keys; dropped the ${dropped} nearest to expiry`), decision);
      });
    };

    yield* Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => sweep(now))).pipe(
      Effect.repeat(Schedule.spaced(`${options.sweepIntervalMs ?? 60_000} millis`)),
      Effect.forkScoped,
    );
    return RateLimiter.of({ decide, size: Effect.sync(() => tats.size + slots.size) });
  });

export const RateLimiterMemory: Layer.Layer<RateLimiter> = Layer.scoped(RateLimiter, makeMemoryRateLimiter());

/** The in-memory Layer with non-default bounds. */
export const rateLimiterMemory = (options: MemoryRateLimiterOptions): Layer.Layer<RateLimiter> =>
  Layer.scoped(RateLimiter, makeMemoryRateLimiter(options));
