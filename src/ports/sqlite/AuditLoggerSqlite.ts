/**
 * AuditLogger on a SQL database: the embedded SQLite file by default (this file), PostgreSQL for
 * several instances (AuditLoggerPostgres.ts reuses `makeSqlAuditLogger` with its own dialect).
 *
 * Writes are group-committed (src/core/audit/group-commit.ts): `log` queues, one writer fiber
 * commits each batch in one transaction, `flush` waits for the commit. On PostgreSQL the batch
 * goes as multi-row INSERTs over the SqlClient; on SQLite a thread of its own writes it into a
 * database file of its own (audit-writer.ts, AuditDatabase.ts: why, and what it costs), while
 * reads and pruning use the main thread's connection to that file.
 *
 * Sequences come from a one-row counter (`audit_state.last_sequence`) bumped by the batch size
 * at the start of each batch's transaction, not from AUTOINCREMENT / a database sequence: the
 * bump takes the row's write lock, which the transaction holds until it commits, so batches
 * from several processes get their numbers in the order they commit. A reader that has seen N
 * and reads `sequence > N` therefore never misses a batch that commits later with smaller
 * numbers (with a plain sequence, PostgreSQL transactions would commit out of number order).
 * The price is that audit batches from several instances commit one at a time; a batch holds
 * hundreds of events and commits in a few milliseconds, so that is far from any limit here.
 */
import * as SqlClient from "@effect/sql/SqlClient";
import type { SqlError } from "@effect/sql/SqlError";
import type { MigrationError } from "@effect/sql/Migrator";
import { Clock, Effect, identity, Layer, Metric, Schedule } from "effect";
import type { Worker } from "node:worker_threads";
import type { Mutable } from "effect/Types";
import type { JsonObject, Principal } from "../../core/model.js";
import { StoreError } from "../../core/errors.js";
import { makeGroupCommit } from "../../core/audit/group-commit.js";
import { scrubDetails, scrubReason } from "../../core/audit/redact.js";
import {
  type AuditBounds,
  type AuditEntry,
  type AuditEvent,
  type AuditEventType,
  type AuditQuery,
  type AuditRetention,
  type CommitListener,
  AuditLogger,
  type AuditLoggerShape,
} from "../AuditLogger.js";
import { auditPragmas, openAuditDatabase, outsideTransaction } from "./AuditDatabase.js";
import { makeAuditWriter } from "./audit-writer.js";

type AuditRow = {
  readonly sequence: number;
  readonly time: number;
  readonly type: string;
  readonly principal: string | null;
  readonly operation: string | null;
  readonly execution_id: string | null;
  readonly schedule_id: string | null;
  readonly trace_id: string | null;
  readonly decision: string | null;
  readonly reason: string | null;
  readonly details: string | null;
};

/** Audit writes that failed and were dropped; the log line says which and why. */
export const auditWriteFailures = Metric.counter("orchestrator_audit_write_failures_total", {
  description: "audit events that could not be written",
  incremental: true,
});

export const auditEventsWritten = Metric.counter("orchestrator_audit_events_written_total", {
  description: "audit events committed by this process",
  incremental: true,
});

const columns = "sequence, time, type, principal, operation, execution_id, schedule_id, trace_id, decision, reason, details";
const insertColumns = "sequence, time, type, principal, principal_subject, tenant, operation, execution_id, schedule_id, trace_id, decision, reason, details";
const insertWidth = 13;
/** The columns after sequence and time, all text (`fillCells`). */
const textColumns = insertWidth - 2;

export const decodeAuditRow = (row: AuditRow): AuditEvent => {
  const e: Mutable<AuditEvent> = { sequence: row.sequence, time: row.time, type: row.type as AuditEventType };
  if (row.principal !== null) e.principal = JSON.parse(row.principal) as Principal;
  if (row.operation !== null) e.operation = row.operation;
  if (row.execution_id !== null) e.executionId = row.execution_id;
  if (row.schedule_id !== null) e.scheduleId = row.schedule_id;
  if (row.trace_id !== null) e.traceId = row.trace_id;
  if (row.decision !== null) e.decision = row.decision as "ALLOW" | "DENY";
  if (row.reason !== null) e.reason = row.reason;
  if (row.details !== null) e.details = JSON.parse(row.details) as JsonObject;
  return e;
};

/** One queued event: scrubbed, timed, its JSON columns already encoded (off the writer). */
export interface Pending {
  readonly entry: AuditEntry;
  readonly time: number;
  readonly principal: string | null;
  readonly details: string | null;
}

/** The text columns of `insertColumns` after sequence and time, into `out` from `at` on. */
const fillCells = (x: Pending, out: Array<unknown>, at: number): void => {
  const e = x.entry;
  out[at] = e.type;
  out[at + 1] = x.principal;
  out[at + 2] = e.principal?.subject ?? null;
  out[at + 3] = e.principal?.tenant ?? null;
  out[at + 4] = e.operation ?? null;
  out[at + 5] = e.executionId ?? null;
  out[at + 6] = e.scheduleId ?? null;
  out[at + 7] = e.traceId ?? null;
  out[at + 8] = e.decision ?? null;
  out[at + 9] = e.reason ?? null;
  out[at + 10] = x.details;
};

/** What differs between databases. */
export interface SqlAuditDialect {
  /** `?` (SQLite) or `$n` (PostgreSQL), 1-based. */
  readonly placeholder: (n: number) => string;
  /** Runs at the end of each batch's transaction (PostgreSQL: NOTIFY the other instances). */
  readonly afterInsert?: (lastSequence: number) => Effect.Effect<void, SqlError, SqlClient.SqlClient>;
  /**
   * Wake-ups for events written by other processes, forked for the logger's lifetime; each
   * call of `wake` tells the listeners to read the table.
   */
  readonly external?: (wake: () => void) => Effect.Effect<never, never, SqlClient.SqlClient>;
  /**
   * Hands a batch over to be committed elsewhere than over the SqlClient (SQLite: the writer
   * thread), in hand-over order, its sequences taken from audit_state in its transaction; returns
   * what waits for the commit, with the first sequence. Replaces the multi-row INSERTs and
   * `afterInsert`; batches are then pipelined (two in flight).
   */
  readonly send?: (batch: ReadonlyArray<Pending>) => Effect.Effect<Effect.Effect<number, unknown>>;
  /** Wraps each of prune's transactions (SQLite: retried while the writer thread holds the lock). */
  readonly retryWrite?: <A>(transaction: Effect.Effect<A, SqlError>) => Effect.Effect<A, SqlError>;
}

export interface SqlAuditOptions {
  /** Events waiting at most before `log` waits (backpressure). Default 100,000. */
  readonly queueCapacity?: number;
  /** Events per transaction at most. Default 4,096. */
  readonly maxBatch?: number;
  /** Runs before each commit (tests hold commits back with it to observe who waits for them). */
  readonly beforeCommit?: Effect.Effect<void>;
}

/** Multi-row INSERTs of these sizes only, so the statement cache holds a handful of texts. */
const chunkSizes = [512, 256, 128, 64, 32, 16, 8, 4, 2, 1] as const;

export const makeSqlAuditLogger = (dialect: SqlAuditDialect, options: SqlAuditOptions = {}) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient;
    const listeners = new Set<CommitListener>();

    const insertText = new Map<number, string>();
    const insertSql = (rows: number): string => {
      let text = insertText.get(rows);
      if (text === undefined) {
        const tuples: string[] = [];
        for (let r = 0; r < rows; r++) {
          const ps: string[] = [];
          for (let c = 1; c <= insertWidth; c++) ps.push(dialect.placeholder(r * insertWidth + c));
          tuples.push(`(${ps.join(", ")})`);
        }
        text = `INSERT INTO audit_events (${insertColumns}) VALUES ${tuples.join(", ")}`;
        insertText.set(rows, text);
      }
      return text;
    };

    const insertBatch = (batch: ReadonlyArray<Pending>) =>
      Effect.gen(function* () {
        const n = batch.length;
        // Takes the counter row's lock until commit: see the file comment.
        const bumped = yield* sql<{ last_sequence: number }>`
          UPDATE audit_state SET last_sequence = last_sequence + ${n} WHERE id = 1 RETURNING last_sequence`;
        const last = Number(bumped[0]!.last_sequence);
        const first = last - n + 1;
        let i = 0;
        for (const size of chunkSizes) {
          while (n - i >= size) {
            const params: unknown[] = new Array(size * insertWidth);
            let p = 0;
            for (let r = 0; r < size; r++, i++) {
              const x = batch[i]!;
              params[p++] = first + i;
              params[p++] = x.time;
              fillCells(x, params, p);
              p += textColumns;
            }
            yield* sql.unsafe(insertSql(size), params);
          }
        }
        if (dialect.afterInsert !== undefined) yield* dialect.afterInsert(last);
        return first;
      });

    /** After the commit (or its failure): listeners, metrics, the log line of a failure. */
    const report = (batch: ReadonlyArray<Pending>, committed: Effect.Effect<number, unknown>): Effect.Effect<void> =>
      committed.pipe(
        Effect.tap((first) =>
          Effect.sync(() => {
            if (listeners.size === 0) return;
            const events: AuditEvent[] = batch.map((x, i) => ({ ...x.entry, sequence: first + i, time: x.time }));
            for (const l of listeners) l(events);
          }),
        ),
        Effect.zipRight(Metric.incrementBy(auditEventsWritten, batch.length)),
        // An audit write must never fail the execution it describes: report it and go on.
        Effect.catchAllCause((cause) =>
          Effect.logError(`audit write failed: ${batch.length} events dropped`, cause).pipe(
            Effect.annotateLogs({ audit_types: [...new Set(batch.map((x) => x.entry.type))].join(",") }),
            Effect.zipRight(Metric.incrementBy(auditWriteFailures, batch.length)),
          ),
        ),
        Effect.withSpan("AuditLogger.commit", { attributes: { events: batch.length } }),
      );

    const send = dialect.send;
    const commit = (batch: ReadonlyArray<Pending>): Effect.Effect<Effect.Effect<void>> =>
      (options.beforeCommit ?? Effect.void).pipe(
        Effect.zipRight(
          send === undefined
            ? Effect.succeed(report(batch, sql.withTransaction(insertBatch(batch)).pipe(Effect.provideService(SqlClient.SqlClient, sql))))
            : Effect.map(send(batch), (committed) => report(batch, committed)),
        ),
      );

    const writer = yield* makeGroupCommit<Pending>({
      capacity: options.queueCapacity ?? 100_000,
      maxBatch: options.maxBatch ?? 4_096,
      commit,
      inFlight: send === undefined ? 1 : 2,
    });

    if (dialect.external !== undefined) {
      yield* Effect.forkScoped(
        dialect
          .external(() => {
            for (const l of listeners) l(undefined);
          })
          .pipe(Effect.provideService(SqlClient.SqlClient, sql)),
      );
    }

    // Callers pass the same principal object for every event of an execution or a request.
    const principalJson = new WeakMap<object, string>();
    const encodePrincipal = (p: NonNullable<AuditEntry["principal"]>): string => {
      let json = principalJson.get(p);
      if (json === undefined) principalJson.set(p, (json = JSON.stringify(p)));
      return json;
    };

    const log = (entry: AuditEntry): Effect.Effect<void> =>
      Effect.flatMap(Clock.currentTimeMillis, (time) => {
        let pending: Pending;
        try {
          const clean: AuditEntry =
            entry.details === undefined && entry.reason === undefined
              ? entry
              : {
                  ...entry,
                  ...(entry.details === undefined ? {} : { details: scrubDetails(entry.details) }),
                  ...(entry.reason === undefined ? {} : { reason: scrubReason(entry.reason) }),
                };
          pending = {
            entry: clean,
            time,
            principal: clean.principal === undefined ? null : encodePrincipal(clean.principal),
            details: clean.details === undefined ? null : JSON.stringify(clean.details),
          };
        } catch (cause) {
          return Effect.logError("audit event could not be encoded", cause).pipe(
            Effect.annotateLogs({ audit_type: entry.type }),
            Effect.zipRight(Metric.increment(auditWriteFailures)),
          );
        }
        return writer.offer(pending);
      });

    const storeError = (operation: string) => (cause: unknown) => new StoreError({ operation, cause });

    const query = (q: AuditQuery): Effect.Effect<ReadonlyArray<AuditEvent>, StoreError> => {
      if (q.limit <= 0) return Effect.succeed([]);
      const f = q.filter;
      const conds = [];
      if (q.after !== undefined) conds.push(sql`sequence > ${q.after}`);
      if (q.before !== undefined) conds.push(sql`sequence < ${q.before}`);
      if (q.through !== undefined) conds.push(sql`sequence <= ${q.through}`);
      if (f.types !== undefined && f.types.length > 0) conds.push(sql.in("type", f.types));
      if (f.principalSubject !== undefined) conds.push(sql`principal_subject = ${f.principalSubject}`);
      if (f.tenant !== undefined) conds.push(sql`tenant = ${f.tenant}`);
      if (f.operation !== undefined) conds.push(sql`operation = ${f.operation}`);
      if (f.executionId !== undefined) conds.push(sql`execution_id = ${f.executionId}`);
      if (f.scheduleId !== undefined) conds.push(sql`schedule_id = ${f.scheduleId}`);
      const where = conds.length === 0 ? sql`` : sql`WHERE ${sql.and(conds)}`;
      const order = q.order === "ASCENDING" ? sql`ORDER BY sequence ASC` : sql`ORDER BY sequence DESC`;
      return sql<AuditRow>`SELECT ${sql.literal(columns)} FROM audit_events ${where} ${order} LIMIT ${Math.floor(q.limit)}`.pipe(
        Effect.flatMap((rows) => Effect.try(() => rows.map(decodeAuditRow))),
        Effect.mapError(storeError("audit.query")),
        Effect.withSpan("AuditLogger.query"),
      );
    };

    const bounds: Effect.Effect<AuditBounds, StoreError> = Effect.gen(function* () {
      const state = yield* sql<{ last_sequence: number; pruned_through: number }>`SELECT last_sequence, pruned_through FROM audit_state WHERE id = 1`;
      const min = yield* sql<{ earliest: number | null }>`SELECT min(sequence) AS earliest FROM audit_events`;
      const s = state[0] ?? { last_sequence: 0, pruned_through: 0 };
      return { earliest: Number(min[0]?.earliest ?? 0), last: Number(s.last_sequence), prunedThrough: Number(s.pruned_through) };
    }).pipe(Effect.mapError(storeError("audit.bounds")));

    /** Deletes in chunks so that no single transaction holds the write lock for long. */
    const pruneChunk = 10_000;
    const prune = (retention: AuditRetention): Effect.Effect<number, StoreError> =>
      Effect.gen(function* () {
        // Everything below `cut` goes.
        let cut = 0;
        if (retention.olderThan !== undefined) {
          const young = yield* sql<{ sequence: number }>`
            SELECT sequence FROM audit_events WHERE time >= ${retention.olderThan} ORDER BY sequence LIMIT 1`;
          const s = yield* sql<{ last_sequence: number }>`SELECT last_sequence FROM audit_state WHERE id = 1`;
          cut = young.length > 0 ? Number(young[0]!.sequence) : Number(s[0]?.last_sequence ?? 0) + 1;
        }
        if (retention.keepLast !== undefined) {
          const kept = yield* sql<{ sequence: number }>`
            SELECT sequence FROM audit_events ORDER BY sequence DESC LIMIT 1 OFFSET ${Math.max(0, retention.keepLast - 1)}`;
          if (kept.length > 0) cut = Math.max(cut, Number(kept[0]!.sequence));
        }
        let total = 0;
        for (;;) {
          const deleted = yield* (dialect.retryWrite ?? identity)(sql.withTransaction(
            Effect.gen(function* () {
              const upto = yield* sql<{ sequence: number }>`
                SELECT sequence FROM audit_events WHERE sequence < ${cut} ORDER BY sequence LIMIT 1 OFFSET ${pruneChunk - 1}`;
              const through = upto.length > 0 ? Number(upto[0]!.sequence) : cut - 1;
              const gone = yield* sql<{ n: number }>`SELECT count(*) AS n FROM audit_events WHERE sequence <= ${through}`;
              if (Number(gone[0]?.n ?? 0) === 0) return 0;
              // The watermark moves with the delete (same transaction): a reader that finds it
              // above its position knows the rows it was about to read may be gone. Updated last,
              // so that the counter row (whose lock audit writers take) is held only briefly.
              yield* sql`DELETE FROM audit_events WHERE sequence <= ${through}`;
              yield* sql`UPDATE audit_state SET pruned_through = ${through} WHERE id = 1 AND pruned_through < ${through}`;
              return Number(gone[0]?.n ?? 0);
            }),
          ));
          total += deleted;
          if (deleted < pruneChunk) break;
        }
        return total;
      }).pipe(Effect.mapError(storeError("audit.prune")), Effect.withSpan("AuditLogger.prune"));

    const read = (afterSequence: number, limit: number): Effect.Effect<ReadonlyArray<AuditEvent>> =>
      writer.flush.pipe(
        Effect.zipRight(query({ filter: {}, after: afterSequence, order: "ASCENDING", limit })),
        // The port's read cannot fail: a database that cannot be read is a defect here.
        Effect.orDie,
      );

    const watch = (listener: CommitListener) =>
      Effect.acquireRelease(
        Effect.sync(() => void listeners.add(listener)),
        () => Effect.sync(() => void listeners.delete(listener)),
      );

    return AuditLogger.of({ log, flush: writer.flush, read, query, bounds, prune, watch } satisfies AuditLoggerShape);
  });

/** SQLITE_BUSY and its variants (BUSY_SNAPSHOT: a read transaction that can no longer write). */
const isBusy = (e: SqlError): boolean => {
  const code = (e.cause as { code?: unknown } | undefined)?.code;
  return typeof code === "string" && code.startsWith("SQLITE_BUSY");
};

export interface SqliteAuditOptions extends SqlAuditOptions {
  /** Called with each writer thread started (tests stop one to see what a crash does). */
  readonly onWorkerStart?: (worker: Worker) => void;
}

/**
 * The SQLite logger: audit.db next to the SqlClient's orchestrator.db (AuditDatabase.ts),
 * created, migrated and filled from an earlier version's tables on first open; its writes on
 * the writer thread (audit-writer.ts).
 */
const makeSqlite = (options: SqliteAuditOptions) =>
  Effect.gen(function* () {
    const main = yield* SqlClient.SqlClient;
    const db = yield* openAuditDatabase(main);
    // Built before the logger, so closed after it: the logger's finalizer flushes first.
    const writer = yield* makeAuditWriter<Pending>({
      filename: db.filename,
      pragmas: auditPragmas,
      bumpSql: "UPDATE audit_state SET last_sequence = last_sequence + ? WHERE id = 1 RETURNING last_sequence",
      insertSql: `INSERT INTO audit_events (${insertColumns}) VALUES (${Array.from({ length: insertWidth }, () => "?").join(", ")})`,
      columns: textColumns,
      time: (x) => x.time,
      fill: fillCells,
      ...(options.onWorkerStart === undefined ? {} : { onStart: options.onWorkerStart }),
    });
    const logger = yield* makeSqlAuditLogger(
      {
        placeholder: () => "?",
        send: writer.send,
        // The main thread's connection has no busy timeout (AuditDatabase.ts): prune's deletes
        // wait for the writer thread here, asynchronously.
        retryWrite: (transaction) =>
          Effect.retry(transaction, {
            while: isBusy,
            schedule: Schedule.exponential("2 millis").pipe(Schedule.union(Schedule.spaced("100 millis")), Schedule.intersect(Schedule.recurs(600))),
          }),
      },
      options,
    ).pipe(Effect.provideService(SqlClient.SqlClient, db.sql));
    // Called inside a transaction of orchestrator.db, a read would otherwise run on that
    // transaction's connection, i.e. on the wrong file (AuditDatabase.outsideTransaction).
    return AuditLogger.of({
      ...logger,
      read: (after, limit) => outsideTransaction(logger.read(after, limit)),
      query: (q) => outsideTransaction(logger.query(q)),
      bounds: outsideTransaction(logger.bounds),
      prune: (retention) => outsideTransaction(logger.prune(retention)),
    });
  });

/** AuditLogger in audit.db next to the file of SqliteDatabase.layer's SqlClient. */
export const AuditLoggerSqlite: Layer.Layer<AuditLogger, SqlError | MigrationError, SqlClient.SqlClient> = Layer.scoped(AuditLogger, makeSqlite({}));

/** The same with queue and batch sizes set (benches, tests). */
export const auditLoggerSqlite = (options: SqliteAuditOptions): Layer.Layer<AuditLogger, SqlError | MigrationError, SqlClient.SqlClient> =>
  Layer.scoped(AuditLogger, makeSqlite(options));
