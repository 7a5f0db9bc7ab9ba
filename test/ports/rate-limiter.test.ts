/**
 * The RateLimiter port, both Layers. In memory under TestClock: GCRA exactness (fractional
 * intervals included), the reset and retry-after math, all-or-nothing decisions, concurrency
 * slots, key expiry and bounded memory. In Redis (a real redis-server, real time): exactly N of
 * 200 concurrent decisions, other keys untouched, the same math, slots shared by two instances
 * and freed after a crash, EVALSHA falling back to EVAL, and Redis down (fail closed / open).
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest";
import { Context, Effect, Exit, Fiber, Layer, Scope, TestClock } from "effect";
import { Redis } from "ioredis";
import {
  bindingOutcome,
  gcra,
  type LimitDecision,
  type LimitRequest,
  RateLimiter,
  RateLimiterMemory,
  rateLimiterMemory,
  type RateLimit,
} from "../../src/ports/RateLimiter.js";
import { RateLimiterRedis, type RedisRateLimiterOptions } from "../../src/ports/redis/RateLimiterRedis.js";
import { startRedisServer, type RedisServer } from "../support/redis.js";

const one = (key: string, limit: RateLimit): LimitRequest => ({ rates: [{ scope: "operation", key, limit }] });
const consume = (key: string, limit: RateLimit) => Effect.flatMap(RateLimiter, (l) => l.decide(one(key, limit)));
const check = (d: LimitDecision) => d.checks[0]!;

describe("gcra (the arithmetic both Layers share)", () => {
  it("admits a burst of exactly N even when W/N is not a whole number, for any N up to the bound", () => {
    for (const [n, w] of [[3, 1000], [7, 1000], [10, 60_000], [999_983, 86_400_000], [1_000_000, 1000]] as const) {
      let tat;
      for (let i = 0; i < Math.min(n, 2000); i++) {
        // Jump ahead to the last requests of huge bursts: the state after k requests is k × W/N.
        if (n > 2000 && i === 1000) tat = { a: Math.floor(((n - 1000) * w) / n), b: ((n - 1000) * w) % n };
        const s = gcra(0, tat, { limit: n, windowMs: w });
        expect(s.allowed).toBe(true);
        tat = s.next;
      }
      expect(gcra(0, tat, { limit: n, windowMs: w }).allowed).toBe(false);
    }
  });
});

describe("RateLimiter in memory", () => {
  it.effect("a burst of N, then one every W/N; remaining, reset and retry-after exact to the millisecond", () =>
    Effect.gen(function* () {
      const limit = { limit: 3, windowMs: 1000 };
      const first = yield* Effect.forEach([1, 2, 3], () => consume("k", limit));
      expect(first.map((d) => [d.allowed, check(d).remaining, check(d).resetMs])).toEqual([
        [true, 2, 334],
        [true, 1, 667],
        [true, 0, 1000],
      ]);
      const refused = yield* consume("k", limit);
      expect(check(refused)).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 334, resetMs: 1000 });
      yield* TestClock.adjust("333 millis");
      expect(check(yield* consume("k", limit))).toMatchObject({ allowed: false, retryAfterMs: 1 });
      yield* TestClock.adjust("1 millis");
      expect(check(yield* consume("k", limit))).toMatchObject({ allowed: true, remaining: 0 });
      // Fully replenished after W: a full burst again.
      yield* TestClock.adjust("1 seconds");
      expect((yield* Effect.forEach([1, 2, 3, 4], () => consume("k", limit))).map((d) => d.allowed)).toEqual([true, true, true, false]);
    }).pipe(Effect.provide(RateLimiterMemory)),
  );

  it.effect("over 10 windows, trying every 20 ms: exactly N + 10 N admitted (7/s → 77)", () =>
    Effect.gen(function* () {
      const limit = { limit: 7, windowMs: 1000 };
      let admitted = 0;
      for (let t = 0; t <= 10_000; t += 20) {
        while ((yield* consume("steady", limit)).allowed) admitted++;
        if (t < 10_000) yield* TestClock.adjust("20 millis");
      }
      expect(admitted).toBe(77);
    }).pipe(Effect.provide(RateLimiterMemory)),
  );

  it.effect("200 concurrent decisions against 10: exactly 10; another key untouched", () =>
    Effect.gen(function* () {
      const limit = { limit: 10, windowMs: 60_000 };
      const ds = yield* Effect.all(Array.from({ length: 200 }, () => consume("hot", limit)), { concurrency: "unbounded" });
      expect(ds.filter((d) => d.allowed)).toHaveLength(10);
      expect(check(yield* consume("cold", limit))).toMatchObject({ allowed: true, remaining: 9 });
    }).pipe(Effect.provide(RateLimiterMemory)),
  );

  it.effect("all or nothing: a refusal by one limit consumes none of the others", () =>
    Effect.gen(function* () {
      const l = yield* RateLimiter;
      const both: LimitRequest = {
        rates: [
          { scope: "operation", key: "narrow", limit: { limit: 1, windowMs: 60_000 } },
          { scope: "tenant", key: "wide", limit: { limit: 5, windowMs: 60_000 } },
        ],
      };
      expect((yield* l.decide(both)).allowed).toBe(true);
      for (let i = 0; i < 3; i++) {
        const d = yield* l.decide(both);
        expect(d.allowed).toBe(false);
        expect(bindingOutcome(d)).toMatchObject({ scope: "operation", retryAfterMs: 60_000 });
      }
      // "wide" was consumed once only.
      expect(check(yield* consume("wide", { limit: 5, windowMs: 60_000 }))).toMatchObject({ allowed: true, remaining: 3 });
    }).pipe(Effect.provide(RateLimiterMemory)),
  );

  it.effect("the binding outcome: the longest wait when refused, the fewest remaining when admitted", () =>
    Effect.gen(function* () {
      const l = yield* RateLimiter;
      const req: LimitRequest = {
        rates: [
          { scope: "operation", key: "a", limit: { limit: 1, windowMs: 1000 } },
          { scope: "interval", key: "b", limit: { limit: 1, windowMs: 5000 } },
          { scope: "tenant", key: "c", limit: { limit: 100, windowMs: 1000 } },
        ],
      };
      expect(bindingOutcome(yield* l.decide(req))).toMatchObject({ scope: "operation", remaining: 0 });
      expect(bindingOutcome(yield* l.decide(req))).toMatchObject({ scope: "interval", retryAfterMs: 5000 });
    }).pipe(Effect.provide(RateLimiterMemory)),
  );

  it.effect("concurrency slots: at most max held; a release frees one (once, however often it is called)", () =>
    Effect.gen(function* () {
      const l = yield* RateLimiter;
      const req: LimitRequest = { rates: [], concurrency: { scope: "in_flight", key: "p", max: 2 } };
      const a = yield* l.decide(req);
      const b = yield* l.decide(req);
      expect([a.allowed, b.allowed]).toEqual([true, true]);
      expect(a.lease).toBeDefined();
      const c = yield* l.decide(req);
      expect(c).toMatchObject({ allowed: false, lease: undefined });
      expect(bindingOutcome(c)).toMatchObject({ scope: "in_flight", limit: 2, remaining: 0 });
      yield* a.lease!.release;
      yield* a.lease!.release;
      expect((yield* l.decide(req)).allowed).toBe(true);
      expect((yield* l.decide(req)).allowed).toBe(false);
    }).pipe(Effect.provide(RateLimiterMemory)),
  );

  it.effect("a refused rate check takes no slot, and a full slot set consumes no rate", () =>
    Effect.gen(function* () {
      const l = yield* RateLimiter;
      const rate = { scope: "operation" as const, key: "r", limit: { limit: 1, windowMs: 60_000 } };
      const slot = { scope: "in_flight" as const, key: "s", max: 1 };
      const first = yield* l.decide({ rates: [rate], concurrency: slot });
      expect(first.allowed).toBe(true);
      expect((yield* l.decide({ rates: [rate], concurrency: slot })).allowed).toBe(false);
      yield* first.lease!.release;
      // The slot is free again; the rate refusal above did not take it.
      const other = { scope: "operation" as const, key: "r2", limit: { limit: 1, windowMs: 60_000 } };
      const held = yield* l.decide({ rates: [other], concurrency: slot });
      expect(held.allowed).toBe(true);
      // Slot full: refused, and r3's quota is not spent.
      const r3 = { scope: "operation" as const, key: "r3", limit: { limit: 1, windowMs: 60_000 } };
      expect((yield* l.decide({ rates: [r3], concurrency: slot })).allowed).toBe(false);
      expect((yield* l.decide({ rates: [r3] })).allowed).toBe(true);
    }).pipe(Effect.provide(RateLimiterMemory)),
  );

  it.effect("keys expire: once their TAT has passed the sweep drops them, and slots go when released", () =>
    Effect.gen(function* () {
      const l = yield* RateLimiter;
      for (let i = 0; i < 50; i++) yield* consume(`k${i}`, { limit: 10, windowMs: 30_000 });
      const lease = (yield* l.decide({ rates: [], concurrency: { scope: "in_flight", key: "p", max: 1 } })).lease!;
      expect(yield* l.size).toBe(51);
      yield* lease.release;
      expect(yield* l.size).toBe(50);
      // TATs are 3 s ahead; the sweep runs every minute.
      yield* TestClock.adjust("1 minute");
      expect(yield* l.size).toBe(0);
    }).pipe(Effect.provide(RateLimiterMemory)),
  );

  it.effect("memory is bounded: past maxKeys, the keys nearest to expiry are dropped first", () =>
    Effect.gen(function* () {
      const l = yield* RateLimiter;
      // A long-lived key first, then many short-lived ones.
      expect((yield* consume("hot", { limit: 1, windowMs: 3_600_000 })).allowed).toBe(true);
      for (let i = 0; i < 1000; i++) {
        expect((yield* consume(`k${i}`, { limit: 1, windowMs: 60_000 + i })).allowed).toBe(true);
        expect(yield* l.size).toBeLessThanOrEqual(100);
      }
      // "hot" (TAT 1 h ahead) kept its state; of the 1-minute keys the latest TATs were kept.
      expect((yield* consume("hot", { limit: 1, windowMs: 3_600_000 })).allowed).toBe(false);
      expect((yield* consume("k999", { limit: 1, windowMs: 60_999 })).allowed).toBe(false);
      expect((yield* consume("k0", { limit: 1, windowMs: 60_000 })).allowed).toBe(true);
      // Expired keys are swept first, before any live key is dropped.
      yield* TestClock.adjust("2 minutes");
      const before = yield* l.size;
      for (let i = 0; i < 100 - 1; i++) yield* consume(`n${i}`, { limit: 1, windowMs: 60_000 });
      expect(yield* l.size).toBe(100);
      expect(before).toBeGreaterThan(1);
      expect((yield* consume("hot", { limit: 1, windowMs: 3_600_000 })).allowed).toBe(false);
      expect((yield* consume("n0", { limit: 1, windowMs: 60_000 })).allowed).toBe(false);
    }).pipe(Effect.provide(rateLimiterMemory({ maxKeys: 100, sweepIntervalMs: 3_600_000 * 24 }))),
  );
});

describe("RateLimiter in Redis", () => {
  let redis: RedisServer;
  let admin: Redis;
  beforeAll(async () => {
    redis = await startRedisServer();
    admin = new Redis(redis.url);
  });
  afterAll(async () => {
    admin?.disconnect();
    await redis?.stop();
  });

  let prefixSeq = 0;
  const layer = (options: Partial<RedisRateLimiterOptions> = {}) =>
    RateLimiterRedis.layer({ url: redis.url, keyPrefix: `t${prefixSeq++}:`, ...options });

  it.live("200 concurrent decisions against 10: exactly 10; keys of others untouched; keys carry a TTL", () =>
    Effect.gen(function* () {
      const limit = { limit: 10, windowMs: 3_600_000 };
      const ds = yield* Effect.all(Array.from({ length: 200 }, () => consume("op:acme:alice:demo.echo", limit)), { concurrency: "unbounded" });
      expect(ds.filter((d) => d.allowed)).toHaveLength(10);
      expect(ds.filter((d) => !d.allowed).every((d) => check(d).retryAfterMs > 0 && d.degraded === undefined)).toBe(true);
      expect(check(yield* consume("op:acme:bob:demo.echo", limit))).toMatchObject({ allowed: true, remaining: 9 });
      const keys = yield* Effect.promise(() => admin.keys(`t${prefixSeq - 1}:*`));
      expect(keys.sort()).toEqual([`t${prefixSeq - 1}:op:acme:alice:demo.echo`, `t${prefixSeq - 1}:op:acme:bob:demo.echo`]);
      const ttl = yield* Effect.promise(() => admin.pttl(keys[0]!));
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(3_600_000);
    }).pipe(Effect.provide(layer())),
  );

  it.live("the same GCRA as in memory: remaining, reset and retry-after", () =>
    Effect.gen(function* () {
      const limit = { limit: 3, windowMs: 3_600_000 };
      const ds = yield* Effect.forEach([1, 2, 3, 4], () => consume("k", limit));
      expect(ds.map((d) => [d.allowed, check(d).remaining])).toEqual([
        [true, 2],
        [true, 1],
        [true, 0],
        [false, 0],
      ]);
      // Real time passes between the calls: allow a few ms.
      expect(check(ds[0]!).resetMs).toBeGreaterThan(1_200_000 - 50);
      expect(check(ds[0]!).resetMs).toBeLessThanOrEqual(1_200_000);
      expect(check(ds[3]!).retryAfterMs).toBeGreaterThan(1_200_000 - 50);
      expect(check(ds[3]!).retryAfterMs).toBeLessThanOrEqual(1_200_000);
    }).pipe(Effect.provide(layer())),
  );

  it.live("all or nothing, in one script", () =>
    Effect.gen(function* () {
      const l = yield* RateLimiter;
      const both: LimitRequest = {
        rates: [
          { scope: "operation", key: "narrow", limit: { limit: 1, windowMs: 60_000 } },
          { scope: "tenant", key: "wide", limit: { limit: 5, windowMs: 60_000 } },
        ],
      };
      expect((yield* l.decide(both)).allowed).toBe(true);
      expect((yield* l.decide(both)).allowed).toBe(false);
      expect((yield* l.decide(both)).allowed).toBe(false);
      expect(check(yield* consume("wide", { limit: 5, windowMs: 60_000 }))).toMatchObject({ allowed: true, remaining: 3 });
    }).pipe(Effect.provide(layer())),
  );

  it.live("EVALSHA falls back to EVAL when Redis has lost its script cache", () =>
    Effect.gen(function* () {
      const limit = { limit: 5, windowMs: 60_000 };
      expect((yield* consume("k", limit)).allowed).toBe(true);
      yield* Effect.promise(() => admin.script("FLUSH"));
      const d = yield* consume("k", limit);
      expect(d).toMatchObject({ allowed: true, degraded: undefined });
      expect(check(d).remaining).toBe(3);
    }).pipe(Effect.provide(layer())),
  );

  it.live("concurrency slots are shared by instances; a crashed instance's slots expire after their TTL", () =>
    Effect.gen(function* () {
      const prefix = `slots${prefixSeq++}:`;
      const req: LimitRequest = { rates: [], concurrency: { scope: "in_flight", key: "p", max: 2 } };
      const a = yield* Layer.build(RateLimiterRedis.layer({ url: redis.url, keyPrefix: prefix, leaseTtlMs: 600 }));
      const crashScope = yield* Scope.make();
      const b = yield* Layer.buildWithScope(RateLimiterRedis.layer({ url: redis.url, keyPrefix: prefix, leaseTtlMs: 600 }), crashScope);
      const la = Context.get(a, RateLimiter);
      const lb = Context.get(b, RateLimiter);

      const held = yield* la.decide(req);
      expect(held.allowed).toBe(true);
      expect((yield* lb.decide(req)).allowed).toBe(true);
      const refused = yield* la.decide(req);
      expect(refused.allowed).toBe(false);
      expect(bindingOutcome(refused)).toMatchObject({ scope: "in_flight", limit: 2, remaining: 0 });

      // A's slot outlives several TTLs while it is renewed.
      yield* Effect.sleep("1500 millis");
      expect((yield* la.decide(req)).allowed).toBe(false);

      // B "crashes": its renewals stop and it never releases; its slot frees itself after the TTL.
      yield* Scope.close(crashScope, Exit.void);
      expect((yield* la.decide(req)).allowed).toBe(false);
      yield* Effect.sleep("800 millis");
      const after = yield* la.decide(req);
      expect(after.allowed).toBe(true);
      yield* after.lease!.release;
      yield* held.lease!.release;
      expect(yield* Effect.promise(() => admin.exists(`${prefix}p`))).toBe(0);
    }).pipe(Effect.scoped),
  );

  it.live("a stall of this process longer than the timeout is not a Redis timeout; a Redis that hangs is", () =>
    Effect.gen(function* () {
      const limiter = Context.get(yield* Layer.build(layer({ commandTimeoutMs: 200 })), RateLimiter);
      const limit = { limit: 100, windowMs: 60_000 };
      expect((yield* limiter.decide(one("k", limit))).degraded).toBeUndefined();
      // The command goes out, then the event loop is blocked for 3× the timeout while the answer waits in the socket.
      const pending = yield* Effect.fork(limiter.decide(one("k", limit)));
      yield* Effect.promise(() => new Promise((r) => setImmediate(r)));
      const until = performance.now() + 600;
      while (performance.now() < until) {
        // busy: a GC pause or a CPU-starved process
      }
      expect(yield* Fiber.join(pending)).toMatchObject({ allowed: true, degraded: undefined });

      // Redis itself stops answering (SIGSTOP): degraded after the timeout.
      redis.child.kill("SIGSTOP");
      const started = performance.now();
      const hung = yield* limiter.decide(one("k", limit)).pipe(Effect.ensuring(Effect.sync(() => redis.child.kill("SIGCONT"))));
      expect(hung).toMatchObject({ allowed: false, degraded: { onError: "deny", error: "Redis did not answer within 200 ms" } });
      expect(performance.now() - started).toBeLessThan(1000);
      let back = hung;
      for (let i = 0; i < 100 && back.degraded !== undefined; i++) back = yield* limiter.decide(one("k", limit));
      expect(back.degraded).toBeUndefined();
    }).pipe(Effect.scoped),
  );

  it.live("Redis unreachable: fail closed by default, fail open when asked; both say degraded", () =>
    Effect.gen(function* () {
      const dead = "redis://127.0.0.1:1";
      const closed = yield* consume("k", { limit: 5, windowMs: 1000 }).pipe(Effect.provide(RateLimiterRedis.layer({ url: dead, connectTimeoutMs: 200 })));
      expect(closed).toMatchObject({ allowed: false, checks: [], degraded: { onError: "deny" } });
      expect(closed.degraded!.error).not.toBe("");
      const open = yield* consume("k", { limit: 5, windowMs: 1000 }).pipe(Effect.provide(RateLimiterRedis.layer({ url: dead, onError: "allow", connectTimeoutMs: 200 })));
      expect(open).toMatchObject({ allowed: true, degraded: { onError: "allow" }, lease: undefined });
    }),
  );

  it.live("Redis down when the Layer starts: degraded until it comes up, then real decisions", () =>
    Effect.gen(function* () {
      const later = yield* Effect.acquireRelease(Effect.promise(() => startRedisServer()), (r) => Effect.promise(() => r.stop()));
      const port = later.port;
      yield* Effect.promise(() => later.stop());
      const limiter = Context.get(yield* Layer.build(RateLimiterRedis.layer({ url: `redis://127.0.0.1:${port}`, connectTimeoutMs: 200 })), RateLimiter);
      const limit = { limit: 100, windowMs: 60_000 };
      expect((yield* limiter.decide(one("k", limit))).degraded).toMatchObject({ onError: "deny" });
      yield* Effect.acquireRelease(Effect.promise(() => startRedisServer({ port })), (r) => Effect.promise(() => r.stop()));
      let d = yield* limiter.decide(one("k", limit));
      for (let i = 0; i < 100 && d.degraded !== undefined; i++) {
        yield* Effect.sleep("50 millis");
        d = yield* limiter.decide(one("k", limit));
      }
      expect(d).toMatchObject({ allowed: true, degraded: undefined });
    }).pipe(Effect.scoped),
  );

  it.live("Redis going away mid-run degrades decisions at once; they recover when it is back", () =>
    Effect.gen(function* () {
      const own = yield* Effect.acquireRelease(Effect.promise(() => startRedisServer()), (r) => Effect.promise(() => r.stop()));
      const limiter = Context.get(yield* Layer.build(RateLimiterRedis.layer({ url: own.url, commandTimeoutMs: 300 })), RateLimiter);
      const limit = { limit: 100, windowMs: 60_000 };
      expect((yield* limiter.decide(one("k", limit))).degraded).toBeUndefined();
      yield* Effect.promise(() => own.stop());
      const down = yield* limiter.decide(one("k", limit));
      expect(down).toMatchObject({ allowed: false, degraded: { onError: "deny" } });
      // Back on the same port (a fresh, empty Redis): the client reconnects on its own.
      yield* Effect.acquireRelease(Effect.promise(() => startRedisServer({ port: own.port })), (r) => Effect.promise(() => r.stop()));
      let back = down;
      for (let i = 0; i < 100 && back.degraded !== undefined; i++) {
        yield* Effect.sleep("50 millis");
        back = yield* limiter.decide(one("k", limit));
      }
      expect(back).toMatchObject({ allowed: true, degraded: undefined });
    }).pipe(Effect.scoped),
  );
});
