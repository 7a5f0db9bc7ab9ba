/**
 * Port: policy. Consulted before every execution and told the outcome after it. `allowAll`
 * allows everything; the server's Layer (src/policy/PolicyServiceLive.ts) decides with the
 * rules of the policy file, then reserves the token budgets (TokenLedger).
 */
import { Context, Effect, Layer } from "effect";
import type { BudgetExhausted, PolicyDenied, RateLimiterUnavailable } from "../core/errors.js";
import type { Principal, TokenUsage } from "../core/model.js";

export interface PolicyContext {
  readonly principal: Principal;
  readonly operation: string;
  readonly model?: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly estimatedTokens?: number;
  readonly executionId: string;
}

export interface PolicyDecision {
  /** The rule that decided, or "default". */
  readonly rule: string;
  readonly policyVersion: number;
}

/**
 * How the execution ended; NOT_STARTED when it passed the check but a later step refused it (a
 * rate limit, the store) or it turned out to be a duplicate: it used nothing (usage is 0 tokens).
 */
export type PolicyOutcome = "SUCCEEDED" | "FAILED" | "CANCELLED" | "TIMED_OUT" | "INTERRUPTED" | "NOT_STARTED";

export interface PolicyServiceShape {
  /**
   * Rules first (PolicyDenied names the rule and the policy version), then the token budgets:
   * the ledger's refusal passes through as it is (BudgetExhausted, or RateLimiterUnavailable when
   * its store cannot be reached and it fails closed).
   */
  readonly check: (ctx: PolicyContext) => Effect.Effect<PolicyDecision, PolicyDenied | BudgetExhausted | RateLimiterUnavailable>;
  /**
   * The run has used `totalTokens` so far (every report of the operation, all attempts together);
   * fails when a budget cannot take it (TokenLedger.usage), and the core then stops the run.
   */
  readonly usage: (ctx: PolicyContext, totalTokens: number) => Effect.Effect<void, BudgetExhausted>;
  /**
   * After the run, exactly once per passed check. `usage` undefined = the run reported nothing
   * (TokenLedger.settle then keeps the reservation): pass `usage?.totalTokens` on.
   */
  readonly record: (ctx: PolicyContext, outcome: PolicyOutcome, usage: TokenUsage | undefined) => Effect.Effect<void>;
}

export class PolicyService extends Context.Tag("orchestrator/PolicyService")<PolicyService, PolicyServiceShape>() {
  /** Allows every operation to every authorized principal. */
  static readonly allowAll = Layer.succeed(
    PolicyService,
    PolicyService.of({
      check: () => Effect.succeed({ rule: "default-allow", policyVersion: 0 }),
      usage: () => Effect.void,
      record: () => Effect.void,
    }),
  );
}
