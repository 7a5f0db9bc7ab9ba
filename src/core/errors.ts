/**
 * Every way the core can refuse or fail, as tagged data. The transport maps each tag to a gRPC
 * status in one place (src/transport/error-mapping.ts); nothing collapses into a generic error.
 */
import { Data } from "effect";
import type { BudgetStatus } from "../ports/TokenLedger.js";
import type { ErrorDetail, ExecutionState } from "./model.js";

export interface FieldViolation {
  readonly field: string;
  readonly description: string;
}

export class OperationNotFound extends Data.TaggedError("OperationNotFound")<{ readonly operation: string }> {
  override get message() {
    return `no operation named "${this.operation}"`;
  }
}

export class InvalidInput extends Data.TaggedError("InvalidInput")<{ readonly violations: ReadonlyArray<FieldViolation> }> {
  override get message() {
    return this.violations.map((v) => (v.field === "" ? v.description : `${v.field}: ${v.description}`)).join("; ");
  }
}

export class PermissionDenied extends Data.TaggedError("PermissionDenied")<{
  readonly subject: string;
  readonly permission: string;
}> {
  override get message() {
    return `permission "${this.permission}" is required`;
  }
}

export class PolicyDenied extends Data.TaggedError("PolicyDenied")<{
  /** The rule that denied, or "default" (the policy's default is deny). */
  readonly rule: string;
  readonly reason: string;
  /** The policy version that decided (src/policy/PolicyEngine.ts); absent from policies that have none. */
  readonly policyVersion?: number;
}> {
  override get message() {
    return `denied by policy rule "${this.rule}": ${this.reason}`;
  }
}

export class RateLimited extends Data.TaggedError("RateLimited")<{
  /** Which limit: request, operation, interval, tenant, model or in_flight (src/core/limits.ts). */
  readonly scope: string;
  /** Whose quota, readable: "alice/demo.echo", "tenant acme", "model gpt-4o". */
  readonly key: string;
  readonly limit: number;
  readonly remaining: number;
  readonly retryAfterMs: number;
  readonly resetMs: number;
}> {
  override get message() {
    const wait = `retry after ${Math.ceil(this.retryAfterMs / 1000)}s`;
    return this.scope === "in_flight"
      ? `${this.limit} executions already in flight for ${this.key.replace(/ \(.*\)$/, "")}; ${wait}`
      : `rate limit of ${this.limit} reached for ${this.key}; ${wait}`;
  }
}

/** The rate-limit state (Redis) could not be reached, and the limiter is set to fail closed. */
export class RateLimiterUnavailable extends Data.TaggedError("RateLimiterUnavailable")<{ readonly error: string }> {
  override get message() {
    return "the rate limiter is unavailable; retry later";
  }
}

/**
 * A token budget or a model limit refused (src/ports/TokenLedger.ts): names the budget and what
 * remains. Before the run (start refused) it has no executionId; when it stopped a running
 * execution, it carries the execution's id (the execution ended FAILED, TOKEN_BUDGET_EXHAUSTED).
 */
export class BudgetExhausted extends Data.TaggedError("BudgetExhausted")<
  BudgetStatus & { readonly requested: number; readonly executionId?: string }
> {
  override get message() {
    const wait = this.retryAfterMs > 0 ? `; retry after ${Math.ceil(this.retryAfterMs / 1000)}s` : "";
    const what = `token budget ${this.budget} exhausted: ${this.remaining} of ${this.limit} left, ${this.requested} requested${wait}`;
    return this.executionId === undefined ? what : `execution "${this.executionId}" stopped: ${what}`;
  }
}

export class ExecutionNotFound extends Data.TaggedError("ExecutionNotFound")<{ readonly executionId: string }> {
  override get message() {
    return `no execution "${this.executionId}"`;
  }
}

export class ExecutionAlreadyEnded extends Data.TaggedError("ExecutionAlreadyEnded")<{
  readonly executionId: string;
  readonly state: ExecutionState;
}> {
  override get message() {
    return `execution "${this.executionId}" has already ended (${this.state})`;
  }
}

export class RequestIdReused extends Data.TaggedError("RequestIdReused")<{
  readonly requestId: string;
  readonly executionId: string;
}> {
  override get message() {
    return `request_id "${this.requestId}" was already used for a different request (execution "${this.executionId}")`;
  }
}

/** The store could not be read or written. */
export class StoreError extends Data.TaggedError("StoreError")<{ readonly operation: string; readonly cause: unknown }> {
  override get message() {
    return `store ${this.operation} failed`;
  }
}

// The audit log (src/core/audit/AuditLog.ts).

/** Subscribe from a position whose following events were pruned: resuming there would leave a gap. */
export class AuditSequenceExpired extends Data.TaggedError("AuditSequenceExpired")<{
  readonly afterSequence: number;
  readonly earliestSequence: number;
}> {
  override get message() {
    return `audit events after sequence ${this.afterSequence} are no longer retained; the earliest retained is ${this.earliestSequence}`;
  }
}

/** Subscribe from a position beyond the newest event (e.g. a sequence from another log). */
export class AuditSequenceAhead extends Data.TaggedError("AuditSequenceAhead")<{
  readonly afterSequence: number;
  readonly lastSequence: number;
}> {
  override get message() {
    return `after_sequence ${this.afterSequence} is beyond the last audit event written (${this.lastSequence})`;
  }
}

/** A subscriber fell too far behind the live events and was cut off; resume after lastSequence. */
export class SubscriberTooSlow extends Data.TaggedError("SubscriberTooSlow")<{
  readonly lastSequence: number;
  readonly bufferSize: number;
}> {
  override get message() {
    return `the subscriber fell more than ${this.bufferSize} events behind; resume with after_sequence ${this.lastSequence}`;
  }
}

export type AuditError = AuditSequenceExpired | AuditSequenceAhead | SubscriberTooSlow;

// Outcomes of a run, as the in-process execute() fails with them.

/** A failure the operation declared non-retryable (or listed in non_retryable_error_types). */
export class AttemptFailed<E = unknown> extends Data.TaggedError("AttemptFailed")<{
  readonly executionId: string;
  readonly attempt: number;
  readonly error: ErrorDetail;
  /** The operation's own typed error. */
  readonly cause: E;
}> {
  override get message() {
    return `attempt ${this.attempt} failed: ${this.error.message}`;
  }
}

/** Retryable failures until the policy ran out (attempts or total duration). */
export class RetriesExhausted<E = unknown> extends Data.TaggedError("RetriesExhausted")<{
  readonly executionId: string;
  readonly attempts: number;
  readonly lastError: ErrorDetail;
  readonly cause: E;
}> {
  override get message() {
    return `gave up after ${this.attempts} attempts: ${this.lastError.message}`;
  }
}

export class Cancelled extends Data.TaggedError("Cancelled")<{ readonly executionId: string; readonly reason: string }> {
  override get message() {
    return `execution "${this.executionId}" was cancelled: ${this.reason}`;
  }
}

export class DeadlineExceeded extends Data.TaggedError("DeadlineExceeded")<{
  readonly executionId: string;
  readonly timeoutMs: number;
}> {
  override get message() {
    return `execution "${this.executionId}" exceeded its timeout of ${this.timeoutMs} ms`;
  }
}

/** The process stopped while the execution ran (found on the next start). */
export class Interrupted extends Data.TaggedError("Interrupted")<{ readonly executionId: string }> {
  override get message() {
    return `execution "${this.executionId}" was interrupted by a server restart`;
  }
}

/** Refusals before anything runs. */
export type StartError =
  | OperationNotFound
  | InvalidInput
  | PermissionDenied
  | PolicyDenied
  | RateLimited
  | RateLimiterUnavailable
  | BudgetExhausted
  | RequestIdReused
  | StoreError;

/** How a run ends when it does not succeed. */
export type RunError<E = unknown> = AttemptFailed<E> | RetriesExhausted<E> | Cancelled | DeadlineExceeded | Interrupted | BudgetExhausted;

// Schedules (src/core/schedule/).

export class ScheduleNotFound extends Data.TaggedError("ScheduleNotFound")<{ readonly scheduleId: string }> {
  override get message() {
    return `no schedule "${this.scheduleId}"`;
  }
}

export class ScheduleAlreadyExists extends Data.TaggedError("ScheduleAlreadyExists")<{ readonly scheduleId: string }> {
  override get message() {
    return `a schedule "${this.scheduleId}" already exists`;
  }
}

/** Optimistic concurrency: the schedule changed since the caller read the etag it sent. */
export class EtagMismatch extends Data.TaggedError("EtagMismatch")<{ readonly scheduleId: string; readonly etag: string; readonly current: string }> {
  override get message() {
    return `schedule "${this.scheduleId}" has changed since etag ${this.etag} was read (now ${this.current}); get it again and retry`;
  }
}

export class BackfillTooLarge extends Data.TaggedError("BackfillTooLarge")<{ readonly slotCount: number; readonly max: number }> {
  override get message() {
    return `the backfill window holds more than ${this.max} slots`;
  }
}

/** A schedule RPC's request_id was used before, by the same principal, for a different request. */
export class ScheduleRequestIdReused extends Data.TaggedError("ScheduleRequestIdReused")<{ readonly requestId: string; readonly method: string }> {
  override get message() {
    return `request_id "${this.requestId}" was already used for a different ${this.method} request`;
  }
}

export type ScheduleError = ScheduleNotFound | ScheduleAlreadyExists | EtagMismatch | BackfillTooLarge | ScheduleRequestIdReused;
