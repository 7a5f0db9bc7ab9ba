/**
 * Rules: a policy document's rules compiled into an evaluator.
 *
 * For a principal of tenant T the rules are the global ones and T's own (a tenant's policy
 * extends the global one). They are tried by priority, highest first; at equal priority deny
 * rules before allow rules (deny wins ties); the first rule whose operations, roles and tenants
 * match and whose condition (if any) is true decides. A condition that fails to evaluate, or
 * yields anything but a bool, denies, naming the rule and the error. Nothing matches: the
 * document's `default`.
 *
 * Cost of a check: everything that does not depend on the request's labels, tokens or time —
 * operation globs, tenants, roles — is decided once per (tenant, operation, roles) and cached
 * with the compiled version, as the ordered list of the rules that can still decide, cut after
 * the first one without a condition (nothing after it can be reached). A check walks that list
 * and evaluates only conditions.
 */
import type { Principal } from "../../core/model.js";
import type { PolicyDocument, RuleConfig, RuleEffect } from "../config.js";
import {
  compileCondition,
  isCelError,
  isConditionError,
  nowBinding,
  type CompiledCondition,
  type ConditionBindings,
  type ExpressionPosition,
} from "./cel.js";

/** The rule name reported when no rule matched. */
export const defaultRuleName = "default";

export interface CompiledRule {
  readonly config: RuleConfig;
  readonly name: string;
  readonly effect: RuleEffect;
  readonly priority: number;
  /** The tenant whose policy declares it; undefined = global. */
  readonly tenant: string | undefined;
  readonly matchesOperation: (operation: string) => boolean;
  readonly tenants: ReadonlySet<string> | undefined;
  readonly roles: ReadonlySet<string> | undefined;
  readonly condition: CompiledCondition | undefined;
}

export interface CompiledRules {
  readonly default: RuleEffect;
  /** Global rules, in evaluation order. */
  readonly global: ReadonlyArray<CompiledRule>;
  /** Global ∪ the tenant's rules, in evaluation order, for each tenant that declares rules. */
  readonly byTenant: ReadonlyMap<string, ReadonlyArray<CompiledRule>>;
  readonly usesNow: boolean;
  readonly ruleCount: number;
  /** (tenant, operation, roles) → the rules that can decide; filled as checks come. */
  readonly candidates: Map<string, ReadonlyArray<CompiledRule>>;
}

/** What a check asks. */
export interface RuleInput {
  readonly principal: Principal;
  readonly operation: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly model?: string | undefined;
  readonly estimatedTokens?: number | undefined;
}

export type RuleDecision =
  | { readonly effect: "allow"; readonly rule: string }
  | { readonly effect: "deny"; readonly rule: string; readonly reason: string };

/** One mistake in the rules, found while compiling. */
export interface RuleProblem {
  /** Where in the document: `rules[2]`, `tenants.acme.rules[0].condition`. */
  readonly path: ReadonlyArray<string | number>;
  readonly rule: string | undefined;
  readonly message: string;
  /** For a condition: where in its text. */
  readonly expression?: ExpressionPosition;
}

/**
 * An operation glob: `*` matches any run of characters (dots included), everything else is
 * literal. `reports.*`, `*.delete`, `*`, `demo.echo`.
 */
export function globMatcher(glob: string): (operation: string) => boolean {
  if (glob === "*") return () => true;
  const star = glob.indexOf("*");
  if (star < 0) return (op) => op === glob;
  if (star === glob.length - 1) {
    const prefix = glob.slice(0, -1);
    return (op) => op.startsWith(prefix);
  }
  const re = new RegExp(`^${glob.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`, "s");
  return (op) => re.test(op);
}

const anyOf = (matchers: ReadonlyArray<(op: string) => boolean>) =>
  matchers.length === 1 ? matchers[0]! : (op: string) => matchers.some((m) => m(op));

/** Evaluation order: priority descending, deny before allow, then declaration order. */
const byEvaluationOrder = (a: { rule: CompiledRule; order: number }, b: { rule: CompiledRule; order: number }) =>
  b.rule.priority - a.rule.priority || (a.rule.effect === b.rule.effect ? 0 : a.rule.effect === "deny" ? -1 : 1) || a.order - b.order;

/** (tenant, operation, roles) combinations remembered per policy version. */
const maxCandidateLists = 50_000;

/** Compiles every rule of the document, or reports every problem (nothing is half-applied). */
export function compileRules(doc: PolicyDocument): CompiledRules | { readonly problems: ReadonlyArray<RuleProblem> } {
  const problems: RuleProblem[] = [];
  const compileList = (list: ReadonlyArray<RuleConfig>, base: ReadonlyArray<string | number>, tenant: string | undefined, taken: ReadonlySet<string>) => {
    const out: CompiledRule[] = [];
    const names = new Set<string>();
    list.forEach((config, i) => {
      const path = [...base, i];
      if (config.name === defaultRuleName) {
        problems.push({ path: [...path, "name"], rule: config.name, message: `"${defaultRuleName}" is reserved for the policy's default` });
      } else if (names.has(config.name)) {
        problems.push({ path: [...path, "name"], rule: config.name, message: `a rule named "${config.name}" is already in this list` });
      } else if (taken.has(config.name)) {
        problems.push({ path: [...path, "name"], rule: config.name, message: `a global rule is already named "${config.name}": decisions would be ambiguous in the audit log` });
      }
      names.add(config.name);
      let condition: CompiledCondition | undefined;
      if (config.condition !== undefined) {
        const c = compileCondition(config.condition);
        if (isConditionError(c)) {
          problems.push({
            path: [...path, "condition"],
            rule: config.name,
            message: c.message,
            ...(c.position === undefined ? {} : { expression: c.position }),
          });
          return;
        }
        condition = c;
      }
      out.push({
        config,
        name: config.name,
        effect: config.effect,
        priority: config.priority,
        tenant,
        matchesOperation: config.operations === undefined ? () => true : anyOf(config.operations.map(globMatcher)),
        tenants: config.tenants === undefined ? undefined : new Set(config.tenants),
        roles: config.roles === undefined ? undefined : new Set(config.roles),
        condition,
      });
    });
    return out;
  };

  const global = compileList(doc.rules, ["rules"], undefined, new Set());
  const globalNames = new Set(doc.rules.map((r) => r.name));
  const tenantLists = Object.entries(doc.tenants).map(([tenant, policy]) => [tenant, compileList(policy.rules ?? [], ["tenants", tenant, "rules"], tenant, globalNames)] as const);
  if (problems.length > 0) return { problems };

  const ordered = (rules: ReadonlyArray<CompiledRule>) =>
    rules
      .map((rule, order) => ({ rule, order }))
      .sort(byEvaluationOrder)
      .map((x) => x.rule);
  const byTenant = new Map<string, ReadonlyArray<CompiledRule>>();
  for (const [tenant, rules] of tenantLists) if (rules.length > 0) byTenant.set(tenant, ordered([...global, ...rules]));
  const all = [...global, ...tenantLists.flatMap(([, r]) => r)];
  return {
    default: doc.default,
    global: ordered(global),
    byTenant,
    usesNow: all.some((r) => r.condition?.usesNow === true),
    ruleCount: all.length,
    candidates: new Map(),
  };
}

export const isCompiled = (c: CompiledRules | { readonly problems: ReadonlyArray<RuleProblem> }): c is CompiledRules => !("problems" in c);

/** The rules that apply to this principal and operation, whatever the labels, tokens or time. */
export function candidatesFor(rules: CompiledRules, principal: Principal, operation: string): ReadonlyArray<CompiledRule> {
  const key = `${principal.tenant}\u0000${operation}\u0000${principal.roles.join("\u0000")}`;
  const cached = rules.candidates.get(key);
  if (cached !== undefined) return cached;
  const out: CompiledRule[] = [];
  for (const rule of rules.byTenant.get(principal.tenant) ?? rules.global) {
    if (!rule.matchesOperation(operation)) continue;
    if (rule.tenants !== undefined && !rule.tenants.has(principal.tenant)) continue;
    if (rule.roles !== undefined && !principal.roles.some((r) => rule.roles!.has(r))) continue;
    out.push(rule);
    if (rule.condition === undefined) break; // it always decides: nothing after it is reached
  }
  // Tenants, role sets and operations come from credentials and the registry: bounded in
  // practice, but a cache must not grow without end. The oldest entry goes first.
  if (rules.candidates.size >= maxCandidateLists) rules.candidates.delete(rules.candidates.keys().next().value!);
  rules.candidates.set(key, out);
  return out;
}

/** Whether a rule's static filters (operations, tenants, roles) select this principal and operation. */
export function ruleApplies(rule: CompiledRule, principal: Principal, operation: string | undefined): boolean {
  if (operation !== undefined && !rule.matchesOperation(operation)) return false;
  if (rule.tenants !== undefined && !rule.tenants.has(principal.tenant)) return false;
  return rule.roles === undefined || principal.roles.some((r) => rule.roles!.has(r));
}

/** The rules in evaluation order for a principal (global ∪ its tenant's). */
export const rulesFor = (rules: CompiledRules, tenant: string): ReadonlyArray<CompiledRule> => rules.byTenant.get(tenant) ?? rules.global;

const describe = (v: unknown): string =>
  typeof v === "bigint" ? "an int" : typeof v === "number" ? "a double" : typeof v === "string" ? "a string" : v === null ? "null" : `a ${typeof v}`;

/**
 * CEL reports errors as values, but builds each one as an Error, with a stack trace nobody reads
 * (`request.labels.env` on a request without that label, even inside a `&&` that absorbs it).
 * Capturing those traces was the largest single cost of a check.
 */
function evaluateQuietly(condition: CompiledCondition, bindings: ConditionBindings) {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return condition.evaluate(bindings);
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** Decides one check. `nowMs` is read only when a condition uses `now`. */
export function evaluateRules(rules: CompiledRules, input: RuleInput, nowMs: number): RuleDecision {
  const candidates = candidatesFor(rules, input.principal, input.operation);
  let bindings: ConditionBindings | undefined;
  for (const rule of candidates) {
    const condition = rule.condition;
    if (condition !== undefined) {
      bindings ??= {
        principal: input.principal,
        request: {
          operation: input.operation,
          labels: input.labels,
          model: input.model ?? "",
          estimated_tokens: BigInt(Math.max(0, Math.trunc(input.estimatedTokens ?? 0))),
        },
        ...(rules.usesNow ? { now: nowBinding(nowMs) } : {}),
      };
      const result = evaluateQuietly(condition, bindings);
      if (result === false) continue;
      if (result !== true) {
        return {
          effect: "deny",
          rule: rule.name,
          reason: isCelError(result)
            ? `the condition failed: ${result.message}`
            : `the condition returned ${describe(result)}, not a bool`,
        };
      }
      return rule.effect === "allow"
        ? { effect: "allow", rule: rule.name }
        : { effect: "deny", rule: rule.name, reason: "the rule's condition is true" };
    }
    return rule.effect === "allow" ? { effect: "allow", rule: rule.name } : { effect: "deny", rule: rule.name, reason: "the rule matches" };
  }
  return rules.default === "allow"
    ? { effect: "allow", rule: defaultRuleName }
    : { effect: "deny", rule: defaultRuleName, reason: "no rule allows it and the policy's default is deny" };
}
