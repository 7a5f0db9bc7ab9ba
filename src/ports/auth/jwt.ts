/**
 * JWT bearer tokens, verified with jose.
 *
 * - HS256 against a shared secret; RS256 and ES256 against a JWKS, from a file (read at start)
 *   or a URL (fetched at start, cached, refetched when a token names an unknown `kid` — at most
 *   once per cooldown — and when the cache is older than its maximum age).
 * - The token's `alg` picks the key *kind* before anything is verified, and each verification
 *   allows only that kind's algorithms: an HS256 token is never checked against a public key
 *   (the HS/RS confusion attack: the public key used as an HMAC secret) and an RS/ES token never
 *   against the secret. `alg: none` and every other algorithm are refused.
 * - `iss` and `aud` must equal the configured values; `exp` and `sub` are required; `exp` and
 *   `nbf` are checked against the Effect Clock with the configured skew.
 * - Claims → Principal: subject = `sub`; tenant = the tenant claim (default `tenant`; absent →
 *   "default"); roles = the roles claim (default `roles`; a list of strings, or one
 *   space-separated string as OAuth scopes are). A claim name is looked up as-is first, then as
 *   a dotted path (`realm_access.roles`).
 */
import { Clock, Effect } from "effect";
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
} from "jose";
import type { Principal } from "../../core/model.js";
import { AuthUnavailable, Unauthenticated, type AuthError } from "./errors.js";

export type JwksSource =
  | { readonly _tag: "File"; readonly path: string; readonly jwks: JSONWebKeySet }
  | {
      readonly _tag: "Url";
      readonly url: URL;
      /** After a fetch, how long an unknown `kid` waits before it may trigger another. Default 30 s. */
      readonly cooldownMs?: number;
      /** Keys older than this are fetched again. Default 10 min. */
      readonly cacheMaxAgeMs?: number;
      /** Default 5 s. */
      readonly timeoutMs?: number;
    };

export interface JwtSettings {
  /** Raw bytes of the shared HS256 secret (at least 32). */
  readonly hs256Secret: Uint8Array | undefined;
  readonly jwks: JwksSource | undefined;
  /** Required `iss`. */
  readonly issuer: string;
  /** Required `aud` (the token's `aud` may be a list containing it). */
  readonly audience: string;
  readonly clockSkewSeconds: number;
  readonly tenantClaim: string;
  readonly rolesClaim: string;
}

export const defaultTenant = "default";
const asymmetric = ["RS256", "ES256"] as const;
const maxSubject = 256;
const maxTenant = 128;
const maxRoles = 64;
const maxRole = 128;
const printable = /^[^\p{Cc}]+$/u;

/** Routing only: three base64url segments (the third empty for `alg: none`, still routed here to be refused). */
export const isJwtShaped = (token: string): boolean => /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/.test(token);

/** A claim by exact name, else by dotted path. */
export function claimAt(payload: JWTPayload, name: string): unknown {
  if (Object.hasOwn(payload, name)) return payload[name];
  let at: unknown = payload;
  for (const part of name.split(".")) {
    if (typeof at !== "object" || at === null || Array.isArray(at) || !Object.hasOwn(at, part)) return undefined;
    at = (at as Record<string, unknown>)[part];
  }
  return at;
}

const invalid = (detail: string) => new Unauthenticated({ kind: "INVALID", credential: "jwt", detail });

/** jose's failures, sorted into what the caller may be told and what only the audit sees. */
function fromJose(e: unknown): AuthError {
  const code = (e as { code?: unknown } | null)?.code;
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof errors.JWTExpired) return new Unauthenticated({ kind: "EXPIRED", credential: "jwt", detail: `expired: ${message}` });
  if (e instanceof errors.JWTClaimValidationFailed) {
    if (e.claim === "nbf" && e.reason === "check_failed") return new Unauthenticated({ kind: "NOT_YET_VALID", credential: "jwt", detail: `not yet valid: ${message}` });
    return invalid(`claim ${e.claim}: ${message}`);
  }
  if (e instanceof errors.JWKSTimeout || e instanceof errors.JWKSInvalid) return new AuthUnavailable({ credential: "jwt", detail: `JWKS: ${message}` });
  if (typeof code === "string" && code.startsWith("ERR_")) return invalid(`${code}: ${message}`);
  // Not jose's own: the JWKS fetch itself failed (connection refused, DNS, a non-200 answer).
  return new AuthUnavailable({ credential: "jwt", detail: `JWKS fetch: ${message}` });
}

function principalOf(payload: JWTPayload, settings: JwtSettings): Principal | Unauthenticated {
  const sub = payload.sub;
  if (typeof sub !== "string" || sub === "" || sub.length > maxSubject || !printable.test(sub)) return invalid("sub is empty, too long or not printable");
  const tenant = claimAt(payload, settings.tenantClaim) ?? defaultTenant;
  if (typeof tenant !== "string" || tenant === "" || tenant.length > maxTenant || !printable.test(tenant)) {
    return invalid(`claim ${settings.tenantClaim} (tenant) is not a non-empty printable string of at most ${maxTenant} characters`);
  }
  const raw = claimAt(payload, settings.rolesClaim) ?? [];
  const list = typeof raw === "string" ? raw.split(/\s+/).filter((r) => r !== "") : raw;
  if (!Array.isArray(list) || !list.every((r): r is string => typeof r === "string" && r !== "" && r.length <= maxRole) || list.length > maxRoles) {
    return invalid(`claim ${settings.rolesClaim} (roles) is not a list of at most ${maxRoles} strings`);
  }
  return { subject: sub, tenant, roles: [...new Set(list)].sort() };
}

export const makeJwtVerifier = (settings: JwtSettings) =>
  Effect.gen(function* () {
    const secret = settings.hs256Secret;
    let keySet: JWTVerifyGetKey | undefined;
    const source = settings.jwks;
    if (source?._tag === "File") keySet = createLocalJWKSet(source.jwks);
    if (source?._tag === "Url") {
      const remote = createRemoteJWKSet(source.url, {
        cooldownDuration: source.cooldownMs ?? 30_000,
        cacheMaxAge: source.cacheMaxAgeMs ?? 600_000,
        timeoutDuration: source.timeoutMs ?? 5_000,
      });
      keySet = remote;
      // Fetched once at start so that a wrong URL shows in the log at once; the server starts
      // anyway (the identity provider may be down for a moment) and fetches again on demand.
      yield* Effect.tryPromise(() => remote.reload()).pipe(
        Effect.tap(() => Effect.logInfo("JWKS fetched").pipe(Effect.annotateLogs({ url: source.url.href }))),
        Effect.catchAll((e) =>
          Effect.logWarning("JWKS could not be fetched; fetching again on demand").pipe(Effect.annotateLogs({ url: source.url.href, error: String(e.error) })),
        ),
      );
    }

    return (token: string): Effect.Effect<Principal, AuthError> =>
      Effect.gen(function* () {
        let alg: string | undefined;
        try {
          alg = decodeProtectedHeader(token).alg;
        } catch (e) {
          return yield* new Unauthenticated({ kind: "MALFORMED", credential: "jwt", detail: `JWT header does not decode: ${e instanceof Error ? e.message : String(e)}` });
        }
        const now = yield* Clock.currentTimeMillis;
        const options = {
          issuer: settings.issuer,
          audience: settings.audience,
          clockTolerance: settings.clockSkewSeconds,
          currentDate: new Date(now),
          requiredClaims: ["exp", "sub"],
        };
        let verify: () => Promise<{ payload: JWTPayload }>;
        if (alg === "HS256") {
          if (secret === undefined) return yield* invalid("alg HS256 but no shared secret is configured");
          verify = () => jwtVerify(token, secret, { ...options, algorithms: ["HS256"] });
        } else if (alg === "RS256" || alg === "ES256") {
          if (keySet === undefined) return yield* invalid(`alg ${alg} but no JWKS is configured`);
          const keys = keySet;
          verify = () => jwtVerify(token, keys, { ...options, algorithms: [...asymmetric] });
        } else {
          return yield* invalid(`alg ${JSON.stringify(alg)} is not accepted (HS256, RS256, ES256 only)`);
        }
        const { payload } = yield* Effect.tryPromise({ try: verify, catch: fromJose });
        const principal = principalOf(payload, settings);
        if (principal instanceof Unauthenticated) return yield* principal;
        return principal;
      }).pipe(Effect.withSpan("AuthValidator.jwt"));
  });
