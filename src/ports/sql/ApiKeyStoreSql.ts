/**
 * ApiKeyStore over any SqlClient with the api_keys table (SQLite migration 2, PostgreSQL
 * migration 1): the statements are the same in both dialects. The server reads a key per
 * request from here, so a key revoked by `orchestrator keys revoke` in another process (same
 * file or database) is refused from the next request on.
 */
import * as SqlClient from "@effect/sql/SqlClient";
import { Effect, Layer, Option } from "effect";
import type { Mutable } from "effect/Types";
import { StoreError } from "../../core/errors.js";
import { type ApiKeyRecord, ApiKeyStore, type RevokeResult } from "../ApiKeyStore.js";

type ApiKeyRow = {
  readonly id: string;
  readonly hash: string;
  readonly subject: string;
  readonly tenant: string;
  readonly roles: string;
  readonly description: string;
  readonly create_time: number;
  readonly revoke_time: number | null;
  readonly last_used_time: number | null;
};

const decode = (row: ApiKeyRow): ApiKeyRecord => {
  const roles: unknown = JSON.parse(row.roles);
  if (!Array.isArray(roles) || !roles.every((r) => typeof r === "string")) throw new Error(`api key ${row.id}: roles is not a list of strings`);
  const r: Mutable<ApiKeyRecord> = {
    id: row.id,
    hash: row.hash,
    subject: row.subject,
    tenant: row.tenant,
    roles,
    description: row.description,
    createTime: row.create_time,
  };
  if (row.revoke_time !== null) r.revokeTime = row.revoke_time;
  if (row.last_used_time !== null) r.lastUsedTime = row.last_used_time;
  return r;
};

const encode = (r: ApiKeyRecord): ApiKeyRow => ({
  id: r.id,
  hash: r.hash,
  subject: r.subject,
  tenant: r.tenant,
  roles: JSON.stringify(r.roles),
  description: r.description,
  create_time: r.createTime,
  revoke_time: r.revokeTime ?? null,
  last_used_time: r.lastUsedTime ?? null,
});

const make = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient;
  const storeError = (operation: string) => (cause: unknown) => new StoreError({ operation: `api_keys.${operation}`, cause });
  const decodeRows = (rows: ReadonlyArray<ApiKeyRow>) => Effect.try({ try: () => rows.map(decode), catch: (cause) => cause });

  const get = (id: string) =>
    sql<ApiKeyRow>`SELECT * FROM api_keys WHERE id = ${id}`.pipe(
      Effect.flatMap(decodeRows),
      Effect.map((rows) => Option.fromNullable(rows[0])),
      Effect.mapError(storeError("get")),
      Effect.withSpan("ApiKeyStore.get"),
    );

  return ApiKeyStore.of({
    insert: (record) => sql`INSERT INTO api_keys ${sql.insert(encode(record))}`.pipe(Effect.asVoid, Effect.mapError(storeError("insert"))),
    insertIfNone: (record) => {
      const row = encode(record);
      // One statement, so the emptiness check and the insert cannot be split by another process:
      // enough in SQLite (one writer at a time). PostgreSQL's READ COMMITTED would let two
      // instances both see an empty table, so there the transaction first takes a lock.
      const insert = sql<{ id: string }>`
        INSERT INTO api_keys (id, hash, subject, tenant, roles, description, create_time)
        SELECT ${row.id}, ${row.hash}, ${row.subject}, ${row.tenant}, ${row.roles}, ${row.description}, ${row.create_time}
        WHERE NOT EXISTS (SELECT 1 FROM api_keys)
        RETURNING id`;
      const lock = sql.onDialectOrElse({ pg: () => sql`LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE`, orElse: () => Effect.succeed([]) });
      return sql.withTransaction(Effect.zipRight(lock, insert)).pipe(
        Effect.map((rows) => rows.length === 1),
        Effect.mapError(storeError("insertIfNone")),
      );
    },
    get,
    list: () =>
      sql<ApiKeyRow>`SELECT * FROM api_keys ORDER BY create_time, id`.pipe(Effect.flatMap(decodeRows), Effect.mapError(storeError("list"))),
    revoke: (id, time) =>
      sql
        .withTransaction(
          Effect.gen(function* () {
            const updated = yield* sql<ApiKeyRow>`
              UPDATE api_keys SET revoke_time = ${time} WHERE id = ${id} AND revoke_time IS NULL RETURNING *`;
            if (updated.length === 1) return { _tag: "Revoked", record: (yield* decodeRows(updated))[0]! } satisfies RevokeResult;
            const existing = yield* sql<ApiKeyRow>`SELECT * FROM api_keys WHERE id = ${id}`;
            if (existing.length === 0) return { _tag: "NotFound" } satisfies RevokeResult;
            return { _tag: "AlreadyRevoked", record: (yield* decodeRows(existing))[0]! } satisfies RevokeResult;
          }),
        )
        .pipe(Effect.mapError(storeError("revoke"))) as Effect.Effect<RevokeResult, StoreError>,
    touch: (id, time) =>
      sql`UPDATE api_keys SET last_used_time = ${time} WHERE id = ${id}`.pipe(Effect.asVoid, Effect.mapError(storeError("touch"))),
  });
});

/** ApiKeyStore over the SqlClient of SqliteDatabase.layer or PgDatabase.layer (schema migrated there). */
export const ApiKeyStoreSql: Layer.Layer<ApiKeyStore, never, SqlClient.SqlClient> = Layer.effect(ApiKeyStore, make);
