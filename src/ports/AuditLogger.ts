/**
 * Port: the audit log. Every decision the core makes is appended here, as an append-only
 * sequence of events numbered by the log.
 *
 * Writes are group-committed by the durable implementations: `log` puts the event on a queue
 * and returns; one writer fiber commits whatever is queued as one transaction. `flush` is the
 * durability barrier: it completes once everything this process logged before it is committed.
 * (Why not make `log` itself wait for its commit: an execution writes five or more events on
 * its way; waiting for a commit at each of them puts five commit round trips on every run's
 * latency, while the guarantee that matters — the caller never learns an outcome the log does
 * not hold — needs one barrier, before the outcome is reported. See Orchestrator.finish.)
 *
 * The sequence is strictly increasing in commit order, in every implementation and across
 * instances sharing a database, so that a reader that has seen sequence N and reads `> N` can
 * never miss an event committed later with a smaller number (see AuditLoggerPostgres for how).
 * Numbers may be skipped (a rolled-back batch); a skipped number is not a lost event.
 */
import { Context, type Effect, type Scope } from "effect";
import type { StoreError } from "../core/errors.js";
import type { JsonObject, Principal } from "../core/model.js";

export const auditEventTypes = [
  "EXECUTION_ACCEPTED",
  "EXECUTION_ATTEMPT_STARTED",
  "EXECUTION_ATTEMPT_FAILED",
  "EXECUTION_RETRY_SCHEDULED",
  "EXECUTION_SUCCEEDED",
  "EXECUTION_FAILED",
  "EXECUTION_CANCELLED",
  "EXECUTION_TIMED_OUT",
  "EXECUTION_INTERRUPTED",
  "AUTH_SUCCEEDED",
  "AUTH_DENIED",
  "POLICY_EVALUATED",
  "POLICY_UPDATED",
  "RATE_LIMIT_CHECKED",
  "SCHEDULE_CREATED",
  "SCHEDULE_UPDATED",
  "SCHEDULE_PAUSED",
  "SCHEDULE_RESUMED",
  "SCHEDULE_DELETED",
  "SCHEDULE_FIRED",
  "SCHEDULE_SKIPPED",
  "SCHEDULE_MISSED",
  "CREDENTIALS_CREATED",
  "CREDENTIALS_REVOKED",
] as const;

export type AuditEventType = (typeof auditEventTypes)[number];

export interface AuditEntry {
  readonly type: AuditEventType;
  readonly principal?: Principal;
  readonly operation?: string;
  readonly executionId?: string;
  readonly scheduleId?: string;
  readonly traceId?: string;
  readonly decision?: "ALLOW" | "DENY";
  readonly reason?: string;
  /**
   * Redacted by the caller where it knows what is secret (an operation's sensitive input fields);
   * the log scrubs credential-shaped keys and values again (src/core/audit/redact.ts).
   */
  readonly details?: JsonObject;
}

export interface AuditEvent extends AuditEntry {
  readonly sequence: number;
  readonly time: number;
}

/** Which events to read. Fields combine with AND; an absent field matches everything. */
export interface AuditFilter {
  readonly types?: ReadonlyArray<AuditEventType>;
  readonly principalSubject?: string;
  /** The principal's tenant; events without a principal have none and never match a tenant. */
  readonly tenant?: string;
  readonly operation?: string;
  readonly executionId?: string;
  readonly scheduleId?: string;
}

export interface AuditQuery {
  readonly filter: AuditFilter;
  /** Only sequences greater than this. */
  readonly after?: number;
  /** Only sequences smaller than this. */
  readonly before?: number;
  /** Only sequences at most this. */
  readonly through?: number;
  readonly order: "ASCENDING" | "DESCENDING";
  readonly limit: number;
}

export interface AuditBounds {
  /** Oldest retained sequence; 0 when the log is empty. */
  readonly earliest: number;
  /** Newest committed sequence (or the newest ever pruned, if everything was); 0 if none. */
  readonly last: number;
  /** Every sequence up to this one may have been pruned: resuming below it would leave a gap. */
  readonly prunedThrough: number;
}

export interface AuditRetention {
  /** Delete events older than this time (epoch ms). */
  readonly olderThan?: number;
  /** Keep at most this many of the newest events. */
  readonly keepLast?: number;
}

/**
 * Called after each commit, in commit order, with the events this process committed (with their
 * sequences), or with `undefined` when another process may have written (a NOTIFY, or a gap
 * before this batch): the table then has to be read. Must not block: it runs on the writer.
 */
export type CommitListener = (committed: ReadonlyArray<AuditEvent> | undefined) => void;

export interface AuditLoggerShape {
  /**
   * Appends one event; the time comes from the Clock and the sequence from the log. Never
   * fails: an audit write that fails is logged and counted, it does not fail the execution.
   * Returns once the event is queued; `flush` waits for it to be durable.
   */
  readonly log: (entry: AuditEntry) => Effect.Effect<void>;
  /** Completes when every event logged by this process before the call is committed. */
  readonly flush: Effect.Effect<void>;
  /** Events after a sequence number, oldest first; flushes first (for tests and tools). */
  readonly read: (afterSequence: number, limit: number) => Effect.Effect<ReadonlyArray<AuditEvent>>;
  /** Committed events matching a filter, in sequence order, bounded. */
  readonly query: (q: AuditQuery) => Effect.Effect<ReadonlyArray<AuditEvent>, StoreError>;
  readonly bounds: Effect.Effect<AuditBounds, StoreError>;
  /** Deletes old events (in bounded chunks); returns how many. prunedThrough moves in the same transaction. */
  readonly prune: (retention: AuditRetention) => Effect.Effect<number, StoreError>;
  /** Registers a commit listener for the scope's lifetime. */
  readonly watch: (listener: CommitListener) => Effect.Effect<void, never, Scope.Scope>;
}

export class AuditLogger extends Context.Tag("orchestrator/AuditLogger")<AuditLogger, AuditLoggerShape>() {}

/** True when the event passes the filter (the same rules as the stores' SQL). */
export function matchesFilter(e: AuditEvent, f: AuditFilter): boolean {
  if (f.types !== undefined && f.types.length > 0 && !f.types.includes(e.type)) return false;
  if (f.principalSubject !== undefined && e.principal?.subject !== f.principalSubject) return false;
  if (f.tenant !== undefined && e.principal?.tenant !== f.tenant) return false;
  if (f.operation !== undefined && e.operation !== f.operation) return false;
  if (f.executionId !== undefined && e.executionId !== f.executionId) return false;
  if (f.scheduleId !== undefined && e.scheduleId !== f.scheduleId) return false;
  return true;
}
