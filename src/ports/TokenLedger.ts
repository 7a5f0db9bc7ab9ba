/**
 * Port: token budgets and model limits. Exact under concurrency: reserve, usage and settle are
 * each one atomic step in the store behind it (memory, or Redis for several instances — the
 * same kind of store as the rate limiter).
 *
 * Life of one execution: `reserve` at check time (the estimate is taken from every applicable
 * budget, and the model's rpm/tpm are consumed) → `usage` each time the operation reports
 * tokens (fails when a budget would be exceeded: the core stops the run) → `settle` at the end
 * (the difference between the reservation and the actual usage is refunded or charged).
 *
 * Semantics (both Layers; the arithmetic is in src/policy/budgets/):
 * - Which budgets apply, and how model limits are inherited (global < tenant < principal):
 *   src/policy/budgets/plan.ts. Rolling windows are 60 buckets per window, conservative (a charge
 *   counts for at least the window, at most 1/60 more): src/policy/budgets/windows.ts.
 * - `reserve` takes the estimate from every token budget and the model's tpm, and one request
 *   from its rpm, all or nothing. A budget must have at least 1 token left to start a run (so an
 *   exhausted budget refuses runs that give no estimate). The model's rpm is never given back.
 * - `usage(total)`: the run's total so far beyond what it holds is charged, all or nothing; a
 *   budget that cannot take it fails the call (BudgetExhausted, with what remains) and nothing is
 *   charged — the core then stops the run. What was used is still settled at the end.
 * - `settle(total)`: charges what the run used beyond what it holds, even past a limit (the tokens
 *   were spent; the budget's next runs wait for them to roll out), or refunds the difference —
 *   from the bucket of the reservation, when it is still in the window (a refund after the window
 *   has passed gives back nothing: those tokens already stopped counting). `undefined` = the run
 *   reported nothing: the reservation stands, the estimate is what it cost (an operation cannot
 *   dodge its budget by not reporting). 0 = it reported using nothing: everything is refunded (the
 *   core also settles at 0 a run that passed the check but never started).
 * - An execution's counters are fixed at `reserve`: a policy reload applies to later reservations;
 *   runs in flight are charged and settled on the budgets they reserved on. Usage and settlement
 *   of an execution that reserved nothing (no budget applied) are no-ops.
 */
import { Context, type Effect } from "effect";
import { BudgetExhausted, type RateLimiterUnavailable } from "../core/errors.js";
import type { Principal } from "../core/model.js";
import type { PolicyDocument } from "../policy/config.js";

export { BudgetExhausted };

export interface LedgerRequest {
  readonly executionId: string;
  readonly principal: Principal;
  readonly model?: string;
  /** Tokens expected; 0 when the operation gives no estimate. */
  readonly estimatedTokens: number;
}

export interface BudgetStatus {
  /** e.g. "principal:alice:1d", "tenant:acme:30d", "model:gpt-4o:tpm". */
  readonly budget: string;
  readonly limit: number;
  readonly remaining: number;
  /** When enough will have rolled out of the window for the refused amount. */
  readonly retryAfterMs: number;
}

export interface Reservation {
  readonly executionId: string;
  /** Tokens held by this reservation. */
  readonly reserved: number;
}

export interface TokenLedgerShape {
  /** Applies a new policy document (budgets and model limits) to later calls. */
  readonly configure: (policy: PolicyDocument) => Effect.Effect<void>;
  /**
   * Refused by a budget or model limit: BudgetExhausted (names it). The store (Redis) unreachable
   * and set to fail closed: RateLimiterUnavailable (fail open admits without reserving).
   */
  readonly reserve: (req: LedgerRequest) => Effect.Effect<Reservation, BudgetExhausted | RateLimiterUnavailable>;
  /** The run has used `totalTokens` so far; fails when that exceeds what budgets allow. */
  readonly usage: (req: LedgerRequest, totalTokens: number) => Effect.Effect<void, BudgetExhausted>;
  /**
   * The run ended having used `totalTokens`: refund or charge the difference. `undefined` when
   * it reported nothing: the reservation stands (see the module comment).
   */
  readonly settle: (req: LedgerRequest, totalTokens: number | undefined) => Effect.Effect<void>;
  /** Budgets that apply to this principal (and model), with what remains now. */
  readonly remaining: (principal: Principal, model?: string) => Effect.Effect<ReadonlyArray<BudgetStatus>>;
}

export class TokenLedger extends Context.Tag("orchestrator/TokenLedger")<TokenLedger, TokenLedgerShape>() {}
