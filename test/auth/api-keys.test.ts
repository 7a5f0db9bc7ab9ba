/**
 * API keys in both stores (memory, SQLite on a real file): created with only a hash stored,
 * listed without secrets, revoked, audited; the first-run key created exactly once.
 */
import * as SqlClient from "@effect/sql/SqlClient";
import { describe, expect, it } from "@effect/vitest";
import { Effect, Layer, Option } from "effect";
import { ApiKeyNotFound, createApiKey, ensureFirstRunKey, firstRunPrincipal, listApiKeys, revokeApiKey } from "../../src/core/api-keys.js";
import { InvalidInput } from "../../src/core/errors.js";
import { ApiKeyStore } from "../../src/ports/ApiKeyStore.js";
import { AuditLogger } from "../../src/ports/AuditLogger.js";
import { hashApiKey, parseApiKey } from "../../src/ports/auth/api-key.js";
import { ApiKeyStoreMemory } from "../../src/ports/memory/ApiKeyStoreMemory.js";
import { AuditLoggerMemory } from "../../src/ports/memory/AuditLoggerMemory.js";
import { ApiKeyStoreSqlite } from "../../src/ports/sqlite/ApiKeyStoreSqlite.js";
import { AuditLoggerSqlite } from "../../src/ports/sqlite/AuditLoggerSqlite.js";
import { SqliteDatabase } from "../../src/ports/sqlite/SqliteDatabase.js";
import { freshDatabase, tempDir } from "../ports/fixtures.js";

const stores = [
  { name: "memory", layer: Layer.merge(ApiKeyStoreMemory, AuditLoggerMemory) },
  { name: "sqlite", layer: Layer.merge(ApiKeyStoreSqlite, AuditLoggerSqlite).pipe(Layer.provideMerge(freshDatabase)) },
];

const auditTypes = Effect.flatMap(AuditLogger, (a) => a.read(0, 1000));

for (const impl of stores) {
  describe(`API keys (${impl.name})`, () => {
    it.effect("create returns the key once and stores only its hash; list never shows a secret", () =>
      Effect.gen(function* () {
        const { key, record } = yield* createApiKey({ subject: "ci", tenant: "acme", roles: ["viewer", "operator", "viewer"], description: "CI pipeline" });
        expect(parseApiKey(key)).toBe(record.id);
        expect(record).toMatchObject({ subject: "ci", tenant: "acme", roles: ["operator", "viewer"], description: "CI pipeline" });
        expect(record.hash).toBe(hashApiKey(key));
        const listed = yield* listApiKeys();
        expect(listed).toHaveLength(1);
        expect(JSON.stringify(listed)).not.toContain(key.split("_")[2]!);
        const stored = yield* Effect.flatMap(ApiKeyStore, (s) => s.get(record.id));
        expect(Option.getOrThrow(stored).hash).toBe(hashApiKey(key));
        // Two keys never collide.
        const other = yield* createApiKey({ subject: "ci", roles: ["viewer"] });
        expect(other.key).not.toBe(key);
        expect(other.record.tenant).toBe("default");
      }).pipe(Effect.provide(impl.layer)),
    );

    it.effect("create and revoke are audited with the key's id, never its secret; revoking twice changes nothing", () =>
      Effect.gen(function* () {
        const actor = { subject: "cli:root", tenant: "default", roles: [] };
        const { key, record } = yield* createApiKey({ subject: "svc", roles: ["operator"] }, actor);
        expect((yield* revokeApiKey(record.id, actor))._tag).toBe("Revoked");
        expect((yield* revokeApiKey(record.id, actor))._tag).toBe("AlreadyRevoked");
        const events = yield* auditTypes;
        expect(events.map((e) => e.type)).toEqual(["CREDENTIALS_CREATED", "CREDENTIALS_REVOKED"]);
        expect(events[0]).toMatchObject({ principal: actor, details: { credential_id: record.id, subject: "svc", roles: ["operator"] } });
        expect(events[1]).toMatchObject({ principal: actor, details: { credential_id: record.id, subject: "svc" } });
        expect(JSON.stringify(events)).not.toContain(key.split("_")[2]!);
        expect(JSON.stringify(events)).not.toContain(record.hash);
        const listed = yield* listApiKeys();
        expect(listed[0]?.revokeTime).toBeTypeOf("number");
      }).pipe(Effect.provide(impl.layer)),
    );

    it.effect("revoking an unknown id fails with ApiKeyNotFound; bad specs with InvalidInput naming the field", () =>
      Effect.gen(function* () {
        expect(yield* Effect.flip(revokeApiKey("nope"))).toBeInstanceOf(ApiKeyNotFound);
        const bad = yield* Effect.flip(createApiKey({ subject: "", roles: [] }));
        expect(bad).toBeInstanceOf(InvalidInput);
        if (bad instanceof InvalidInput) expect(bad.violations.map((v) => v.field).sort()).toEqual(["roles", "subject"]);
        const badRole = yield* Effect.flip(createApiKey({ subject: "x", roles: ["admin everything"] }));
        expect(badRole.message).toMatch(/roles: "admin everything"/);
      }).pipe(Effect.provide(impl.layer)),
    );

    it.effect("first run: one admin key on an empty store, none afterwards (revoked keys count)", () =>
      Effect.gen(function* () {
        const first = yield* ensureFirstRunKey();
        expect(first?.record).toMatchObject({ subject: firstRunPrincipal.subject, tenant: "default", roles: ["admin"] });
        expect(yield* ensureFirstRunKey()).toBeUndefined();
        yield* revokeApiKey(first!.record.id);
        expect(yield* ensureFirstRunKey()).toBeUndefined();
        const events = yield* auditTypes;
        expect(events[0]).toMatchObject({ type: "CREDENTIALS_CREATED", details: { first_run: true, subject: "admin" } });
      }).pipe(Effect.provide(impl.layer)),
    );

    it.effect("a store that already has a key gets no first-run key", () =>
      Effect.gen(function* () {
        yield* createApiKey({ subject: "provisioned", roles: ["admin"] });
        expect(yield* ensureFirstRunKey()).toBeUndefined();
      }).pipe(Effect.provide(impl.layer)),
    );
  });
}

describe("API keys (sqlite only)", () => {
  it.scoped("keys outlive the process; a revocation by another connection is seen at once", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir;
      const open = Layer.merge(ApiKeyStoreSqlite, AuditLoggerSqlite).pipe(Layer.provideMerge(SqliteDatabase.layer(dir)));
      // Two connections to one file, as the server and `orchestrator keys revoke` have.
      const server = yield* Layer.build(open);
      const cli = yield* Layer.build(open.pipe(Layer.fresh));
      const { record } = yield* createApiKey({ subject: "svc", roles: ["viewer"] }).pipe(Effect.provide(cli));
      const seen = yield* Effect.flatMap(ApiKeyStore, (s) => s.get(record.id)).pipe(Effect.provide(server));
      expect(Option.getOrThrow(seen).revokeTime).toBeUndefined();
      yield* revokeApiKey(record.id).pipe(Effect.provide(cli));
      const after = yield* Effect.flatMap(ApiKeyStore, (s) => s.get(record.id)).pipe(Effect.provide(server));
      expect(Option.getOrThrow(after).revokeTime).toBeTypeOf("number");
      const rows = yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ hash: string }>`SELECT hash FROM api_keys`).pipe(Effect.provide(server));
      expect(rows).toEqual([{ hash: record.hash }]);
    }),
  );
});
