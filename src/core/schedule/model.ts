/**
 * Schedules as the core sees them: plain JSON-serializable data (times in epoch ms, spans in
 * ms), independent of protobuf. The transport maps the v1 contract to and from these.
 */
import { scheduleRunRequestIdPrefix, type ErrorDetail, type ExecutionState, type JsonObject, type Principal, type RetryPolicyInput } from "../model.js";
import type { ScheduleSpec } from "./spec.js";

export type { ScheduleSpec };

export type OverlapPolicy = "SKIP" | "BUFFER_ONE" | "BUFFER_ALL" | "CANCEL_OTHER" | "ALLOW_ALL";
export const overlapPolicies: ReadonlyArray<OverlapPolicy> = ["SKIP", "BUFFER_ONE", "BUFFER_ALL", "CANCEL_OTHER", "ALLOW_ALL"];

export type RunKind = "CRON" | "TRIGGER" | "BACKFILL";

/** The Execute template each fire runs. */
export interface ScheduleAction {
  readonly operation: string;
  readonly input: JsonObject;
  readonly retry?: RetryPolicyInput | undefined;
  readonly timeoutMs?: number | undefined;
  readonly attemptTimeoutMs?: number | undefined;
  readonly labels: Readonly<Record<string, string>>;
}

export interface SchedulePolicy {
  readonly overlap: OverlapPolicy;
  readonly catchupWindowMs: number;
  readonly pauseOnFailure: boolean;
}

export interface ScheduleState {
  readonly paused: boolean;
  readonly note: string;
  /** Undefined: unlimited. */
  readonly remainingRuns?: number | undefined;
}

/** One slot and what became of it. */
export interface ScheduleRun {
  readonly nominalTime: number;
  readonly kind: RunKind;
  readonly actualTime?: number | undefined;
  readonly executionId?: string | undefined;
  readonly state?: ExecutionState | undefined;
  readonly error?: ErrorDetail | undefined;
}

/** A slot waiting behind an active run (overlap policy BUFFER_* / CANCEL_OTHER). */
export interface BufferedRun {
  readonly claimId: string;
  readonly nominalTime: number;
  readonly kind: RunKind;
}

/**
 * A run this schedule has started (or is starting: executionId still unset). `instanceId` says
 * which server process runs it, so that another instance can tell a stale entry (its process
 * died) from a live one.
 */
export interface RunningRun {
  readonly claimId: string;
  readonly nominalTime: number;
  readonly kind: RunKind;
  readonly instanceId: string;
  /** When the entry was made (a start that never completed is dropped after the lease). */
  readonly since: number;
  readonly executionId?: string | undefined;
}

/** A schedule as stored: its definition, and the state of its firing. */
export interface ScheduleRecord {
  readonly scheduleId: string;
  readonly spec: ScheduleSpec;
  readonly action: ScheduleAction;
  readonly policy: SchedulePolicy;
  readonly state: ScheduleState;
  readonly owner: Principal;
  readonly createTime: number;
  readonly updateTime: number;
  /** Bumped when spec, action, policy or state change (the etag); fires do not bump it. */
  readonly version: number;
  /** Bumped on every write, fires included: the stores' compare-and-set key. */
  readonly rev: number;
  /**
   * The earliest cron slot not yet processed; undefined when paused, ended or out of runs. The
   * engine's queue is ordered by it (an index in the SQL stores, a heap in memory).
   */
  readonly nextFireTime?: number | undefined;
  readonly runCount: number;
  readonly missedCount: number;
  readonly overlapSkippedCount: number;
  /** Newest first, at most 10; runs that started an execution. */
  readonly recentRuns: ReadonlyArray<ScheduleRun>;
  readonly running: ReadonlyArray<RunningRun>;
  readonly buffer: ReadonlyArray<BufferedRun>;
}

export const etagOf = (r: ScheduleRecord): string => `"v${r.version}"`;

export interface ScheduleFilter {
  readonly tenant: string;
  readonly operation?: string | undefined;
  readonly paused?: boolean | undefined;
  readonly labels?: Readonly<Record<string, string>> | undefined;
}

export const matchesFilter = (f: ScheduleFilter, r: ScheduleRecord): boolean =>
  r.owner.tenant === f.tenant &&
  (f.operation === undefined || r.action.operation === f.operation) &&
  (f.paused === undefined || r.state.paused === f.paused) &&
  Object.entries(f.labels ?? {}).every(([k, v]) => Object.hasOwn(r.action.labels, k) && r.action.labels[k] === v);

/**
 * A slot this instance has claimed and must dispatch. Cron claims are keyed by the slot
 * (`cron:<ms>`), so a slot can be claimed once; triggers and backfills get unique keys.
 */
export interface Claim {
  readonly scheduleId: string;
  readonly claimId: string;
  readonly nominalTime: number;
  readonly kind: RunKind;
  /** Overlap policy for this run only (trigger/backfill overrides). */
  readonly overlap?: OverlapPolicy | undefined;
  readonly instanceId: string;
  readonly leaseUntil: number;
}

export type ClaimOutcome = "STARTED" | "BUFFERED" | "SKIPPED" | "FAILED";

export const cronClaimId = (nominalMs: number) => `cron:${nominalMs}`;

/**
 * The request_id a claim's execution is started with, in its owner's request ids: the fence
 * that keeps a slot from running twice when its instance stalls past the lease between claiming
 * it and creating the execution, while another instance takes it over. The second start finds
 * the first's execution by this id (or loses the insert to it) and is deduplicated. At most
 * 4 + 63 + 1 + 59 = 127 characters (a backfill claim id is the longest), within request_id's 128.
 */
export const runRequestId = (scheduleId: string, claimId: string) => `${scheduleRunRequestIdPrefix}${scheduleId}:${claimId}`;

/** An event of WatchSchedule. */
export type ScheduleEventKind =
  | { readonly _tag: "Snapshot"; readonly schedule: ScheduleRecord }
  | { readonly _tag: "Fired"; readonly run: ScheduleRun }
  | { readonly _tag: "Buffered"; readonly run: ScheduleRun }
  | { readonly _tag: "Skipped"; readonly run: ScheduleRun }
  | { readonly _tag: "Missed"; readonly run: ScheduleRun }
  | { readonly _tag: "RunEnded"; readonly run: ScheduleRun }
  | { readonly _tag: "Deleted" };

export interface ScheduleEvent {
  readonly scheduleId: string;
  readonly time: number;
  readonly kind: ScheduleEventKind;
}

export const maxRecentRuns = 10;
export const maxBuffered = 1000;
export const maxBackfillSlots = 1000;
