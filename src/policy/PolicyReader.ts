/**
 * Read access to the policy for a principal: the rules that can apply to it, in evaluation order,
 * and the budgets it draws from. Behind the PolicyService RPCs; needs `policy:read`, checked and
 * audited the way the core checks every permission.
 */
import { Effect } from "effect";
import { PermissionDenied } from "../core/errors.js";
import type { Principal } from "../core/model.js";
import { OrchestratorConfig } from "../core/OrchestratorConfig.js";
import { hasPermission } from "../core/permissions.js";
import { AuditLogger } from "../ports/AuditLogger.js";
import { TokenLedger, type BudgetStatus } from "../ports/TokenLedger.js";
import type { RuleConfig, RuleEffect } from "./config.js";
import { PolicyEngine } from "./PolicyEngine.js";
import { ruleApplies, rulesFor } from "./rules/compile.js";

export const policyReadPermission = "policy:read";

export interface EffectivePolicy {
  readonly version: number;
  readonly appliedAt: number;
  /** In evaluation order. */
  readonly rules: ReadonlyArray<{ readonly rule: RuleConfig; readonly tenant: string | undefined }>;
  readonly default: RuleEffect;
}

export interface BudgetReport {
  readonly version: number;
  readonly budgets: ReadonlyArray<BudgetStatus>;
}

export class PolicyReader extends Effect.Service<PolicyReader>()("orchestrator/PolicyReader", {
  effect: Effect.gen(function* () {
    const engine = yield* PolicyEngine;
    const ledger = yield* TokenLedger;
    const audit = yield* AuditLogger;
    const config = yield* OrchestratorConfig;

    const authorize = (principal: Principal) =>
      Effect.gen(function* () {
        const allowed = hasPermission(principal, policyReadPermission, config.roles);
        yield* audit.log({
          type: allowed ? "AUTH_SUCCEEDED" : "AUTH_DENIED",
          principal,
          decision: allowed ? "ALLOW" : "DENY",
          details: { permission: policyReadPermission },
        });
        if (!allowed) return yield* new PermissionDenied({ subject: principal.subject, permission: policyReadPermission });
      });

    return {
      /** The rules that can apply to the principal (and operation, when given), in evaluation order. */
      effective: (principal: Principal, operation?: string) =>
        Effect.gen(function* () {
          yield* authorize(principal);
          const policy = yield* engine.current;
          return {
            version: policy.version,
            appliedAt: policy.appliedAt,
            rules: rulesFor(policy.rules, principal.tenant)
              .filter((r) => ruleApplies(r, principal, operation))
              .map((r) => ({ rule: r.config, tenant: r.tenant })),
            default: policy.rules.default,
          } satisfies EffectivePolicy;
        }).pipe(Effect.withSpan("PolicyReader.effective")),

      /** The budgets and model limits that apply to the principal (and model), with what remains. */
      budgets: (principal: Principal, model?: string) =>
        Effect.gen(function* () {
          yield* authorize(principal);
          const policy = yield* engine.current;
          return { version: policy.version, budgets: yield* ledger.remaining(principal, model) } satisfies BudgetReport;
        }).pipe(Effect.withSpan("PolicyReader.budgets")),
    };
  }),
}) {}
