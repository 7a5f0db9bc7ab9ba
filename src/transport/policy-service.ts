/**
 * PolicyService handlers: read the caller's effective policy and budgets. Proto ⇄ domain only;
 * the permission check and the filtering live in PolicyReader.
 */
import { Effect, type ManagedRuntime } from "effect";
import type { ServiceImpl } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  BudgetStatusSchema,
  GetBudgetStatusResponseSchema,
  GetEffectivePolicyResponseSchema,
  PolicyEffect,
  PolicyRuleSchema,
  PolicyService as PolicyServicePb,
} from "../../gen/orchestrator/v1/policy_service_pb.js";
import type { RuleEffect } from "../policy/config.js";
import { PolicyReader } from "../policy/PolicyReader.js";
import { principalOf } from "./auth-interceptor.js";
import { runRpc } from "./run-rpc.js";

export type PolicyRuntime = ManagedRuntime.ManagedRuntime<PolicyReader, unknown>;

const effectToPb = (e: RuleEffect): PolicyEffect => (e === "allow" ? PolicyEffect.ALLOW : PolicyEffect.DENY);

export function policyService(runtime: PolicyRuntime) {
  return {
    async getEffectivePolicy(req, ctx) {
      const principal = principalOf(ctx);
      return runRpc(
        runtime,
        ctx,
        Effect.gen(function* () {
          const reader = yield* PolicyReader;
          const p = yield* reader.effective(principal, req.operation === "" ? undefined : req.operation);
          return create(GetEffectivePolicyResponseSchema, {
            policyVersion: BigInt(p.version),
            applyTime: timestampFromMs(Math.floor(p.appliedAt)),
            defaultEffect: effectToPb(p.default),
            rules: p.rules.map(({ rule, tenant }) =>
              create(PolicyRuleSchema, {
                name: rule.name,
                effect: effectToPb(rule.effect),
                priority: rule.priority,
                operations: [...(rule.operations ?? [])],
                roles: [...(rule.roles ?? [])],
                tenants: [...(rule.tenants ?? [])],
                condition: rule.condition ?? "",
                declaredByTenant: tenant ?? "",
              }),
            ),
          });
        }),
      );
    },

    async getBudgetStatus(req, ctx) {
      const principal = principalOf(ctx);
      return runRpc(
        runtime,
        ctx,
        Effect.gen(function* () {
          const reader = yield* PolicyReader;
          const report = yield* reader.budgets(principal, req.model === "" ? undefined : req.model);
          return create(GetBudgetStatusResponseSchema, {
            policyVersion: BigInt(report.version),
            budgets: report.budgets.map((b) =>
              create(BudgetStatusSchema, {
                budget: b.budget,
                limit: BigInt(Math.floor(b.limit)),
                remaining: BigInt(Math.max(0, Math.floor(b.remaining))),
                retryAfter: durationFromMs(Math.max(0, Math.ceil(b.retryAfterMs))),
              }),
            ),
          });
        }),
      );
    },
  } satisfies ServiceImpl<typeof PolicyServicePb>;
}
