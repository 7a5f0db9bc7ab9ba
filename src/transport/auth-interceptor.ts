/**
 * Authentication: who is calling. A transport-agnostic core (`authenticateRequest`: method,
 * headers, peer → principal, or a refusal that is audited) and a thin Connect interceptor that
 * runs it on the app's runtime and puts the principal in the request's context values. Only
 * the `authorization` header is read: no other header (x-user-id, x-tenant…) and nothing in
 * the request body can name or change the principal.
 *
 * Audit: every refusal is written (AUTH_DENIED, principal unset, the real reason, method and
 * peer). A success is not written here: the core's authorize step already writes one
 * AUTH_SUCCEEDED/AUTH_DENIED, with the principal and the permission, for every RPC that does
 * anything, so a row per RPC here would double the log for no information. Successes go to the
 * debug log.
 *
 * Health and reflection stay open unless `--protect-health`.
 */
import { inRpcSpan } from "./tracing-interceptor.js";
import { type Cause, Clock, Effect, Exit, type ManagedRuntime } from "effect";
import { createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import type { Principal } from "../core/model.js";
import { AuditLogger } from "../ports/AuditLogger.js";
import { AuthValidator, type AuthError } from "../ports/AuthValidator.js";
import { causeToConnectError } from "./error-mapping.js";
import { peerKey } from "./rpc-handler.js";

export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "authenticated principal" });

/** The caller; a handler reached without authentication is a wiring bug, so fail loudly. */
export function principalOf(ctx: HandlerContext): Principal {
  const p = ctx.values.get(principalKey);
  if (p === undefined) throw new Error(`no principal in the context of ${ctx.method.name}: is the auth interceptor installed?`);
  return p;
}

export const openServices: ReadonlySet<string> = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);

export interface AuthRequest {
  /** `/package.Service/Method`. */
  readonly method: string;
  readonly headers: Headers;
  readonly peer: string | undefined;
}

/**
 * Refusals are audited, but an unauthenticated caller must not be able to fill the audit log
 * (nothing is counted against anyone before authentication, so no rate limit stops it). This
 * keeps at most `perWindow` AUTH_DENIED rows per peer address per window; the rest are counted
 * in one warning per window instead. State is per window and per peer, so memory stays bounded
 * by the peers seen within one window.
 */
export function deniedAuditSampler(perWindow = 20, windowMs = 1_000) {
  let windowStart = -Infinity;
  let counts = new Map<string, number>();
  let suppressed = 0;
  return (peer: string) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      let report = Effect.void;
      if (now - windowStart >= windowMs) {
        if (suppressed > 0) {
          report = Effect.logWarning(`suppressed ${suppressed} AUTH_DENIED audit rows over the per-peer limit`);
        }
        windowStart = now;
        counts = new Map();
        suppressed = 0;
      }
      const n = (counts.get(peer) ?? 0) + 1;
      counts.set(peer, n);
      if (n > perWindow) suppressed++;
      return Effect.as(report, n <= perWindow);
    });
}

const auditAll = (_peer: string) => Effect.succeed(true);

/** headers → principal; a refusal is audited (sampled per peer) before it is returned. */
export const authenticateRequest = (req: AuthRequest, shouldAudit: (peer: string) => Effect.Effect<boolean> = auditAll) =>
  Effect.gen(function* () {
    const validator = yield* AuthValidator;
    return yield* validator.authenticate(req.headers).pipe(
      Effect.tapError((e) =>
        Effect.flatMap(shouldAudit(req.peer ?? ""), (keep) =>
          !keep
            ? Effect.void
            : Effect.flatMap(AuditLogger, (audit) =>
                audit.log({
                  type: "AUTH_DENIED",
                  decision: "DENY",
                  reason: e.detail,
                  details: {
                    method: req.method,
                    peer: req.peer ?? "",
                    credential: e.credential,
                    error: e._tag === "Unauthenticated" ? e.kind : "UNAVAILABLE",
                    ...(e._tag === "Unauthenticated" && e.credentialId !== undefined ? { credential_id: e.credentialId } : {}),
                  },
                }),
              ),
        ),
      ),
      Effect.tap((p) => Effect.logDebug("authenticated").pipe(Effect.annotateLogs({ method: req.method, subject: p.subject, tenant: p.tenant }))),
    );
  }).pipe(Effect.withSpan("auth.authenticate"));

/** What the interceptor needs from the app's runtime. */
export type AuthRuntime = ManagedRuntime.ManagedRuntime<AuthValidator | AuditLogger, unknown>;

export interface AuthInterceptorOptions {
  /** Require credentials for health and reflection too. */
  readonly protectHealth?: boolean;
}

export function authInterceptor(runtime: AuthRuntime, options: AuthInterceptorOptions = {}): Interceptor {
  const open = options.protectHealth === true ? new Set<string>() : openServices;
  const sampler = deniedAuditSampler();
  return (next) => async (req) => {
    if (open.has(req.service.typeName)) return next(req);
    const exit = await runtime.runPromiseExit(
      // A child of the RPC span, not a trace of its own.
      inRpcSpan(
        req.contextValues,
        authenticateRequest({ method: `/${req.service.typeName}/${req.method.name}`, headers: req.header, peer: req.contextValues.get(peerKey) }, sampler),
      ),
      { signal: req.signal },
    );
    if (Exit.isFailure(exit)) throw causeToConnectError(exit.cause as Cause.Cause<AuthError>);
    req.contextValues.set(principalKey, exit.value);
    return next(req);
  };
}
