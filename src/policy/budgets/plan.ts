/**
 * Which counters one execution is charged to, from the policy document: its token budgets and
 * its model's limits. Built once per policy load (`budgetPlan`), asked on every reservation.
 *
 * Token budgets (`budgets`, global and per tenant) are counted by what they count, not by where
 * they are declared: a principal budget counts that principal's tokens (tenant + subject), a
 * tenant budget the tenant's, a model budget declared globally everyone's tokens on that model,
 * and a model budget declared in a tenant that tenant's tokens on it. `match: "*"` gives each
 * principal / tenant / model its own counter. Two budgets that count the same thing over the same
 * window (e.g. a global `tenant * 1d` and acme's own `tenant acme 1d`) share one counter with the
 * smaller limit, so nothing is charged twice.
 *
 * Model limits (`models`: rpm, tpm) are overridden, field by field, from the least to the most
 * specific declaration:
 *
 *   global `models`  <  tenants[t].models  <  tenants[t].principals[subject].models
 *
 * and the declaration that wins also says whose traffic it counts: a global limit is the model's
 * (every caller together: it mirrors the provider's quota), a tenant's limit is shared by that
 * tenant's principals, a principal's is that principal's alone. E.g. with `gpt-4o: {rpm: 500,
 * tpm: 30000}`, acme `{rpm: 100}` and acme/alice `{tpm: 5000}`: alice has 100 rpm shared with the
 * rest of acme and 5,000 tpm of her own; bob (acme) 100 rpm with acme and the global 30,000 tpm;
 * anyone outside acme the global 500 rpm and 30,000 tpm. Exactly one rpm and one tpm limit apply.
 */
import type { Principal } from "../../core/model.js";
import type { BudgetConfig, ModelLimits, PolicyDocument } from "../config.js";

/** One counter: a rolling window with a limit. */
export interface Counter {
  /** Storage key (escaped parts; the window is part of it). */
  readonly key: string;
  /** What errors and `remaining` call it: "principal:alice:1d", "model:gpt-4o:tpm". */
  readonly name: string;
  readonly limit: number;
  readonly windowMs: number;
}

export interface ExecutionCounters {
  /** Charged the tokens: budgets and the model's tpm. */
  readonly tokens: ReadonlyArray<Counter>;
  /** Charged one request: the model's rpm. */
  readonly requests: ReadonlyArray<Counter>;
}

export interface BudgetPlan {
  readonly countersFor: (principal: Principal, model: string | undefined) => ExecutionCounters;
}

export const modelWindowMs = 60_000;

// Key parts are escaped so that "a:b" + "c" and "a" + "b:c" never share a key.
const part = (s: string) => (/[%:]/.test(s) ? encodeURIComponent(s) : s);

/** 86400000 → "1d", 90000 → "90s", 1500 → "1500ms". */
export function formatWindow(ms: number): string {
  for (const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

interface Declared {
  readonly budget: BudgetConfig;
  /** The tenant whose `budgets` declared it; undefined = global. */
  readonly tenant: string | undefined;
}

const matches = (match: string, name: string) => match === "*" || match === name;

export function budgetPlan(policy: PolicyDocument): BudgetPlan {
  const global: Declared[] = policy.budgets.map((budget) => ({ budget, tenant: undefined }));
  const byTenant = new Map<string, Declared[]>();
  for (const [tenant, t] of Object.entries(policy.tenants)) {
    byTenant.set(tenant, [...global, ...(t.budgets ?? []).map((budget) => ({ budget, tenant }))]);
  }

  const budgetCounter = ({ budget: b, tenant: declaredIn }: Declared, p: Principal, model: string | undefined): Counter | undefined => {
    const w = formatWindow(b.windowMs);
    switch (b.scope) {
      case "principal":
        return matches(b.match, p.subject)
          ? { key: `b:p:${part(p.tenant)}:${part(p.subject)}:${b.windowMs}`, name: `principal:${p.subject}:${w}`, limit: b.tokens, windowMs: b.windowMs }
          : undefined;
      case "tenant":
        return matches(b.match, p.tenant)
          ? { key: `b:t:${part(p.tenant)}:${b.windowMs}`, name: `tenant:${p.tenant}:${w}`, limit: b.tokens, windowMs: b.windowMs }
          : undefined;
      case "model":
        if (model === undefined || !matches(b.match, model)) return undefined;
        return declaredIn === undefined
          ? { key: `b:m:${part(model)}:${b.windowMs}`, name: `model:${model}:${w}`, limit: b.tokens, windowMs: b.windowMs }
          : { key: `b:tm:${part(declaredIn)}:${part(model)}:${b.windowMs}`, name: `tenant:${declaredIn}:model:${model}:${w}`, limit: b.tokens, windowMs: b.windowMs };
    }
  };

  const modelCounter = (p: Principal, model: string, field: keyof ModelLimits): Counter | undefined => {
    const tenant = policy.tenants[p.tenant];
    const own = tenant?.principals?.[p.subject]?.models?.[model]?.[field];
    if (own !== undefined) {
      return { key: `m:${field}:p:${part(p.tenant)}:${part(p.subject)}:${part(model)}`, name: `principal:${p.subject}:model:${model}:${field}`, limit: own, windowMs: modelWindowMs };
    }
    const shared = tenant?.models?.[model]?.[field];
    if (shared !== undefined) {
      return { key: `m:${field}:t:${part(p.tenant)}:${part(model)}`, name: `tenant:${p.tenant}:model:${model}:${field}`, limit: shared, windowMs: modelWindowMs };
    }
    const all = policy.models[model]?.[field];
    return all === undefined ? undefined : { key: `m:${field}:g:${part(model)}`, name: `model:${model}:${field}`, limit: all, windowMs: modelWindowMs };
  };

  return {
    countersFor: (p, model) => {
      const byKey = new Map<string, Counter>();
      for (const d of byTenant.get(p.tenant) ?? global) {
        const c = budgetCounter(d, p, model);
        if (c === undefined) continue;
        const seen = byKey.get(c.key);
        if (seen === undefined || c.limit < seen.limit) byKey.set(c.key, c);
      }
      const tokens = [...byKey.values()];
      const requests: Counter[] = [];
      if (model !== undefined) {
        const tpm = modelCounter(p, model, "tpm");
        if (tpm !== undefined) tokens.push(tpm);
        const rpm = modelCounter(p, model, "rpm");
        if (rpm !== undefined) requests.push(rpm);
      }
      return { tokens, requests };
    },
  };
}
