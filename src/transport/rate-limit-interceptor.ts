/**
 * The request limit: a coarse limit on the RPCs of each principal, applied after
 * authentication — it reads the principal the auth interceptor put in the context values, so an
 * unauthenticated or spoofed caller is refused before anything is counted, and cannot spend
 * anyone's quota. Open services (health, reflection) are not limited. The per-operation, tenant,
 * model, interval and in-flight limits are the core's (src/core/limits.ts), not this one's.
 *
 * A transport-agnostic core (`limitRequest`: principal, method → admitted with its RateLimit
 * values, or a refusal), and a thin Connect interceptor that runs it on the app's runtime.
 * Refused: RESOURCE_EXHAUSTED with google.rpc.RetryInfo and `ratelimit-limit`,
 * `ratelimit-remaining`, `ratelimit-reset` (and `retry-after`), through the one error mapping;
 * UNAVAILABLE when the limiter's state is unreachable and it fails closed. Admitted: the same
 * `ratelimit-*` fields on the response headers. Refusals, shadow-mode would-be refusals and
 * degraded decisions are audited (RATE_LIMIT_CHECKED); plain admissions are not (one audit row
 * per RPC would cost more than the call).
 */
import { inRpcSpan } from "./tracing-interceptor.js";
import { type Cause, Effect, Exit, type ManagedRuntime } from "effect";
import type { Interceptor } from "@connectrpc/connect";
import { enforceLimits, hasRequestLimits, requestLimits, type Limits } from "../core/limits.js";
import type { RateLimited, RateLimiterUnavailable } from "../core/errors.js";
import type { Principal } from "../core/model.js";
import { AuditLogger } from "../ports/AuditLogger.js";
import { type CheckOutcome, RateLimiter } from "../ports/RateLimiter.js";
import { openServices, principalKey } from "./auth-interceptor.js";
import { causeToConnectError } from "./error-mapping.js";

export interface RequestToLimit {
  /** `/package.Service/Method`. */
  readonly method: string;
  /** Authenticated. */
  readonly principal: Principal;
}

/**
 * The decision for one RPC: the request limit's outcome when admitted (for the response
 * headers), undefined when no request limit applies to this principal.
 */
export const limitRequest =
  (limits: Limits) =>
  (req: RequestToLimit): Effect.Effect<CheckOutcome | undefined, RateLimited | RateLimiterUnavailable, RateLimiter | AuditLogger> => {
    const request = requestLimits(limits, req.principal);
    if (request === undefined) return Effect.succeed(undefined);
    return Effect.flatMap(Effect.zip(RateLimiter, AuditLogger), ([limiter, audit]) =>
      enforceLimits(limiter, audit, { request, principal: req.principal, method: req.method, shadow: limits.shadow, auditAdmissions: false }),
    ).pipe(Effect.map((a) => a.binding));
  };

/** IETF draft RateLimit header fields (reset in seconds), as on a refusal. */
export function setRateLimitHeaders(headers: Headers, c: CheckOutcome): void {
  headers.set("ratelimit-limit", String(c.limit));
  headers.set("ratelimit-remaining", String(c.remaining));
  headers.set("ratelimit-reset", String(Math.ceil(c.resetMs / 1000)));
}

/** What the interceptor needs from the app's runtime. */
export type RateLimitRuntime = ManagedRuntime.ManagedRuntime<RateLimiter | AuditLogger, unknown>;

/** Install after the auth interceptor: `[tracing, auth, rateLimitInterceptor(…)]`. */
export function rateLimitInterceptor(runtime: RateLimitRuntime, limits: Limits): Interceptor {
  if (!hasRequestLimits(limits)) return (next) => next;
  const check = limitRequest(limits);
  return (next) => async (req) => {
    if (openServices.has(req.service.typeName)) return next(req);
    const method = `/${req.service.typeName}/${req.method.name}`;
    const principal = req.contextValues.get(principalKey);
    // Counting an unauthenticated call would let anyone spend a quota: a wiring bug, fail loudly.
    if (principal === undefined) throw new Error(`no principal in the context of ${method}: is the auth interceptor installed before the rate-limit interceptor?`);
    const exit = await runtime.runPromiseExit(inRpcSpan(req.contextValues, check({ method, principal })), { signal: req.signal });
    if (Exit.isFailure(exit)) throw causeToConnectError(exit.cause as Cause.Cause<RateLimited | RateLimiterUnavailable>);
    const res = await next(req);
    if (exit.value !== undefined) setRateLimitHeaders(res.header, exit.value);
    return res;
  };
}
