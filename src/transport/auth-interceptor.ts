/**
 * Authentication: who is calling. Transport-agnostic core (`Authenticator`: headers → principal
 * or refusal) with a thin Connect interceptor around it that puts the principal in the request's
 * context values. Health and reflection stay open.
 *
 * Until the interceptors issue (#4) brings JWT and hashed API keys, two authenticators exist:
 * static bearer tokens from configuration, and — when none are configured — a single local
 * principal with the admin role (the server listens on 127.0.0.1 by default).
 */
import { timingSafeEqual } from "node:crypto";
import { Code, createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import type { Principal } from "../core/model.js";
import { rpcError } from "./errors.js";

export type Authenticator = (headers: Headers) => Principal | { readonly refused: string };

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

export function authInterceptor(authenticate: Authenticator): Interceptor {
  return (next) => async (req) => {
    if (openServices.has(req.service.typeName)) return next(req);
    const result = authenticate(req.header);
    if ("refused" in result) {
      throw rpcError({ code: Code.Unauthenticated, message: result.refused, reason: "UNAUTHENTICATED" });
    }
    req.contextValues.set(principalKey, result);
    return next(req);
  };
}

export const localPrincipal: Principal = { subject: "local", tenant: "default", roles: ["admin"] };

/** Everyone is the local admin: for a server on loopback with no credentials configured. */
export const localAuthenticator: Authenticator = () => localPrincipal;

/**
 * `authorization: Bearer <token>` looked up in a fixed table. Compared in constant time; a
 * missing, malformed or unknown token gets one message that does not say which.
 */
export function staticTokenAuthenticator(tokens: ReadonlyMap<string, Principal>): Authenticator {
  const entries = [...tokens].map(([t, p]) => [Buffer.from(t), p] as const);
  return (headers) => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(headers.get("authorization") ?? "");
    if (m === null) return { refused: "missing or malformed credentials: send `authorization: Bearer <token>`" };
    const presented = Buffer.from(m[1]!);
    for (const [token, principal] of entries) {
      if (token.length === presented.length && timingSafeEqual(token, presented)) return principal;
    }
    return { refused: "invalid credentials" };
  };
}
