/**
 * proto ⇄ domain for the v1 contract. Enums become string unions here, so UNSPECIFIED never
 * reaches the core; malformed wire values (a Duration with nanos out of range, an unknown enum
 * number) become field violations.
 */
import { create, fromJson, toJson, type JsonValue as PbJsonValue } from "@bufbuild/protobuf";
import {
  durationFromMs,
  timestampFromMs,
  ValueSchema,
  type Duration,
  type Timestamp,
} from "@bufbuild/protobuf/wkt";
import type { FieldViolation } from "../core/errors.js";
import type {
  ErrorDetail,
  ExecutionEvent,
  ExecutionOrder,
  ExecutionRecord,
  ExecutionState,
  JsonObject,
  JsonValue,
  Principal,
  RetryPolicy,
  RetryPolicyInput,
  TokenUsage,
} from "../core/model.js";
import {
  ErrorDetailSchema,
  PrincipalSchema,
  RetryPolicySchema,
  TokenUsageSchema,
  type RetryPolicy as PbRetryPolicy,
} from "../../gen/orchestrator/v1/common_pb.js";
import {
  ExecutionEventSchema,
  ExecutionOrder as PbOrder,
  ExecutionSchema,
  ExecutionState as PbState,
  type ExecuteRequest,
  type Execution,
  type ExecutionEvent as PbEvent,
} from "../../gen/orchestrator/v1/execution_service_pb.js";
import type { ExecuteCommand } from "../core/Orchestrator.js";

const states: ReadonlyArray<[ExecutionState, PbState]> = [
  ["PENDING", PbState.PENDING],
  ["RUNNING", PbState.RUNNING],
  ["BACKING_OFF", PbState.BACKING_OFF],
  ["SUCCEEDED", PbState.SUCCEEDED],
  ["FAILED", PbState.FAILED],
  ["CANCELLED", PbState.CANCELLED],
  ["TIMED_OUT", PbState.TIMED_OUT],
  ["INTERRUPTED", PbState.INTERRUPTED],
];
const stateToPb = new Map(states);
const stateFromPb = new Map(states.map(([a, b]) => [b, a]));

export const executionStateToPb = (s: ExecutionState): PbState => stateToPb.get(s) ?? PbState.UNSPECIFIED;

/** Collects field violations while converting a request. */
export class Violations {
  readonly list: FieldViolation[] = [];
  add(field: string, description: string): void {
    this.list.push({ field, description });
  }
}

/** Milliseconds of a Duration, or a violation for one that is not a valid Duration. */
export function durationToMs(d: Duration | undefined, field: string, v: Violations): number | undefined {
  if (d === undefined) return undefined;
  const seconds = Number(d.seconds);
  if (d.nanos < -999_999_999 || d.nanos > 999_999_999 || (seconds > 0 && d.nanos < 0) || (seconds < 0 && d.nanos > 0)) {
    v.add(field, "is not a valid Duration (nanos out of range or of the wrong sign)");
    return undefined;
  }
  if (seconds < 0 || d.nanos < 0) {
    v.add(field, "must not be negative");
    return undefined;
  }
  if (seconds > 315_576_000_000) {
    v.add(field, "is too large");
    return undefined;
  }
  return seconds * 1000 + Math.floor(d.nanos / 1e6);
}

export function retryPolicyFromPb(p: PbRetryPolicy | undefined, field: string, v: Violations): RetryPolicyInput | undefined {
  if (p === undefined) return undefined;
  const ms = (d: Duration | undefined, name: string) => {
    const out = durationToMs(d, `${field}.${name}`, v);
    return out === 0 ? undefined : out; // 0 / unset: take the default
  };
  const out: { -readonly [K in keyof RetryPolicyInput]: RetryPolicyInput[K] } = {};
  const initial = ms(p.initialInterval, "initial_interval");
  if (initial !== undefined) out.initialIntervalMs = initial;
  if (p.backoffCoefficient !== 0) out.backoffCoefficient = p.backoffCoefficient;
  const max = ms(p.maximumInterval, "maximum_interval");
  if (max !== undefined) out.maximumIntervalMs = max;
  if (p.maximumAttempts !== undefined) out.maximumAttempts = p.maximumAttempts;
  if (p.nonRetryableErrorTypes.length > 0) out.nonRetryableErrorTypes = [...p.nonRetryableErrorTypes];
  if (p.jitter !== undefined) out.jitter = p.jitter;
  const total = ms(p.maxRetryDuration, "max_retry_duration");
  if (total !== undefined) out.maxRetryDurationMs = total;
  return out;
}

export function executeCommandFromPb(req: ExecuteRequest, principal: Principal, traceId: string | undefined): { cmd: ExecuteCommand; violations: FieldViolation[] } {
  const v = new Violations();
  if (req.operation === "") v.add("operation", "is required");
  const timeoutMs = durationToMs(req.timeout, "timeout", v);
  const attemptTimeoutMs = durationToMs(req.attemptTimeout, "attempt_timeout", v);
  const cmd: ExecuteCommand = {
    operation: req.operation,
    input: (req.input ?? {}) as JsonObject,
    principal,
    requestId: req.requestId === "" ? undefined : req.requestId,
    retry: retryPolicyFromPb(req.retryPolicy, "retry_policy", v),
    timeoutMs: timeoutMs === 0 ? undefined : timeoutMs,
    attemptTimeoutMs: attemptTimeoutMs === 0 ? undefined : attemptTimeoutMs,
    labels: req.labels,
    traceId,
  };
  return { cmd, violations: v.list };
}

export function statesFromPb(states: ReadonlyArray<PbState>, v: Violations): ExecutionState[] {
  const out: ExecutionState[] = [];
  states.forEach((s, i) => {
    const d = stateFromPb.get(s);
    if (d === undefined) v.add(`states[${i}]`, "is not a known execution state");
    else out.push(d);
  });
  return out;
}

export function orderFromPb(o: PbOrder, v: Violations): ExecutionOrder {
  switch (o) {
    case PbOrder.UNSPECIFIED:
    case PbOrder.CREATE_TIME_DESCENDING:
      return "CREATE_TIME_DESCENDING";
    case PbOrder.CREATE_TIME_ASCENDING:
      return "CREATE_TIME_ASCENDING";
    default:
      v.add("order", "is not a known order");
      return "CREATE_TIME_DESCENDING";
  }
}

/** A Timestamp of epoch milliseconds (whole ms), or undefined. */
export const ts = (ms: number | undefined): Timestamp | undefined => (ms === undefined ? undefined : timestampFromMs(Math.floor(ms)));
const value = (j: JsonValue | undefined) => (j === undefined ? undefined : fromJson(ValueSchema, j as PbJsonValue));

export const errorDetailToPb = (e: ErrorDetail) =>
  create(ErrorDetailSchema, { type: e.type, message: e.message, retryable: e.retryable, ...(e.details === undefined ? {} : { details: e.details as never }) });

const usageToPb = (u: TokenUsage) =>
  create(TokenUsageSchema, {
    inputTokens: BigInt(u.inputTokens),
    outputTokens: BigInt(u.outputTokens),
    totalTokens: BigInt(u.totalTokens),
    model: u.model ?? "",
  });

const retryPolicyToPb = (p: RetryPolicy) =>
  create(RetryPolicySchema, {
    initialInterval: durationFromMs(p.initialIntervalMs),
    backoffCoefficient: p.backoffCoefficient,
    maximumInterval: durationFromMs(p.maximumIntervalMs),
    maximumAttempts: p.maximumAttempts,
    nonRetryableErrorTypes: [...p.nonRetryableErrorTypes],
    jitter: p.jitter,
    maxRetryDuration: durationFromMs(p.maxRetryDurationMs),
  });

export function executionToPb(r: ExecutionRecord): Execution {
  return create(ExecutionSchema, {
    executionId: r.executionId,
    operation: r.operation,
    input: r.input as never,
    state: executionStateToPb(r.state),
    principal: create(PrincipalSchema, { subject: r.principal.subject, tenant: r.principal.tenant, roles: [...r.principal.roles] }),
    labels: { ...r.labels },
    // A scheduled run's is the slot's fence, not a caller's: not shown (the contract says empty).
    requestId: r.scheduleId === undefined ? (r.requestId ?? "") : "",
    scheduleId: r.scheduleId ?? "",
    nominalTime: ts(r.nominalTime),
    attempts: r.attempts.map((a) => ({
      number: a.number,
      startTime: ts(a.startTime),
      endTime: ts(a.endTime),
      error: a.error === undefined ? undefined : errorDetailToPb(a.error),
      retryDelay: a.retryDelayMs === undefined ? undefined : durationFromMs(a.retryDelayMs),
    })),
    result: value(r.result),
    error: r.error === undefined ? undefined : errorDetailToPb(r.error),
    tokenUsage: r.tokenUsage === undefined ? undefined : usageToPb(r.tokenUsage),
    traceId: r.traceId ?? "",
    createTime: ts(r.createTime),
    startTime: ts(r.startTime),
    endTime: ts(r.endTime),
    retryPolicy: retryPolicyToPb(r.retryPolicy),
    timeout: durationFromMs(r.timeoutMs),
    attemptTimeout: r.attemptTimeoutMs === undefined ? undefined : durationFromMs(r.attemptTimeoutMs),
    nextAttemptTime: ts(r.nextAttemptTime),
  } as never);
}

export function executionEventToPb(e: ExecutionEvent): PbEvent {
  const k = e.kind;
  let kind: PbEvent["kind"];
  switch (k._tag) {
    case "Accepted":
      kind = { case: "accepted", value: { $typeName: "orchestrator.v1.ExecutionAccepted", execution: executionToPb(k.execution), deduplicated: k.deduplicated } };
      break;
    case "AttemptStarted":
      kind = { case: "attemptStarted", value: { $typeName: "orchestrator.v1.AttemptStarted", attempt: k.attempt } };
      break;
    case "AttemptFailed":
      kind = {
        case: "attemptFailed",
        value: {
          $typeName: "orchestrator.v1.AttemptFailed",
          attempt: k.attempt,
          error: errorDetailToPb(k.error),
          willRetry: k.willRetry,
          ...(k.retryDelayMs === undefined ? {} : { retryDelay: durationFromMs(k.retryDelayMs) }),
          ...(k.nextAttemptTime === undefined ? {} : { nextAttemptTime: timestampFromMs(k.nextAttemptTime) }),
        },
      };
      break;
    case "Progress":
      kind = { case: "progress", value: { $typeName: "orchestrator.v1.ExecutionProgress", message: k.message, ...(k.data === undefined ? {} : { data: k.data as never }) } };
      break;
    case "Succeeded":
      kind = {
        case: "succeeded",
        value: {
          $typeName: "orchestrator.v1.ExecutionSucceeded",
          result: value(k.result)!,
          attempts: k.attempts,
          ...(k.tokenUsage === undefined ? {} : { tokenUsage: usageToPb(k.tokenUsage) }),
        },
      };
      break;
    case "Failed":
      kind = { case: "failed", value: { $typeName: "orchestrator.v1.ExecutionFailed", error: errorDetailToPb(k.error), attempts: k.attempts } };
      break;
    case "Cancelled":
      kind = { case: "cancelled", value: { $typeName: "orchestrator.v1.ExecutionCancelled", reason: k.reason, attempts: k.attempts } };
      break;
    case "TimedOut":
      kind = { case: "timedOut", value: { $typeName: "orchestrator.v1.ExecutionTimedOut", error: errorDetailToPb(k.error), attempts: k.attempts } };
      break;
    case "Interrupted":
      kind = { case: "interrupted", value: { $typeName: "orchestrator.v1.ExecutionInterrupted", error: errorDetailToPb(k.error), attempts: k.attempts } };
      break;
  }
  return create(ExecutionEventSchema, { executionId: e.executionId, time: timestampFromMs(e.time), kind });
}

/** For logs and tests: an event as proto JSON. */
export const executionEventToJson = (e: ExecutionEvent) => toJson(ExecutionEventSchema, executionEventToPb(e));
