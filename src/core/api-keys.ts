/**
 * Managing API keys: create (the key is returned once, only its hash is stored), list (never a
 * secret), revoke, and the first-run admin key. Creating and revoking are audited
 * (CREDENTIALS_CREATED / CREDENTIALS_REVOKED) with the key's id, never its secret.
 *
 * Used by `orchestrator keys …` (src/cli/keys.ts) on a data dir, and by the server at start.
 */
import { Clock, Data, Effect } from "effect";
import { AuditLogger } from "../ports/AuditLogger.js";
import { type ApiKeyRecord, ApiKeyStore } from "../ports/ApiKeyStore.js";
import { generateApiKey } from "../ports/auth/api-key.js";
import { InvalidInput, type FieldViolation } from "./errors.js";
import type { Principal } from "./model.js";

export interface NewApiKey {
  readonly subject: string;
  readonly tenant?: string | undefined;
  readonly roles: ReadonlyArray<string>;
  readonly description?: string | undefined;
}

export interface CreatedApiKey {
  /** The key itself: shown to its owner once, stored nowhere. */
  readonly key: string;
  readonly record: ApiKeyRecord;
}

export class ApiKeyNotFound extends Data.TaggedError("ApiKeyNotFound")<{ readonly id: string }> {
  override get message() {
    return `no API key with id "${this.id}"`;
  }
}

/** The principal of the first-run key. */
export const firstRunPrincipal: Principal = { subject: "admin", tenant: "default", roles: ["admin"] };

const printable = /^[^\p{Cc}]+$/u;
const roleName = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/;

export function validateNewApiKey(spec: NewApiKey): ReadonlyArray<FieldViolation> {
  const v: FieldViolation[] = [];
  if (spec.subject === "" || spec.subject.length > 256 || !printable.test(spec.subject)) v.push({ field: "subject", description: "1-256 printable characters" });
  if (spec.tenant !== undefined && (spec.tenant === "" || spec.tenant.length > 128 || !printable.test(spec.tenant))) v.push({ field: "tenant", description: "1-128 printable characters" });
  if (spec.roles.length === 0) v.push({ field: "roles", description: "at least one role" });
  for (const r of spec.roles) if (!roleName.test(r)) v.push({ field: "roles", description: `"${r}": role names are 1-64 of [A-Za-z0-9_.:-], starting with a letter` });
  if ((spec.description ?? "").length > 1024) v.push({ field: "description", description: "at most 1024 characters" });
  return v;
}

const created = (record: ApiKeyRecord, actor: Principal | undefined, firstRun: boolean) =>
  Effect.flatMap(AuditLogger, (audit) =>
    audit.log({
      type: "CREDENTIALS_CREATED",
      ...(actor === undefined ? {} : { principal: actor }),
      details: { credential_id: record.id, kind: "api_key", subject: record.subject, tenant: record.tenant, roles: [...record.roles], ...(firstRun ? { first_run: true } : {}) },
    }),
  );

const newRecord = (spec: NewApiKey) =>
  Effect.map(Clock.currentTimeMillis, (now) => {
    const { id, key, hash } = generateApiKey();
    const record: ApiKeyRecord = {
      id,
      hash,
      subject: spec.subject,
      tenant: spec.tenant ?? "default",
      roles: [...new Set(spec.roles)].sort(),
      description: spec.description ?? "",
      createTime: now,
    };
    return { key, record };
  });

/** `actor`: who asked (the CLI's local user), for the audit. */
export const createApiKey = Effect.fn("ApiKeys.create")(function* (spec: NewApiKey, actor?: Principal) {
  const violations = validateNewApiKey(spec);
  if (violations.length > 0) return yield* new InvalidInput({ violations });
  const store = yield* ApiKeyStore;
  const made = yield* newRecord(spec);
  yield* store.insert(made.record);
  yield* created(made.record, actor, false);
  return made satisfies CreatedApiKey;
});

export const listApiKeys = Effect.fn("ApiKeys.list")(function* () {
  const store = yield* ApiKeyStore;
  return yield* store.list();
});

/** Revokes a key; revoking one already revoked succeeds and changes nothing (and is not audited again). */
export const revokeApiKey = Effect.fn("ApiKeys.revoke")(function* (id: string, actor?: Principal) {
  const store = yield* ApiKeyStore;
  const now = yield* Clock.currentTimeMillis;
  const result = yield* store.revoke(id, now);
  if (result._tag === "NotFound") return yield* new ApiKeyNotFound({ id });
  if (result._tag === "Revoked") {
    const audit = yield* AuditLogger;
    yield* audit.log({
      type: "CREDENTIALS_REVOKED",
      ...(actor === undefined ? {} : { principal: actor }),
      details: { credential_id: id, kind: "api_key", subject: result.record.subject, tenant: result.record.tenant },
    });
  }
  return result;
});

/**
 * On a data dir where no API key was ever stored: creates the admin key and returns it (for the
 * caller to print once). Otherwise returns undefined. Atomic across processes.
 */
export const ensureFirstRunKey = Effect.fn("ApiKeys.ensureFirstRunKey")(function* () {
  const store = yield* ApiKeyStore;
  const made = yield* newRecord({ ...firstRunPrincipal, description: "created at first start" });
  const inserted = yield* store.insertIfNone(made.record);
  if (!inserted) return undefined;
  yield* created(made.record, undefined, true);
  return made satisfies CreatedApiKey;
});
