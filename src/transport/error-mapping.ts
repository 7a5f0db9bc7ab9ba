/**
 * The one mapping from the core's tagged errors to gRPC statuses. Exhaustive over the tags: a
 * new error type is a compile error here until it is given a code and a reason.
 */
import { Cause, Option } from "effect";
import { Code, type ConnectError } from "@connectrpc/connect";
import type {
  AuditError,
  ExecutionAlreadyEnded,
  ExecutionNotFound,
  RunError,
  ScheduleError,
  StartError,
} from "../core/errors.js";
import type { AuthError } from "../ports/AuthValidator.js";
import { internalError, rpcError } from "./errors.js";

export type CoreError = StartError | RunError | ExecutionNotFound | ExecutionAlreadyEnded | AuthError | ScheduleError | AuditError;

export function toConnectError(e: CoreError): ConnectError {
  switch (e._tag) {
    case "OperationNotFound":
      return rpcError({ code: Code.NotFound, message: e.message, reason: "OPERATION_NOT_FOUND", metadata: { operation: e.operation } });
    case "InvalidInput":
      return rpcError({ code: Code.InvalidArgument, message: e.message, reason: "INVALID_ARGUMENT", violations: e.violations });
    case "PermissionDenied":
      return rpcError({ code: Code.PermissionDenied, message: e.message, reason: "PERMISSION_DENIED", metadata: { permission: e.permission } });
    case "PolicyDenied":
      return rpcError({
        code: Code.PermissionDenied,
        message: e.message,
        reason: "POLICY_DENIED",
        metadata: { rule: e.rule, reason: e.reason, ...(e.policyVersion === undefined ? {} : { policy_version: String(e.policyVersion) }) },
      });
    case "RateLimited": {
      const err = rpcError({
        code: Code.ResourceExhausted,
        message: e.message,
        reason: "RATE_LIMITED",
        metadata: { scope: e.scope, key: e.key, limit: String(e.limit), retry_after_ms: String(e.retryAfterMs) },
        retryDelayMs: e.retryAfterMs,
      });
      // IETF draft RateLimit header fields, in seconds.
      err.metadata.set("ratelimit-limit", String(e.limit));
      err.metadata.set("ratelimit-remaining", String(e.remaining));
      err.metadata.set("ratelimit-reset", String(Math.ceil(e.resetMs / 1000)));
      err.metadata.set("retry-after", String(Math.ceil(e.retryAfterMs / 1000)));
      return err;
    }
    case "RateLimiterUnavailable":
      // Refused because the limits could not be checked (fail closed), not because they were
      // reached: UNAVAILABLE says "retry later" without claiming the caller used its quota.
      // The cause stays in the server log and the audit event.
      return rpcError({ code: Code.Unavailable, message: e.message, reason: "RATE_LIMITER_UNAVAILABLE", retryDelayMs: 1000 });
    case "BudgetExhausted": {
      // A token budget or model limit refused (before the run, or it stopped the run): which
      // one, and what remains of it.
      const err = rpcError({
        code: Code.ResourceExhausted,
        message: e.message,
        reason: "TOKEN_BUDGET_EXHAUSTED",
        metadata: {
          budget: e.budget,
          limit: String(e.limit),
          remaining: String(e.remaining),
          requested: String(e.requested),
          retry_after_ms: String(e.retryAfterMs),
          ...(e.executionId === undefined ? {} : { execution_id: e.executionId }),
        },
        retryDelayMs: e.retryAfterMs,
      });
      err.metadata.set("retry-after", String(Math.ceil(e.retryAfterMs / 1000)));
      return err;
    }
    case "RequestIdReused":
      return rpcError({ code: Code.AlreadyExists, message: e.message, reason: "REQUEST_ID_REUSED", metadata: { request_id: e.requestId, execution_id: e.executionId } });
    case "StoreError":
      // The cause stays in the server log; the caller learns only that storage failed.
      return rpcError({ code: Code.Unavailable, message: "the execution store is unavailable; retry later", reason: "STORE_UNAVAILABLE" });
    case "ExecutionNotFound":
      return rpcError({ code: Code.NotFound, message: e.message, reason: "EXECUTION_NOT_FOUND", metadata: { execution_id: e.executionId } });
    case "ExecutionAlreadyEnded":
      return rpcError({ code: Code.FailedPrecondition, message: e.message, reason: "EXECUTION_ALREADY_ENDED", metadata: { execution_id: e.executionId, state: e.state } });
    case "AttemptFailed":
      return rpcError({ code: Code.Aborted, message: e.message, reason: "EXECUTION_FAILED", metadata: { execution_id: e.executionId, error_type: e.error.type } });
    case "RetriesExhausted":
      return rpcError({ code: Code.Aborted, message: e.message, reason: "RETRIES_EXHAUSTED", metadata: { execution_id: e.executionId, attempts: String(e.attempts), error_type: e.lastError.type } });
    case "Cancelled":
      return rpcError({ code: Code.Canceled, message: e.message, reason: "EXECUTION_CANCELLED", metadata: { execution_id: e.executionId } });
    case "DeadlineExceeded":
      return rpcError({ code: Code.DeadlineExceeded, message: e.message, reason: "EXECUTION_TIMED_OUT", metadata: { execution_id: e.executionId } });
    case "Interrupted":
      return rpcError({ code: Code.Unavailable, message: e.message, reason: "EXECUTION_INTERRUPTED", metadata: { execution_id: e.executionId } });
    case "Unauthenticated": {
      // The public message only; the detail (unknown key, revoked, bad signature…) is audited.
      const err = rpcError({ code: Code.Unauthenticated, message: e.message, reason: "UNAUTHENTICATED" });
      err.metadata.set("www-authenticate", `Bearer realm="orchestrator"`);
      return err;
    }
    case "AuthUnavailable":
      return rpcError({ code: Code.Unavailable, message: e.message, reason: "AUTH_UNAVAILABLE" });
    case "AuditSequenceExpired":
      return rpcError({
        code: Code.OutOfRange,
        message: e.message,
        reason: "AUDIT_SEQUENCE_EXPIRED",
        metadata: { after_sequence: String(e.afterSequence), earliest_sequence: String(e.earliestSequence) },
      });
    case "AuditSequenceAhead":
      return rpcError({
        code: Code.OutOfRange,
        message: e.message,
        reason: "AUDIT_SEQUENCE_AHEAD",
        metadata: { after_sequence: String(e.afterSequence), last_sequence: String(e.lastSequence) },
      });
    case "SubscriberTooSlow":
      // The resume point travels in metadata, so that a client can reconnect losing nothing.
      return rpcError({
        code: Code.ResourceExhausted,
        message: e.message,
        reason: "SUBSCRIBER_TOO_SLOW",
        metadata: { last_sequence: String(e.lastSequence), buffer_size: String(e.bufferSize) },
      });
    case "ScheduleNotFound":
      return rpcError({ code: Code.NotFound, message: e.message, reason: "SCHEDULE_NOT_FOUND", metadata: { schedule_id: e.scheduleId } });
    case "ScheduleAlreadyExists":
      return rpcError({ code: Code.AlreadyExists, message: e.message, reason: "SCHEDULE_ALREADY_EXISTS", metadata: { schedule_id: e.scheduleId } });
    case "EtagMismatch":
      // AIP-154: a stale etag is ABORTED (the read-modify-write should be retried).
      return rpcError({ code: Code.Aborted, message: e.message, reason: "ETAG_MISMATCH", metadata: { schedule_id: e.scheduleId, etag: e.current } });
    case "BackfillTooLarge":
      return rpcError({
        code: Code.InvalidArgument,
        message: e.message,
        reason: "BACKFILL_TOO_LARGE",
        metadata: { slot_count: String(e.slotCount), max: String(e.max) },
        violations: [{ field: "end_time", description: e.message }],
      });
    case "ScheduleRequestIdReused":
      return rpcError({ code: Code.AlreadyExists, message: e.message, reason: "REQUEST_ID_REUSED", metadata: { request_id: e.requestId, method: e.method } });
  }
}

/** A failed Effect's cause as the caller sees it: typed failures mapped, defects hidden. */
export function causeToConnectError(cause: Cause.Cause<CoreError>): ConnectError {
  const failure = Cause.failureOption(cause);
  if (Option.isSome(failure)) return toConnectError(failure.value);
  if (Cause.isInterruptedOnly(cause)) return rpcError({ code: Code.Canceled, message: "the call was cancelled", reason: "CANCELLED" });
  return internalError();
}
