/**
 * RateLimiter in Redis, so that several instances share their limits exactly.
 *
 * One round trip per decision: a Lua script (EVALSHA, falling back to EVAL when the server does
 * not have it cached yet, e.g. after a restart or SCRIPT FLUSH) runs the same GCRA as the
 * in-memory Layer (`gcra` in ../RateLimiter.ts) over every rate key of the decision, and takes
 * the concurrency slot, all or nothing. Redis runs a script atomically, so concurrent decisions
 * from any number of instances are serialized: a limit of N admits exactly N.
 *
 * Clock: the script reads Redis's own clock (TIME), not the caller's. Every instance then
 * measures against one clock, so skew between the instances' clocks cannot move admissions
 * (with caller clocks, an instance running 2 s ahead would see every TAT as 2 s older and admit
 * early). The cost: tests cannot drive it with TestClock, so the Redis tests use real time and
 * windows long enough not to matter. Needs Redis ≥ 5 (scripts replicated by effects).
 *
 * Concurrency slots: a sorted set per key, member = lease id, score = expiry in Redis time.
 * The holder renews its lease every third of its TTL and removes it on release; expired members
 * are dropped by the next decision on that key, so the slots of a crashed instance free
 * themselves after one TTL. The key itself expires with its newest lease.
 *
 * Redis unreachable (or not answering within commandTimeoutMs): the decision is made by `onError` — refuse
 * ("deny", fail closed, the default) or admit ("allow", fail open) — and carries the
 * degradation, so that the core audits it. Connection losses and recoveries are logged once
 * each. The client reconnects on its own; nothing queues while it is down.
 *
 * Not for Redis Cluster: one decision touches keys of several hash slots (principal, tenant,
 * model). A single Redis, or a primary with replicas, is what this targets.
 */
import { randomUUID } from "node:crypto";
import { Effect, Fiber, Layer } from "effect";
import {
  type CheckOutcome,
  concurrencyRetryHintMs,
  type FailureMode,
  type Lease,
  type LimitDecision,
  type LimitRequest,
  RateLimiter,
} from "../RateLimiter.js";
import { connectRedis, describe, runScript, script, type Script } from "./connection.js";

export interface RedisRateLimiterOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` for TLS. */
  readonly url: string;
  /** When Redis cannot be asked: "deny" (fail closed, default) or "allow" (fail open). */
  readonly onError?: FailureMode;
  /** Prefix of every key this Layer writes. Default "orchestrator:rl:". */
  readonly keyPrefix?: string;
  /** A decision not answered within this is an error (then `onError` decides). Default 1000 ms. */
  readonly commandTimeoutMs?: number;
  /** A concurrency slot not renewed for this long frees itself. Default 30 s. */
  readonly leaseTtlMs?: number;
  /** How long the Layer waits for the first connection before it starts degraded. Default 2 s. */
  readonly connectTimeoutMs?: number;
}

/**
 * KEYS[1..n]: GCRA keys; KEYS[n+1]: the concurrency key, when ARGV has a slot max > 0.
 * ARGV: n, then limit and window (ms) per GCRA key, then slot max, lease id, lease TTL (ms).
 * Returns {admitted, slots held after, then per GCRA key: allowed, remaining, retry after, reset}.
 * Stored TAT: "a:b" meaning a + b/limit ms (see `gcra`); the key expires when the TAT passes.
 */
export const decideScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local admit = 1
local out = {}
local nexts = {}
for i = 1, n do
  local limit = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  local cap = window * limit
  local d0 = 0
  local stored = redis.call('GET', KEYS[i])
  if stored then
    local a, b = string.match(stored, '^(%d+):(%d+)$')
    if a then d0 = math.max(0, (tonumber(a) - now) * limit + tonumber(b)) end
  end
  local d1 = d0 + window
  if d1 > cap then
    admit = 0
    out[#out + 1] = 0
    out[#out + 1] = 0
    out[#out + 1] = math.ceil((d1 - cap) / limit)
    out[#out + 1] = math.ceil(d0 / limit)
  else
    local q = math.floor(d1 / limit)
    local r = d1 - q * limit
    if r < 0 then q = q - 1; r = r + limit elseif r >= limit then q = q + 1; r = r - limit end
    nexts[i] = { string.format('%d:%d', now + q, r), math.max(1, math.ceil(d1 / limit)) }
    out[#out + 1] = 1
    out[#out + 1] = math.floor((cap - d1) / window)
    out[#out + 1] = 0
    out[#out + 1] = math.ceil(d1 / limit)
  end
end
local slotMax = tonumber(ARGV[2 * n + 2])
local held = 0
if slotMax > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[n + 1], '-inf', now)
  held = redis.call('ZCARD', KEYS[n + 1])
  if held >= slotMax then admit = 0 end
end
if admit == 1 then
  for i = 1, n do
    redis.call('SET', KEYS[i], nexts[i][1], 'PX', nexts[i][2])
  end
  if slotMax > 0 then
    local ttl = tonumber(ARGV[2 * n + 4])
    redis.call('ZADD', KEYS[n + 1], now + ttl, ARGV[2 * n + 3])
    redis.call('PEXPIRE', KEYS[n + 1], ttl)
    held = held + 1
  end
end
local reply = { admit, held }
for i = 1, #out do reply[#reply + 1] = out[i] end
return reply
`;

/** KEYS[1]: concurrency key; ARGV: lease id, TTL (ms). 1 if the lease was still held. */
export const renewScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
`;

const decide = script(decideScript);
const renew = script(renewScript);

export const makeRedisRateLimiter = (options: RedisRateLimiterOptions) =>
  Effect.gen(function* () {
    const onError = options.onError ?? "deny";
    const prefix = options.keyPrefix ?? "orchestrator:rl:";
    const leaseTtlMs = options.leaseTtlMs ?? 30_000;
    const timeoutMs = options.commandTimeoutMs ?? 1000;
    const scope = yield* Effect.scope;
    const client = yield* connectRedis({
      url: options.url,
      commandTimeoutMs: timeoutMs,
      ...(options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: options.connectTimeoutMs }),
      name: "redis rate limiter",
      whileDown: `decisions ${onError === "deny" ? "refuse (fail closed)" : "admit (fail open)"}`,
      whileDownAtStart: `decisions ${onError === "deny" ? "refuse" : "admit"}`,
    });
    const run = (s: Script, keys: ReadonlyArray<string>, args: ReadonlyArray<string | number>) => runScript(client, s, keys, args, timeoutMs);

    const degraded = (e: unknown): LimitDecision => ({
      allowed: onError === "allow",
      checks: [],
      lease: undefined,
      degraded: { error: describe(e), onError },
    });

    const holdLease = (key: string, leaseId: string): Effect.Effect<Lease> =>
      Effect.gen(function* () {
        const renewal = yield* run(renew, [key], [leaseId, leaseTtlMs]).pipe(
          Effect.flatMap((held) =>
            held === 1 ? Effect.void : Effect.logWarning("redis rate limiter: a concurrency slot expired while held (Redis unreachable for longer than its TTL?)"),
          ),
          Effect.catchAll((e) => Effect.logWarning("redis rate limiter: renewing a concurrency slot failed", describe(e))),
          Effect.delay(`${Math.max(1, Math.floor(leaseTtlMs / 3))} millis`),
          Effect.forever,
          Effect.forkIn(scope),
        );
        let released = false;
        return {
          release: Effect.suspend(() => {
            if (released) return Effect.void;
            released = true;
            return Fiber.interrupt(renewal).pipe(
              Effect.zipRight(Effect.tryPromise(() => client.zrem(key, leaseId))),
              // Not removed now, it expires after its TTL.
              Effect.catchAll((e) => Effect.logWarning("redis rate limiter: releasing a concurrency slot failed; it expires on its own", describe(e))),
              Effect.asVoid,
            );
          }),
        };
      });

    const decideRedis = (request: LimitRequest): Effect.Effect<LimitDecision> => {
      const { rates, concurrency } = request;
      if (rates.length === 0 && concurrency === undefined) return Effect.succeed({ allowed: true, checks: [], lease: undefined, degraded: undefined });
      const keys = rates.map((c) => prefix + c.key);
      const args: Array<string | number> = [rates.length];
      for (const c of rates) args.push(c.limit.limit, c.limit.windowMs);
      const leaseId = concurrency === undefined ? "" : randomUUID();
      if (concurrency === undefined) args.push(0, "", 0);
      else {
        keys.push(prefix + concurrency.key);
        args.push(concurrency.max, leaseId, leaseTtlMs);
      }
      return run(decide, keys, args).pipe(
        Effect.flatMap((reply) => {
          const r = reply as ReadonlyArray<number>;
          const allowed = r[0] === 1;
          const held = r[1] ?? 0;
          const checks: CheckOutcome[] = rates.map((c, i) => ({
            scope: c.scope,
            key: c.key,
            allowed: r[2 + 4 * i] === 1,
            limit: c.limit.limit,
            remaining: r[3 + 4 * i] ?? 0,
            retryAfterMs: r[4 + 4 * i] ?? 0,
            resetMs: r[5 + 4 * i] ?? 0,
          }));
          if (concurrency === undefined) return Effect.succeed<LimitDecision>({ allowed, checks, lease: undefined, degraded: undefined });
          const free = allowed || held < concurrency.max;
          checks.push({
            scope: concurrency.scope,
            key: concurrency.key,
            allowed: free,
            limit: concurrency.max,
            remaining: Math.max(0, concurrency.max - held),
            retryAfterMs: free ? 0 : concurrencyRetryHintMs,
            resetMs: free ? 0 : concurrencyRetryHintMs,
          });
          if (!allowed) return Effect.succeed<LimitDecision>({ allowed, checks, lease: undefined, degraded: undefined });
          return Effect.map(holdLease(prefix + concurrency.key, leaseId), (lease): LimitDecision => ({ allowed, checks, lease, degraded: undefined }));
        }),
        Effect.catchAll((e) => Effect.succeed(degraded(e))),
      );
    };

    const size = Effect.tryPromise(async () => {
      let cursor = "0";
      let n = 0;
      do {
        const [next, found] = await client.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
        cursor = next;
        n += found.length;
      } while (cursor !== "0");
      return n;
    }).pipe(Effect.orDie);

    return RateLimiter.of({ decide: decideRedis, size });
  });

export const RateLimiterRedis = {
  layer: (options: RedisRateLimiterOptions): Layer.Layer<RateLimiter> => Layer.scoped(RateLimiter, makeRedisRateLimiter(options)),
};
