/**
 * Rate limits: what is configured (the limits file), which limits apply to a principal (per-role
 * and per-tenant overrides), and how one decision is enforced, audited and logged — the same
 * for the request limit (transport) and the execution limits (core, scheduled runs included).
 *
 * Scopes and their keys:
 * - `request`: RPCs of one principal (the request interceptor, after authentication).
 * - `operation`: executions of one operation by one principal.
 * - `interval` (`minInterval`): at least this long between two executions of one operation by
 *   one principal — GCRA with a limit of 1 per interval, which is exactly that.
 * - `tenant`: executions by every principal of one tenant together.
 * - `model`: executions that use one model, by anyone: a model's limit usually mirrors the
 *   provider's quota of the whole deployment, so it is shared and has no overrides.
 * - `in_flight` (`maxInFlight`): executions of one principal running at once.
 *
 * Overrides: a tenant's entry replaces the base values it sets; then, for the limits of a
 * principal (request, operation, minInterval, maxInFlight), the entries of the principal's roles
 * replace them, and when several of its roles set one, the most generous wins (roles grant).
 * `null` means "no limit". The tenant limit takes tenant overrides only (it is shared by
 * principals of different roles).
 */
import { Effect } from "effect";
import type { AuditLoggerShape } from "../ports/AuditLogger.js";
import {
  bindingOutcome,
  type CheckOutcome,
  type ConcurrencyCheck,
  type Lease,
  type LimitRequest,
  type LimitScope,
  maxLimitTimesWindow,
  type RateCheck,
  type RateLimit,
  type RateLimiterShape,
} from "../ports/RateLimiter.js";
import { RateLimited, RateLimiterUnavailable } from "./errors.js";
import type { JsonValue, Principal } from "./model.js";

/** One level of limits; undefined = inherit, null = no limit. */
export interface LimitSet {
  readonly request?: RateLimit | null;
  readonly operation?: RateLimit | null;
  readonly tenant?: RateLimit | null;
  readonly minIntervalMs?: number | null;
  readonly maxInFlight?: number | null;
}

export interface Limits extends LimitSet {
  readonly models: ReadonlyMap<string, RateLimit>;
  readonly overrides: {
    readonly roles: ReadonlyMap<string, LimitSet>;
    readonly tenants: ReadonlyMap<string, LimitSet>;
  };
  /** Log and audit what would be refused; refuse nothing. */
  readonly shadow: boolean;
}

export const noLimits: Limits = { models: new Map(), overrides: { roles: new Map(), tenants: new Map() }, shadow: false };

// ---------------------------------------------------------------------------------------------
// The limits file

/** A limits file that does not say what it means; the message names the offending field. */
export class LimitsFileError extends Error {
  override readonly name = "LimitsFileError";
}

const maxLimit = 1_000_000;
const maxWindowMs = 30 * 86_400_000;
const setFields = ["request", "operation", "tenant", "minInterval", "maxInFlight"] as const;
const topFields = [...setFields, "models", "overrides", "shadow"] as const;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Parses a limits file (already JSON-decoded):
 * `{"request": {"limit": 100, "window": "1s"}, "operation": {…}, "tenant": {…},
 *   "models": {"gpt-4o": {"limit": 500, "window": "1m"}}, "minInterval": "100ms", "maxInFlight": 10,
 *   "overrides": {"roles": {"admin": {…}}, "tenants": {"acme": {…}}}, "shadow": false}`.
 * Every field is optional. Throws LimitsFileError naming the first bad field.
 */
export function parseLimits(value: unknown, parseDurationMs: (text: string) => number | undefined): Limits {
  const fail = (path: string, problem: string): never => {
    throw new LimitsFileError(`${path === "" ? "the file" : path}: ${problem}`);
  };
  const fields = (path: string, v: unknown, allowed: ReadonlyArray<string>): Record<string, unknown> => {
    if (!isObject(v)) return fail(path, "expected an object");
    for (const k of Object.keys(v)) {
      if (!allowed.includes(k)) fail(path === "" ? k : `${path}.${k}`, `unknown field (expected one of ${allowed.join(", ")})`);
    }
    return v;
  };
  const duration = (path: string, v: unknown): number => {
    const ms = typeof v === "string" ? parseDurationMs(v) : undefined;
    if (ms === undefined || !Number.isInteger(ms) || ms < 1 || ms > maxWindowMs) {
      return fail(path, `expected a duration from 1ms to 30d like "100ms", "1s", "1m", got ${JSON.stringify(v)}`);
    }
    return ms;
  };
  const count = (path: string, v: unknown): number => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > maxLimit) {
      return fail(path, `expected a whole number from 1 to ${maxLimit}, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const rate = (path: string, v: unknown): RateLimit => {
    const o = fields(path, v, ["limit", "window"]);
    if (!("limit" in o)) fail(`${path}.limit`, "is required");
    if (!("window" in o)) fail(`${path}.window`, "is required");
    const limit = count(`${path}.limit`, o["limit"]);
    const windowMs = duration(`${path}.window`, o["window"]);
    if (limit * windowMs > maxLimitTimesWindow) fail(path, "limit × window (in ms) must be at most 2^52");
    return { limit, windowMs };
  };
  const orNull = <A>(v: unknown, parse: (v: unknown) => A): A | null | undefined => (v === undefined ? undefined : v === null ? null : parse(v));
  const set = (path: string, v: unknown, allowed: ReadonlyArray<string>): LimitSet => {
    const o = fields(path, v, allowed);
    const at = (k: string) => (path === "" ? k : `${path}.${k}`);
    const out: { -readonly [K in keyof LimitSet]: LimitSet[K] } = {};
    const request = orNull(o["request"], (x) => rate(at("request"), x));
    const operation = orNull(o["operation"], (x) => rate(at("operation"), x));
    const tenant = orNull(o["tenant"], (x) => rate(at("tenant"), x));
    const minIntervalMs = orNull(o["minInterval"], (x) => duration(at("minInterval"), x));
    const maxInFlight = orNull(o["maxInFlight"], (x) => count(at("maxInFlight"), x));
    if (request !== undefined) out.request = request;
    if (operation !== undefined) out.operation = operation;
    if (tenant !== undefined) out.tenant = tenant;
    if (minIntervalMs !== undefined) out.minIntervalMs = minIntervalMs;
    if (maxInFlight !== undefined) out.maxInFlight = maxInFlight;
    return out;
  };
  const named = (path: string, v: unknown, allowed: ReadonlyArray<string>): Map<string, LimitSet> => {
    if (v === undefined) return new Map();
    if (!isObject(v)) return fail(path, "expected an object of names to limits");
    return new Map(Object.entries(v).map(([name, s]) => [name, set(`${path}.${name}`, s, allowed)]));
  };

  const top = fields("", value, topFields);
  const base = set("", Object.fromEntries(setFields.filter((k) => k in top).map((k) => [k, top[k]])), setFields);
  const models = new Map<string, RateLimit>();
  if (top["models"] !== undefined) {
    if (!isObject(top["models"])) fail("models", "expected an object of model names to limits");
    for (const [name, v] of Object.entries(top["models"] as Record<string, unknown>)) models.set(name, rate(`models.${name}`, v));
  }
  let roles = new Map<string, LimitSet>();
  let tenants = new Map<string, LimitSet>();
  if (top["overrides"] !== undefined) {
    const o = fields("overrides", top["overrides"], ["roles", "tenants"]);
    // A role's tenant limit would give one shared key different limits depending on who calls.
    roles = named("overrides.roles", o["roles"], setFields.filter((k) => k !== "tenant"));
    tenants = named("overrides.tenants", o["tenants"], setFields);
  }
  const shadow = top["shadow"] ?? false;
  if (typeof shadow !== "boolean") fail("shadow", "expected true or false");
  return { ...base, models, overrides: { roles, tenants }, shadow: shadow as boolean };
}

/** Does any level set a request limit? (If not, the request interceptor has nothing to do.) */
export function hasRequestLimits(limits: Limits): boolean {
  const sets = [limits, ...limits.overrides.roles.values(), ...limits.overrides.tenants.values()];
  return sets.some((s) => s.request !== undefined && s.request !== null);
}

// ---------------------------------------------------------------------------------------------
// Which limits apply

type PrincipalField = "request" | "operation" | "minIntervalMs" | "maxInFlight";

const rateOf = (r: RateLimit) => r.limit / r.windowMs;

/** Is `a` more generous than `b`? (null = no limit, the most generous.) */
function moreGenerous(field: PrincipalField, a: RateLimit | number | null, b: RateLimit | number | null): boolean {
  if (b === null) return false;
  if (a === null) return true;
  if (typeof a === "number" && typeof b === "number") return field === "minIntervalMs" ? a < b : a > b;
  const ra = a as RateLimit;
  const rb = b as RateLimit;
  return rateOf(ra) > rateOf(rb) || (rateOf(ra) === rateOf(rb) && ra.limit > rb.limit);
}

function principalLimit<F extends PrincipalField>(limits: Limits, principal: Principal, field: F): NonNullable<LimitSet[F]> | undefined {
  let chosen: LimitSet[F] | undefined;
  let fromRole = false;
  for (const role of principal.roles) {
    const v = limits.overrides.roles.get(role)?.[field];
    if (v === undefined) continue;
    if (!fromRole || moreGenerous(field, v as RateLimit | number | null, chosen as RateLimit | number | null)) chosen = v;
    fromRole = true;
  }
  if (!fromRole) {
    // null in a tenant's entry lifts the base limit, so `??` would be wrong here.
    const t = limits.overrides.tenants.get(principal.tenant)?.[field];
    chosen = t !== undefined ? t : limits[field];
  }
  return (chosen ?? undefined) as NonNullable<LimitSet[F]> | undefined;
}

export interface EffectiveLimits {
  readonly request: RateLimit | undefined;
  readonly operation: RateLimit | undefined;
  readonly tenant: RateLimit | undefined;
  readonly minIntervalMs: number | undefined;
  readonly maxInFlight: number | undefined;
}

/** The limits that apply to one principal, overrides resolved. */
export function limitsFor(limits: Limits, principal: Principal): EffectiveLimits {
  const t = limits.overrides.tenants.get(principal.tenant)?.tenant;
  return {
    request: principalLimit(limits, principal, "request"),
    operation: principalLimit(limits, principal, "operation"),
    tenant: (t !== undefined ? t : limits.tenant) ?? undefined,
    minIntervalMs: principalLimit(limits, principal, "minIntervalMs"),
    maxInFlight: principalLimit(limits, principal, "maxInFlight"),
  };
}

// Key parts are escaped so that "a:b" + "c" and "a" + "b:c" never share a key.
const part = (s: string) => (/[%:]/.test(s) ? encodeURIComponent(s) : s);
const who = (p: Principal) => `${part(p.tenant)}:${part(p.subject)}`;

/** The per-RPC limit of a principal, or undefined when none applies. */
export function requestLimits(limits: Limits, principal: Principal): LimitRequest | undefined {
  const request = principalLimit(limits, principal, "request");
  return request === undefined ? undefined : { rates: [{ scope: "request", key: `rq:${who(principal)}`, limit: request }] };
}

/** Every limit one execution is subject to. */
export function executionLimits(limits: Limits, principal: Principal, operation: string, model: string | undefined): LimitRequest {
  const e = limitsFor(limits, principal);
  const rates: RateCheck[] = [];
  if (e.operation !== undefined) rates.push({ scope: "operation", key: `op:${who(principal)}:${part(operation)}`, limit: e.operation });
  if (e.minIntervalMs !== undefined) rates.push({ scope: "interval", key: `iv:${who(principal)}:${part(operation)}`, limit: { limit: 1, windowMs: e.minIntervalMs } });
  if (e.tenant !== undefined) rates.push({ scope: "tenant", key: `tn:${part(principal.tenant)}`, limit: e.tenant });
  const m = model === undefined ? undefined : limits.models.get(model);
  if (m !== undefined && model !== undefined) rates.push({ scope: "model", key: `md:${part(model)}`, limit: m });
  const concurrency: ConcurrencyCheck | undefined =
    e.maxInFlight === undefined ? undefined : { scope: "in_flight", key: `if:${who(principal)}`, max: e.maxInFlight };
  return { rates, concurrency };
}

// ---------------------------------------------------------------------------------------------
// Enforcing one decision

export interface Admission {
  /** The concurrency slot, when one was taken: release it when the execution ends. */
  readonly lease: Lease | undefined;
  /** The check closest to its limit (for RateLimit-* response headers), if any ran. */
  readonly binding: CheckOutcome | undefined;
}

export interface EnforceInput {
  readonly request: LimitRequest;
  readonly principal: Principal;
  readonly operation?: string | undefined;
  /** The RPC, for the request limit. */
  readonly method?: string | undefined;
  readonly shadow: boolean;
  /**
   * Audit admissions too. The core does (one audit event per execution start); the per-RPC limit
   * audits only refusals, would-be refusals in shadow mode and degraded decisions.
   */
  readonly auditAdmissions: boolean;
}

/** How the refused limit reads in messages: whose quota, of what. */
function describeKey(scope: LimitScope, principal: Principal, operation: string | undefined, key: string): string {
  switch (scope) {
    case "request":
      return principal.subject;
    case "operation":
      return `${principal.subject}/${operation ?? ""}`;
    case "interval":
      return `${principal.subject}/${operation ?? ""} (minimum interval)`;
    case "tenant":
      return `tenant ${principal.tenant}`;
    case "model":
      return `model ${decodeURIComponent(key.slice(3))}`;
    case "in_flight":
      return `${principal.subject} (executions in flight)`;
  }
}

/**
 * Decides, audits (RATE_LIMIT_CHECKED), logs and refuses: RateLimited over a limit,
 * RateLimiterUnavailable when the state could not be reached and the limiter fails closed.
 * In shadow mode nothing is refused: what would have been is logged and audited. A refused
 * decision consumed nothing; an admitted one may hold a slot (Admission.lease).
 */
export const enforceLimits = (
  limiter: RateLimiterShape,
  audit: AuditLoggerShape,
  input: EnforceInput,
): Effect.Effect<Admission, RateLimited | RateLimiterUnavailable> =>
  Effect.gen(function* () {
    const { request, principal, operation, method, shadow } = input;
    if (request.rates.length === 0 && request.concurrency === undefined) return { lease: undefined, binding: undefined };
    const d = yield* limiter.decide(request);
    const binding = bindingOutcome(d);
    const refuse = !d.allowed && !shadow;

    let refusal: RateLimited | RateLimiterUnavailable | undefined;
    if (!d.allowed) {
      refusal =
        d.degraded !== undefined || binding === undefined
          ? new RateLimiterUnavailable({ error: d.degraded?.error ?? "no decision" })
          : new RateLimited({
              scope: binding.scope,
              key: describeKey(binding.scope, principal, operation, binding.key),
              limit: binding.limit,
              remaining: binding.remaining,
              retryAfterMs: binding.retryAfterMs,
              resetMs: binding.resetMs,
            });
    }
    const reason =
      refusal === undefined
        ? d.degraded !== undefined
          ? "rate limiter unavailable: admitted (fail open)"
          : undefined
        : shadow
          ? `shadow mode, would have refused: ${refusal.message}`
          : refusal.message;

    if (input.auditAdmissions || !d.allowed || d.degraded !== undefined) {
      const details: Record<string, JsonValue> = {
        checks: d.checks.map((c) => ({
          scope: c.scope,
          allowed: c.allowed,
          limit: c.limit,
          remaining: c.remaining,
          ...(c.allowed ? {} : { retry_after_ms: c.retryAfterMs }),
        })),
      };
      if (shadow) details["shadow"] = true;
      if (method !== undefined) details["method"] = method;
      if (d.degraded !== undefined) details["degraded"] = { error: d.degraded.error, on_error: d.degraded.onError };
      yield* audit.log({
        type: "RATE_LIMIT_CHECKED",
        principal,
        ...(operation === undefined ? {} : { operation }),
        decision: refuse ? "DENY" : "ALLOW",
        ...(reason === undefined ? {} : { reason }),
        details,
      });
    }

    if (d.degraded !== undefined || (!d.allowed && shadow)) {
      yield* Effect.logWarning(d.degraded !== undefined ? `rate limit: limiter unavailable, ${d.allowed ? "admitted (fail open)" : shadow ? "admitted (shadow mode)" : "refused (fail closed)"}` : `rate limit: ${reason ?? ""}`).pipe(
        Effect.annotateLogs({
          subject: principal.subject,
          tenant: principal.tenant,
          ...(operation === undefined ? {} : { operation }),
          ...(method === undefined ? {} : { method }),
          ...(binding === undefined ? {} : { scope: binding.scope }),
          ...(d.degraded === undefined ? {} : { error: d.degraded.error }),
        }),
      );
    }
    if (refuse && refusal !== undefined) return yield* Effect.fail(refusal);
    return { lease: d.lease, binding };
  });
