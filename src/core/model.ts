/**
 * The orchestrator's domain types. Plain data, JSON-serializable (times are epoch
 * milliseconds, spans are milliseconds), independent of protobuf: the transport maps them
 * to and from the v1 contract; the stores persist them as they are.
 */

export type ExecutionState =
  | "PENDING"
  | "RUNNING"
  | "BACKING_OFF"
  | "SUCCEEDED"
  | "FAILED"
  | "CANCELLED"
  | "TIMED_OUT"
  | "INTERRUPTED";

export const terminalStates: ReadonlySet<ExecutionState> = new Set([
  "SUCCEEDED",
  "FAILED",
  "CANCELLED",
  "TIMED_OUT",
  "INTERRUPTED",
]);

export const isTerminal = (s: ExecutionState): boolean => terminalStates.has(s);

/** Who runs something. Derived from a credential by the server; never taken from a request. */
export interface Principal {
  readonly subject: string;
  readonly tenant: string;
  readonly roles: ReadonlyArray<string>;
}

export type JsonValue = null | boolean | number | string | ReadonlyArray<JsonValue> | { readonly [k: string]: JsonValue };
export type JsonObject = { readonly [k: string]: JsonValue };

/** A failure as callers and the audit log see it. */
export interface ErrorDetail {
  /** Stable: HTTP_STATUS, TIMEOUT, CONNECTION, or the operation's own error tag. */
  readonly type: string;
  readonly message: string;
  readonly retryable: boolean;
  readonly details?: JsonObject;
}

export interface TokenUsage {
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly totalTokens: number;
  readonly model?: string;
}

/** Temporal's RetryPolicy meanings, fully resolved (no field left to a default). */
export interface RetryPolicy {
  readonly initialIntervalMs: number;
  readonly backoffCoefficient: number;
  /** Caps each delay (not the total). */
  readonly maximumIntervalMs: number;
  /** 0 = unlimited, 1 = no retry. */
  readonly maximumAttempts: number;
  readonly nonRetryableErrorTypes: ReadonlyArray<string>;
  /** Fraction 0..1: each delay is drawn uniformly from [d × (1 − jitter), d]. */
  readonly jitter: number;
  /** Total time budget for retries, from the first attempt's start; 0 = none. */
  readonly maxRetryDurationMs: number;
}

/** What a request or an operation may set; unset fields fall through to the next level. */
export type RetryPolicyInput = { readonly [K in keyof RetryPolicy]?: RetryPolicy[K] | undefined };

export interface AttemptRecord {
  readonly number: number;
  readonly startTime: number;
  readonly endTime?: number;
  readonly error?: ErrorDetail;
  /** Delay before the next attempt, when one was scheduled after this one failed. */
  readonly retryDelayMs?: number;
}

export interface ExecutionRecord {
  readonly executionId: string;
  readonly operation: string;
  readonly input: JsonObject;
  readonly state: ExecutionState;
  readonly principal: Principal;
  readonly labels: Readonly<Record<string, string>>;
  /** Idempotency key, scoped to principal.subject. */
  readonly requestId?: string;
  readonly scheduleId?: string;
  readonly nominalTime?: number;
  readonly attempts: ReadonlyArray<AttemptRecord>;
  readonly result?: JsonValue;
  readonly error?: ErrorDetail;
  readonly tokenUsage?: TokenUsage;
  readonly traceId?: string;
  readonly createTime: number;
  readonly startTime?: number;
  readonly endTime?: number;
  readonly retryPolicy: RetryPolicy;
  readonly timeoutMs: number;
  readonly attemptTimeoutMs?: number;
  readonly nextAttemptTime?: number;
  /** Why it was cancelled, when it was. */
  readonly cancelReason?: string;
}

/** One event in an execution's life, in the order they happen. */
export type ExecutionEventKind =
  | { readonly _tag: "Accepted"; readonly execution: ExecutionRecord; readonly deduplicated: boolean }
  | { readonly _tag: "AttemptStarted"; readonly attempt: number }
  | {
      readonly _tag: "AttemptFailed";
      readonly attempt: number;
      readonly error: ErrorDetail;
      readonly willRetry: boolean;
      readonly retryDelayMs?: number;
      readonly nextAttemptTime?: number;
    }
  | { readonly _tag: "Progress"; readonly message: string; readonly data?: JsonObject }
  | { readonly _tag: "Succeeded"; readonly result: JsonValue; readonly tokenUsage?: TokenUsage; readonly attempts: number }
  | { readonly _tag: "Failed"; readonly error: ErrorDetail; readonly attempts: number }
  | { readonly _tag: "Cancelled"; readonly reason: string; readonly attempts: number }
  | { readonly _tag: "TimedOut"; readonly error: ErrorDetail; readonly attempts: number }
  | { readonly _tag: "Interrupted"; readonly error: ErrorDetail; readonly attempts: number };

export interface ExecutionEvent {
  readonly executionId: string;
  readonly time: number;
  readonly kind: ExecutionEventKind;
}

export const isTerminalEvent = (e: ExecutionEvent): boolean =>
  e.kind._tag === "Succeeded" ||
  e.kind._tag === "Failed" ||
  e.kind._tag === "Cancelled" ||
  e.kind._tag === "TimedOut" ||
  e.kind._tag === "Interrupted";

export type ExecutionOrder = "CREATE_TIME_DESCENDING" | "CREATE_TIME_ASCENDING";

export interface ExecutionFilter {
  readonly operation?: string;
  readonly states?: ReadonlyArray<ExecutionState>;
  readonly scheduleId?: string;
  readonly principalSubject?: string;
  /** Every pair must match. */
  readonly labels?: Readonly<Record<string, string>>;
  /** Restricts to one tenant (set by the core from the caller, not by the caller). */
  readonly tenant?: string;
}

/** A position in a listing: the last item of the previous page. */
export interface ExecutionCursor {
  readonly createTime: number;
  readonly executionId: string;
}

export interface ExecutionPage {
  readonly items: ReadonlyArray<ExecutionRecord>;
  /** Present when there may be more. */
  readonly next?: ExecutionCursor;
}

/** Schedules' runs are started with request ids that begin so (schedule/model.ts, runRequestId); callers may not use it. */
export const scheduleRunRequestIdPrefix = "sch:";
