/**
 * AuditLogger on PostgreSQL, for several instances sharing one log: the SQL of
 * AuditLoggerSqlite.ts (`makeSqlAuditLogger`) with PostgreSQL's placeholders, plus LISTEN/NOTIFY.
 *
 * The table is the truth, NOTIFY only a wake-up: each batch's transaction ends with
 * `pg_notify('orchestrator_audit', '<instance>:<last sequence>')`, delivered at commit; every
 * instance LISTENs, and on a notification from another instance its hub reads the table after
 * the last sequence it published (src/core/audit/AuditHub.ts). A notification lost while the
 * listening connection reconnects costs nothing but latency: the hub also polls.
 *
 * Why readers never skip an event that commits late: sequences are not taken from a PostgreSQL
 * sequence (whose numbers transactions commit in any order) but from the one-row counter
 * `audit_state.last_sequence`, incremented by the batch size first thing in the batch's
 * transaction. The row lock that UPDATE takes is held until commit, so the next batch — from
 * any instance — gets its numbers only after this one has committed: commit order is sequence
 * order, and a reader that has seen N and reads `sequence > N` sees every later commit. (The
 * alternative, delivering only below a watermark of the oldest transaction still in flight, needs
 * pg_snapshot_xmin bookkeeping on every read and still delays delivery by the slowest writer;
 * the lock costs one short serialization point per batch, i.e. per hundreds of events.)
 */
import * as SqlClient from "@effect/sql/SqlClient";
import * as PgClient from "@effect/sql-pg/PgClient";
import { randomUUID } from "node:crypto";
import { Effect, Layer, Stream } from "effect";
import { AuditLogger } from "../AuditLogger.js";
import { makeSqlAuditLogger, type SqlAuditOptions } from "../sqlite/AuditLoggerSqlite.js";
import { listen, ListenFailed, relisten } from "./listen.js";

const channel = "orchestrator_audit";

const make = (options: SqlAuditOptions) =>
  Effect.gen(function* () {
    const pg = yield* PgClient.PgClient;
    const instance = randomUUID();
    return yield* makeSqlAuditLogger(
      {
        placeholder: (n) => `$${n}`,
        afterInsert: (last) => Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT pg_notify(${channel}, ${`${instance}:${last}`})`).pipe(Effect.asVoid),
        external: (wake) =>
          // (Re)connecting may have missed notifications: wake once for each (re)start too.
          // Its own connection (listen.ts): one that fails or ends is reconnected.
          Stream.concat(Stream.succeed(`-:0`), listen(pg, channel)).pipe(
            Stream.runForEach((payload) => Effect.sync(() => (payload.startsWith(`${instance}:`) ? undefined : wake()))),
            Effect.zipRight(Effect.fail(new ListenFailed({ channel, cause: "the stream ended" }))),
            Effect.tapErrorCause((cause) => Effect.logWarning("audit log: LISTEN failed; reconnecting", cause)),
            Effect.retry(relisten),
            Effect.orDie,
          ),
      },
      options,
    );
  });

/** AuditLogger over PgDatabase.layer's SqlClient and PgClient (schema migrated there, migration 2_audit_log). */
export const AuditLoggerPostgres: Layer.Layer<AuditLogger, never, SqlClient.SqlClient | PgClient.PgClient> = Layer.scoped(AuditLogger, make({}));

/** The same with queue and batch sizes set (benches). */
export const auditLoggerPostgres = (options: SqlAuditOptions): Layer.Layer<AuditLogger, never, SqlClient.SqlClient | PgClient.PgClient> =>
  Layer.scoped(AuditLogger, make(options));
