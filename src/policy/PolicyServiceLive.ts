/**
 * The PolicyService the server uses: the rules of the policy in force decide (first match by
 * priority, deny wins ties, CEL conditions; src/policy/rules/), then the token budgets and model
 * limits are reserved (TokenLedger); at the end of the run the ledger settles what was used.
 *
 * One check reads the policy once (PolicyEngine.current) and decides entirely under that
 * version. The decision — the rule and the version — reaches the core's POLICY_EVALUATED audit
 * row: in PolicyDecision when allowed, in PolicyDenied when denied.
 */
import { Clock, Effect, Layer } from "effect";
import { PolicyDenied, type BudgetExhausted, type RateLimiterUnavailable } from "../core/errors.js";
import { PolicyService, type PolicyContext, type PolicyDecision } from "../ports/PolicyService.js";
import { TokenLedger, type LedgerRequest } from "../ports/TokenLedger.js";
import type { AuditLogger } from "../ports/AuditLogger.js";
import { PolicyEngine, type ActivePolicy, type PolicyEngineOptions } from "./PolicyEngine.js";
import type { PolicyInvalid } from "./file.js";
import { evaluateRules } from "./rules/compile.js";

const ledgerRequest = (ctx: PolicyContext): LedgerRequest => ({
  executionId: ctx.executionId,
  principal: ctx.principal,
  estimatedTokens: ctx.estimatedTokens ?? 0,
  ...(ctx.model === undefined ? {} : { model: ctx.model }),
});

/**
 * A denial is data, not a bug: its stack trace says nothing, and capturing one (then Effect
 * reading it) is most of what a denied check costs — ~10 µs against ~1.5 µs without.
 */
const denial = (rule: string, reason: string, policyVersion: number): PolicyDenied => {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new PolicyDenied({ rule, reason, policyVersion });
  } finally {
    Error.stackTraceLimit = limit;
  }
};

/** PolicyService over the PolicyEngine (the rules in force) and the TokenLedger (budgets). */
export const PolicyServiceLive: Layer.Layer<PolicyService, never, PolicyEngine | TokenLedger> = Layer.effect(
  PolicyService,
  Effect.gen(function* () {
    const engine = yield* PolicyEngine;
    const ledger = yield* TokenLedger;
    /** Decides under one version (read once by the caller), then reserves the budgets. */
    const decide = (policy: ActivePolicy, ctx: PolicyContext, now: number): Effect.Effect<PolicyDecision, PolicyDenied | BudgetExhausted | RateLimiterUnavailable> => {
      const decision = evaluateRules(policy.rules, ctx, now);
      if (decision.effect === "deny") return Effect.fail(denial(decision.rule, decision.reason, policy.version));
      const allowed: PolicyDecision = { rule: decision.rule, policyVersion: policy.version };
      return Effect.as(ledger.reserve(ledgerRequest(ctx)), allowed);
    };
    return PolicyService.of({
      // Plain combinators rather than Effect.gen: this runs before every execution.
      check: (ctx) =>
        Effect.flatMap(engine.current, (policy) =>
          policy.rules.usesNow ? Effect.flatMap(Clock.currentTimeMillis, (now) => decide(policy, ctx, now)) : decide(policy, ctx, 0),
        ),
      usage: (ctx, totalTokens) => ledger.usage(ledgerRequest(ctx), totalTokens),
      record: (ctx, _outcome, usage) => ledger.settle(ledgerRequest(ctx), usage?.totalTokens),
    });
  }),
);

/**
 * The policy for the server: `--policy-file` loaded (a bad file fails the Layer: the server does
 * not start), watched and reloaded; without a file the empty policy (allow, no budgets). The
 * engine stays visible for the PolicyService RPCs and tests.
 */
export const policyLayer = (options: PolicyEngineOptions): Layer.Layer<PolicyService | PolicyEngine, PolicyInvalid, TokenLedger | AuditLogger> =>
  PolicyServiceLive.pipe(Layer.provideMerge(PolicyEngine.layer(options)));
