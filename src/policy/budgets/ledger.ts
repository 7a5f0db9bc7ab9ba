/**
 * The token ledger over a counter store: what both TokenLedger Layers share. The store does the
 * one atomic step (memory: one synchronous block on Node's single thread; Redis: one Lua script);
 * this module decides what to charge, keeps each execution's hold, and words the refusals.
 * Semantics: the module comment of src/ports/TokenLedger.ts.
 *
 * Holds (what an execution reserved and has been charged) live in the memory of the process that
 * runs the execution — reserve, usage and settle of one execution always happen there. A process
 * that dies mid-run leaves its reservations charged; they roll out with their windows.
 */
import { Effect } from "effect";
import { BudgetExhausted, RateLimiterUnavailable } from "../../core/errors.js";
import type { FailureMode } from "../../ports/RateLimiter.js";
import { type BudgetStatus, type LedgerRequest, type Reservation, TokenLedger, type TokenLedgerShape } from "../../ports/TokenLedger.js";
import { emptyPolicy } from "../config.js";
import { budgetPlan, type BudgetPlan, type Counter } from "./plan.js";

export interface CounterOp {
  readonly counter: Counter;
  /** > 0: charged to the current bucket; < 0: refunded from the bucket current at `at`. */
  readonly amount: number;
  /** A checked step admits only when limit − used ≥ need on every counter. */
  readonly need: number;
  /** The time (store clock) of the bucket a refund comes from. */
  readonly at?: number;
}

export interface StepResult {
  /** Always true for an unchecked step. */
  readonly admitted: boolean;
  /** The store's clock (ms) at the step. */
  readonly now: number;
  /** Per op, what its counter held before the step. */
  readonly used: ReadonlyArray<number>;
  /** Per op whose counter cannot take `need`: how long until it can; else 0. */
  readonly retryAfterMs: ReadonlyArray<number>;
}

/** The atomic step: checked (all or nothing) or not (settlement). Ops with amount 0 only read. */
export interface CounterStore<E> {
  readonly step: (ops: ReadonlyArray<CounterOp>, checked: boolean) => Effect.Effect<StepResult, E>;
}

interface Hold {
  /** Store time of the reservation (its bucket, for refunds). */
  readonly at: number;
  readonly reserved: number;
  /** Reserved plus every excess charged since. */
  charged: number;
  readonly tokens: ReadonlyArray<Counter>;
  readonly lock: Effect.Semaphore;
  settled: boolean;
}

export interface LedgerOptions {
  /** When the store fails: refuse reservations ("deny", default) or admit them unreserved. */
  readonly onError?: FailureMode;
  /** Log prefix. */
  readonly name: string;
}

const tokens = (n: number) => Math.max(0, Math.ceil(n));

/** The refusal: of the counters that could not take their share, the one that frees last. */
function refusal(ops: ReadonlyArray<CounterOp>, r: StepResult, executionId?: string): BudgetExhausted {
  let worst = -1;
  ops.forEach((o, i) => {
    if (o.counter.limit - r.used[i]! >= o.need) return;
    if (worst < 0 || r.retryAfterMs[i]! > r.retryAfterMs[worst]!) worst = i;
  });
  const i = Math.max(0, worst);
  const o = ops[i]!;
  return new BudgetExhausted({
    budget: o.counter.name,
    limit: o.counter.limit,
    remaining: Math.max(0, o.counter.limit - r.used[i]!),
    retryAfterMs: r.retryAfterMs[i]!,
    requested: o.need,
    ...(executionId === undefined ? {} : { executionId }),
  });
}

export const makeTokenLedger = <E>(store: CounterStore<E>, options: LedgerOptions): Effect.Effect<TokenLedgerShape> =>
  Effect.sync(() => {
    const onError = options.onError ?? "deny";
    const describe = (e: unknown) => (e instanceof Error ? e.message : String(e));
    let plan: BudgetPlan = budgetPlan(emptyPolicy);
    const holds = new Map<string, Hold>();

    const reserve = (req: LedgerRequest): Effect.Effect<Reservation, BudgetExhausted | RateLimiterUnavailable> =>
      Effect.suspend(() => {
        const { tokens: budgets, requests } = plan.countersFor(req.principal, req.model);
        const estimate = tokens(req.estimatedTokens);
        if (budgets.length === 0 && requests.length === 0) return Effect.succeed({ executionId: req.executionId, reserved: 0 });
        const ops: CounterOp[] = [
          ...budgets.map((counter) => ({ counter, amount: estimate, need: Math.max(estimate, 1) })),
          ...requests.map((counter) => ({ counter, amount: 1, need: 1 })),
        ];
        return store.step(ops, true).pipe(
          Effect.catchAll((e) =>
            onError === "deny"
              ? Effect.fail(new RateLimiterUnavailable({ error: describe(e) }))
              : Effect.as(Effect.logDebug(`${options.name}: store unreachable; admitted without a reservation`, describe(e)), undefined),
          ),
          Effect.flatMap((r) => {
            if (r === undefined) return Effect.succeed({ executionId: req.executionId, reserved: 0 });
            if (!r.admitted) return Effect.fail(refusal(ops, r));
            if (budgets.length > 0) {
              holds.set(req.executionId, { at: r.now, reserved: estimate, charged: estimate, tokens: budgets, lock: Effect.unsafeMakeSemaphore(1), settled: false });
            }
            return Effect.succeed({ executionId: req.executionId, reserved: estimate });
          }),
        );
      });

    const usage = (req: LedgerRequest, totalTokens: number): Effect.Effect<void, BudgetExhausted> =>
      Effect.suspend(() => {
        const hold = holds.get(req.executionId);
        if (hold === undefined) return Effect.void;
        return hold.lock.withPermits(1)(
          Effect.suspend(() => {
            const delta = tokens(totalTokens) - hold.charged;
            if (hold.settled || delta <= 0) return Effect.void;
            const ops = hold.tokens.map((counter) => ({ counter, amount: delta, need: delta }));
            return store.step(ops, true).pipe(
              // Not charged now: settlement charges it (when the store is back).
              Effect.catchAll((e) => Effect.as(Effect.logDebug(`${options.name}: store unreachable; usage not charged yet`, describe(e)), undefined)),
              Effect.flatMap((r) => {
                if (r === undefined) return Effect.void;
                if (!r.admitted) return Effect.fail(refusal(ops, r, req.executionId));
                hold.charged += delta;
                return Effect.void;
              }),
            );
          }),
        );
      });

    const settle = (req: LedgerRequest, totalTokens: number | undefined): Effect.Effect<void> =>
      Effect.suspend(() => {
        const hold = holds.get(req.executionId);
        if (hold === undefined) return Effect.void;
        holds.delete(req.executionId);
        return hold.lock.withPermits(1)(
          Effect.suspend(() => {
            hold.settled = true;
            const diff = (totalTokens === undefined ? hold.charged : tokens(totalTokens)) - hold.charged;
            if (diff === 0) return Effect.void;
            // Refunds come from the reservation's bucket, so at most what was reserved there; an
            // excess charged later and then reported away again (a total that went down) stays.
            const refund = Math.min(-diff, hold.reserved);
            if (diff < 0 && refund === 0) return Effect.void;
            const ops: CounterOp[] =
              diff > 0
                ? hold.tokens.map((counter) => ({ counter, amount: diff, need: 0 }))
                : hold.tokens.map((counter) => ({ counter, amount: -refund, need: 0, at: hold.at }));
            return store.step(ops, false).pipe(
              Effect.asVoid,
              Effect.catchAll((e) =>
                Effect.logWarning(`${options.name}: settling execution ${req.executionId} failed; ${Math.abs(diff)} tokens not ${diff > 0 ? "charged" : "refunded"}`, describe(e)),
              ),
            );
          }),
        );
      });

    const remaining = (principal: LedgerRequest["principal"], model?: string): Effect.Effect<ReadonlyArray<BudgetStatus>> =>
      Effect.suspend(() => {
        const { tokens: budgets, requests } = plan.countersFor(principal, model);
        const ops = [...budgets, ...requests].map((counter) => ({ counter, amount: 0, need: 1 }));
        if (ops.length === 0) return Effect.succeed([]);
        return store.step(ops, true).pipe(
          Effect.map((r) =>
            ops.map((o, i) => ({
              budget: o.counter.name,
              limit: o.counter.limit,
              remaining: Math.max(0, o.counter.limit - r.used[i]!),
              retryAfterMs: r.retryAfterMs[i]!,
            })),
          ),
          Effect.orDie,
        );
      });

    return TokenLedger.of({
      configure: (policy) => Effect.sync(() => void (plan = budgetPlan(policy))),
      reserve,
      usage,
      settle,
      remaining,
    });
  });
