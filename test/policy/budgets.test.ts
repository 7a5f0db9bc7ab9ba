/**
 * The TokenLedger in memory, under TestClock: reservation and settlement exact under concurrency,
 * refusals naming the budget with what remains and when it frees, rolling-window expiry to the
 * bucket, tenant budgets shared by principals, model rpm/tpm inherited global → tenant → principal,
 * usage charged mid-run (all or nothing), and the settlement rules.
 */
import { describe, expect, it } from "@effect/vitest";
import { Effect, Either, TestClock } from "effect";
import type { Principal } from "../../src/core/model.js";
import { emptyPolicy, type BudgetConfig, type PolicyDocument } from "../../src/policy/config.js";
import { budgetPlan, formatWindow } from "../../src/policy/budgets/plan.js";
import { geometry, RollingCounter } from "../../src/policy/budgets/windows.js";
import { TokenLedgerMemory } from "../../src/ports/memory/TokenLedgerMemory.js";
import { BudgetExhausted, TokenLedger, type LedgerRequest } from "../../src/ports/TokenLedger.js";

const alice: Principal = { subject: "alice", tenant: "acme", roles: ["operator"] };
const bob: Principal = { subject: "bob", tenant: "acme", roles: ["operator"] };
const carol: Principal = { subject: "carol", tenant: "acme", roles: ["operator"] };
const olga: Principal = { subject: "olga", tenant: "globex", roles: ["operator"] };

const minute = 60_000;
const day = 86_400_000;
const policy = (p: Partial<PolicyDocument>): PolicyDocument => ({ ...emptyPolicy, ...p });
const budget = (scope: BudgetConfig["scope"], match: string, windowMs: number, tokens: number): BudgetConfig => ({ scope, match, windowMs, tokens });

let seq = 0;
const req = (principal: Principal, estimatedTokens: number, model?: string): LedgerRequest => ({
  executionId: `x${++seq}`,
  principal,
  estimatedTokens,
  ...(model === undefined ? {} : { model }),
});

const ledger = TokenLedger;
const configure = (p: PolicyDocument) => Effect.flatMap(ledger, (l) => l.configure(p));
const reserve = (r: LedgerRequest) => Effect.flatMap(ledger, (l) => l.reserve(r));
const usage = (r: LedgerRequest, total: number) => Effect.flatMap(ledger, (l) => l.usage(r, total));
const settle = (r: LedgerRequest, total: number | undefined) => Effect.flatMap(ledger, (l) => l.settle(r, total));
const remaining = (p: Principal, model?: string) => Effect.flatMap(ledger, (l) => l.remaining(p, model));
const remainingOf = (p: Principal, name: string, model?: string) =>
  Effect.map(remaining(p, model), (all) => all.find((s) => s.budget === name)?.remaining);

describe("rolling windows (buckets)", () => {
  it("60 buckets per window; a charge counts for at least the window and at most one bucket more", () => {
    expect(geometry(minute)).toEqual({ width: 1000, span: 60 });
    expect(geometry(30 * day)).toEqual({ width: 12 * 3_600_000, span: 60 });
    // A window that 60 does not divide: buckets round up, and the span still covers the window.
    const g = geometry(1000);
    expect(g.width * g.span).toBeGreaterThanOrEqual(1000);
    for (const windowMs of [1000, 7_777, minute, day]) {
      const { width, span } = geometry(windowMs);
      // Gone (span + 1) buckets after its bucket began: at most W + w late, W + 2w when 60 does not divide W.
      expect((span + 1) * width).toBeLessThanOrEqual(windowMs + (windowMs % 60 === 0 ? 1 : 2) * width);
      for (const t of [0, 1, width - 1, width, 5 * width + 3]) {
        const c = new RollingCounter(windowMs);
        c.charge(t, 1);
        expect(c.used(t + windowMs - 1)).toBe(1);
        expect(c.used(Math.floor(t / width) * width + (span + 1) * width)).toBe(0);
      }
    }
    expect(formatWindow(day)).toBe("1d");
    expect(formatWindow(90_000)).toBe("90s");
    expect(formatWindow(1500)).toBe("1500ms");
  });
});

describe("TokenLedger in memory", () => {
  it.effect("100 concurrent reservations of 15 against 1000: exactly 66; settlement refunds; then more fit", () =>
    Effect.gen(function* () {
      yield* configure(policy({ budgets: [budget("principal", "*", day, 1000)] }));
      const reqs = Array.from({ length: 100 }, () => req(alice, 15));
      const results = yield* Effect.all(
        reqs.map((r) => Effect.either(reserve(r))),
        { concurrency: "unbounded" },
      );
      const admitted = reqs.filter((_, i) => Either.isRight(results[i]!));
      expect(admitted).toHaveLength(66);
      const refused = results.find(Either.isLeft)!.left;
      expect(refused).toMatchObject({ _tag: "BudgetExhausted", budget: "principal:alice:1d", limit: 1000, remaining: 10, requested: 15 });
      expect(yield* remainingOf(alice, "principal:alice:1d")).toBe(10);

      // Ten runs used 5 of their 15: 100 back. Another ten used 20: 50 more charged, past nothing.
      yield* Effect.all(admitted.slice(0, 10).map((r) => settle(r, 5)), { concurrency: "unbounded" });
      expect(yield* remainingOf(alice, "principal:alice:1d")).toBe(110);
      yield* Effect.all(admitted.slice(10, 12).map((r) => settle(r, 20)), { concurrency: "unbounded" });
      expect(yield* remainingOf(alice, "principal:alice:1d")).toBe(100);

      const more = yield* Effect.all(Array.from({ length: 10 }, () => Effect.either(reserve(req(alice, 15)))), { concurrency: "unbounded" });
      expect(more.filter(Either.isRight)).toHaveLength(6);
      expect(yield* remainingOf(alice, "principal:alice:1d")).toBe(10);
      // Another principal has its own budget.
      expect(yield* remainingOf(bob, "principal:bob:1d")).toBe(1000);
    }).pipe(Effect.provide(TokenLedgerMemory)),
  );

  it.effect("a refusal names the budget, what remains, and when enough will have rolled out", () =>
    Effect.gen(function* () {
      yield* configure(policy({ budgets: [budget("principal", "*", minute, 100)] }));
      yield* reserve(req(alice, 60));
      yield* TestClock.adjust("10 seconds");
      yield* reserve(req(alice, 30));
      const e = yield* Effect.flip(reserve(req(alice, 20)));
      expect(e).toBeInstanceOf(BudgetExhausted);
      // 10 more must roll out: the 60 charged in bucket 0 leave at 61 s (one bucket after the window).
      expect(e).toMatchObject({ budget: "principal:alice:1m", limit: 100, remaining: 10, requested: 20, retryAfterMs: 51_000 });
      expect(e.message).toBe("token budget principal:alice:1m exhausted: 10 of 100 left, 20 requested; retry after 51s");
      // A budget with nothing left refuses even a run that gives no estimate (it needs 1 token).
      yield* reserve(req(alice, 10));
      expect(yield* Effect.flip(reserve(req(alice, 0)))).toMatchObject({ remaining: 0, requested: 1 });
      // Asking for more than the limit can never fit: refused, with the time until all rolls out.
      expect(yield* Effect.flip(reserve(req(bob, 101)))).toMatchObject({ budget: "principal:bob:1m", remaining: 100, requested: 101, retryAfterMs: 60_000 });
    }).pipe(Effect.provide(TokenLedgerMemory)),
  );

  it.effect("the window rolls: tokens stop counting one bucket after the window, never before", () =>
    Effect.gen(function* () {
      yield* configure(policy({ budgets: [budget("principal", "*", minute, 100)] }));
      yield* TestClock.adjust("500 millis");
      yield* reserve(req(alice, 70)); // bucket 0 (0–999 ms)
      yield* TestClock.adjust("30 seconds");
      yield* reserve(req(alice, 30)); // bucket 30
      expect(Either.isLeft(yield* Effect.either(reserve(req(alice, 1))))).toBe(true);
      // t = 60.5 s: exactly one window after the first charge; it still counts.
      yield* TestClock.adjust("30 seconds");
      expect(yield* remainingOf(alice, "principal:alice:1m")).toBe(0);
      // t = 60.999 s: still; t = 61 s: bucket 0 rolls out.
      yield* TestClock.adjust("499 millis");
      expect(yield* remainingOf(alice, "principal:alice:1m")).toBe(0);
      yield* TestClock.adjust("1 millis");
      expect(yield* remainingOf(alice, "principal:alice:1m")).toBe(70);
      yield* reserve(req(alice, 70));
      // t = 91 s: the second charge rolls out too; 30 back.
      yield* TestClock.adjust("30 seconds");
      expect(yield* remainingOf(alice, "principal:alice:1m")).toBe(30);
    }).pipe(Effect.provide(TokenLedgerMemory)),
  );

  it.effect("a tenant budget is shared by its principals; budgets counting the same thing are one counter with the smaller limit", () =>
    Effect.gen(function* () {
      yield* configure(
        policy({
          budgets: [budget("tenant", "*", day, 1000)],
          tenants: { acme: { budgets: [budget("tenant", "acme", day, 500), budget("principal", "carol", day, 50)] } },
        }),
      );
      yield* reserve(req(alice, 300));
      const e = yield* Effect.flip(reserve(req(bob, 300)));
      expect(e).toMatchObject({ budget: "tenant:acme:1d", limit: 500, remaining: 200, requested: 300 });
      yield* reserve(req(bob, 150));
      // carol: the tenant still has 50 (charged once, not once per declaration), and her own 50.
      expect(yield* remaining(carol)).toEqual([
        { budget: "tenant:acme:1d", limit: 500, remaining: 50, retryAfterMs: 0 },
        { budget: "principal:carol:1d", limit: 50, remaining: 50, retryAfterMs: 0 },
      ]);
      yield* reserve(req(carol, 50));
      expect(yield* Effect.flip(reserve(req(alice, 1)))).toMatchObject({ budget: "tenant:acme:1d", remaining: 0 });
      // Another tenant: its own counter under the global budget.
      yield* reserve(req(olga, 1000));
      expect(yield* remaining(olga)).toEqual([{ budget: "tenant:globex:1d", limit: 1000, remaining: 0, retryAfterMs: expect.any(Number) }]);
    }).pipe(Effect.provide(TokenLedgerMemory)),
  );

  it.effect("model budgets: declared globally they count everyone's tokens on the model; declared in a tenant, that tenant's", () =>
    Effect.gen(function* () {
      yield* configure(
        policy({
          budgets: [budget("model", "*", day, 1000)],
          tenants: { acme: { budgets: [budget("model", "gpt-4o", day, 100)] } },
        }),
      );
      yield* reserve(req(alice, 80, "gpt-4o"));
      expect(yield* Effect.flip(reserve(req(bob, 30, "gpt-4o")))).toMatchObject({ budget: "tenant:acme:model:gpt-4o:1d", remaining: 20 });
      yield* reserve(req(olga, 910, "gpt-4o"));
      expect(yield* Effect.flip(reserve(req(bob, 15, "gpt-4o")))).toMatchObject({ budget: "model:gpt-4o:1d", remaining: 10 });
      // Each model separately ("*"); an execution with no model is not charged to model budgets.
      yield* reserve(req(olga, 1000, "claude"));
      yield* reserve(req(olga, 5000));
    }).pipe(Effect.provide(TokenLedgerMemory)),
  );

  it.effect("model rpm and tpm: global < tenant < principal, field by field, each counting whom it was declared for", () =>
    Effect.gen(function* () {
      yield* configure(
        policy({
          models: { "gpt-4o": { rpm: 5, tpm: 1000 } },
          tenants: { acme: { models: { "gpt-4o": { rpm: 3 } }, principals: { alice: { models: { "gpt-4o": { tpm: 100 } } } } } },
        }),
      );
      expect((yield* remaining(alice, "gpt-4o")).map((s) => [s.budget, s.limit])).toEqual([
        ["principal:alice:model:gpt-4o:tpm", 100],
        ["tenant:acme:model:gpt-4o:rpm", 3],
      ]);
      expect((yield* remaining(bob, "gpt-4o")).map((s) => [s.budget, s.limit])).toEqual([
        ["model:gpt-4o:tpm", 1000],
        ["tenant:acme:model:gpt-4o:rpm", 3],
      ]);
      expect((yield* remaining(olga, "gpt-4o")).map((s) => [s.budget, s.limit])).toEqual([
        ["model:gpt-4o:tpm", 1000],
        ["model:gpt-4o:rpm", 5],
      ]);

      // alice's own tpm: 100 a minute, whatever acme's other principals use.
      yield* reserve(req(alice, 100, "gpt-4o"));
      expect(yield* Effect.flip(reserve(req(alice, 1, "gpt-4o")))).toMatchObject({ budget: "principal:alice:model:gpt-4o:tpm", limit: 100, remaining: 0 });
      // acme's rpm (3) is shared: alice used 1 (her refused one took nothing), bob takes 2, then none.
      yield* reserve(req(bob, 10, "gpt-4o"));
      yield* reserve(req(bob, 10, "gpt-4o"));
      const e = yield* Effect.flip(reserve(req(bob, 10, "gpt-4o")));
      expect(e).toMatchObject({ budget: "tenant:acme:model:gpt-4o:rpm", limit: 3, remaining: 0, requested: 1, retryAfterMs: 61_000 });
      // bob's tokens went to the global tpm, shared with globex.
      expect(yield* remainingOf(olga, "model:gpt-4o:tpm", "gpt-4o")).toBe(980);
      // globex: the global 5 rpm, untouched by acme.
      for (let i = 0; i < 5; i++) yield* reserve(req(olga, 1, "gpt-4o"));
      expect(yield* Effect.flip(reserve(req(olga, 1, "gpt-4o")))).toMatchObject({ budget: "model:gpt-4o:rpm", limit: 5 });
      // A refusal takes nothing: the rpm that bob was refused was not consumed, nor any tpm.
      expect(yield* remainingOf(olga, "model:gpt-4o:tpm", "gpt-4o")).toBe(975);
      // The minute rolls: requests and tokens come back.
      yield* TestClock.adjust("61 seconds");
      yield* reserve(req(bob, 10, "gpt-4o"));
      yield* reserve(req(alice, 100, "gpt-4o"));
      // A model without limits, or no model: nothing to count.
      expect(yield* remaining(alice, "claude")).toEqual([]);
    }).pipe(Effect.provide(TokenLedgerMemory)),
  );

  it.effect("usage mid-run charges the excess all or nothing and refuses past a budget; settlement charges what was used anyway", () =>
    Effect.gen(function* () {
      yield* configure(policy({ budgets: [budget("principal", "*", day, 100), budget("tenant", "*", day, 1000)] }));
      const r = req(alice, 50);
      expect(yield* reserve(r)).toEqual({ executionId: r.executionId, reserved: 50 });
      yield* usage(r, 40); // within the reservation: nothing more
      expect(yield* remainingOf(alice, "principal:alice:1d")).toBe(50);
      yield* usage(r, 80); // 30 more
      expect(yield* remainingOf(alice, "principal:alice:1d")).toBe(20);
      expect(yield* remainingOf(alice, "tenant:acme:1d")).toBe(920);
      const e = yield* Effect.flip(usage(r, 130));
      expect(e).toMatchObject({ _tag: "BudgetExhausted", budget: "principal:alice:1d", limit: 100, remaining: 20, requested: 50, executionId: r.executionId });
      // Nothing of the refused 50 was charged, to any budget.
      expect(yield* remainingOf(alice, "principal:alice:1d")).toBe(20);
      expect(yield* remainingOf(alice, "tenant:acme:1d")).toBe(920);
      // The run stopped having used 130: settled at 130, past the limit.
      yield* settle(r, 130);
      expect(yield* remainingOf(alice, "principal:alice:1d")).toBe(0);
      expect(yield* remainingOf(alice, "tenant:acme:1d")).toBe(870);
      // Settled: later reports of that execution change nothing.
      yield* usage(r, 500);
      yield* settle(r, 500);
      expect(yield* remainingOf(alice, "tenant:acme:1d")).toBe(870);
    }).pipe(Effect.provide(TokenLedgerMemory)),
  );

  it.effect("settlement: nothing reported keeps the estimate; 0 refunds it all; a refund after the window gives nothing back", () =>
    Effect.gen(function* () {
      yield* configure(policy({ budgets: [budget("principal", "*", minute, 100)] }));
      const silent = req(alice, 30);
      yield* reserve(silent);
      yield* settle(silent, undefined);
      expect(yield* remainingOf(alice, "principal:alice:1m")).toBe(70);
      const unused = req(alice, 30);
      yield* reserve(unused);
      yield* settle(unused, 0);
      expect(yield* remainingOf(alice, "principal:alice:1m")).toBe(70);
      // A run longer than the window: its reservation already rolled out, so its refund is nothing.
      const long = req(alice, 40);
      yield* reserve(long);
      yield* TestClock.adjust("2 minutes");
      expect(yield* remainingOf(alice, "principal:alice:1m")).toBe(100);
      yield* settle(long, 10);
      expect(yield* remainingOf(alice, "principal:alice:1m")).toBe(100);
      // A total that went up and then down: refunds come from the reservation only.
      const wobbly = req(alice, 20);
      yield* reserve(wobbly);
      yield* usage(wobbly, 50);
      yield* settle(wobbly, 0);
      expect(yield* remainingOf(alice, "principal:alice:1m")).toBe(70);
    }).pipe(Effect.provide(TokenLedgerMemory)),
  );

  it.effect("a policy reload applies to later reservations; runs in flight settle on the budgets they reserved on", () =>
    Effect.gen(function* () {
      yield* configure(policy({ budgets: [budget("principal", "*", day, 100)] }));
      const r = req(alice, 60);
      yield* reserve(r);
      yield* configure(policy({ budgets: [budget("tenant", "*", day, 1000)] }));
      yield* settle(r, 10); // refunds 50 to principal:alice:1d, charges nothing to the tenant
      expect(yield* remaining(alice)).toEqual([{ budget: "tenant:acme:1d", limit: 1000, remaining: 1000, retryAfterMs: 0 }]);
      yield* configure(policy({ budgets: [budget("principal", "*", day, 100)] }));
      expect(yield* remaining(alice)).toEqual([{ budget: "principal:alice:1d", limit: 100, remaining: 90, retryAfterMs: 0 }]);
    }).pipe(Effect.provide(TokenLedgerMemory)),
  );

  it.effect("no budget applies: nothing reserved, usage and settlement are no-ops", () =>
    Effect.gen(function* () {
      const r = req(alice, 10_000_000);
      expect(yield* reserve(r)).toEqual({ executionId: r.executionId, reserved: 0 });
      yield* usage(r, 20_000_000);
      yield* settle(r, 20_000_000);
      expect(yield* remaining(alice)).toEqual([]);
    }).pipe(Effect.provide(TokenLedgerMemory)),
  );
});

describe("budgetPlan", () => {
  it("keys escape their parts: a subject with ':' never shares a counter with another principal", () => {
    const plan = budgetPlan(policy({ budgets: [budget("principal", "*", day, 1)] }));
    const a = plan.countersFor({ subject: "b:c", tenant: "a", roles: [] }, undefined).tokens[0]!;
    const b = plan.countersFor({ subject: "c", tenant: "a:b", roles: [] }, undefined).tokens[0]!;
    expect(a.key).not.toBe(b.key);
  });
});
