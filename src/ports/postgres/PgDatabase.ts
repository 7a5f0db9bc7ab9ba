/**
 * The shared database for several instances: PostgreSQL through @effect/sql-pg, migrated before
 * anything can use the client. The stores in this folder (and the dialect-neutral ones in
 * ../sql/) need only the SqlClient this Layer provides; PgClient adds LISTEN/NOTIFY.
 *
 * Times are epoch milliseconds in BIGINT columns; int8 is parsed as a JS number (exact up to
 * 2^53, i.e. for every millisecond timestamp and counter this service stores), so rows decode the
 * same way as SQLite's.
 */
import * as Reactivity from "@effect/experimental/Reactivity";
import * as Migrator from "@effect/sql/Migrator";
import * as SqlClient from "@effect/sql/SqlClient";
import type { SqlError } from "@effect/sql/SqlError";
import * as PgClient from "@effect/sql-pg/PgClient";
import { Effect, Layer, Redacted } from "effect";
import pg from "pg";
import { scheduleTables } from "../sqlite/ScheduleStoreSqlite.js";

/** Per statement wait for a connection/lock before failing, so a stuck database surfaces as an error. */
const connectTimeoutMs = 10_000;

/**
 * Each migration runs once, in id order, inside one transaction holding an advisory lock, so
 * several instances starting together on an empty database migrate it once. Never edit one that
 * has shipped: add the next number.
 */
export const migrations = Migrator.fromRecord({
  "1_executions_and_api_keys": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient;
    yield* sql`
      CREATE TABLE executions (
        execution_id TEXT PRIMARY KEY NOT NULL,
        operation TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN (
          'PENDING', 'RUNNING', 'BACKING_OFF', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT', 'INTERRUPTED'
        )),
        principal_subject TEXT NOT NULL,
        principal_tenant TEXT NOT NULL,
        principal TEXT NOT NULL,
        labels TEXT NOT NULL,
        request_id TEXT,
        schedule_id TEXT,
        nominal_time BIGINT,
        input TEXT NOT NULL,
        result TEXT,
        error TEXT,
        token_usage TEXT,
        trace_id TEXT,
        create_time BIGINT NOT NULL,
        start_time BIGINT,
        end_time BIGINT,
        retry_policy TEXT NOT NULL,
        timeout_ms BIGINT NOT NULL,
        attempt_timeout_ms BIGINT,
        next_attempt_time BIGINT,
        cancel_reason TEXT,
        -- The instance running it: when that instance stops heartbeating, another one marks the
        -- execution INTERRUPTED (see ExecutionStorePostgres).
        instance_id TEXT,
        -- NULLs are distinct, so executions without a request id never collide.
        UNIQUE (principal_subject, request_id)
      )`;
    yield* sql`CREATE INDEX executions_by_create_time ON executions (create_time, execution_id)`;
    yield* sql`CREATE INDEX executions_by_tenant ON executions (principal_tenant, create_time, execution_id)`;
    yield* sql`CREATE INDEX executions_by_operation ON executions (operation, create_time, execution_id)`;
    yield* sql`CREATE INDEX executions_by_schedule ON executions (schedule_id, create_time, execution_id)`;
    yield* sql`CREATE INDEX executions_unfinished ON executions (instance_id) WHERE state IN ('PENDING', 'RUNNING', 'BACKING_OFF')`;
    yield* sql`CREATE INDEX executions_by_end_time ON executions (end_time)`;
    yield* sql`
      CREATE TABLE execution_attempts (
        execution_id TEXT NOT NULL REFERENCES executions (execution_id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        start_time BIGINT NOT NULL,
        end_time BIGINT,
        error TEXT,
        retry_delay_ms BIGINT,
        PRIMARY KEY (execution_id, number)
      )`;
    // hash: hex SHA-256 of the whole key (never the key); roles: a JSON array of strings.
    yield* sql`
      CREATE TABLE api_keys (
        id TEXT PRIMARY KEY NOT NULL,
        hash TEXT NOT NULL,
        subject TEXT NOT NULL,
        tenant TEXT NOT NULL,
        roles TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        create_time BIGINT NOT NULL,
        revoke_time BIGINT,
        last_used_time BIGINT
      )`;
    // One row per running server process; heartbeat_time is refreshed while it lives.
    yield* sql`
      CREATE TABLE instances (
        instance_id TEXT PRIMARY KEY NOT NULL,
        start_time BIGINT NOT NULL,
        heartbeat_time BIGINT NOT NULL
      )`;
  }),
  // The audit log (src/ports/postgres/AuditLoggerPostgres.ts): sequences from the audit_state
  // counter, whose row lock orders commits; pruned_through is the retention watermark.
  "2_audit_log": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient;
    yield* sql`
      CREATE TABLE audit_events (
        sequence BIGINT PRIMARY KEY,
        time BIGINT NOT NULL,
        type TEXT NOT NULL,
        principal TEXT,
        principal_subject TEXT,
        tenant TEXT,
        operation TEXT,
        execution_id TEXT,
        schedule_id TEXT,
        trace_id TEXT,
        decision TEXT,
        reason TEXT,
        details TEXT
      )`;
    yield* sql`CREATE INDEX audit_events_by_execution ON audit_events (execution_id, sequence) WHERE execution_id IS NOT NULL`;
    yield* sql`CREATE INDEX audit_events_by_tenant ON audit_events (tenant, sequence)`;
    yield* sql`CREATE INDEX audit_events_by_schedule ON audit_events (schedule_id, sequence) WHERE schedule_id IS NOT NULL`;
    yield* sql`
      CREATE TABLE audit_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_sequence BIGINT NOT NULL,
        pruned_through BIGINT NOT NULL
      )`;
    yield* sql`INSERT INTO audit_state (id, last_sequence, pruned_through) VALUES (1, 0, 0)`;
  }),
  // Schedules, their claimed slots and idempotency keys (src/ports/postgres/ScheduleStorePostgres.ts).
  "3_schedules": Effect.flatMap(SqlClient.SqlClient, scheduleTables),
});

/** An arbitrary constant: the advisory lock key migrations run under. */
const migrationLockKey = 7_240_113_001;

const int8AsNumber: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === pg.types.builtins.INT8 && format !== "binary"
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format as "text")) as pg.CustomTypesConfig["getTypeParser"],
};

const migrate = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient;
  // The migrator's own table creation is not safe against a concurrent start: the lock makes
  // the whole run one instance's at a time (the others find nothing left to do). Its table is
  // made here (same shape as the migrator's) because the migrator probes for it with a query
  // that fails, which would abort the enclosing transaction.
  yield* sql.withTransaction(
    Effect.all([
      sql`SELECT pg_advisory_xact_lock(${migrationLockKey})`,
      sql`CREATE TABLE IF NOT EXISTS effect_sql_migrations (
        migration_id integer PRIMARY KEY,
        created_at timestamp with time zone NOT NULL DEFAULT now(),
        name text NOT NULL
      )`,
      Migrator.make({})({ loader: migrations }),
    ]),
  );
});

export interface PgDatabaseOptions {
  /** Largest number of pooled connections (default 10). */
  readonly maxConnections?: number;
  readonly applicationName?: string;
}

/** The SqlClient (and PgClient) over `url`, migrated. The pool is closed when the Layer's scope ends. */
export const layer = (
  url: string,
  options: PgDatabaseOptions = {},
): Layer.Layer<SqlClient.SqlClient | PgClient.PgClient, SqlError | Migrator.MigrationError> =>
  Layer.effectDiscard(migrate).pipe(
    Layer.provideMerge(
      PgClient.layer({
        url: Redacted.make(url),
        types: int8AsNumber,
        maxConnections: options.maxConnections ?? 10,
        connectTimeout: connectTimeoutMs,
        applicationName: options.applicationName ?? "orchestrator",
      }),
    ),
    Layer.provide(Reactivity.layer),
  );

export const PgDatabase = { layer, migrations } as const;
