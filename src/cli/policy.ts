/**
 * `orchestrator policy show|budgets`: the caller's effective policy and token budgets
 * (PolicyService).
 */
import { toJson } from "@bufbuild/protobuf";
import { Command, Options } from "@effect/cli";
import * as Option from "effect/Option";
import {
  GetBudgetStatusResponseSchema,
  GetEffectivePolicyResponseSchema,
  PolicyEffect,
} from "../../gen/orchestrator/v1/policy_service_pb.js";
import { withConnection } from "./command.js";
import { connectionOptions } from "./connection.js";
import { durationMs, humanDuration, iso, jsonText, table } from "./output.js";

const effect = (e: PolicyEffect) => (PolicyEffect[e] ?? "").toLowerCase();
const any = (xs: ReadonlyArray<string>) => (xs.length === 0 ? "*" : xs.join(","));

const show = Command.make(
  "show",
  {
    ...connectionOptions,
    operation: Options.text("operation").pipe(Options.withDescription("Only the rules that can apply to this operation."), Options.optional),
  },
  (a) =>
    withConnection(a, async (conn, io) => {
      const r = await conn.policy.getEffectivePolicy({ operation: Option.getOrElse(a.operation, () => "") });
      if (conn.output === "json") {
        io.out(jsonText(toJson(GetEffectivePolicyResponseSchema, r), false));
        return;
      }
      io.out(`Policy version ${r.policyVersion}${r.applyTime === undefined ? "" : ` (applied ${iso(r.applyTime)})`}; default ${effect(r.defaultEffect)}.\n`);
      if (r.rules.length === 0) io.out("No rules apply to you.\n");
      else {
        io.out(
          table(
            ["RULE", "EFFECT", "PRIORITY", "OPERATIONS", "ROLES", "TENANTS", "CONDITION"],
            r.rules.map((rule) => [rule.name, effect(rule.effect), String(rule.priority), any(rule.operations), any(rule.roles), any(rule.tenants), rule.condition]),
          ),
        );
      }
    }),
).pipe(Command.withDescription("The policy rules that apply to you, in evaluation order, and the default."));

const budgets = Command.make(
  "budgets",
  {
    ...connectionOptions,
    model: Options.text("model").pipe(Options.withDescription("Also the limits of this model."), Options.optional),
  },
  (a) =>
    withConnection(a, async (conn, io) => {
      const r = await conn.policy.getBudgetStatus({ model: Option.getOrElse(a.model, () => "") });
      if (conn.output === "json") {
        io.out(jsonText(toJson(GetBudgetStatusResponseSchema, r), false));
        return;
      }
      if (r.budgets.length === 0) io.out(`No budgets apply to you (policy version ${r.policyVersion}).\n`);
      else {
        io.out(
          table(
            ["BUDGET", "LIMIT", "REMAINING", "RETRY AFTER"],
            r.budgets.map((b) => [b.budget, String(b.limit), String(b.remaining), durationMs(b.retryAfter) === 0 ? "-" : humanDuration(durationMs(b.retryAfter))]),
          ),
        );
      }
    }),
).pipe(Command.withDescription("Your token budgets and model limits, and what remains."));

export const policyCommands = Command.make("policy").pipe(
  Command.withDescription("Read the policy as it applies to you."),
  Command.withSubcommands([show, budgets]),
);
