/**
 * The embedded database: one SQLite file in the data directory, opened in WAL mode, with the
 * schema migrated before anything else can use the client. The stores in this folder need only
 * the SqlClient this Layer provides.
 */
import * as Reactivity from "@effect/experimental/Reactivity";
import * as SqlClient from "@effect/sql/SqlClient";
import { SqlError } from "@effect/sql/SqlError";
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient";
import * as SqliteMigrator from "@effect/sql-sqlite-node/SqliteMigrator";
import { Context, Effect, Layer } from "effect";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { scheduleTables } from "./ScheduleStoreSqlite.js";

export const databaseFileName = "orchestrator.db";

/** How long a statement waits for a lock held by another connection before SQLITE_BUSY. */
const busyTimeoutMs = 5_000;

/**
 * Each migration runs once, in the migrator's transaction, in id order. Never edit one that has
 * shipped: add the next number.
 */
export const migrations = SqliteMigrator.fromRecord({
  "1_executions_and_audit": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient;
    // better-sqlite3 prepares one statement at a time, hence one template per statement.
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
        nominal_time INTEGER,
        input TEXT NOT NULL,
        result TEXT,
        error TEXT,
        token_usage TEXT,
        trace_id TEXT,
        create_time INTEGER NOT NULL,
        start_time INTEGER,
        end_time INTEGER,
        retry_policy TEXT NOT NULL,
        timeout_ms INTEGER NOT NULL,
        attempt_timeout_ms INTEGER,
        next_attempt_time INTEGER,
        cancel_reason TEXT,
        -- NULLs are distinct in SQLite, so executions without a request id never collide.
        UNIQUE (principal_subject, request_id)
      )`;
    // Listing is keyset-paginated on (create_time, execution_id); the filters most used with it
    // lead their own index so a filtered page does not scan the whole table.
    yield* sql`CREATE INDEX executions_by_create_time ON executions (create_time, execution_id)`;
    yield* sql`CREATE INDEX executions_by_tenant ON executions (principal_tenant, create_time, execution_id)`;
    yield* sql`CREATE INDEX executions_by_operation ON executions (operation, create_time, execution_id)`;
    yield* sql`CREATE INDEX executions_by_schedule ON executions (schedule_id, create_time, execution_id)`;
    yield* sql`CREATE INDEX executions_by_state ON executions (state)`;
    yield* sql`CREATE INDEX executions_by_end_time ON executions (end_time)`;
    yield* sql`
      CREATE TABLE execution_attempts (
        execution_id TEXT NOT NULL REFERENCES executions (execution_id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        start_time INTEGER NOT NULL,
        end_time INTEGER,
        error TEXT,
        retry_delay_ms INTEGER,
        PRIMARY KEY (execution_id, number)
      )`;
    yield* sql`
      CREATE TABLE audit_events (
        sequence INTEGER PRIMARY KEY AUTOINCREMENT,
        time INTEGER NOT NULL,
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
    yield* sql`CREATE INDEX audit_events_by_execution ON audit_events (execution_id, sequence)`;
  }),
  "2_api_keys": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient;
    // hash: hex SHA-256 of the whole key (never the key); roles: a JSON array of strings.
    yield* sql`
      CREATE TABLE api_keys (
        id TEXT PRIMARY KEY NOT NULL,
        hash TEXT NOT NULL,
        subject TEXT NOT NULL,
        tenant TEXT NOT NULL,
        roles TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        create_time INTEGER NOT NULL,
        revoke_time INTEGER,
        last_used_time INTEGER
      )`;
  }),
  "3_audit_log": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient;
    // The sequence counter and the retention watermark (src/ports/sqlite/AuditLoggerSqlite.ts):
    // sequences continue from what AUTOINCREMENT handed out before.
    yield* sql`
      CREATE TABLE audit_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_sequence INTEGER NOT NULL,
        pruned_through INTEGER NOT NULL
      )`;
    yield* sql`
      INSERT INTO audit_state (id, last_sequence, pruned_through)
      VALUES (1, max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'audit_events'), 0), COALESCE((SELECT max(sequence) FROM audit_events), 0)), 0)`;
    // Subscribe and ListAuditEvents are tenant-scoped for most callers; schedule ids are few.
    yield* sql`CREATE INDEX audit_events_by_tenant ON audit_events (tenant, sequence)`;
    yield* sql`CREATE INDEX audit_events_by_schedule ON audit_events (schedule_id, sequence) WHERE schedule_id IS NOT NULL`;
  }),
  // Schedules, their claimed slots and idempotency keys (src/ports/sqlite/ScheduleStoreSqlite.ts).
  "4_schedules": Effect.flatMap(SqlClient.SqlClient, scheduleTables),
});

/**
 * Opens the file as the library does, but a file that cannot be opened (missing directory,
 * permissions, not a database) becomes a typed failure of the Layer rather than a defect.
 */
const client = (filename: string) =>
  Layer.scopedContext(
    SqliteClient.make({ filename }).pipe(
      Effect.catchAllDefect((cause) =>
        Effect.fail(new SqlError({ cause, message: `could not open the database ${filename}` })),
      ),
      Effect.map((c) => Context.make(SqliteClient.SqliteClient, c).pipe(Context.add(SqlClient.SqlClient, c))),
    ),
  ).pipe(Layer.provide(Reactivity.layer));

const prepare = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient;
  // better-sqlite3 happens to default to both of these; stated here so that the cascade from
  // executions to attempts does not depend on how the driver was built (SQLite's own default
  // for foreign keys is off, per connection).
  yield* sql.unsafe(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
  yield* sql`PRAGMA foreign_keys = ON`;
  // With WAL, NORMAL is durable against application crashes and much cheaper than FULL.
  yield* sql`PRAGMA synchronous = NORMAL`;
  // SqliteMigrator.run would also require FileSystem, Path and CommandExecutor, used only to
  // dump the schema with the sqlite3 CLI; the plain migrator with no dump needs just the client.
  yield* SqliteMigrator.make({})({ loader: migrations });
});

/**
 * The SqlClient over `<dataDir>/orchestrator.db`, migrated. The directory is created if missing;
 * the file is closed when the Layer's scope ends.
 */
export const layer = (
  dataDir: string,
): Layer.Layer<SqlClient.SqlClient | SqliteClient.SqliteClient, SqlError | SqliteMigrator.MigrationError> =>
  Layer.unwrapEffect(
    Effect.tryPromise({
      try: () => mkdir(dataDir, { recursive: true }),
      catch: (cause) => new SqlError({ cause, message: `could not create the data directory ${dataDir}` }),
    }).pipe(Effect.as(Layer.effectDiscard(prepare).pipe(Layer.provideMerge(client(join(dataDir, databaseFileName)))))),
  );

export const SqliteDatabase = { layer, migrations, databaseFileName } as const;
