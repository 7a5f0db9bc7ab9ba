/**
 * Policy checks per second, one Node thread, for a policy of 1,000 rules.
 *
 *   node --import tsx bench/policy.ts
 *
 * The policy: 600 global rules and 20 tenants × 20 rules; operation globs of every kind (exact,
 * `svc.*`, `*.delete`, `*`), 40 % limited to roles, 15 % to tenants, 30 % with a CEL condition
 * (labels, roles, tokens, model, `in`, `exists`); priorities 0-99, default deny. The checks: 2,000
 * principals over the 20 tenants and 6 role sets, 200 operations, labels and token estimates
 * drawn per check.
 *
 * Cases:
 *   rules          the rule evaluation alone (what a check costs beyond the Effect around it)
 *   PolicyService  PolicyService.check as the core calls it: read the version, decide, reserve
 *                  the (empty) budgets in the memory ledger
 *   cold           rules with the (tenant, operation, roles) cache emptied before every check:
 *                  the cost of the first check of a combination after a reload
 * Each case is bounded by POLICY_BENCH_CHECKS (default 1,000,000; a tenth for cold) and
 * POLICY_BENCH_SECONDS (default 5). Latency: each check of a second pass timed alone.
 */
import { Effect, Either, Layer, Logger, ManagedRuntime } from "effect";
import type { Principal } from "../src/core/model.js";
import { AuditLoggerMemory } from "../src/ports/memory/AuditLoggerMemory.js";
import { TokenLedgerMemory } from "../src/ports/memory/TokenLedgerMemory.js";
import { PolicyService, type PolicyContext } from "../src/ports/PolicyService.js";
import type { PolicyDocument, RuleConfig, TenantPolicy } from "../src/policy/config.js";
import { compilePolicy } from "../src/policy/file.js";
import { PolicyEngine } from "../src/policy/PolicyEngine.js";
import { policyLayer } from "../src/policy/PolicyServiceLive.js";
import { evaluateRules } from "../src/policy/rules/compile.js";

const envInt = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
};
const maxChecks = envInt("POLICY_BENCH_CHECKS", 1_000_000);
const seconds = envInt("POLICY_BENCH_SECONDS", 5);

// A deterministic generator, so that every run measures the same policy and the same checks.
let seed = 42;
const rand = () => {
  seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
  return seed / 2 ** 31;
};
const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(rand() * xs.length)]!;

const services = Array.from({ length: 40 }, (_, i) => `svc${i}`);
const actions = ["read", "list", "write", "delete", "run"];
const operations = services.flatMap((s) => actions.map((a) => `${s}.${a}`));
const tenants = Array.from({ length: 20 }, (_, i) => `tenant${i}`);
const roleNames = ["viewer", "operator", "analyst", "intern", "admin", "billing"];
const roleSets = [["viewer"], ["operator"], ["analyst"], ["intern"], ["admin"], ["operator", "billing"]];
const conditions = [
  `request.labels.env == "prod"`,
  `"env" in request.labels && request.labels.env == "staging"`,
  `principal.roles.exists(r, r == "admin")`,
  `request.estimated_tokens > 5000`,
  `request.model == "gpt-4o" && request.estimated_tokens > 1000`,
  `has(request.labels.tier) && request.labels.tier in ["gold", "platinum"]`,
  `principal.subject.startsWith("svc-") || request.labels.env == "dev"`,
];

const rule = (name: string): RuleConfig => {
  const glob = rand();
  const operationsGlob =
    glob < 0.4 ? [pick(operations)] : glob < 0.7 ? [`${pick(services)}.*`] : glob < 0.85 ? [`*.${pick(actions)}`] : glob < 0.9 ? [pick(operations), pick(operations)] : undefined;
  return {
    name,
    effect: rand() < 0.6 ? "allow" : "deny",
    priority: Math.floor(rand() * 100),
    ...(operationsGlob === undefined ? {} : { operations: operationsGlob }),
    ...(rand() < 0.4 ? { roles: [pick(roleNames)] } : {}),
    ...(rand() < 0.15 ? { tenants: [pick(tenants)] } : {}),
    ...(rand() < 0.3 ? { condition: pick(conditions) } : {}),
  };
};

const document: PolicyDocument = {
  rules: Array.from({ length: 600 }, (_, i) => rule(`global-${i}`)),
  default: "deny",
  budgets: [],
  models: {},
  tenants: Object.fromEntries(tenants.map((t) => [t, { rules: Array.from({ length: 20 }, (_, i) => rule(`${t}-${i}`)) } satisfies TenantPolicy])),
};

const principals: ReadonlyArray<Principal> = Array.from({ length: 2000 }, (_, i) => ({
  subject: i % 10 === 0 ? `svc-${i}` : `user-${i}`,
  tenant: tenants[i % tenants.length]!,
  roles: roleSets[i % roleSets.length]!,
}));
const envs = ["prod", "staging", "dev"];
const contexts: ReadonlyArray<PolicyContext> = Array.from({ length: 65_536 }, (_, i) => ({
  principal: pick(principals),
  operation: pick(operations),
  labels: rand() < 0.8 ? { env: pick(envs), ...(rand() < 0.3 ? { tier: pick(["gold", "silver"]) } : {}) } : {},
  executionId: `e${i}`,
  ...(rand() < 0.5 ? { model: pick(["gpt-4o", "gpt-4o-mini"]), estimatedTokens: Math.floor(rand() * 10_000) } : {}),
}));

const percentile = (sorted: Float64Array, p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

interface Result {
  readonly name: string;
  readonly checks: number;
  readonly perSec: number;
  readonly p50Us: number;
  readonly p99Us: number;
}

/** Throughput over a bounded loop, then latency of individually timed checks. */
function measure(name: string, limit: number, check: (i: number) => void): Result {
  for (let i = 0; i < 20_000; i++) check(i); // warm-up (JIT, caches)
  const deadline = performance.now() + seconds * 1000;
  const start = performance.now();
  let n = 0;
  while (n < limit) {
    for (let j = 0; j < 1000; j++, n++) check(n);
    if (performance.now() > deadline) break;
  }
  const elapsed = (performance.now() - start) / 1000;
  const samples = new Float64Array(Math.min(200_000, n));
  for (let i = 0; i < samples.length; i++) {
    const t0 = performance.now();
    check(i);
    samples[i] = (performance.now() - t0) * 1000;
  }
  samples.sort();
  return { name, checks: n, perSec: n / elapsed, p50Us: percentile(samples, 50), p99Us: percentile(samples, 99) };
}

const compiled = Either.getOrThrow(compilePolicy(document, "bench"));
const rules = compiled.rules;
let allowed = 0;
const results: Result[] = [];

results.push(
  measure("rules", maxChecks, (i) => {
    if (evaluateRules(rules, contexts[i & 65_535]!, 0).effect === "allow") allowed++;
  }),
);

const runtime = ManagedRuntime.make(
  policyLayer({}).pipe(Layer.provide(Layer.mergeAll(TokenLedgerMemory, AuditLoggerMemory)), Layer.provide(Logger.replace(Logger.defaultLogger, Logger.none))),
);
const service = await runtime.runPromise(
  Effect.gen(function* () {
    yield* Effect.flatMap(PolicyEngine, (e) => e.apply(document, "bench"));
    return yield* PolicyService;
  }),
);
// The core runs check inside its own Effect; so does this loop (one runSync per check would
// measure fiber start-up instead).
const checkBatch = (from: number, count: number) =>
  runtime.runSync(
    Effect.gen(function* () {
      for (let i = from; i < from + count; i++) {
        const r = yield* Effect.either(service.check(contexts[i & 65_535]!));
        if (Either.isRight(r)) allowed++;
      }
    }),
  );
{
  const deadline = performance.now() + seconds * 1000;
  checkBatch(0, 20_000);
  const start = performance.now();
  let n = 0;
  while (n < maxChecks && performance.now() < deadline) {
    checkBatch(n, 10_000);
    n += 10_000;
  }
  const elapsed = (performance.now() - start) / 1000;
  // Each check timed alone, inside one Effect (as in the core).
  const samples = new Float64Array(Math.min(200_000, n));
  runtime.runSync(
    Effect.gen(function* () {
      for (let i = 0; i < samples.length; i++) {
        const t0 = performance.now();
        yield* Effect.either(service.check(contexts[i & 65_535]!));
        samples[i] = (performance.now() - t0) * 1000;
      }
    }),
  );
  samples.sort();
  results.push({ name: "PolicyService", checks: n, perSec: n / elapsed, p50Us: percentile(samples, 50), p99Us: percentile(samples, 99) });
}
await runtime.dispose();

results.push(
  measure("cold", Math.max(1, Math.floor(maxChecks / 10)), (i) => {
    rules.candidates.clear();
    if (evaluateRules(rules, contexts[i & 65_535]!, 0).effect === "allow") allowed++;
  }),
);

const conditional = [...document.rules, ...Object.values(document.tenants).flatMap((t) => t.rules ?? [])].filter((r) => r.condition !== undefined).length;
console.log(`policy: ${rules.ruleCount} rules (${conditional} with CEL conditions), ${tenants.length} tenants, ${operations.length} operations, ${principals.length} principals; node ${process.version}, one thread`);
console.log("case            checks/s     p50 µs   p99 µs   checks");
for (const r of results) {
  console.log(
    `${r.name.padEnd(14)} ${Math.round(r.perSec).toLocaleString("en-US").padStart(10)} ${r.p50Us.toFixed(2).padStart(9)} ${r.p99Us.toFixed(2).padStart(8)}   ${r.checks.toLocaleString("en-US")}`,
  );
}
console.log(`(${((allowed / results.reduce((n, r) => n + r.checks, 0)) * 100).toFixed(0)} % of measured checks allowed)`);
const target = results.find((r) => r.name === "PolicyService")!.perSec;
console.log(`target ≥ 100,000 checks/s through PolicyService: ${target >= 100_000 ? "met" : "NOT met"}`);
