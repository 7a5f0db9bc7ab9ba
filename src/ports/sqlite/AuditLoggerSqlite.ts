/**
 * AuditLogger on the embedded SQLite database: one row per event, the sequence from
 * AUTOINCREMENT so numbers are never reused, even after the newest rows are deleted.
 */
import * as SqlClient from "@effect/sql/SqlClient";
import { Cause, Clock, Effect, Layer, Metric } from "effect";
import type { Mutable } from "effect/Types";
import type { JsonObject, Principal } from "../../core/model.js";
import { type AuditEntry, type AuditEvent, type AuditEventType, AuditLogger } from "../AuditLogger.js";

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

const decode = (row: AuditRow): AuditEvent => {
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

const make = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient;

  const log = (entry: AuditEntry): Effect.Effect<void> =>
    Effect.gen(function* () {
      const time = yield* Clock.currentTimeMillis;
      yield* sql`INSERT INTO audit_events ${sql.insert({
        time,
        type: entry.type,
        principal: entry.principal === undefined ? null : JSON.stringify(entry.principal),
        principal_subject: entry.principal?.subject ?? null,
        tenant: entry.principal?.tenant ?? null,
        operation: entry.operation ?? null,
        execution_id: entry.executionId ?? null,
        schedule_id: entry.scheduleId ?? null,
        trace_id: entry.traceId ?? null,
        decision: entry.decision ?? null,
        reason: entry.reason ?? null,
        details: entry.details === undefined ? null : JSON.stringify(entry.details),
      })}`;
    }).pipe(
      // An audit write must never fail the execution it describes: report it and go on.
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause)
          ? Effect.interrupt
          : Effect.logError("audit write failed", cause).pipe(
              Effect.annotateLogs({ audit_type: entry.type, execution_id: entry.executionId ?? "" }),
              Effect.zipRight(Metric.increment(auditWriteFailures)),
            ),
      ),
      Effect.withSpan("AuditLoggerSqlite.log"),
    );

  // The port's read cannot fail: a database that cannot be read is a defect here, not an answer.
  const read = (afterSequence: number, limit: number): Effect.Effect<ReadonlyArray<AuditEvent>> =>
    limit <= 0
      ? Effect.succeed([])
      : sql<AuditRow>`
          SELECT sequence, time, type, principal, operation, execution_id, schedule_id, trace_id, decision, reason, details
          FROM audit_events WHERE sequence > ${afterSequence} ORDER BY sequence LIMIT ${Math.floor(limit)}`.pipe(
          Effect.flatMap((rows) => Effect.try(() => rows.map(decode))),
          Effect.orDie,
          Effect.withSpan("AuditLoggerSqlite.read"),
        );

  return AuditLogger.of({ log, read });
});

/** AuditLogger over the SqlClient of SqliteDatabase.layer (schema migrated there). */
export const AuditLoggerSqlite: Layer.Layer<AuditLogger, never, SqlClient.SqlClient> = Layer.effect(AuditLogger, make);
