/**
 * The SQLite audit log's own database file, `audit.db` next to orchestrator.db in the data
 * directory. Its own file because its writes come from a thread of their own (audit-writer.ts):
 * SQLite has one write lock per file, and sharing orchestrator.db's would make the main
 * thread's execution and schedule writes wait for audit batches, blocking the event loop.
 *
 * Created with 16 KiB pages (fewer, larger WAL writes for an append-only table: ~15% more
 * appends per second than 4 KiB pages, measured), WAL, synchronous=NORMAL like orchestrator.db.
 *
 * Upgrading: audit logs written by earlier versions live in orchestrator.db (tables
 * audit_events and audit_state). The first migration here copies them, numbers and watermark
 * included, in the same transaction that creates the tables; then the old tables are dropped.
 */
import * as Reactivity from "@effect/experimental/Reactivity";
import * as SqlClient from "@effect/sql/SqlClient";
import { SqlError } from "@effect/sql/SqlError";
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient";
import * as SqliteMigrator from "@effect/sql-sqlite-node/SqliteMigrator";
import { Context, Effect, Layer } from "effect";
import type * as Scope from "effect/Scope";
import { dirname, join } from "node:path";

export const auditDatabaseFileName = "audit.db";

/** The page size a new audit database gets (an existing file keeps its own). */
export const auditPageSize = 16_384;

/**
 * For every connection to the audit database. The main thread's connection later drops its busy
 * timeout to 0 (see `open`); the writer thread keeps it, since waiting blocks only that thread.
 */
export const auditPragmas = ["busy_timeout = 5000", "journal_mode = WAL", "synchronous = NORMAL"] as const;

const legacyColumns = "sequence, time, type, principal, principal_subject, tenant, operation, execution_id, schedule_id, trace_id, decision, reason, details";
/** 13 columns: 1,000 rows stay far below SQLite's 32,766 parameters per statement. */
const importChunk = 1_000;

/**
 * Runs `self` outside any transaction in progress. @effect/sql finds the transaction's
 * connection through one Context tag shared by every client, so inside audit.db's transaction a
 * statement of orchestrator.db's client would run on audit.db's connection (and the reverse).
 */
export const outsideTransaction = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.mapInputContext(self, (context: Context.Context<R>) => Context.omit(SqlClient.TransactionConnection)(context) as Context.Context<R>);

/** Copies the audit log of orchestrator.db (earlier versions) into the new tables, if there is one. */
const importLegacy = (mainClient: SqlClient.SqlClient, sql: SqlClient.SqlClient) =>
  Effect.gen(function* () {
    const main = <A extends object>(strings: TemplateStringsArray, ...args: Array<unknown>) =>
      outsideTransaction(mainClient<A>(strings, ...(args as Array<never>)));
    const tables = new Set((yield* main<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('audit_events', 'audit_state')`).map((t) => t.name));
    let last = 0;
    let prunedThrough = 0;
    if (tables.has("audit_state")) {
      const [state] = yield* main<{ last_sequence: number; pruned_through: number }>`SELECT last_sequence, pruned_through FROM audit_state WHERE id = 1`;
      last = Number(state?.last_sequence ?? 0);
      prunedThrough = Number(state?.pruned_through ?? 0);
    }
    if (tables.has("audit_events")) {
      let after = 0;
      for (;;) {
        const rows = yield* main<Record<string, unknown> & { sequence: number }>`
          SELECT ${mainClient.literal(legacyColumns)} FROM audit_events WHERE sequence > ${after} ORDER BY sequence LIMIT ${importChunk}`;
        if (rows.length === 0) break;
        yield* sql`INSERT INTO audit_events ${sql.insert(rows)}`;
        after = Number(rows[rows.length - 1]!.sequence);
      }
      last = Math.max(last, after);
    }
    yield* sql`INSERT INTO audit_state (id, last_sequence, pruned_through) VALUES (1, ${last}, ${prunedThrough})`;
  });

/**
 * Each migration runs once, in the migrator's transaction, in id order. Never edit one that has
 * shipped: add the next number. `main` is orchestrator.db's client (for the upgrade import).
 */
export const auditMigrations = (main: SqlClient.SqlClient) =>
  SqliteMigrator.fromRecord({
    "1_audit_log": Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient;
      // No AUTOINCREMENT: sequences come from audit_state (AuditLoggerSqlite.ts), and
      // AUTOINCREMENT only costs a write to sqlite_sequence per insert.
      yield* sql`
        CREATE TABLE audit_events (
          sequence INTEGER PRIMARY KEY,
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
      // An execution's history, a tenant's events (Subscribe and ListAuditEvents are
      // tenant-scoped for most callers), a schedule's; the other filters (type, principal,
      // operation) go with a sequence range and scan it.
      yield* sql`CREATE INDEX audit_events_by_execution ON audit_events (execution_id, sequence) WHERE execution_id IS NOT NULL`;
      yield* sql`CREATE INDEX audit_events_by_tenant ON audit_events (tenant, sequence)`;
      yield* sql`CREATE INDEX audit_events_by_schedule ON audit_events (schedule_id, sequence) WHERE schedule_id IS NOT NULL`;
      // The sequence counter and the retention watermark.
      yield* sql`
        CREATE TABLE audit_state (
          id INTEGER PRIMARY KEY CHECK (id = 1),
          last_sequence INTEGER NOT NULL,
          pruned_through INTEGER NOT NULL
        )`;
      yield* importLegacy(main, sql);
    }),
  });

/** `<dir of orchestrator.db>/audit.db`, from the main client's own file name. */
const fileNextTo = (main: SqlClient.SqlClient) =>
  Effect.flatMap(main<{ name: string; file: string }>`PRAGMA database_list`, (dbs) => {
    const file = dbs.find((d) => d.name === "main")?.file ?? "";
    return file === ""
      ? Effect.fail(new SqlError({ cause: undefined, message: "the SQLite audit log needs orchestrator.db in a file, not in memory" }))
      : Effect.succeed(join(dirname(file), auditDatabaseFileName));
  });

/**
 * Opens (creating and migrating if needed) the audit database next to `main`'s file, for the
 * scope's lifetime; returns its file name and the main thread's client of it.
 */
export const openAuditDatabase = (
  main: SqlClient.SqlClient,
): Effect.Effect<{ readonly filename: string; readonly sql: SqlClient.SqlClient }, SqlError | SqliteMigrator.MigrationError, Scope.Scope> =>
  Effect.gen(function* () {
    const filename = yield* fileNextTo(main);
    const client = Layer.scoped(SqlClient.SqlClient, SqliteClient.make({ filename, disableWAL: true })).pipe(Layer.provide(Reactivity.layer));
    const context = yield* Layer.build(client).pipe(
      Effect.catchAllDefect((cause) => Effect.fail(new SqlError({ cause, message: `could not open the audit database ${filename}` }))),
    );
    const sql = Context.get(context, SqlClient.SqlClient);
    // Before WAL: the page size of a new file is fixed by its first write.
    yield* sql.unsafe(`PRAGMA page_size = ${auditPageSize}`);
    for (const p of auditPragmas) yield* sql.unsafe(`PRAGMA ${p}`);
    yield* SqliteMigrator.make({})({ loader: auditMigrations(main) }).pipe(Effect.provideService(SqlClient.SqlClient, sql));
    // The rows live here now (the import committed with the migration above).
    yield* main.withTransaction(Effect.zipRight(main`DROP TABLE IF EXISTS audit_events`, main`DROP TABLE IF EXISTS audit_state`));
    // From here on this connection writes only to prune, and must never wait synchronously for
    // the writer thread's lock: SQLITE_BUSY at once, retried by the caller (AuditLoggerSqlite).
    yield* sql`PRAGMA busy_timeout = 0`;
    return { filename, sql };
  });
