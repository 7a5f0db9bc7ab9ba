/**
 * Token budgets through the real Orchestrator and the real policy Layer (PolicyEngine +
 * PolicyServiceLive, in-memory ledger), under TestClock: exact reservation and settlement with
 * concurrent executions, a budget exceeded mid-run stopping the run (FAILED TOKEN_BUDGET_EXHAUSTED,
 * its finalizer run), the reservation given back when a later step refuses the start, and model
 * limits. Then the wire: the error mapping, and a real server with --policy-file refusing with
 * RESOURCE_EXHAUSTED, TOKEN_BUDGET_EXHAUSTED and what remains.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest";
import { Either, Effect, Exit, Fiber, Layer, Ref, Schema, Stream, TestClock } from "effect";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { ExecutionService } from "../../gen/orchestrator/v1/execution_service_pb.js";
import { Orchestrator } from "../../src/core/Orchestrator.js";
import { OrchestratorConfig, type OrchestratorSettings } from "../../src/core/OrchestratorConfig.js";
import { BudgetExhausted } from "../../src/core/errors.js";
import type { ExecutionEvent, JsonObject, Principal } from "../../src/core/model.js";
import { classifyOperationError, defineOperation, OperationRegistry } from "../../src/core/operation.js";
import { demoOperations } from "../../src/operations/demo.js";
import { emptyPolicy, type PolicyDocument } from "../../src/policy/config.js";
import { PolicyEngine } from "../../src/policy/PolicyEngine.js";
import { policyLayer } from "../../src/policy/PolicyServiceLive.js";
import { AuditLogger } from "../../src/ports/AuditLogger.js";
import { ExecutionStore } from "../../src/ports/ExecutionStore.js";
import { AuditLoggerMemory } from "../../src/ports/memory/AuditLoggerMemory.js";
import { ExecutionStoreMemory } from "../../src/ports/memory/ExecutionStoreMemory.js";
import { TokenLedgerMemory } from "../../src/ports/memory/TokenLedgerMemory.js";
import { RateLimiterMemory } from "../../src/ports/RateLimiter.js";
import { TokenLedger } from "../../src/ports/TokenLedger.js";
import { toConnectError } from "../../src/transport/error-mapping.js";
import { startTestServer, type TestServer } from "../support/server.js";

const alice: Principal = { subject: "alice", tenant: "acme", roles: ["admin"] };
const bob: Principal = { subject: "bob", tenant: "acme", roles: ["admin"] };
const hour = 3_600_000;
const day = 86_400_000;

/**
 * `test.tokens`: estimates `estimate` tokens; reports each total of `reports` in turn (the run's
 * usage so far), holding 1 s after each; records how it ended.
 */
const tokensOperation = (endings: Ref.Ref<ReadonlyArray<string>>) =>
  defineOperation({
    name: "test.tokens",
    description: "reports growing token usage",
    input: Schema.Struct({ estimate: Schema.Number, reports: Schema.Array(Schema.Number), model: Schema.optional(Schema.String) }),
    classify: classifyOperationError,
    estimateTokens: (input) => input.estimate,
    model: (input) => input.model,
    run: (input, ctx) =>
      Effect.gen(function* () {
        for (const total of input.reports) {
          yield* ctx.reportUsage({ inputTokens: total, outputTokens: 0, totalTokens: total });
          yield* Effect.sleep("1 second");
        }
        return { reported: input.reports.at(-1) ?? 0 };
      }).pipe(
        Effect.onExit((exit) => Ref.update(endings, (e) => [...e, `${ctx.executionId}:${Exit.isInterrupted(exit) ? "interrupted" : Exit.isSuccess(exit) ? "succeeded" : "failed"}`])),
      ),
  });

const coreWithBudgets = (endings: Ref.Ref<ReadonlyArray<string>>, settings: Partial<OrchestratorSettings> = {}) => {
  const base = Layer.mergeAll(
    OrchestratorConfig.layer({ retryDefaults: { ...OrchestratorConfig.defaults().retryDefaults, jitter: 0 }, ...settings }),
    OperationRegistry.layer([...demoOperations, tokensOperation(endings)]),
    ExecutionStoreMemory,
    AuditLoggerMemory,
    RateLimiterMemory,
    TokenLedgerMemory,
  );
  return Orchestrator.Default.pipe(Layer.provideMerge(policyLayer({}).pipe(Layer.provideMerge(base))));
};

const withBudgets = <A, E>(
  policy: Partial<PolicyDocument>,
  body: (endings: Ref.Ref<ReadonlyArray<string>>) => Effect.Effect<A, E, Orchestrator | ExecutionStore | AuditLogger | TokenLedger | PolicyEngine>,
  settings: Partial<OrchestratorSettings> = {},
) =>
  Effect.gen(function* () {
    const endings = yield* Ref.make<ReadonlyArray<string>>([]);
    return yield* Effect.gen(function* () {
      yield* Effect.flatMap(PolicyEngine, (e) => e.apply({ ...emptyPolicy, ...policy }));
      return yield* body(endings);
    }).pipe(Effect.provide(coreWithBudgets(endings, settings)));
  });

const remainingOf = (p: Principal, name: string, model?: string) =>
  Effect.map(Effect.flatMap(TokenLedger, (l) => l.remaining(p, model)), (all) => all.find((s) => s.budget === name)?.remaining);

/**
 * Starts `n` executions at once and lets them run: admitted ones hold their reservation 1 s
 * (TestClock) while every other start is decided, so the budget sees all of them together.
 */
const burst = (n: number, principal: Principal, input: JsonObject) =>
  Effect.gen(function* () {
    const o = yield* Orchestrator;
    const returned = yield* Ref.make(0);
    const fiber = yield* Effect.all(
      Array.from({ length: n }, () => o.execute("test.tokens", input, { principal }).pipe(Effect.either, Effect.tap(() => Ref.update(returned, (k) => k + 1)))),
      { concurrency: "unbounded" },
    ).pipe(Effect.fork);
    while (o.running() + (yield* Ref.get(returned)) < n) yield* Effect.yieldNow();
    yield* TestClock.adjust("1 second");
    return yield* Fiber.join(fiber);
  });

describe("token budgets through the Orchestrator", () => {
  it.effect("100 concurrent executions reserving 15 of 1000: exactly 66 run; the rest are refused naming what remains; settlement refunds; then more fit", () =>
    withBudgets({ budgets: [{ scope: "principal", match: "*", windowMs: day, tokens: 1000 }] }, () =>
      Effect.gen(function* () {
        const results = yield* burst(100, alice, { estimate: 15, reports: [5] });
        expect(results.filter(Either.isRight)).toHaveLength(66);
        const refused = results.filter(Either.isLeft).map((r) => r.left);
        expect(refused).toHaveLength(34);
        for (const e of refused) {
          expect(e).toBeInstanceOf(BudgetExhausted);
          expect(e).toMatchObject({ budget: "principal:alice:1d", limit: 1000, remaining: 10, requested: 15 });
          expect((e as BudgetExhausted).executionId).toBeUndefined();
        }
        // The refusals are audited with the budget; nothing of them was stored or run.
        const audit = yield* Effect.flatMap(AuditLogger, (a) => a.read(0, 100_000));
        const denied = audit.filter((a) => a.type === "POLICY_EVALUATED" && a.decision === "DENY");
        expect(denied).toHaveLength(34);
        expect(denied[0]!.details).toMatchObject({ budget: "principal:alice:1d", remaining: 10, requested: 15 });
        const stored = yield* Effect.flatMap(ExecutionStore, (s) => s.list({}, "CREATE_TIME_DESCENDING", 1000, undefined));
        expect(stored.items).toHaveLength(66);

        // Each used 5 of its 15: 66 × 10 back.
        expect(yield* remainingOf(alice, "principal:alice:1d")).toBe(1000 - 66 * 5);
        const more = yield* burst(50, alice, { estimate: 15, reports: [15] });
        expect(more.filter(Either.isRight)).toHaveLength(44);
        expect(yield* remainingOf(alice, "principal:alice:1d")).toBe(670 - 44 * 15);
        // Another principal: its own budget.
        expect(yield* remainingOf(bob, "principal:bob:1d")).toBe(1000);
      }),
    ),
  );

  it.effect("a budget exceeded mid-run stops the run at once: FAILED TOKEN_BUDGET_EXHAUSTED (not retried), its finalizer ran, usage settled", () =>
    withBudgets({ budgets: [{ scope: "principal", match: "*", windowMs: hour, tokens: 100 }] }, (endings) =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const events: ExecutionEvent[] = [];
        const fiber = yield* o
          .executeStream({ operation: "test.tokens", input: { estimate: 20, reports: [10, 50, 90, 150, 200] }, principal: alice, retry: { maximumAttempts: 5 } })
          .pipe(Stream.runForEach((e) => Effect.sync(() => void events.push(e))), Effect.fork);
        yield* TestClock.adjust("10 seconds");
        yield* Fiber.join(fiber);
        const executionId = events[0]!.executionId;

        expect(events.map((e) => e.kind._tag)).toEqual(["Accepted", "AttemptStarted", "AttemptFailed", "Failed"]);
        const failed = events.at(-1)!.kind;
        const error = {
          type: "TOKEN_BUDGET_EXHAUSTED",
          message: "stopped: token budget principal:alice:1h exhausted mid-run: 10 of 100 left, 60 more used",
          retryable: false,
          details: { budget: "principal:alice:1h", limit: 100, remaining: 10, requested: 60, retry_after_ms: expect.any(Number) },
        };
        expect(failed).toEqual({ _tag: "Failed", error, attempts: 1 });
        expect(events[2]!.kind).toMatchObject({ _tag: "AttemptFailed", attempt: 1, willRetry: false, error });
        // It stopped at the report that did not fit (150, at 3 s): it never reported 200.
        const record = (yield* o.get(alice, executionId));
        expect(record).toMatchObject({ state: "FAILED", error, tokenUsage: { totalTokens: 150 } });
        expect(record.attempts).toHaveLength(1);
        expect(record.endTime! - record.startTime!).toBe(3000);
        expect(yield* Ref.get(endings)).toEqual([`${executionId}:interrupted`]);
        // Settled at what it used (150): the budget is spent, past its limit.
        expect(yield* remainingOf(alice, "principal:alice:1h")).toBe(0);
        const audit = yield* Effect.flatMap(AuditLogger, (a) => a.read(0, 100_000));
        expect(audit.find((a) => a.type === "EXECUTION_FAILED")?.details).toMatchObject({ error_type: "TOKEN_BUDGET_EXHAUSTED" });

        // The in-process API: execute() fails with the budget's status and the execution.
        yield* TestClock.adjust("2 hours");
        const run = yield* o.execute("test.tokens", { estimate: 10, reports: [30, 120] }, { principal: alice }).pipe(Effect.flip, Effect.fork);
        yield* TestClock.adjust("5 seconds");
        const e = yield* Fiber.join(run);
        expect(e).toBeInstanceOf(BudgetExhausted);
        expect(e).toMatchObject({ budget: "principal:alice:1h", limit: 100, remaining: 70, requested: 90 });
        expect((e as BudgetExhausted).executionId).toBeDefined();
        expect(e.message).toMatch(/^execution ".+" stopped: token budget principal:alice:1h exhausted: 70 of 100 left, 90 requested/);
      }),
    ),
  );

  it.effect("a run that passed the check but was refused by a later step gives its reservation back", () =>
    withBudgets(
      { budgets: [{ scope: "principal", match: "*", windowMs: day, tokens: 1000 }] },
      () =>
        Effect.gen(function* () {
          const o = yield* Orchestrator;
          const first = yield* o.execute("test.tokens", { estimate: 100, reports: [] }, { principal: alice }).pipe(Effect.fork);
          yield* TestClock.adjust("1 second");
          yield* Fiber.join(first);
          // Reported nothing: the estimate stands.
          expect(yield* remainingOf(alice, "principal:alice:1d")).toBe(900);
          const second = yield* Effect.flip(o.execute("test.tokens", { estimate: 100, reports: [] }, { principal: alice }));
          expect(second._tag).toBe("RateLimited");
          expect(yield* remainingOf(alice, "principal:alice:1d")).toBe(900);
        }),
      { operationRateLimit: { limit: 1, windowMs: hour } },
    ),
  );

  it.effect("model limits through the core: a tenant's rpm shared by its principals", () =>
    withBudgets({ models: { "gpt-4o": { rpm: 10 } }, tenants: { acme: { models: { "gpt-4o": { rpm: 2 } } } } }, () =>
      Effect.gen(function* () {
        const results = yield* burst(3, alice, { estimate: 1, reports: [], model: "gpt-4o" });
        expect(results.filter(Either.isRight)).toHaveLength(2);
        expect(yield* Effect.flip(Effect.scoped(Effect.flatMap(Orchestrator, (o) => o.execute("test.tokens", { estimate: 1, reports: [], model: "gpt-4o" }, { principal: bob }))))).toMatchObject({
          _tag: "BudgetExhausted",
          budget: "tenant:acme:model:gpt-4o:rpm",
          limit: 2,
          remaining: 0,
        });
      }),
    ),
  );
});

describe("the wire", () => {
  it("BudgetExhausted → RESOURCE_EXHAUSTED, ErrorInfo TOKEN_BUDGET_EXHAUSTED with the budget and what remains, RetryInfo", () => {
    const e = toConnectError(new BudgetExhausted({ budget: "tenant:acme:1d", limit: 1000, remaining: 10, requested: 15, retryAfterMs: 5_500 }));
    expect(e.code).toBe(Code.ResourceExhausted);
    expect(e.rawMessage).toBe("token budget tenant:acme:1d exhausted: 10 of 1000 left, 15 requested; retry after 6s");
    expect(e.findDetails(ErrorInfoSchema)[0]).toMatchObject({
      reason: "TOKEN_BUDGET_EXHAUSTED",
      domain: "orchestrator.v1",
      metadata: { budget: "tenant:acme:1d", limit: "1000", remaining: "10", requested: "15", retry_after_ms: "5500" },
    });
    expect(e.findDetails(RetryInfoSchema)[0]?.retryDelay).toMatchObject({ seconds: 5n, nanos: 500_000_000 });
    expect(e.metadata.get("retry-after")).toBe("6");
  });

  describe("a server with --policy-file", () => {
    let s: TestServer;
    beforeAll(async () => {
      const file = join(mkdtempSync(join(tmpdir(), "orchestrator-budgets-")), "policy.yaml");
      writeFileSync(file, ["budgets:", "  - scope: principal", '    match: "*"', "    window: 1d", "    tokens: 30", ""].join("\n"));
      s = await startTestServer({ args: ["--policy-file", file] });
    });
    afterAll(() => s?.shutdown());

    it("refuses a start over budget with RESOURCE_EXHAUSTED, TOKEN_BUDGET_EXHAUSTED, the remaining budget and RetryInfo", async () => {
      const client = createClient(ExecutionService, createGrpcTransport({ baseUrl: s.baseUrl }));
      // demo.echo estimates 2 × ceil(40 / 4) = 20 tokens and reports as much.
      const message = "x".repeat(40);
      const ok = [];
      for await (const r of client.execute({ operation: "demo.echo", input: { message } })) ok.push(r.event?.kind.case);
      expect(ok.at(-1)).toBe("succeeded");

      let error: ConnectError | undefined;
      try {
        for await (const _ of client.execute({ operation: "demo.echo", input: { message } }));
      } catch (e) {
        error = ConnectError.from(e);
      }
      expect(error?.code).toBe(Code.ResourceExhausted);
      expect(error?.findDetails(ErrorInfoSchema)[0]).toMatchObject({
        reason: "TOKEN_BUDGET_EXHAUSTED",
        metadata: { budget: "principal:local:1d", limit: "30", remaining: "10", requested: "20" },
      });
      const delay = error!.findDetails(RetryInfoSchema)[0]!.retryDelay!;
      expect(Number(delay.seconds)).toBeGreaterThan(86_000);
      expect(error!.rawMessage).toMatch(/^token budget principal:local:1d exhausted: 10 of 30 left, 20 requested/);
    });
  });
});
