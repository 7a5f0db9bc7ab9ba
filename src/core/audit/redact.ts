/**
 * Secrets never reach the audit log. Two layers:
 *
 * - What the caller knows: an operation names its sensitive input fields
 *   (`Operation.sensitiveFields`, dotted paths); `redactInput` replaces their values before the
 *   input is audited.
 * - What the log checks anyway (`scrubDetails`, applied by every AuditLogger to every event):
 *   keys that name a credential (password, secret, authorization, api_key, cookie…) lose their
 *   value, and string values that look like a credential (an `ork_…` API key, a JWT, a
 *   `Bearer …` header value) are masked wherever they appear, so that a secret quoted in an
 *   error message is caught too.
 */
import type { JsonObject, JsonValue } from "../model.js";

export const redacted = "[REDACTED]";

/** Key names (lowercase, without `_`, `-` and `.`) whose values are secrets. */
const secretKeys: ReadonlySet<string> = new Set([
  "password",
  "passwd",
  "passphrase",
  "secret",
  "clientsecret",
  "authorization",
  "proxyauthorization",
  "apikey",
  "xapikey",
  "accesstoken",
  "refreshtoken",
  "idtoken",
  "bearer",
  "token",
  "sessiontoken",
  "privatekey",
  "cookie",
  "setcookie",
  "credentials",
]);

const normalize = (k: string) => k.toLowerCase().replace(/[-_.]/g, "");

/** True when a details/input key holds a secret by its name. */
export const isSecretKey = (key: string): boolean => secretKeys.has(normalize(key));

// ork_<12 id>_<43 secret>: the id names the key in the log and is kept; the secret goes.
const apiKeyValue = /\bork_([a-z0-9]{12})_[A-Za-z0-9]{43}\b/g;
// Three base64url segments, the first a JSON header ("eyJ" = base64 of '{"').
const jwtValue = /\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g;
const bearerValue = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi;
/** A cheap pre-check: none of the patterns can match without one of these. */
const mayHoldCredential = /ork_|eyJ|bearer|basic/i;

/** A string with credential-shaped substrings masked (unchanged, same object, when none). */
export function scrubString(s: string): string {
  if (s.length < 8 || !mayHoldCredential.test(s)) return s;
  return s
    .replace(apiKeyValue, (_m, id: string) => `ork_${id}_${redacted}`)
    .replace(jwtValue, redacted)
    .replace(bearerValue, (_m, scheme: string) => `${scheme} ${redacted}`);
}

// Copy-on-write: the common case (nothing secret) returns the very same object, allocating nothing.
function scrubValue(v: JsonValue): JsonValue {
  if (typeof v === "string") return scrubString(v);
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) {
    const a = v as ReadonlyArray<JsonValue>;
    let out: JsonValue[] | undefined;
    for (let i = 0; i < a.length; i++) {
      const x = scrubValue(a[i]!);
      if (x !== a[i] && out === undefined) out = a.slice(0, i);
      if (out !== undefined) out.push(x);
    }
    return out ?? a;
  }
  return scrubObject(v as JsonObject);
}

function scrubObject(o: JsonObject): JsonObject {
  let out: Record<string, JsonValue> | undefined;
  const keys = Object.keys(o);
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const v = o[k]!;
    const x = isSecretKey(k) && v !== null ? redacted : scrubValue(v);
    if (x !== v && out === undefined) {
      out = {};
      for (let j = 0; j < i; j++) out[keys[j]!] = o[keys[j]!]!;
    }
    if (out !== undefined) out[k] = x;
  }
  return out ?? o;
}

/** details with secret-named keys and credential-shaped values masked. */
export const scrubDetails = (details: JsonObject): JsonObject => scrubObject(details);

/** reason (free text) with credential-shaped values masked. */
export const scrubReason = scrubString;

/**
 * The input with each sensitive field's value replaced (a dotted path names a nested field; a
 * path through an array applies to each element). Fields absent from the input stay absent.
 */
export function redactInput(input: JsonObject, sensitiveFields: ReadonlyArray<string> | undefined): JsonObject {
  if (sensitiveFields === undefined || sensitiveFields.length === 0) return input;
  let out: JsonValue = input;
  for (const path of sensitiveFields) out = redactPath(out, path.split("."));
  return out as JsonObject;
}

function redactPath(v: JsonValue, path: ReadonlyArray<string>): JsonValue {
  if (path.length === 0 || v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) return (v as ReadonlyArray<JsonValue>).map((e) => redactPath(e, path));
  const o = v as JsonObject;
  const [head, ...rest] = path as [string, ...string[]];
  if (!Object.hasOwn(o, head)) return o;
  return { ...o, [head]: rest.length === 0 ? redacted : redactPath(o[head]!, rest) };
}
