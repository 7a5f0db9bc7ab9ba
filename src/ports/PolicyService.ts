/**
 * Port: policy. Consulted before every execution and told the outcome after it. The default
 * allows everything; the policy issue (#5) brings rules, budgets and model limits.
 */
import { Context, Effect, Layer } from "effect";
import type { PolicyDenied } from "../core/errors.js";
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

export type PolicyOutcome = "SUCCEEDED" | "FAILED" | "CANCELLED" | "TIMED_OUT" | "INTERRUPTED";

export interface PolicyServiceShape {
  readonly check: (ctx: PolicyContext) => Effect.Effect<PolicyDecision, PolicyDenied>;
  readonly record: (ctx: PolicyContext, outcome: PolicyOutcome, usage: TokenUsage | undefined) => Effect.Effect<void>;
}

export class PolicyService extends Context.Tag("orchestrator/PolicyService")<PolicyService, PolicyServiceShape>() {
  /** Allows every operation to every authorized principal. */
  static readonly allowAll = Layer.succeed(
    PolicyService,
    PolicyService.of({
      check: () => Effect.succeed({ rule: "default-allow", policyVersion: 0 }),
      record: () => Effect.void,
    }),
  );
}
