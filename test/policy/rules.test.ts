/**
 * Policy rules stored and enforced through the real Orchestrator: priority order, deny winning
 * ties, operation globs / roles / tenants, CEL conditions (true, false, failing — a failing one
 * denies and says why), tenant rules extending the global ones, the default, and the audit row
 * of every decision carrying the policy version and the deciding rule.
 */
import { describe, expect, it } from "@effect/vitest";
import { Effect, TestClock } from "effect";
import { Orchestrator } from "../../src/core/Orchestrator.js";
import type { Principal } from "../../src/core/model.js";
import { PolicyEngine } from "../../src/policy/PolicyEngine.js";
import { alice, apply, auditOf, bob, doc, gina, policyCoreLayer } from "../support/policy.js";

const run = (operation: string, principal: Principal, labels: Record<string, string> = {}, input: Record<string, unknown> = {}) =>
  Effect.flatMap(Orchestrator, (o) => o.execute(operation, input as never, { principal, labels }));

/** The PolicyDenied a refused execution fails with. */
const denied = (operation: string, principal: Principal, labels: Record<string, string> = {}, input: Record<string, unknown> = {}) =>
  run(operation, principal, labels, input).pipe(
    Effect.flip,
    Effect.map((e) => {
      if (e._tag !== "PolicyDenied") throw new Error(`expected PolicyDenied, got ${e._tag}: ${e.message}`);
      return e;
    }),
  );

describe("policy rules through the Orchestrator", () => {
  it.effect("no policy file: version 0, everything authorized runs (rule default)", () =>
    Effect.gen(function* () {
      expect(yield* run("admin.wipe", alice)).toEqual({ ran: "admin.wipe" });
      const [row] = yield* auditOf("POLICY_EVALUATED");
      expect(row).toMatchObject({ decision: "ALLOW", details: { rule: "default", policy_version: 0 } });
    }).pipe(Effect.provide(policyCoreLayer())),
  );

  it.effect("rules are stored and enforced: a deny rule refuses, with the rule, and is audited with the version", () =>
    Effect.gen(function* () {
      const v = yield* apply(doc([{ name: "no-wipe", effect: "deny", priority: 0, operations: ["admin.*"] }]));
      expect(v.version).toBe(1);
      const e = yield* denied("admin.wipe", alice);
      expect(e).toMatchObject({ rule: "no-wipe", policyVersion: 1 });
      expect(e.message).toBe('denied by policy rule "no-wipe": the rule matches');
      expect(yield* run("reports.daily", alice)).toEqual({ ran: "reports.daily" });

      const rows = yield* auditOf("POLICY_EVALUATED");
      expect(rows.map((r) => [r.operation, r.decision, r.details])).toEqual([
        ["admin.wipe", "DENY", { rule: "no-wipe", policy_version: 1 }],
        ["reports.daily", "ALLOW", { rule: "default", policy_version: 1 }],
      ]);
      expect(rows[0]!.reason).toBe("the rule matches");
      // Exactly one row per decision, and the denied one never ran.
      expect((yield* auditOf("EXECUTION_ACCEPTED")).map((r) => r.operation)).toEqual(["reports.daily"]);
    }).pipe(Effect.provide(policyCoreLayer())),
  );

  it.effect("deny beats allow at equal priority, in either declaration order", () =>
    Effect.gen(function* () {
      yield* apply(
        doc([
          { name: "allow-reports", effect: "allow", priority: 10, operations: ["reports.*"] },
          { name: "deny-reports", effect: "deny", priority: 10, operations: ["reports.*"] },
        ]),
      );
      expect((yield* denied("reports.daily", alice)).rule).toBe("deny-reports");
      yield* apply(
        doc([
          { name: "deny-reports", effect: "deny", priority: 10, operations: ["reports.*"] },
          { name: "allow-reports", effect: "allow", priority: 10, operations: ["reports.*"] },
        ]),
      );
      expect((yield* denied("reports.daily", alice)).rule).toBe("deny-reports");
    }).pipe(Effect.provide(policyCoreLayer())),
  );

  it.effect("first match by priority wins: a higher allow overrides a lower deny, and the reverse", () =>
    Effect.gen(function* () {
      yield* apply(
        doc(
          [
            { name: "deny-all", effect: "deny", priority: 0 },
            { name: "allow-reports", effect: "allow", priority: 50, operations: ["reports.*"] },
            { name: "deny-weekly", effect: "deny", priority: 100, operations: ["reports.weekly"] },
          ],
          { default: "allow" },
        ),
      );
      expect(yield* run("reports.daily", alice)).toEqual({ ran: "reports.daily" });
      expect((yield* denied("reports.weekly", alice)).rule).toBe("deny-weekly");
      expect((yield* denied("demo.echo", alice, {}, { message: "x" })).rule).toBe("deny-all");
      const rows = yield* auditOf("POLICY_EVALUATED");
      expect(rows.map((r) => r.details?.["rule"])).toEqual(["allow-reports", "deny-weekly", "deny-all"]);
    }).pipe(Effect.provide(policyCoreLayer())),
  );

  it.effect("roles and tenants select rules; no match falls to the default (deny)", () =>
    Effect.gen(function* () {
      yield* apply(
        doc(
          [
            { name: "analysts-report", effect: "allow", priority: 0, operations: ["reports.*"], roles: ["analyst"] },
            { name: "globex-echo", effect: "allow", priority: 0, operations: ["demo.echo"], tenants: ["globex"] },
          ],
          { default: "deny" },
        ),
      );
      expect(yield* run("reports.daily", alice)).toEqual({ ran: "reports.daily" });
      const intern = yield* denied("reports.daily", bob);
      expect(intern).toMatchObject({ rule: "default", reason: "no rule allows it and the policy's default is deny" });
      expect(yield* run("demo.echo", gina, {}, { message: "hi" })).toEqual({ echo: { message: "hi" } });
      expect((yield* denied("demo.echo", alice, {}, { message: "hi" })).rule).toBe("default");
    }).pipe(Effect.provide(policyCoreLayer())),
  );

  it.effect("a tenant's rules extend the global ones, for that tenant only", () =>
    Effect.gen(function* () {
      yield* apply(
        doc([{ name: "global-echo", effect: "allow", priority: 0, operations: ["demo.echo"] }], {
          default: "deny",
          tenants: {
            acme: {
              rules: [
                { name: "acme-reports", effect: "allow", priority: 0, operations: ["reports.*"] },
                { name: "acme-no-weekly", effect: "deny", priority: 10, operations: ["reports.weekly"] },
              ],
            },
          },
        }),
      );
      // acme: global ∪ acme's rules.
      expect(yield* run("demo.echo", alice, {}, { message: "a" })).toEqual({ echo: { message: "a" } });
      expect(yield* run("reports.daily", alice)).toEqual({ ran: "reports.daily" });
      expect((yield* denied("reports.weekly", alice)).rule).toBe("acme-no-weekly");
      // globex: only the global rules.
      expect(yield* run("demo.echo", gina, {}, { message: "g" })).toEqual({ echo: { message: "g" } });
      expect((yield* denied("reports.daily", gina)).rule).toBe("default");
    }).pipe(Effect.provide(policyCoreLayer())),
  );
});

describe("CEL conditions", () => {
  it.effect("true matches, false falls through to the next rule", () =>
    Effect.gen(function* () {
      yield* apply(
        doc([
          { name: "no-prod-interns", effect: "deny", priority: 10, condition: `"env" in request.labels && request.labels.env == "prod" && principal.roles.exists(r, r == "intern")` },
          { name: "allow-rest", effect: "allow", priority: 0 },
        ]),
      );
      const e = yield* denied("reports.daily", bob, { env: "prod" });
      expect(e).toMatchObject({ rule: "no-prod-interns", reason: "the rule's condition is true" });
      expect(yield* run("reports.daily", bob, { env: "dev" })).toEqual({ ran: "reports.daily" });
      expect(yield* run("reports.daily", bob)).toEqual({ ran: "reports.daily" });
      expect(yield* run("reports.daily", alice, { env: "prod" })).toEqual({ ran: "reports.daily" });
      const rules = (yield* auditOf("POLICY_EVALUATED")).map((r) => r.details?.["rule"]);
      expect(rules).toEqual(["no-prod-interns", "allow-rest", "allow-rest", "allow-rest"]);
    }).pipe(Effect.provide(policyCoreLayer())),
  );

  it.effect("conditions see the model, the estimated tokens, the tenant and the operation", () =>
    Effect.gen(function* () {
      yield* apply(
        doc([
          {
            name: "big-gpt4-requests",
            effect: "deny",
            priority: 10,
            condition: `request.model == "gpt-4o" && request.estimated_tokens > 1000 && principal.tenant == "acme" && request.operation.startsWith("llm.")`,
          },
        ]),
      );
      expect((yield* denied("llm.chat", alice, {}, { model: "gpt-4o", tokens: 5000 })).rule).toBe("big-gpt4-requests");
      expect(yield* run("llm.chat", alice, {}, { model: "gpt-4o", tokens: 10 })).toEqual({ model: "gpt-4o" });
      expect(yield* run("llm.chat", alice, {}, { model: "gpt-4o-mini", tokens: 5000 })).toEqual({ model: "gpt-4o-mini" });
      expect(yield* run("llm.chat", gina, {}, { model: "gpt-4o", tokens: 5000 })).toEqual({ model: "gpt-4o" });
    }).pipe(Effect.provide(policyCoreLayer())),
  );

  it.effect("`now` is the Clock's time", () =>
    Effect.gen(function* () {
      yield* apply(
        doc([{ name: "freeze", effect: "deny", priority: 0, operations: ["admin.*"], condition: `now < timestamp("1970-01-01T00:05:00Z") && now.getHours() == 0` }]),
      );
      // TestClock starts at the epoch.
      expect((yield* denied("admin.wipe", alice)).rule).toBe("freeze");
      yield* TestClock.adjust("5 minutes");
      expect(yield* run("admin.wipe", alice)).toEqual({ ran: "admin.wipe" });
    }).pipe(Effect.provide(policyCoreLayer())),
  );

  it.effect("a condition that fails to evaluate denies, naming the rule and the error — even on an allow rule", () =>
    Effect.gen(function* () {
      yield* apply(
        doc([
          { name: "prod-only", effect: "allow", priority: 10, operations: ["reports.*"], condition: `request.labels.env == "prod"` },
          { name: "small-batches", effect: "allow", priority: 5, operations: ["demo.*"], condition: `int(request.labels.batch) < 10` },
          { name: "allow-rest", effect: "allow", priority: 0 },
        ]),
      );
      // No `env` label: selecting a missing map key is an error in CEL.
      const missing = yield* denied("reports.daily", alice);
      expect(missing.rule).toBe("prod-only");
      expect(missing.reason).toMatch(/^the condition failed: .*env/);
      expect(missing.message).toMatch(/^denied by policy rule "prod-only": the condition failed/);
      expect(yield* run("reports.daily", alice, { env: "prod" })).toEqual({ ran: "reports.daily" });

      const bad = yield* denied("demo.echo", alice, { batch: "many" }, { message: "x" });
      expect(bad.rule).toBe("small-batches");
      expect(bad.reason).toMatch(/^the condition failed: /);
      expect(yield* run("demo.echo", alice, { batch: "3" }, { message: "x" })).toEqual({ echo: { message: "x" } });

      const row = (yield* auditOf("POLICY_EVALUATED"))[0]!;
      expect(row).toMatchObject({ decision: "DENY", details: { rule: "prod-only", policy_version: 1 } });
      expect(row.reason).toMatch(/the condition failed/);
    }).pipe(Effect.provide(policyCoreLayer())),
  );

  it.effect("a condition that yields something other than a bool denies and says so", () =>
    Effect.gen(function* () {
      // dyn() hides the type from the load-time check; at run time it is a string.
      yield* apply(doc([{ name: "sloppy", effect: "allow", priority: 0, condition: "dyn(request.labels.team)" }]));
      const e = yield* denied("reports.daily", alice, { team: "data" });
      expect(e).toMatchObject({ rule: "sloppy", reason: "the condition returned a string, not a bool" });
    }).pipe(Effect.provide(policyCoreLayer())),
  );
});

describe("a malformed policy", () => {
  it.effect("is refused with the rule and the position of the error, and nothing of it applies", () =>
    Effect.gen(function* () {
      const engine = yield* PolicyEngine;
      yield* apply(doc([{ name: "deny-wipe", effect: "deny", priority: 0, operations: ["admin.wipe"] }]));
      const refused = yield* engine
        .apply(
          doc([
            // Valid on its own: must not be applied either.
            { name: "allow-wipe", effect: "allow", priority: 100, operations: ["admin.wipe"] },
            { name: "broken", effect: "deny", priority: 0, condition: `request.labels.env == "prod" &&` },
            { name: "typo", effect: "deny", priority: 0, condition: `principal.team == "x"` },
          ]),
        )
        .pipe(Effect.flip);
      expect(refused._tag).toBe("PolicyInvalid");
      expect(refused.problems).toEqual([
        { path: "rules[1].condition", rule: "broken", expression: { line: 1, column: 30, offset: 29 }, message: "found & but expecting end of input" },
        {
          path: "rules[2].condition",
          rule: "typo",
          expression: { line: 1, column: 10, offset: 9 },
          message: "principal has no field 'team' (its fields: subject, tenant, roles)",
        },
      ]);
      expect(refused.message).toContain('rules[1].condition (rule "broken"): at 1:30 of the condition: found & but expecting end of input');

      // Still version 1, still denying.
      expect((yield* engine.current).version).toBe(1);
      expect((yield* denied("admin.wipe", alice)).rule).toBe("deny-wipe");
      const [update] = (yield* auditOf("POLICY_UPDATED")).filter((r) => r.decision === "DENY");
      expect(update).toMatchObject({ details: { policy_version: 1, problems: 2 } });
      expect(update!.reason).toContain("at 1:30 of the condition");
    }).pipe(Effect.provide(policyCoreLayer())),
  );

  it.effect("names must be unique, and `default` is reserved", () =>
    Effect.gen(function* () {
      const engine = yield* PolicyEngine;
      const e = yield* engine
        .apply(
          doc(
            [
              { name: "a", effect: "allow", priority: 0 },
              { name: "a", effect: "deny", priority: 0 },
              { name: "default", effect: "deny", priority: 0 },
            ],
            { tenants: { acme: { rules: [{ name: "a", effect: "deny", priority: 0 }] } } },
          ),
        )
        .pipe(Effect.flip);
      expect(e.problems.map((p) => [p.path, p.message])).toEqual([
        ["rules[1].name", 'a rule named "a" is already in this list'],
        ["rules[2].name", '"default" is reserved for the policy\'s default'],
        ["tenants.acme.rules[0].name", 'a global rule is already named "a": decisions would be ambiguous in the audit log'],
      ]);
      expect((yield* engine.current).version).toBe(0);
    }).pipe(Effect.provide(policyCoreLayer())),
  );
});
