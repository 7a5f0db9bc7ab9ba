/**
 * Port: the audit log. Every decision the core makes is appended here. This is the simple
 * store-backed version; the audit issue (#7) adds group commit, retention, Subscribe.
 */
import { Context, type Effect } from "effect";
import type { JsonObject, Principal } from "../core/model.js";

export type AuditEventType =
  | "EXECUTION_ACCEPTED"
  | "EXECUTION_ATTEMPT_STARTED"
  | "EXECUTION_ATTEMPT_FAILED"
  | "EXECUTION_RETRY_SCHEDULED"
  | "EXECUTION_SUCCEEDED"
  | "EXECUTION_FAILED"
  | "EXECUTION_CANCELLED"
  | "EXECUTION_TIMED_OUT"
  | "EXECUTION_INTERRUPTED"
  | "AUTH_SUCCEEDED"
  | "AUTH_DENIED"
  | "POLICY_EVALUATED"
  | "POLICY_UPDATED"
  | "RATE_LIMIT_CHECKED"
  | "SCHEDULE_CREATED"
  | "SCHEDULE_UPDATED"
  | "SCHEDULE_PAUSED"
  | "SCHEDULE_RESUMED"
  | "SCHEDULE_DELETED"
  | "SCHEDULE_FIRED"
  | "SCHEDULE_SKIPPED"
  | "SCHEDULE_MISSED"
  | "CREDENTIALS_CREATED"
  | "CREDENTIALS_REVOKED";

export interface AuditEntry {
  readonly type: AuditEventType;
  readonly principal?: Principal;
  readonly operation?: string;
  readonly executionId?: string;
  readonly scheduleId?: string;
  readonly traceId?: string;
  readonly decision?: "ALLOW" | "DENY";
  readonly reason?: string;
  /** Already redacted by the caller. */
  readonly details?: JsonObject;
}

export interface AuditEvent extends AuditEntry {
  readonly sequence: number;
  readonly time: number;
}

export interface AuditLoggerShape {
  /**
   * Appends one event; the time comes from the Clock and the sequence from the log. Never
   * fails: an audit write that fails is logged and counted, it does not fail the execution.
   */
  readonly log: (entry: AuditEntry) => Effect.Effect<void>;
  /** Events after a sequence number, oldest first (for tests and, later, Subscribe). */
  readonly read: (afterSequence: number, limit: number) => Effect.Effect<ReadonlyArray<AuditEvent>>;
}

export class AuditLogger extends Context.Tag("orchestrator/AuditLogger")<AuditLogger, AuditLoggerShape>() {}
