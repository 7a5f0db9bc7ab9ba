/**
 * API keys: `ork_<id>_<secret>`. The id (12 lowercase alphanumerics) names the key in listings,
 * the audit log and `keys revoke`; the secret is 43 characters of [A-Za-z0-9] from the CSPRNG
 * (≈ 256 bits). Only letters, digits and underscores, so a double-click selects the whole key.
 *
 * Stored hash: SHA-256 of the whole key, compared in constant time. A fast hash is right here,
 * unlike for passwords: slow KDFs (bcrypt, scrypt, argon2) exist to make guessing a
 * low-entropy secret expensive, but guessing 256 random bits is infeasible at any hash speed,
 * and a KDF would add milliseconds of CPU to every request.
 */
import { createHash, randomInt, timingSafeEqual } from "node:crypto";
import { Clock, Effect, Option } from "effect";
import type { Principal } from "../../core/model.js";
import { ApiKeyStore } from "../ApiKeyStore.js";
import { AuthUnavailable, Unauthenticated, type AuthError } from "./errors.js";

export const apiKeyPrefix = "ork_";
const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
const secretAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const idLength = 12;
const secretLength = 43;
const keyPattern = /^ork_([a-z0-9]{12})_([A-Za-z0-9]{43})$/;

/** How often a key's last_used_time is written, at most, per key and process. */
const touchIntervalMs = 60_000;

// randomInt draws without modulo bias.
const randomString = (alphabet: string, n: number): string =>
  Array.from({ length: n }, () => alphabet[randomInt(alphabet.length)]!).join("");

export interface GeneratedKey {
  readonly id: string;
  readonly key: string;
  readonly hash: string;
}

export function generateApiKey(): GeneratedKey {
  const id = randomString(idAlphabet, idLength);
  const key = `${apiKeyPrefix}${id}_${randomString(secretAlphabet, secretLength)}`;
  return { id, key, hash: hashApiKey(key) };
}

export function hashApiKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/** The id of a well-formed key, or undefined. */
export function parseApiKey(key: string): string | undefined {
  return keyPattern.exec(key)?.[1];
}

/** Routing only: a bearer token with the prefix goes to the API key check. */
export const isApiKeyShaped = (token: string): boolean => token.startsWith(apiKeyPrefix);

// Compared when the id is unknown, so that the work done does not depend on the secret at all.
const absentHash = Buffer.alloc(32);

/**
 * Looks the key up on every request (a primary-key read of the local SQLite file, microseconds):
 * no cache, so a revocation made by another process is seen by the very next request.
 */
export const makeApiKeyVerifier = Effect.gen(function* () {
  const store = yield* ApiKeyStore;
  const lastTouched = new Map<string, number>();
  const invalid = (detail: string, credentialId?: string) =>
    new Unauthenticated({ kind: "INVALID", credential: "api_key", detail, ...(credentialId === undefined ? {} : { credentialId }) });

  return (key: string): Effect.Effect<Principal, AuthError> =>
    Effect.gen(function* () {
      const id = parseApiKey(key);
      if (id === undefined) {
        return yield* new Unauthenticated({ kind: "MALFORMED", credential: "api_key", detail: "ork_ prefix but not the shape ork_<12 id chars>_<43 secret chars>" });
      }
      const found = yield* store.get(id).pipe(
        Effect.mapError((e) => new AuthUnavailable({ credential: "api_key", detail: `key store: ${e.message}: ${String(e.cause)}` })),
      );
      const presented = Buffer.from(hashApiKey(key), "hex");
      const stored = Option.match(found, { onNone: () => absentHash, onSome: (r) => Buffer.from(r.hash, "hex") });
      const matches = stored.length === presented.length && timingSafeEqual(stored, presented);
      if (Option.isNone(found)) return yield* invalid(`unknown API key id ${id}`, id);
      const record = found.value;
      if (!matches) return yield* invalid(`wrong secret for API key ${id}`, id);
      if (record.revokeTime !== undefined) return yield* invalid(`API key ${id} was revoked at ${new Date(record.revokeTime).toISOString()}`, id);
      const now = yield* Clock.currentTimeMillis;
      if (now - (lastTouched.get(id) ?? -Infinity) >= touchIntervalMs) {
        lastTouched.set(id, now);
        // Bookkeeping only: a failed write must not refuse a valid key.
        yield* store.touch(id, now).pipe(Effect.catchAll((e) => Effect.logWarning("api key last_used_time not written").pipe(Effect.annotateLogs({ credential_id: id, error: e.message }))));
      }
      return { subject: record.subject, tenant: record.tenant, roles: record.roles };
    }).pipe(Effect.withSpan("AuthValidator.apiKey"));
});
