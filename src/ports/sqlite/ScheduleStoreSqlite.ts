/**
 * ScheduleStore over SQL: the embedded SQLite database (this file's Layer) and, with the same
 * statements, PostgreSQL (../postgres/ScheduleStorePostgres.ts supplies its one difference).
 * Schema: SqliteDatabase.ts "4_schedules", PgDatabase.ts "3_schedules".
 *
 * A schedule is one row: the columns the store filters and orders on (tenant, operation, paused,
 * next_fire_time, rev) and the whole record as JSON. The due queue is the partial index on
 * next_fire_time: `due` and `earliest` are index range reads, not scans.
 *
 * Exactly once: `advance` is one transaction that updates the row only if its `rev` is still
 * the one read (compare-and-set) and inserts the claims of the slots it moved past; claims are
 * keyed (schedule_id, claim_id) with `cron:<slot>` ids, so a slot has at most one claim even if
 * two writers raced. Expired leases are taken over with an UPDATE whose subquery locks the rows
 * it picks (PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent sweepers split the work instead of
 * waiting for each other, and each claim goes to one of them).
 */
import * as SqlClient from "@effect/sql/SqlClient";
import type { Fragment } from "@effect/sql/Statement";
import { Effect, Layer, Option } from "effect";
import { StoreError } from "../../core/errors.js";
import type { Claim, ClaimOutcome, OverlapPolicy, RunKind, ScheduleFilter, ScheduleRecord } from "../../core/schedule/model.js";
import { ScheduleStore, type SchedulePage, type ScheduleStoreShape, type StoredRequest } from "../ScheduleStore.js";

type ScheduleRow = { readonly record: string; readonly rev: number; readonly next_fire_time: number | null };
type ClaimRow = {
  readonly schedule_id: string;
  readonly claim_id: string;
  readonly nominal_time: number;
  readonly kind: string;
  readonly overlap: string | null;
  readonly instance_id: string;
  readonly lease_until: number;
};

/** Settled claims are kept this long (for inspection), then pruned by the lease sweep. */
const keepSettledMs = 24 * 3_600_000;

const decode = (row: ScheduleRow): ScheduleRecord => {
  const r = JSON.parse(row.record) as ScheduleRecord;
  const { nextFireTime: _n, ...rest } = r;
  return { ...rest, rev: Number(row.rev), ...(row.next_fire_time === null ? {} : { nextFireTime: Number(row.next_fire_time) }) };
};

const decodeClaim = (row: ClaimRow): Claim => ({
  scheduleId: row.schedule_id,
  claimId: row.claim_id,
  nominalTime: Number(row.nominal_time),
  kind: row.kind as RunKind,
  ...(row.overlap === null ? {} : { overlap: row.overlap as OverlapPolicy }),
  instanceId: row.instance_id,
  leaseUntil: Number(row.lease_until),
});

const columns = (r: ScheduleRecord) => ({
  schedule_id: r.scheduleId,
  tenant: r.owner.tenant,
  operation: r.action.operation,
  paused: r.state.paused ? 1 : 0,
  labels: JSON.stringify(r.action.labels),
  next_fire_time: r.nextFireTime ?? null,
  rev: r.rev,
  record: JSON.stringify(r),
});

const claimColumns = (c: Claim) => ({
  schedule_id: c.scheduleId,
  claim_id: c.claimId,
  nominal_time: c.nominalTime,
  kind: c.kind,
  overlap: c.overlap ?? null,
  instance_id: c.instanceId,
  lease_until: c.leaseUntil,
});

export interface ScheduleSqlDialect {
  readonly name: string;
  /** Appended to the subquery that picks expired claims (row locks), or empty. */
  readonly lockPicked: (sql: SqlClient.SqlClient) => Fragment;
}

export const makeScheduleStore = (dialect: ScheduleSqlDialect) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient;
    const fail = (operation: string) => (cause: unknown) => new StoreError({ operation: `${dialect.name}.${operation}`, cause });

    // The owner (hence the tenant, and its index entry) never changes after insert.
    const replaceRow = (r: ScheduleRecord, expectedRev: number) =>
      Effect.map(
        sql<{ readonly schedule_id: string }>`
          UPDATE schedules SET ${sql.update(columns(r), ["schedule_id", "tenant"])}
          WHERE schedule_id = ${r.scheduleId} AND rev = ${expectedRev}
          RETURNING schedule_id`,
        (rows) => rows.length === 1,
      );

    const settleRow = (scheduleId: string, claimId: string, outcome: ClaimOutcome, executionId: string | undefined) =>
      Effect.flatMap(Effect.clockWith((c) => c.currentTimeMillis), (now) =>
        sql`
          UPDATE schedule_claims SET outcome = ${outcome}, execution_id = ${executionId ?? null}, settle_time = ${now}
          WHERE schedule_id = ${scheduleId} AND claim_id = ${claimId}`,
      ).pipe(Effect.asVoid);

    const insertClaim = (c: Claim) =>
      Effect.map(
        sql<{ readonly claim_id: string }>`INSERT INTO schedule_claims ${sql.insert(claimColumns(c))} ON CONFLICT DO NOTHING RETURNING claim_id`,
        (rows) => rows.length === 1,
      );

    const store: ScheduleStoreShape = {
      insert: (r) =>
        Effect.map(
          sql<{ readonly schedule_id: string }>`INSERT INTO schedules ${sql.insert(columns(r))} ON CONFLICT DO NOTHING RETURNING schedule_id`,
          (rows) => rows.length === 1,
        ).pipe(Effect.mapError(fail("insert"))),

      get: (id) =>
        sql<ScheduleRow>`SELECT record, rev, next_fire_time FROM schedules WHERE schedule_id = ${id}`.pipe(
          Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), decode)),
          Effect.mapError(fail("get")),
        ),

      list: (filter: ScheduleFilter, pageSize, after) =>
        Effect.gen(function* () {
          // Labels are matched here (they are JSON text); pages are filled by reading on.
          const want = Object.entries(filter.labels ?? {});
          const items: ScheduleRecord[] = [];
          let cursor = after;
          const chunk = Math.max(pageSize + 1, 100);
          for (;;) {
            const rows = yield* sql<ScheduleRow & { readonly schedule_id: string; readonly labels: string }>`
              SELECT schedule_id, labels, record, rev, next_fire_time FROM schedules
              WHERE ${sql.and([
                sql`tenant = ${filter.tenant}`,
                ...(cursor === undefined ? [] : [sql`schedule_id > ${cursor}`]),
                ...(filter.operation === undefined ? [] : [sql`operation = ${filter.operation}`]),
                ...(filter.paused === undefined ? [] : [sql`paused = ${filter.paused ? 1 : 0}`]),
              ])}
              ORDER BY schedule_id LIMIT ${chunk}`;
            for (const row of rows) {
              const labels = JSON.parse(row.labels) as Record<string, string>;
              if (want.every(([k, v]) => Object.hasOwn(labels, k) && labels[k] === v)) items.push(decode(row));
              if (items.length > pageSize) break;
            }
            if (items.length > pageSize || rows.length < chunk) break;
            cursor = rows.at(-1)!.schedule_id;
          }
          const page = items.slice(0, pageSize);
          return { items: page, next: items.length > pageSize ? page.at(-1)?.scheduleId : undefined } satisfies SchedulePage;
        }).pipe(Effect.mapError(fail("list"))),

      replace: (r, expectedRev, settle) =>
        (settle === undefined
          ? replaceRow(r, expectedRev)
          : sql.withTransaction(
              Effect.gen(function* () {
                if (!(yield* replaceRow(r, expectedRev))) return false;
                yield* settleRow(r.scheduleId, settle.claimId, settle.outcome, settle.executionId);
                return true;
              }),
            )
        ).pipe(Effect.mapError(fail("replace"))),

      advance: (r, expectedRev, claims) =>
        sql
          .withTransaction(
            Effect.gen(function* () {
              if (!(yield* replaceRow(r, expectedRev))) return false;
              for (const c of claims) yield* insertClaim(c);
              return true;
            }),
          )
          .pipe(Effect.mapError(fail("advance"))),

      remove: (id) =>
        sql
          .withTransaction(
            Effect.gen(function* () {
              yield* sql`DELETE FROM schedule_claims WHERE schedule_id = ${id}`;
              const rows = yield* sql<{ readonly schedule_id: string }>`DELETE FROM schedules WHERE schedule_id = ${id} RETURNING schedule_id`;
              return rows.length === 1;
            }),
          )
          .pipe(Effect.mapError(fail("remove"))),

      due: (now, limit) =>
        sql<{ readonly schedule_id: string }>`
          SELECT schedule_id FROM schedules
          WHERE next_fire_time IS NOT NULL AND next_fire_time <= ${now}
          ORDER BY next_fire_time LIMIT ${limit}`.pipe(
          Effect.map((rows) => rows.map((r) => r.schedule_id)),
          Effect.mapError(fail("due")),
        ),

      earliest: () =>
        sql<{ readonly t: number | null }>`SELECT MIN(next_fire_time) AS t FROM schedules WHERE next_fire_time IS NOT NULL`.pipe(
          Effect.map((rows) => (rows[0]?.t === null || rows[0]?.t === undefined ? Option.none() : Option.some(Number(rows[0].t)))),
          Effect.mapError(fail("earliest")),
        ),

      claim: (c) => insertClaim(c).pipe(Effect.mapError(fail("claim"))),

      confirmClaim: (scheduleId, claimId, instanceId, leaseUntil, newLeaseUntil) =>
        sql<{ readonly claim_id: string }>`
          UPDATE schedule_claims SET lease_until = ${newLeaseUntil}
          WHERE schedule_id = ${scheduleId} AND claim_id = ${claimId} AND outcome IS NULL
            AND instance_id = ${instanceId} AND lease_until = ${leaseUntil}
          RETURNING claim_id`.pipe(
          Effect.map((rows) => rows.length === 1),
          Effect.mapError(fail("confirmClaim")),
        ),

      settleClaim: (scheduleId, claimId, outcome: ClaimOutcome, executionId) =>
        settleRow(scheduleId, claimId, outcome, executionId).pipe(Effect.mapError(fail("settleClaim"))),

      takeExpiredClaims: (now, instanceId, leaseUntil, limit) =>
        Effect.gen(function* () {
          yield* sql`DELETE FROM schedule_claims WHERE outcome IS NOT NULL AND settle_time < ${now - keepSettledMs}`;
          const rows = yield* sql<ClaimRow>`
            UPDATE schedule_claims SET instance_id = ${instanceId}, lease_until = ${leaseUntil}
            WHERE (schedule_id, claim_id) IN (
              SELECT schedule_id, claim_id FROM schedule_claims
              WHERE outcome IS NULL AND lease_until < ${now}
              ORDER BY lease_until LIMIT ${limit} ${dialect.lockPicked(sql)}
            )
            RETURNING schedule_id, claim_id, nominal_time, kind, overlap, instance_id, lease_until`;
          return rows.map(decodeClaim);
        }).pipe(Effect.mapError(fail("takeExpiredClaims"))),

      count: () =>
        sql<{ readonly n: number }>`SELECT COUNT(*) AS n FROM schedules`.pipe(
          Effect.map((rows) => Number(rows[0]?.n ?? 0)),
          Effect.mapError(fail("count")),
        ),

      findRequest: (subject, requestId) =>
        sql<{ readonly fingerprint: string; readonly response: string; readonly time: number }>`
          SELECT fingerprint, response, time FROM schedule_requests WHERE subject = ${subject} AND request_id = ${requestId}`.pipe(
          Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (r): StoredRequest => ({ fingerprint: r.fingerprint, response: r.response, time: Number(r.time) }))),
          Effect.mapError(fail("findRequest")),
        ),

      saveRequest: (subject, requestId, request, expiredBefore) =>
        Effect.gen(function* () {
          yield* sql`DELETE FROM schedule_requests WHERE time < ${expiredBefore}`;
          yield* sql`
            INSERT INTO schedule_requests ${sql.insert({ subject, request_id: requestId, fingerprint: request.fingerprint, response: request.response, time: request.time })}
            ON CONFLICT DO NOTHING`;
        }).pipe(Effect.mapError(fail("saveRequest"))),
    };
    return ScheduleStore.of(store);
  });

/** The schema, shared by both dialects (`bigint` is INTEGER affinity in SQLite). */
export const scheduleTables = (sql: SqlClient.SqlClient) =>
  Effect.all(
    [
      sql`
        CREATE TABLE schedules (
          schedule_id TEXT PRIMARY KEY NOT NULL,
          tenant TEXT NOT NULL,
          operation TEXT NOT NULL,
          paused INTEGER NOT NULL,
          labels TEXT NOT NULL,
          next_fire_time BIGINT,
          rev BIGINT NOT NULL,
          record TEXT NOT NULL
        )`,
      // The due queue: only schedules that will fire are in it.
      sql`CREATE INDEX schedules_due ON schedules (next_fire_time) WHERE next_fire_time IS NOT NULL`,
      sql`CREATE INDEX schedules_by_tenant ON schedules (tenant, schedule_id)`,
      sql`
        CREATE TABLE schedule_claims (
          schedule_id TEXT NOT NULL,
          claim_id TEXT NOT NULL,
          nominal_time BIGINT NOT NULL,
          kind TEXT NOT NULL,
          overlap TEXT,
          instance_id TEXT NOT NULL,
          lease_until BIGINT NOT NULL,
          outcome TEXT,
          execution_id TEXT,
          settle_time BIGINT,
          PRIMARY KEY (schedule_id, claim_id)
        )`,
      sql`CREATE INDEX schedule_claims_open ON schedule_claims (lease_until) WHERE outcome IS NULL`,
      sql`CREATE INDEX schedule_claims_settled ON schedule_claims (settle_time) WHERE outcome IS NOT NULL`,
      sql`
        CREATE TABLE schedule_requests (
          subject TEXT NOT NULL,
          request_id TEXT NOT NULL,
          fingerprint TEXT NOT NULL,
          response TEXT NOT NULL,
          time BIGINT NOT NULL,
          PRIMARY KEY (subject, request_id)
        )`,
    ],
    { discard: true },
  );

/** ScheduleStore on the embedded SQLite database (one instance). */
export const ScheduleStoreSqlite: Layer.Layer<ScheduleStore, never, SqlClient.SqlClient> = Layer.effect(
  ScheduleStore,
  makeScheduleStore({ name: "ScheduleStoreSqlite", lockPicked: (sql) => sql`` }),
);
