/**
 * Port: who is calling. `authenticate(headers)` turns a request's credential into a Principal,
 * or refuses it. Transport-agnostic: the Connect interceptor (src/transport/auth-interceptor.ts)
 * and any other listener call the same thing.
 *
 * Layers:
 * - `AuthValidator.layer(settings)`: `authorization: Bearer <token>` where the token is an API
 *   key (`ork_<id>_<secret>`, checked against the ApiKeyStore) and/or a JWT (jose; HS256 with a
 *   shared secret, RS256/ES256 against a JWKS file or URL). Which of the two are accepted is
 *   configuration (`--auth`).
 * - `AuthValidator.none`: every caller is the local admin. Only for a server on loopback
 *   (config refuses it otherwise) and for tests of features other than authentication.
 */
import { Context, Effect, Layer } from "effect";
import type { Principal } from "../core/model.js";
import type { ApiKeyStore } from "./ApiKeyStore.js";
import { isApiKeyShaped, makeApiKeyVerifier } from "./auth/api-key.js";
import { isJwtShaped, makeJwtVerifier, type JwtSettings } from "./auth/jwt.js";
import { Unauthenticated, type AuthError } from "./auth/errors.js";

export { AuthUnavailable, Unauthenticated, type AuthError, type CredentialKind, type UnauthenticatedKind } from "./auth/errors.js";

export interface AuthValidatorShape {
  readonly authenticate: (headers: Headers) => Effect.Effect<Principal, AuthError>;
}

/** Which credentials a server accepts. */
export interface AuthSettings {
  /** `ork_…` keys from the ApiKeyStore. */
  readonly apiKeys: boolean;
  /** JWT bearer tokens; undefined = not accepted. */
  readonly jwt: JwtSettings | undefined;
}

/** The caller of `--auth none`. */
export const localPrincipal: Principal = { subject: "local", tenant: "default", roles: ["admin"] };

/** Longest token considered at all: anything longer is refused before any parsing. */
const maxTokenLength = 16 * 1024;

export type BearerCredential =
  | { readonly _tag: "None" }
  | { readonly _tag: "Malformed"; readonly why: string }
  | { readonly _tag: "Token"; readonly token: string };

/** `authorization: Bearer <token>` (RFC 6750 b64token). Any other header is ignored. */
export function bearerOf(headers: Headers): BearerCredential {
  const value = headers.get("authorization");
  if (value === null || value.trim() === "") return { _tag: "None" };
  if (value.length > maxTokenLength + 16) return { _tag: "Malformed", why: `authorization header of ${value.length} characters` };
  const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(value);
  if (m === null) {
    const scheme = /^\S+/.exec(value)?.[0] ?? "";
    return { _tag: "Malformed", why: /^bearer$/i.test(scheme) ? "bearer token with characters outside RFC 6750 b64token, or several tokens" : `authorization scheme "${scheme.slice(0, 20)}" (expected Bearer)` };
  }
  return { _tag: "Token", token: m[1]! };
}

const make = (settings: AuthSettings) =>
  Effect.gen(function* () {
    const verifyApiKey = settings.apiKeys ? yield* makeApiKeyVerifier : undefined;
    const verifyJwt = settings.jwt === undefined ? undefined : yield* makeJwtVerifier(settings.jwt);
    const authenticate = (headers: Headers): Effect.Effect<Principal, AuthError> => {
      const credential = bearerOf(headers);
      switch (credential._tag) {
        case "None":
          return Effect.fail(new Unauthenticated({ kind: "MISSING", credential: "none", detail: "no authorization header" }));
        case "Malformed":
          return Effect.fail(new Unauthenticated({ kind: "MALFORMED", credential: "malformed", detail: credential.why }));
        case "Token": {
          const { token } = credential;
          if (isApiKeyShaped(token)) {
            return verifyApiKey !== undefined
              ? verifyApiKey(token)
              : Effect.fail(new Unauthenticated({ kind: "INVALID", credential: "api_key", detail: "an API key, but API keys are not accepted (--auth jwt)" }));
          }
          if (isJwtShaped(token)) {
            return verifyJwt !== undefined
              ? verifyJwt(token)
              : Effect.fail(new Unauthenticated({ kind: "INVALID", credential: "jwt", detail: "a JWT, but no JWT verification is configured" }));
          }
          return Effect.fail(new Unauthenticated({ kind: "MALFORMED", credential: "malformed", detail: "a bearer token that is neither an API key nor a JWT" }));
        }
      }
    };
    return AuthValidator.of({ authenticate });
  });

export class AuthValidator extends Context.Tag("orchestrator/AuthValidator")<AuthValidator, AuthValidatorShape>() {
  /** API keys and/or JWTs, as configured. Needs the ApiKeyStore only when API keys are on. */
  static layer(settings: AuthSettings): Layer.Layer<AuthValidator, never, ApiKeyStore> {
    return Layer.effect(AuthValidator, make(settings));
  }

  /** Everyone is the local admin (`--auth none`). */
  static readonly none: Layer.Layer<AuthValidator> = Layer.succeed(AuthValidator, {
    authenticate: () => Effect.succeed(localPrincipal),
  });
}

