/**
 * Port: token budgets and model limits. Exact under concurrency: reserve, usage and settle are
 * each one atomic step in the store behind it (memory, or Redis for several instances — the
 * same kind of store as the rate limiter).
 *
 * Life of one execution: `reserve` at check time (the estimate is taken from every applicable
 * budget, and the model's rpm/tpm are consumed) → `usage` each time the operation reports
 * tokens (fails when a budget would be exceeded: the core stops the run) → `settle` at the end
 * (the difference between the reservation and the actual usage is refunded or charged).
 */
import { Context, Data, type Effect } from "effect";
import type { Principal } from "../core/model.js";
import type { PolicyDocument } from "../policy/config.js";

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

/** A budget or a model limit refused: names the budget and what remains. */
export class BudgetExhausted extends Data.TaggedError("BudgetExhausted")<BudgetStatus & { readonly requested: number }> {
  override get message() {
    return `token budget ${this.budget} exhausted: ${this.remaining} of ${this.limit} left, ${this.requested} requested`;
  }
}

export interface Reservation {
  readonly executionId: string;
  /** Tokens held by this reservation. */
  readonly reserved: number;
}

export interface TokenLedgerShape {
  /** Applies a new policy document (budgets and model limits) to later calls. */
  readonly configure: (policy: PolicyDocument) => Effect.Effect<void>;
  readonly reserve: (req: LedgerRequest) => Effect.Effect<Reservation, BudgetExhausted>;
  /** The run has used `totalTokens` so far; fails when that exceeds what budgets allow. */
  readonly usage: (req: LedgerRequest, totalTokens: number) => Effect.Effect<void, BudgetExhausted>;
  /** The run ended having used `totalTokens` (0 when unknown): refund or charge the difference. */
  readonly settle: (req: LedgerRequest, totalTokens: number) => Effect.Effect<void>;
  /** Budgets that apply to this principal (and model), with what remains now. */
  readonly remaining: (principal: Principal, model?: string) => Effect.Effect<ReadonlyArray<BudgetStatus>>;
}

export class TokenLedger extends Context.Tag("orchestrator/TokenLedger")<TokenLedger, TokenLedgerShape>() {}
