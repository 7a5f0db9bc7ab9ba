/**
 * ScheduleService handlers: proto → domain (enums to string unions, defaults applied, wire-level
 * violations collected), call the Scheduler, domain → proto. No rule lives here.
 */
import { Effect, Stream, type ManagedRuntime } from "effect";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { InvalidInput } from "../core/errors.js";
import type { JsonObject, RetryPolicyInput } from "../core/model.js";
import { Scheduler, type ScheduleInput, type ScheduleView, type UpdatePath } from "../core/schedule/Scheduler.js";
import { defaultCatchupWindowMs } from "../core/schedule/validate.js";
import { etagOf, type OverlapPolicy, type RunKind, type ScheduleEvent, type ScheduleRun, type ScheduleSpec } from "../core/schedule/model.js";
import { RetryPolicySchema, PrincipalSchema } from "../../gen/orchestrator/v1/common_pb.js";
import {
  BackfillScheduleResponseSchema,
  CreateScheduleResponseSchema,
  DeleteScheduleResponseSchema,
  GetScheduleResponseSchema,
  ListScheduleMatchingTimesResponseSchema,
  ListSchedulesResponseSchema,
  OverlapPolicy as PbOverlap,
  PauseScheduleResponseSchema,
  ResumeScheduleResponseSchema,
  ScheduleEventSchema,
  ScheduleRunKind as PbRunKind,
  ScheduleRunSchema,
  ScheduleSchema,
  ScheduleService,
  TriggerOutcome as PbTriggerOutcome,
  TriggerScheduleResponseSchema,
  UpdateScheduleResponseSchema,
  WatchScheduleResponseSchema,
  type Schedule as PbSchedule,
  type ScheduleAction as PbAction,
  type ScheduleEvent as PbEvent,
  type SchedulePolicy as PbPolicy,
  type ScheduleSpec as PbSpec,
  type ScheduleState as PbState,
  type WatchScheduleResponse,
} from "../../gen/orchestrator/v1/schedule_service_pb.js";
import { principalOf } from "./auth-interceptor.js";
import { durationToMs, errorDetailToPb, executionStateToPb, retryPolicyFromPb, ts, Violations } from "./convert.js";
import { runRpc, runStream } from "./run-rpc.js";

export type ScheduleRuntime = ManagedRuntime.ManagedRuntime<Scheduler, unknown>;

const overlaps: ReadonlyArray<[OverlapPolicy, PbOverlap]> = [
  ["SKIP", PbOverlap.SKIP],
  ["BUFFER_ONE", PbOverlap.BUFFER_ONE],
  ["BUFFER_ALL", PbOverlap.BUFFER_ALL],
  ["CANCEL_OTHER", PbOverlap.CANCEL_OTHER],
  ["ALLOW_ALL", PbOverlap.ALLOW_ALL],
];
const overlapToPb = new Map(overlaps);
const overlapFromPbMap = new Map(overlaps.map(([a, b]) => [b, a]));
const kindToPb: Record<RunKind, PbRunKind> = { CRON: PbRunKind.CRON, TRIGGER: PbRunKind.TRIGGER, BACKFILL: PbRunKind.BACKFILL };

/** UNSPECIFIED → `unset`; an unknown number → a violation. */
function overlapFromPb(p: PbOverlap, field: string, v: Violations, unset: OverlapPolicy | undefined): OverlapPolicy | undefined {
  if (p === PbOverlap.UNSPECIFIED) return unset;
  const d = overlapFromPbMap.get(p);
  if (d === undefined) v.add(field, "is not a known overlap policy");
  return d ?? unset;
}

function timestampToMs(t: Timestamp | undefined, field: string, v: Violations): number | undefined {
  if (t === undefined) return undefined;
  if (t.nanos < 0 || t.nanos > 999_999_999) {
    v.add(field, "is not a valid Timestamp (nanos out of range)");
    return undefined;
  }
  const ms = Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6);
  if (!Number.isSafeInteger(ms) || ms < 0 || ms > 253_402_300_799_999) {
    v.add(field, "must be between 1970-01-01 and 9999-12-31");
    return undefined;
  }
  return ms;
}

function specFromPb(s: PbSpec | undefined, prefix: string, v: Violations): ScheduleSpec {
  const startTime = timestampToMs(s?.startTime, `${prefix}.start_time`, v);
  const endTime = timestampToMs(s?.endTime, `${prefix}.end_time`, v);
  const jitterMs = durationToMs(s?.jitter, `${prefix}.jitter`, v);
  return {
    cronExpressions: [...(s?.cronExpressions ?? [])],
    timeZone: s === undefined || s.timeZone === "" ? "UTC" : s.timeZone,
    ...(startTime === undefined ? {} : { startTime }),
    ...(endTime === undefined ? {} : { endTime }),
    ...(jitterMs === undefined || jitterMs === 0 ? {} : { jitterMs }),
  };
}

function actionFromPb(a: PbAction | undefined, prefix: string, v: Violations): ScheduleInput["action"] {
  const retry = retryPolicyFromPb(a?.retryPolicy, `${prefix}.retry_policy`, v);
  const timeoutMs = durationToMs(a?.timeout, `${prefix}.timeout`, v);
  const attemptTimeoutMs = durationToMs(a?.attemptTimeout, `${prefix}.attempt_timeout`, v);
  return {
    operation: a?.operation ?? "",
    input: (a?.input ?? {}) as JsonObject,
    labels: { ...(a?.labels ?? {}) },
    ...(retry === undefined || Object.keys(retry).length === 0 ? {} : { retry }),
    ...(timeoutMs === undefined || timeoutMs === 0 ? {} : { timeoutMs }),
    ...(attemptTimeoutMs === undefined || attemptTimeoutMs === 0 ? {} : { attemptTimeoutMs }),
  };
}

function policyFromPb(p: PbPolicy | undefined, prefix: string, v: Violations): ScheduleInput["policy"] {
  const catchup = durationToMs(p?.catchupWindow, `${prefix}.catchup_window`, v);
  return {
    overlap: overlapFromPb(p?.overlapPolicy ?? PbOverlap.UNSPECIFIED, `${prefix}.overlap_policy`, v, "SKIP")!,
    catchupWindowMs: catchup === undefined || catchup === 0 ? defaultCatchupWindowMs : catchup,
    pauseOnFailure: p?.pauseOnFailure ?? false,
  };
}

function stateFromPb(s: PbState | undefined): ScheduleInput["state"] {
  return {
    paused: s?.paused ?? false,
    note: s?.note ?? "",
    ...(s?.remainingRuns === undefined ? {} : { remainingRuns: Number(s.remainingRuns) }),
  };
}

export function scheduleInputFromPb(s: PbSchedule | undefined, v: Violations): ScheduleInput {
  return {
    spec: specFromPb(s?.spec, "schedule.spec", v),
    action: actionFromPb(s?.action, "schedule.action", v),
    policy: policyFromPb(s?.policy, "schedule.policy", v),
    state: stateFromPb(s?.state),
  };
}

/** update_mask paths (proto names) → the Scheduler's. */
const maskPaths: Readonly<Record<string, UpdatePath>> = {
  spec: "spec",
  "spec.cron_expressions": "spec.cronExpressions",
  "spec.time_zone": "spec.timeZone",
  "spec.start_time": "spec.startTime",
  "spec.end_time": "spec.endTime",
  "spec.jitter": "spec.jitterMs",
  action: "action",
  "action.operation": "action.operation",
  "action.input": "action.input",
  "action.retry_policy": "action.retry",
  "action.timeout": "action.timeoutMs",
  "action.attempt_timeout": "action.attemptTimeoutMs",
  "action.labels": "action.labels",
  policy: "policy",
  "policy.overlap_policy": "policy.overlap",
  "policy.catchup_window": "policy.catchupWindowMs",
  "policy.pause_on_failure": "policy.pauseOnFailure",
  "state.remaining_runs": "state.remainingRuns",
};

const retryToPb = (r: RetryPolicyInput) =>
  create(RetryPolicySchema, {
    ...(r.initialIntervalMs === undefined ? {} : { initialInterval: durationFromMs(r.initialIntervalMs) }),
    ...(r.backoffCoefficient === undefined ? {} : { backoffCoefficient: r.backoffCoefficient }),
    ...(r.maximumIntervalMs === undefined ? {} : { maximumInterval: durationFromMs(r.maximumIntervalMs) }),
    ...(r.maximumAttempts === undefined ? {} : { maximumAttempts: r.maximumAttempts }),
    ...(r.nonRetryableErrorTypes === undefined ? {} : { nonRetryableErrorTypes: [...r.nonRetryableErrorTypes] }),
    ...(r.jitter === undefined ? {} : { jitter: r.jitter }),
    ...(r.maxRetryDurationMs === undefined ? {} : { maxRetryDuration: durationFromMs(r.maxRetryDurationMs) }),
  });

export const runToPb = (r: ScheduleRun) =>
  create(ScheduleRunSchema, {
    nominalTime: ts(r.nominalTime),
    actualTime: ts(r.actualTime),
    executionId: r.executionId ?? "",
    state: r.state === undefined ? 0 : executionStateToPb(r.state),
    kind: kindToPb[r.kind],
    error: r.error === undefined ? undefined : errorDetailToPb(r.error),
  } as never);

export function scheduleToPb(v: ScheduleView): PbSchedule {
  const r = v.record;
  const a = r.action;
  return create(ScheduleSchema, {
    scheduleId: r.scheduleId,
    spec: {
      cronExpressions: [...r.spec.cronExpressions],
      timeZone: r.spec.timeZone,
      startTime: ts(r.spec.startTime),
      endTime: ts(r.spec.endTime),
      jitter: r.spec.jitterMs === undefined ? undefined : durationFromMs(r.spec.jitterMs),
    },
    action: {
      operation: a.operation,
      input: a.input as never,
      retryPolicy: a.retry === undefined ? undefined : retryToPb(a.retry),
      timeout: a.timeoutMs === undefined ? undefined : durationFromMs(a.timeoutMs),
      attemptTimeout: a.attemptTimeoutMs === undefined ? undefined : durationFromMs(a.attemptTimeoutMs),
      labels: { ...a.labels },
    },
    policy: { overlapPolicy: overlapToPb.get(r.policy.overlap)!, catchupWindow: durationFromMs(r.policy.catchupWindowMs), pauseOnFailure: r.policy.pauseOnFailure },
    state: { paused: r.state.paused, note: r.state.note, ...(r.state.remainingRuns === undefined ? {} : { remainingRuns: BigInt(r.state.remainingRuns) }) },
    info: {
      runCount: BigInt(r.runCount),
      missedCount: BigInt(r.missedCount),
      overlapSkippedCount: BigInt(r.overlapSkippedCount),
      runningExecutionIds: r.running.flatMap((e) => (e.executionId === undefined ? [] : [e.executionId])),
      recentRuns: r.recentRuns.map(runToPb),
      nextRunTimes: v.nextRunTimes.map((t) => timestampFromMs(t)),
    },
    createTime: ts(r.createTime),
    updateTime: ts(r.updateTime),
    etag: etagOf(r),
    owner: create(PrincipalSchema, { subject: r.owner.subject, tenant: r.owner.tenant, roles: [...r.owner.roles] }),
  } as never);
}

function eventToPb(e: ScheduleEvent, view: (r: ScheduleView["record"]) => ScheduleView): PbEvent {
  const k = e.kind;
  let kind: PbEvent["kind"];
  switch (k._tag) {
    case "Snapshot":
      kind = { case: "snapshot", value: scheduleToPb(view(k.schedule)) };
      break;
    case "Fired":
      kind = { case: "fired", value: runToPb(k.run) };
      break;
    case "Buffered":
      kind = { case: "buffered", value: runToPb(k.run) };
      break;
    case "Skipped":
      kind = { case: "skipped", value: runToPb(k.run) };
      break;
    case "Missed":
      kind = { case: "missed", value: runToPb(k.run) };
      break;
    case "RunEnded":
      kind = { case: "runEnded", value: runToPb(k.run) };
      break;
    case "Deleted":
      kind = { case: undefined };
      break;
  }
  return create(ScheduleEventSchema, { scheduleId: e.scheduleId, time: timestampFromMs(e.time), kind });
}

const invalid = (v: Violations) => Effect.fail(new InvalidInput({ violations: v.list }));
const required = (value: string, field: string) =>
  value === "" ? Effect.fail(new InvalidInput({ violations: [{ field, description: "is required" }] })) : Effect.void;

export function scheduleService(runtime: ScheduleRuntime) {
  return {
    async createSchedule(req, ctx) {
      const principal = principalOf(ctx);
      return runRpc(
        runtime,
        ctx,
        Effect.gen(function* () {
          const v = new Violations();
          if (req.schedule === undefined) v.add("schedule", "is required");
          else {
            if (req.schedule.spec === undefined) v.add("schedule.spec", "is required");
            if (req.schedule.action === undefined) v.add("schedule.action", "is required");
          }
          const schedule = scheduleInputFromPb(req.schedule, v);
          if (v.list.length > 0) return yield* invalid(v);
          const s = yield* Scheduler;
          const created = yield* s.create(principal, { scheduleId: req.scheduleId, schedule, requestId: req.requestId });
          return create(CreateScheduleResponseSchema, { schedule: scheduleToPb(created) });
        }),
      );
    },

    async getSchedule(req, ctx) {
      const principal = principalOf(ctx);
      return runRpc(
        runtime,
        ctx,
        Effect.gen(function* () {
          yield* required(req.scheduleId, "schedule_id");
          const s = yield* Scheduler;
          return create(GetScheduleResponseSchema, { schedule: scheduleToPb(yield* s.get(principal, req.scheduleId)) });
        }),
      );
    },

    async listSchedules(req, ctx) {
      const principal = principalOf(ctx);
      return runRpc(
        runtime,
        ctx,
        Effect.gen(function* () {
          const s = yield* Scheduler;
          const page = yield* s.list(principal, {
            pageSize: req.pageSize,
            pageToken: req.pageToken,
            ...(req.operation === "" ? {} : { operation: req.operation }),
            ...(req.paused === undefined ? {} : { paused: req.paused }),
            ...(Object.keys(req.labels).length === 0 ? {} : { labels: req.labels }),
          });
          return create(ListSchedulesResponseSchema, { schedules: page.schedules.map(scheduleToPb), nextPageToken: page.nextPageToken });
        }),
      );
    },

    async updateSchedule(req, ctx) {
      const principal = principalOf(ctx);
      return runRpc(
        runtime,
        ctx,
        Effect.gen(function* () {
          const v = new Violations();
          const scheduleId = req.schedule?.scheduleId ?? "";
          if (scheduleId === "") v.add("schedule.schedule_id", "is required");
          const paths: UpdatePath[] = [];
          for (const p of req.updateMask?.paths ?? []) {
            if (p === "*") continue;
            const d = maskPaths[p];
            if (d === undefined) v.add("update_mask", `"${p}" is not an updatable field (spec, action, policy, their fields, state.remaining_runs)`);
            else paths.push(d);
          }
          const schedule = scheduleInputFromPb(req.schedule, v);
          if (v.list.length > 0) return yield* invalid(v);
          const s = yield* Scheduler;
          const updated = yield* s.update(principal, { scheduleId, schedule, paths, etag: req.etag, requestId: req.requestId });
          return create(UpdateScheduleResponseSchema, { schedule: scheduleToPb(updated) });
        }),
      );
    },

    async deleteSchedule(req, ctx) {
      const principal = principalOf(ctx);
      return runRpc(
        runtime,
        ctx,
        Effect.gen(function* () {
          yield* required(req.scheduleId, "schedule_id");
          const s = yield* Scheduler;
          yield* s.remove(principal, { scheduleId: req.scheduleId, etag: req.etag, allowMissing: req.allowMissing, requestId: req.requestId });
          return create(DeleteScheduleResponseSchema, {});
        }),
      );
    },

    async pauseSchedule(req, ctx) {
      const principal = principalOf(ctx);
      return runRpc(
        runtime,
        ctx,
        Effect.gen(function* () {
          yield* required(req.scheduleId, "schedule_id");
          const s = yield* Scheduler;
          return create(PauseScheduleResponseSchema, { schedule: scheduleToPb(yield* s.pause(principal, req.scheduleId, req.note, req.requestId)) });
        }),
      );
    },

    async resumeSchedule(req, ctx) {
      const principal = principalOf(ctx);
      return runRpc(
        runtime,
        ctx,
        Effect.gen(function* () {
          yield* required(req.scheduleId, "schedule_id");
          const s = yield* Scheduler;
          return create(ResumeScheduleResponseSchema, { schedule: scheduleToPb(yield* s.resume(principal, req.scheduleId, req.note, req.requestId)) });
        }),
      );
    },

    async triggerSchedule(req, ctx) {
      const principal = principalOf(ctx);
      return runRpc(
        runtime,
        ctx,
        Effect.gen(function* () {
          yield* required(req.scheduleId, "schedule_id");
          const v = new Violations();
          const overlap = overlapFromPb(req.overlapPolicy, "overlap_policy", v, undefined);
          if (v.list.length > 0) return yield* invalid(v);
          const s = yield* Scheduler;
          const t = yield* s.trigger(principal, { scheduleId: req.scheduleId, overlap, requestId: req.requestId });
          const outcome = t.outcome === "STARTED" ? PbTriggerOutcome.STARTED : t.outcome === "BUFFERED" ? PbTriggerOutcome.BUFFERED : PbTriggerOutcome.SKIPPED;
          return create(TriggerScheduleResponseSchema, { outcome, run: runToPb(t.run) });
        }),
      );
    },

    async backfillSchedule(req, ctx) {
      const principal = principalOf(ctx);
      return runRpc(
        runtime,
        ctx,
        Effect.gen(function* () {
          const v = new Violations();
          if (req.scheduleId === "") v.add("schedule_id", "is required");
          const startTime = timestampToMs(req.startTime, "start_time", v);
          const endTime = timestampToMs(req.endTime, "end_time", v);
          if (req.startTime === undefined) v.add("start_time", "is required");
          if (req.endTime === undefined) v.add("end_time", "is required");
          const overlap = overlapFromPb(req.overlapPolicy, "overlap_policy", v, undefined);
          if (v.list.length > 0 || startTime === undefined || endTime === undefined) return yield* invalid(v);
          const s = yield* Scheduler;
          const times = yield* s.backfill(principal, { scheduleId: req.scheduleId, startTime, endTime, overlap, requestId: req.requestId });
          return create(BackfillScheduleResponseSchema, { nominalTimes: times.map((t) => timestampFromMs(t)) });
        }),
      );
    },

    async listScheduleMatchingTimes(req, ctx) {
      const principal = principalOf(ctx);
      return runRpc(
        runtime,
        ctx,
        Effect.gen(function* () {
          const v = new Violations();
          const startTime = timestampToMs(req.startTime, "start_time", v);
          const endTime = timestampToMs(req.endTime, "end_time", v);
          let source: { readonly scheduleId: string } | { readonly spec: ScheduleSpec } | undefined;
          if (req.source.case === "scheduleId") {
            if (req.source.value === "") v.add("schedule_id", "is required");
            source = { scheduleId: req.source.value };
          } else if (req.source.case === "spec") source = { spec: specFromPb(req.source.value, "spec", v) };
          else v.add("source", "one of schedule_id or spec is required");
          if (v.list.length > 0 || source === undefined) return yield* invalid(v);
          const s = yield* Scheduler;
          const out = yield* s.matchingTimes(principal, { source, startTime, endTime, maxTimes: req.maxTimes });
          return create(ListScheduleMatchingTimesResponseSchema, { matchingTimes: out.times.map((t) => timestampFromMs(t)), truncated: out.truncated });
        }),
      );
    },

    async *watchSchedule(req, ctx): AsyncGenerator<WatchScheduleResponse> {
      const principal = principalOf(ctx);
      yield* runStream(
        runtime,
        ctx,
        Stream.unwrap(
          Effect.gen(function* () {
            yield* required(req.scheduleId, "schedule_id");
            const s = yield* Scheduler;
            return s.watch(principal, req.scheduleId).pipe(Stream.map((e) => create(WatchScheduleResponseSchema, { event: eventToPb(e, s.view) })));
          }),
        ),
      );
    },
  } satisfies ServiceImpl<typeof ScheduleService>;
}
