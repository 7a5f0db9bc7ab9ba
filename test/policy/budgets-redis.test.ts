/**
 * The TokenLedger in Redis (a real redis-server, real time: the script reads Redis's clock):
 * exactly 66 of 200 concurrent reservations of 15 against 1000, from two instances sharing the
 * store; settlement and mid-run usage with the same semantics as in memory; the window rolling
 * in Redis time; EVALSHA falling back to EVAL; Redis down (fail closed / open).
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest";
import { Context, Effect, Either, Layer } from "effect";
import { Redis } from "ioredis";
import type { Principal } from "../../src/core/model.js";
import { emptyPolicy, type PolicyDocument } from "../../src/policy/config.js";
import { TokenLedgerRedis, type RedisTokenLedgerOptions } from "../../src/ports/redis/TokenLedgerRedis.js";
import type { RateLimiterUnavailable } from "../../src/core/errors.js";
import { TokenLedger, type BudgetExhausted, type LedgerRequest, type TokenLedgerShape } from "../../src/ports/TokenLedger.js";
import { startRedisServer, type RedisServer } from "../support/redis.js";

const alice: Principal = { subject: "alice", tenant: "acme", roles: ["operator"] };
const bob: Principal = { subject: "bob", tenant: "acme", roles: ["operator"] };
const day = 86_400_000;

let seq = 0;
const req = (principal: Principal, estimatedTokens: number, model?: string): LedgerRequest => ({
  executionId: `r${++seq}`,
  principal,
  estimatedTokens,
  ...(model === undefined ? {} : { model }),
});
/** The reservation's refusal, which must be a budget's. */
const refusal = <A>(e: Effect.Effect<A, BudgetExhausted | RateLimiterUnavailable>) =>
  Effect.flip(e).pipe(Effect.filterOrDieMessage((x): x is BudgetExhausted => x._tag === "BudgetExhausted", "expected BudgetExhausted"));
const remainingOf = (l: TokenLedgerShape, p: Principal, name: string, model?: string) =>
  Effect.map(l.remaining(p, model), (all) => all.find((s) => s.budget === name)?.remaining);

describe("TokenLedger in Redis", () => {
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
  /** `n` instances sharing one key prefix (one Redis), each configured with `policy`. */
  const instances = (n: number, policy: PolicyDocument, options: Partial<RedisTokenLedgerOptions> = {}) =>
    Effect.gen(function* () {
      const keyPrefix = `tl${prefixSeq++}:`;
      const ledgers: TokenLedgerShape[] = [];
      for (let i = 0; i < n; i++) {
        const l = Context.get(yield* Layer.build(TokenLedgerRedis.layer({ url: redis.url, keyPrefix, ...options })), TokenLedger);
        yield* l.configure(policy);
        ledgers.push(l);
      }
      return ledgers;
    });

  it.scoped("200 concurrent reservations of 15 against 1000 from two instances: exactly 66; settlement refunds; then more fit", () =>
    Effect.gen(function* () {
      const [a, b] = yield* instances(2, { ...emptyPolicy, budgets: [{ scope: "tenant", match: "*", windowMs: day, tokens: 1000 }] });
      const reqs = Array.from({ length: 200 }, (_, i) => ({ ledger: i % 2 === 0 ? a! : b!, r: req(i % 2 === 0 ? alice : bob, 15) }));
      const results = yield* Effect.all(
        reqs.map(({ ledger, r }) => Effect.either(ledger.reserve(r))),
        { concurrency: "unbounded" },
      );
      const admitted = reqs.filter((_, i) => Either.isRight(results[i]!));
      expect(admitted).toHaveLength(66);
      expect(results.find(Either.isLeft)!.left).toMatchObject({ budget: "tenant:acme:1d", limit: 1000, remaining: 10, requested: 15 });
      expect(yield* remainingOf(a!, alice, "tenant:acme:1d")).toBe(10);

      // Each instance settles its own executions: 20 runs used 5 of 15 → 200 back.
      yield* Effect.all(admitted.slice(0, 20).map(({ ledger, r }) => ledger.settle(r, 5)), { concurrency: "unbounded" });
      expect(yield* remainingOf(b!, bob, "tenant:acme:1d")).toBe(210);
      const more = yield* Effect.all(Array.from({ length: 20 }, (_, i) => Effect.either((i % 2 === 0 ? a! : b!).reserve(req(alice, 15)))), { concurrency: "unbounded" });
      expect(more.filter(Either.isRight)).toHaveLength(14);
      expect(yield* remainingOf(a!, alice, "tenant:acme:1d")).toBe(0);
    }),
  );

  it.scoped("usage mid-run and settlement: the same semantics as in memory", () =>
    Effect.gen(function* () {
      const [l] = yield* instances(1, { ...emptyPolicy, budgets: [{ scope: "principal", match: "*", windowMs: day, tokens: 100 }] });
      const r = req(alice, 50);
      yield* l!.reserve(r);
      yield* l!.usage(r, 80);
      expect(yield* remainingOf(l!, alice, "principal:alice:1d")).toBe(20);
      expect(yield* Effect.flip(l!.usage(r, 130))).toMatchObject({ budget: "principal:alice:1d", remaining: 20, requested: 50, executionId: r.executionId });
      expect(yield* remainingOf(l!, alice, "principal:alice:1d")).toBe(20);
      yield* l!.settle(r, 130);
      expect(yield* remainingOf(l!, alice, "principal:alice:1d")).toBe(0);

      const refunded = req(bob, 60);
      yield* l!.reserve(refunded);
      yield* l!.settle(refunded, 0);
      const silent = req(bob, 60);
      yield* l!.reserve(silent);
      yield* l!.settle(silent, undefined);
      expect(yield* remainingOf(l!, bob, "principal:bob:1d")).toBe(40);
    }),
  );

  it.scoped("model rpm with tenant → principal overrides, counted in Redis", () =>
    Effect.gen(function* () {
      const [l] = yield* instances(1, {
        ...emptyPolicy,
        models: { "gpt-4o": { rpm: 5, tpm: 1000 } },
        tenants: { acme: { models: { "gpt-4o": { rpm: 2 } }, principals: { alice: { models: { "gpt-4o": { rpm: 1 } } } } } },
      });
      yield* l!.reserve(req(alice, 10, "gpt-4o"));
      expect(yield* Effect.flip(l!.reserve(req(alice, 10, "gpt-4o")))).toMatchObject({ budget: "principal:alice:model:gpt-4o:rpm", limit: 1, remaining: 0 });
      yield* l!.reserve(req(bob, 10, "gpt-4o"));
      yield* l!.reserve(req(bob, 10, "gpt-4o"));
      const e = yield* refusal(l!.reserve(req(bob, 10, "gpt-4o")));
      expect(e).toMatchObject({ budget: "tenant:acme:model:gpt-4o:rpm", limit: 2, remaining: 0 });
      // Redis time: about a minute (and at most one bucket more) until it frees.
      expect(e.retryAfterMs).toBeGreaterThan(59_000);
      expect(e.retryAfterMs).toBeLessThanOrEqual(61_000);
      expect(yield* remainingOf(l!, bob, "model:gpt-4o:tpm", "gpt-4o")).toBe(970);
    }),
  );

  it.live("the window rolls in Redis time, one bucket after the window", () =>
    Effect.gen(function* () {
      // 600 ms window: 10 ms buckets.
      const [l] = yield* instances(1, { ...emptyPolicy, budgets: [{ scope: "principal", match: "*", windowMs: 600, tokens: 10 }] });
      yield* l!.reserve(req(alice, 10));
      const e = yield* refusal(l!.reserve(req(alice, 1)));
      expect(e.retryAfterMs).toBeGreaterThan(590);
      expect(e.retryAfterMs).toBeLessThanOrEqual(610);
      yield* Effect.sleep(`${e.retryAfterMs + 20} millis`);
      yield* l!.reserve(req(alice, 10));
    }).pipe(Effect.scoped),
  );

  it.scoped("keys expire with their window; EVALSHA falls back to EVAL when Redis lost its script cache", () =>
    Effect.gen(function* () {
      const [l] = yield* instances(1, { ...emptyPolicy, budgets: [{ scope: "principal", match: "*", windowMs: 60_000, tokens: 10 }] });
      yield* l!.reserve(req(alice, 4));
      const keys = yield* Effect.promise(() => admin.keys(`tl${prefixSeq - 1}:*`));
      expect(keys).toHaveLength(1);
      const ttl = yield* Effect.promise(() => admin.pttl(keys[0]!));
      expect(ttl).toBeGreaterThan(60_000);
      expect(ttl).toBeLessThanOrEqual(62_000);
      yield* Effect.promise(() => admin.script("FLUSH"));
      yield* l!.reserve(req(alice, 4));
      expect(yield* remainingOf(l!, alice, "principal:alice:1m")).toBe(2);
    }),
  );

  it.scoped("Redis unreachable: reservations refused (fail closed) by default, admitted unreserved when asked", () =>
    Effect.gen(function* () {
      const policy: PolicyDocument = { ...emptyPolicy, budgets: [{ scope: "principal", match: "*", windowMs: day, tokens: 10 }] };
      const dead = "redis://127.0.0.1:1";
      const [closed] = yield* instances(1, policy, { url: dead, connectTimeoutMs: 200 });
      expect(yield* Effect.flip(closed!.reserve(req(alice, 1)))).toMatchObject({ _tag: "RateLimiterUnavailable" });
      const [open] = yield* instances(1, policy, { url: dead, onError: "allow", connectTimeoutMs: 200 });
      const r = req(alice, 1000);
      expect(yield* open!.reserve(r)).toEqual({ executionId: r.executionId, reserved: 0 });
      // Nothing was reserved: usage and settlement have nothing to do, and do not fail.
      yield* open!.usage(r, 2000);
      yield* open!.settle(r, 2000);
      // Without any budget that applies, Redis is not even asked.
      const [idle] = yield* instances(1, emptyPolicy, { url: dead, connectTimeoutMs: 200 });
      expect(yield* idle!.reserve(req(alice, 5))).toMatchObject({ reserved: 0 });
    }),
  );
});
