/**
 * The authentication part of the server configuration (flags in src/config.ts): which
 * credentials are accepted, the JWT keys and claims, the roles file. Files named here are read
 * once, at start; anything wrong stops the server with a message naming the flag.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { createLocalJWKSet, type JSONWebKeySet } from "jose";
import { ConfigError, parseDurationMs } from "./config.js";
import { builtinRoles, parseRolesFile, RoleDefinitionError, type RoleTable } from "./core/permissions.js";
import type { JwksSource, JwtSettings } from "./ports/auth/jwt.js";

export const authModes = ["api-keys", "jwt", "jwt+api-keys", "none"] as const;
export type AuthMode = (typeof authModes)[number];

export interface AuthConfig {
  readonly mode: AuthMode;
  /** Set when mode accepts JWTs. */
  readonly jwt: JwtSettings | undefined;
  /** Health and reflection need credentials too. */
  readonly protectHealth: boolean;
}

/** The raw settings, as strings (undefined = not set), each with the name to quote in errors. */
export interface RawAuthSettings {
  readonly auth: string | undefined;
  readonly hs256SecretFile: string | undefined;
  readonly jwksFile: string | undefined;
  readonly jwksUrl: string | undefined;
  readonly issuer: string | undefined;
  readonly audience: string | undefined;
  readonly clockSkew: string | undefined;
  readonly tenantClaim: string | undefined;
  readonly rolesClaim: string | undefined;
  readonly protectHealth: boolean;
}

/** Where each setting comes from, for messages: `--flag / ENV`. */
export type Where = (key: keyof RawAuthSettings) => string;

const minSecretBytes = 32;
const maxClockSkewMs = 5 * 60_000;

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) === 6) return h === "::1" || /^::ffff:127\./.test(h);
  return false;
}

export function loadAuthConfig(raw: RawAuthSettings, where: Where, host: string): AuthConfig {
  const keySources = [raw.hs256SecretFile, raw.jwksFile, raw.jwksUrl].filter((s) => s !== undefined && s !== "").length;
  const jwtGiven = keySources > 0 || (raw.issuer ?? "") !== "" || (raw.audience ?? "") !== "";
  const text = raw.auth ?? "";
  const mode: AuthMode = text === "" ? (keySources > 0 ? "jwt+api-keys" : "api-keys") : (text as AuthMode);
  if (!authModes.includes(mode)) throw new ConfigError(`${where("auth")}: expected one of ${authModes.join(", ")}, got "${text}"`);

  if (mode === "none") {
    if (jwtGiven) throw new ConfigError(`${where("auth")}: "none" accepts no credentials, yet JWT settings are given`);
    if (!isLoopbackHost(host)) {
      throw new ConfigError(`${where("auth")}: "none" makes every caller the admin, so it is only allowed on a loopback host (127.0.0.1, ::1, localhost); --host is "${host}"`);
    }
    return { mode, jwt: undefined, protectHealth: raw.protectHealth };
  }
  if (mode === "api-keys") {
    if (jwtGiven) throw new ConfigError(`${where("auth")}: "api-keys" accepts no JWTs, yet JWT settings are given (use jwt+api-keys, or leave --auth unset)`);
    return { mode, jwt: undefined, protectHealth: raw.protectHealth };
  }
  return { mode, jwt: loadJwt(raw, where), protectHealth: raw.protectHealth };
}

function loadJwt(raw: RawAuthSettings, where: Where): JwtSettings {
  const set = (v: string | undefined): v is string => v !== undefined && v !== "";
  if (!set(raw.hs256SecretFile) && !set(raw.jwksFile) && !set(raw.jwksUrl)) {
    throw new ConfigError(`JWT authentication needs a key: ${where("hs256SecretFile")}, ${where("jwksFile")} or ${where("jwksUrl")}`);
  }
  if (set(raw.jwksFile) && set(raw.jwksUrl)) throw new ConfigError(`${where("jwksFile")} and ${where("jwksUrl")}: give one JWKS, not both`);
  // Without both, a token minted by the same identity provider for another service, or by
  // another issuer trusted with the same keys, would be accepted here.
  if (!set(raw.issuer)) throw new ConfigError(`${where("issuer")}: required with JWT authentication (the exact "iss" your tokens carry)`);
  if (!set(raw.audience)) throw new ConfigError(`${where("audience")}: required with JWT authentication (the "aud" your tokens are issued for)`);
  const skewMs = parseDurationMs(raw.clockSkew ?? "30s");
  if (skewMs === undefined || skewMs > maxClockSkewMs) throw new ConfigError(`${where("clockSkew")}: expected a duration of at most 5m, like 30s, got "${raw.clockSkew}"`);
  const claim = (key: "tenantClaim" | "rolesClaim", fallback: string): string => {
    const v = raw[key] ?? fallback;
    if (v === "" || v.length > 256) throw new ConfigError(`${where(key)}: expected a claim name (or a dotted path), got "${v}"`);
    return v;
  };
  return {
    hs256Secret: set(raw.hs256SecretFile) ? readSecret(raw.hs256SecretFile, where("hs256SecretFile")) : undefined,
    jwks: set(raw.jwksFile) ? readJwks(raw.jwksFile, where("jwksFile")) : set(raw.jwksUrl) ? jwksUrl(raw.jwksUrl, where("jwksUrl")) : undefined,
    issuer: raw.issuer,
    audience: raw.audience,
    clockSkewSeconds: skewMs / 1000,
    tenantClaim: claim("tenantClaim", "tenant"),
    rolesClaim: claim("rolesClaim", "roles"),
  };
}

function readSecret(file: string, where: string): Uint8Array {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new ConfigError(`${where}: cannot read ${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
  // An editor's trailing newline is not part of the secret.
  let end = bytes.length;
  while (end > 0 && (bytes[end - 1] === 0x0a || bytes[end - 1] === 0x0d)) end--;
  const secret = bytes.subarray(0, end);
  // RFC 7518 §3.2: an HS256 key must be at least as long as the hash output (256 bits).
  if (secret.length < minSecretBytes) throw new ConfigError(`${where}: the HS256 secret in ${file} must be at least ${minSecretBytes} bytes (it is ${secret.length})`);
  return new Uint8Array(secret);
}

function readJwks(file: string, where: string): JwksSource {
  let jwks: JSONWebKeySet;
  try {
    jwks = JSON.parse(readFileSync(file, "utf8")) as JSONWebKeySet;
  } catch (e) {
    throw new ConfigError(`${where}: cannot read ${file} as JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (typeof jwks !== "object" || jwks === null || !Array.isArray(jwks.keys) || jwks.keys.length === 0) {
    throw new ConfigError(`${where}: ${file} must be a JWKS: {"keys": [ … ]} with at least one key`);
  }
  jwks.keys.forEach((k, i) => {
    if (k.kty !== "RSA" && k.kty !== "EC") throw new ConfigError(`${where}: ${file}: keys[${i}] has kty ${JSON.stringify(k.kty)}; only RSA and EC public keys (RS256, ES256) are accepted`);
    if ("d" in k) throw new ConfigError(`${where}: ${file}: keys[${i}] holds private key material ("d"); a JWKS here must contain public keys only`);
  });
  try {
    createLocalJWKSet(jwks);
  } catch (e) {
    throw new ConfigError(`${where}: ${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
  return { _tag: "File", path: file, jwks };
}

function jwksUrl(text: string, where: string): JwksSource {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`${where}: not a URL: "${text}"`);
  }
  // Keys fetched over cleartext could be swapped on the way: only a loopback URL may be http.
  if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopbackHost(url.hostname))) {
    throw new ConfigError(`${where}: must be https (http only for a loopback host), got "${text}"`);
  }
  return { _tag: "Url", url };
}

/** The roles table: the built-in hierarchy, or the roles file's. */
export function loadRoles(file: string | undefined, where: string): RoleTable {
  if (file === undefined || file === "") return builtinRoles;
  let content: unknown;
  try {
    content = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new ConfigError(`${where}: cannot read ${file} as JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  try {
    return parseRolesFile(content);
  } catch (e) {
    if (e instanceof RoleDefinitionError) throw new ConfigError(`${where}: ${file}: ${e.message}`);
    throw e;
  }
}
