/**
 * The AuthValidator's refusals (re-exported by src/ports/AuthValidator.ts).
 */
import { Data } from "effect";

/** What the caller presented, as far as it could be told without trusting it. */
export type CredentialKind = "none" | "malformed" | "api_key" | "jwt";

/**
 * Why a credential was refused, in terms safe to tell the caller. EXPIRED and NOT_YET_VALID are
 * only reported for a token whose signature verified (jose checks the signature first), so they
 * tell nothing to someone who does not already hold a genuine token. An unknown key, a wrong
 * secret and a revoked key are all INVALID: the answer never says whether a key or user exists.
 */
export type UnauthenticatedKind = "MISSING" | "MALFORMED" | "INVALID" | "EXPIRED" | "NOT_YET_VALID";

const publicReasons: Record<UnauthenticatedKind, string> = {
  MISSING: "no credentials: send `authorization: Bearer <token>` with an API key or a JWT",
  MALFORMED: "malformed credentials: expected `authorization: Bearer <token>` with an API key (ork_…) or a JWT",
  INVALID: "invalid credentials",
  EXPIRED: "the token has expired",
  NOT_YET_VALID: "the token is not valid yet",
};

export class Unauthenticated extends Data.TaggedError("Unauthenticated")<{
  readonly kind: UnauthenticatedKind;
  /** The real reason, for the audit log and the server log only; never sent to the caller. */
  readonly detail: string;
  readonly credential: CredentialKind;
  /** The API key id presented, when it parsed (ids are not secret). */
  readonly credentialId?: string;
}> {
  /** What the caller is told. */
  override get message() {
    return publicReasons[this.kind];
  }
}

/**
 * The credential could not be checked for a reason on the server's side (the JWKS URL does not
 * answer, the key store cannot be read): the caller may retry; it is not told it is unknown.
 */
export class AuthUnavailable extends Data.TaggedError("AuthUnavailable")<{
  readonly detail: string;
  readonly credential: CredentialKind;
}> {
  override get message() {
    return "credentials cannot be checked right now; retry later";
  }
}

export type AuthError = Unauthenticated | AuthUnavailable;
