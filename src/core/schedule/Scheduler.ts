/**
 * The scheduler: schedules' lifecycle (create … delete, pause/resume, trigger, backfill) and the
 * timing engine that fires them.
 *
 * Timing engine. One background fiber asks the store for the schedules due now
 * (`ScheduleStore.due`: the memory store's min-heap, an index on next_fire_time in SQL), fires
 * them, then sleeps (Effect Clock, so TestClock drives it in tests) until the earliest next fire
 * time, a local change (create, update, resume) or the poll interval — whichever comes first.
 * The poll bounds how late a change made by another instance is seen. No timer per schedule, no
 * scan per tick.
 *
 * Exactly once. Firing a schedule is (1) `advance`: a compare-and-set that moves its cursor
 * (nextFireTime) past every due slot and, in the same transaction, inserts one claim per slot to
 * run, keyed `cron:<slot>` (unique per schedule); (2) dispatching each claim: overlap policy,
 * then Orchestrator.start as the owner; (3) settling the claim. Only one instance's advance wins
 * a slot. A claim is leased: if its instance dies before settling it, another instance (or this
 * one after a restart) takes the claim over once the lease has expired, first checking the
 * execution store for an execution of that schedule and nominal time (the process may have died
 * after starting it and before settling) — so the slot runs once, late, rather than never or
 * twice.
 *
 * Overlap. A schedule's active runs (`running`) and waiting slots (`buffer`) are part of its
 * record, written with the same compare-and-set, so every instance sees them. A running entry of
 * another instance counts until its execution is seen ended in the store (or, for a start that
 * never completed, until the lease passes). Runs end in the process that started them; that
 * process starts the next buffered slot. CANCEL_OTHER cancels the active runs: those of this
 * process directly, those of another instance by asking it through the InstanceBus (it cancels
 * the run; the run's end there starts the slot that waits).
 *
 * Catch-up. Slots that passed while no instance ran (or the engine lagged) are found when the
 * schedule next comes due: those within policy.catchup_window run oldest first, through the
 * overlap policy; older ones are counted missed and audited (SCHEDULE_MISSED), not run. Slots
 * that pass while the schedule is paused are neither run nor counted (the contract's choice):
 * pausing clears the cursor and resuming restarts it from the next slot after now. Counting is
 * bounded (200,000 slots scanned per catch-up): beyond that, older slots are skipped uncounted.
 *
 * WatchSchedule streams this process's events and, through the InstanceBus, those of the other
 * instances sharing the store (best effort: one lost while the bus reconnects is not replayed;
 * AuditService.Subscribe has them all, durably).
 */
import { createHash, randomUUID } from "node:crypto";
import {
  Cause,
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  FiberId,
  FiberSet,
  Layer,
  Option,
  PubSub,
  Queue,
  Schedule,
  Stream,
} from "effect";
import { AuditLogger, type AuditEntry } from "../../ports/AuditLogger.js";
import { InstanceBus } from "../../ports/InstanceBus.js";
import { ScheduleStore, type ClaimSettlement } from "../../ports/ScheduleStore.js";
import {
  BackfillTooLarge,
  EtagMismatch,
  InvalidInput,
  PermissionDenied,
  ScheduleAlreadyExists,
  ScheduleNotFound,
  ScheduleRequestIdReused,
  type FieldViolation,
  type StartError,
  type StoreError,
} from "../errors.js";
import { isTerminal, type ErrorDetail, type ExecutionRecord, type Principal } from "../model.js";
import { decodeInput, OperationRegistry, permissionOf } from "../operation.js";
import { Orchestrator } from "../Orchestrator.js";
import { OrchestratorConfig } from "../OrchestratorConfig.js";
import { decodePageToken, encodePageToken, resolvePageSize } from "../paging.js";
import { hasPermission } from "../permissions.js";
import {
  cronClaimId,
  etagOf,
  maxBackfillSlots,
  maxBuffered,
  maxRecentRuns,
  runRequestId,
  type BufferedRun,
  type Claim,
  type OverlapPolicy,
  type RunKind,
  type RunningRun,
  type ScheduleAction,
  type ScheduleEvent,
  type ScheduleEventKind,
  type ScheduleFilter,
  type SchedulePolicy,
  type ScheduleRecord,
  type ScheduleRun,
  type ScheduleSpec,
  type ScheduleState,
} from "./model.js";
import { compileSpec, jitterFor, type CompiledSpec, type InvalidScheduleSpec } from "./spec.js";
import { checkSpec, validateAction, validateNote, validatePolicy, validateRequestId, validateScheduleId, validateState } from "./validate.js";

export interface SchedulerSettings {
  /** This process, in claims and running entries. Random per process unless set. */
  readonly instanceId: string;
  /** How long a claimed slot stays with its instance before another may take it over. */
  readonly leaseMs: number;
  /** Longest sleep of the engine: how soon another instance's changes are seen. */
  readonly pollMs: number;
  /** Due schedules fetched per query. */
  readonly batch: number;
  /** How long a request_id is remembered. */
  readonly requestTtlMs: number;
  /**
   * Dispatches of claimed slots this process may have under way at once (a jittered slot counts
   * once its time has come, not while it waits for it). At this many the engine claims no more
   * until half of them have finished: an instance over capacity leaves due slots in the store
   * (for other instances, or for itself later, through the catch-up window) instead of piling up
   * dispatches, and memory, without bound.
   */
  readonly maxDispatching: number;
}

export class SchedulerConfig extends Context.Tag("orchestrator/SchedulerConfig")<SchedulerConfig, SchedulerSettings>() {
  static layer(overrides: Partial<SchedulerSettings> = {}) {
    return Layer.sync(SchedulerConfig, () => ({
      instanceId: randomUUID(),
      leaseMs: 30_000,
      pollMs: 1_000,
      batch: 512,
      requestTtlMs: 24 * 3_600_000,
      maxDispatching: 5_000,
      ...overrides,
    }));
  }
}

/** A schedule's definition as a caller gives it (defaults already applied by the transport). */
export interface ScheduleInput {
  readonly spec: ScheduleSpec;
  readonly action: ScheduleAction;
  readonly policy: SchedulePolicy;
  readonly state: ScheduleState;
}

/** A schedule with what a reader sees beyond the record. */
export interface ScheduleView {
  readonly record: ScheduleRecord;
  /** Up to 10 next cron fire times (nominal). */
  readonly nextRunTimes: ReadonlyArray<number>;
}

export type UpdatePath =
  | "spec"
  | "action"
  | "policy"
  | `spec.${keyof ScheduleSpec}`
  | `action.${keyof ScheduleAction}`
  | `policy.${keyof SchedulePolicy}`
  | "state.remainingRuns";

export interface UpdateCommand {
  readonly scheduleId: string;
  readonly schedule: ScheduleInput;
  /** Domain paths (the transport maps update_mask to these); empty = spec, action and policy. */
  readonly paths: ReadonlyArray<UpdatePath>;
  readonly etag?: string | undefined;
  readonly requestId?: string | undefined;
}

export type TriggerOutcome = "STARTED" | "BUFFERED" | "SKIPPED";

/** What dispatching one slot did. */
type Dispatched =
  | { readonly _tag: "Started"; readonly run: ScheduleRun }
  | { readonly _tag: "Buffered"; readonly run: ScheduleRun }
  | { readonly _tag: "Skipped"; readonly run: ScheduleRun }
  | { readonly _tag: "StartFailed"; readonly run: ScheduleRun; readonly error: StartError }
  /** Its lease was taken over (this process lagged): the new holder dispatches it. */
  | { readonly _tag: "TakenOver" }
  | { readonly _tag: "Gone" };

type Decision =
  | { readonly _tag: "Start"; readonly slot: BufferedRun }
  | {
      readonly _tag: "Buffer";
      /** Runs CANCEL_OTHER stops: in this process (`here`), or in another instance (told through the bus). */
      readonly cancel: ReadonlyArray<{ readonly executionId: string; readonly here: boolean }>;
      readonly dropped: ReadonlyArray<BufferedRun>;
    }
  | { readonly _tag: "Skip" }
  /** Decided before, by the instance this claim was taken over from: it runs or waits already. */
  | { readonly _tag: "Already" }
  | { readonly _tag: "Gone" };

/** The error type a run that could not start records (as Execute's status reasons name them). */
const startErrorTypes: Readonly<Record<StartError["_tag"], string>> = {
  PermissionDenied: "PERMISSION_DENIED",
  PolicyDenied: "POLICY_DENIED",
  RateLimited: "RATE_LIMITED",
  BudgetExhausted: "TOKEN_BUDGET_EXHAUSTED",
  OperationNotFound: "OPERATION_NOT_FOUND",
  InvalidInput: "INVALID_ARGUMENT",
  RateLimiterUnavailable: "RATE_LIMITER_UNAVAILABLE",
  StoreError: "STORE_UNAVAILABLE",
  RequestIdReused: "REQUEST_ID_REUSED",
};

const startErrorDetail = (e: StartError): ErrorDetail => ({
  type: startErrorTypes[e._tag],
  message: e.message,
  retryable: e._tag === "RateLimited" || e._tag === "RateLimiterUnavailable" || e._tag === "StoreError",
});

const stableJson = (v: unknown): string => {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${stableJson(o[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
};
const fingerprint = (method: string, v: unknown) => createHash("sha256").update(method).update(stableJson(v)).digest("base64url");

/** Limits the work of counting slots missed during a long downtime. */
const maxSlotsScanned = 200_000;
/** Individual MISSED watch events per catch-up (the count and the audit row cover the rest). */
const maxMissedEvents = 100;

/** InstanceBus channels: schedule events (JSON ScheduleEvent), CANCEL_OTHER requests (CancelMessage). */
const eventsChannel = "orchestrator_schedule_events";
const cancelChannel = "orchestrator_schedule_cancel";

interface CancelMessage {
  readonly scheduleId: string;
  readonly executionId: string;
  readonly reason: string;
}

/** An error's message as other instances get it: bounded, so that an event fits a bus message. */
const maxRemoteMessage = 1_000;

/** An event as sent to the other instances: error messages cut to maxRemoteMessage, details left out. */
const forOtherInstances = (e: ScheduleEvent): ScheduleEvent => {
  if (e.kind._tag === "Snapshot" || e.kind._tag === "Deleted" || e.kind.run.error === undefined) return e;
  const { details: _details, ...error } = e.kind.run.error;
  const message = error.message.length > maxRemoteMessage ? `${error.message.slice(0, maxRemoteMessage)}…` : error.message;
  return { ...e, kind: { ...e.kind, run: { ...e.kind.run, error: { ...error, message } } } };
};

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;

/** A bus message back into an event or a cancel request: undefined unless it is JSON of that shape. */
const decodeMessage =
  <A>(is: (v: Record<string, unknown>) => boolean) =>
  (text: string): A | undefined => {
    try {
      const v: unknown = JSON.parse(text);
      return isRecord(v) && is(v) ? (v as A) : undefined;
    } catch {
      return undefined;
    }
  };
const decodeEvent = decodeMessage<ScheduleEvent>((v) => typeof v["scheduleId"] === "string" && typeof v["time"] === "number" && isRecord(v["kind"]) && typeof v["kind"]["_tag"] === "string");
const decodeCancel = decodeMessage<CancelMessage>((v) => typeof v["scheduleId"] === "string" && typeof v["executionId"] === "string" && typeof v["reason"] === "string");

export class Scheduler extends Effect.Service<Scheduler>()("orchestrator/Scheduler", {
  scoped: Effect.gen(function* () {
    const settings = yield* SchedulerConfig;
    const core = yield* OrchestratorConfig;
    const store = yield* ScheduleStore;
    const audit = yield* AuditLogger;
    const registry = yield* OperationRegistry;
    const orchestrator = yield* Orchestrator;
    const me = settings.instanceId;
    const fibers = yield* FiberSet.make();
    const events = yield* PubSub.sliding<ScheduleEvent>(4096);
    const wake = yield* Queue.sliding<void>(1);
    /** Runs of this process: localKey(scheduleId, claimId) → executionId (undefined while starting). */
    const local = new Map<string, string | undefined>();
    // Claim ids are unique per schedule only (cron:<slot>).
    const localKey = (scheduleId: string, claimId: string) => `${scheduleId}\u0000${claimId}`;
    /**
     * Claims this process holds and has not finished dispatching → the lease it holds (its
     * token). When this process falls behind by more than a lease, its own sweeper finds such a
     * claim expired: it then passes the new lease to the pending dispatch instead of dispatching
     * the claim a second time.
     */
    const inflight = new Map<string, number>();
    const hold = (c: Claim) => void inflight.set(localKey(c.scheduleId, c.claimId), c.leaseUntil);
    /** Dispatches under way (see maxDispatching). */
    let dispatching = 0;
    /** Set while the engine waits for the dispatches under way to drop to half of maxDispatching. */
    let drained: Deferred.Deferred<void> | undefined;
    /** A dispatch of a held claim, counted while under way; the claim is let go after it. */
    const underWay = <A, E>(scheduleId: string, claimId: string, body: Effect.Effect<A, E>) =>
      Effect.acquireUseRelease(
        Effect.sync(() => void dispatching++),
        () => body,
        () =>
          Effect.sync(() => {
            dispatching--;
            if (drained !== undefined && dispatching <= settings.maxDispatching / 2) {
              Deferred.unsafeDone(drained, Exit.void);
              drained = undefined;
            }
          }),
      ).pipe(Effect.ensuring(Effect.sync(() => void inflight.delete(localKey(scheduleId, claimId)))));
    /** Renews this process's lease on a claim; false when another holder took it over. */
    const confirm = (c: Claim) =>
      Effect.gen(function* () {
        const key = localKey(c.scheduleId, c.claimId);
        const token = inflight.get(key) ?? c.leaseUntil;
        const t = yield* now;
        // A lease with most of its time left cannot have been taken over (a takeover waits for it
        // to expire) and renewing it would buy little: the usual case, a slot dispatched just
        // after its claim (or after its jitter, which the lease covers), costs no write here.
        if (inflight.has(key) && token - t >= settings.leaseMs * 0.8) return true;
        const renewed = t + settings.leaseMs;
        const ok = yield* store.confirmClaim(c.scheduleId, c.claimId, me, token, renewed);
        if (ok && inflight.has(key)) inflight.set(key, renewed);
        return ok;
      });
    const compiled = new Map<string, { readonly key: string; readonly spec: CompiledSpec }>();
    /**
     * Each schedule as this process last read or wrote it (bounded): the firing path's first
     * guess instead of a read. Every write is a compare-and-set on rev, so a stale guess (another
     * instance or request changed the row) costs one failed write and a fresh read, never a
     * wrong write; a guess that leads to no write at all is re-checked with a read (modifyFrom).
     */
    const recent = new Map<string, ScheduleRecord>();
    const remember = (r: ScheduleRecord) => {
      recent.delete(r.scheduleId);
      if (recent.size >= 10_000) recent.delete(recent.keys().next().value!);
      recent.set(r.scheduleId, r);
    };
    const read = (scheduleId: string) =>
      Effect.tap(store.get(scheduleId), (found) => (Option.isSome(found) ? remember(found.value) : void recent.delete(scheduleId)));
    /** The remembered record, else a read. */
    const recall = (scheduleId: string) => {
      const r = recent.get(scheduleId);
      return r === undefined ? read(scheduleId) : Effect.succeed(Option.some(r));
    };

    const now = Clock.currentTimeMillis;
    const signal = Queue.offer(wake, undefined).pipe(Effect.asVoid);
    // Instances sharing the store hear of each other's fires (WatchSchedule) and CANCEL_OTHER
    // requests through the bus; alone (no bus), events stay in this process.
    const bus = Option.getOrUndefined(yield* Effect.serviceOption(InstanceBus));
    const publish = (scheduleId: string, kind: ScheduleEventKind) =>
      Effect.flatMap(now, (time) => {
        const event: ScheduleEvent = { scheduleId, time, kind };
        const local = PubSub.publish(events, event);
        return bus === undefined ? local : Effect.zipRight(local, bus.send(eventsChannel, JSON.stringify(forOtherInstances(event))));
      });

    /** The compiled spec of a stored schedule (cached by its spec). */
    const compiledEither = (r: ScheduleRecord): Either.Either<CompiledSpec, InvalidScheduleSpec> => {
      const key = JSON.stringify(r.spec);
      const hit = compiled.get(r.scheduleId);
      if (hit !== undefined && hit.key === key) return Either.right(hit.spec);
      const c = compileSpec(r.spec);
      if (Either.isLeft(c)) return c;
      if (compiled.size >= 10_000) compiled.delete(compiled.keys().next().value!);
      compiled.set(r.scheduleId, { key, spec: c.right });
      return c;
    };
    /** A stored spec was valid when saved (fireDue pauses one that no longer compiles). */
    const compiledOf = (r: ScheduleRecord): CompiledSpec => Either.getOrThrow(compiledEither(r));

    const authorize = (principal: Principal, permission: string, scheduleId?: string, operation?: string) =>
      Effect.gen(function* () {
        const allowed = hasPermission(principal, permission, core.roles);
        yield* audit.log({
          type: allowed ? "AUTH_SUCCEEDED" : "AUTH_DENIED",
          principal,
          ...(scheduleId === undefined ? {} : { scheduleId }),
          ...(operation === undefined ? {} : { operation }),
          decision: allowed ? "ALLOW" : "DENY",
          details: { permission },
        });
        if (!allowed) return yield* new PermissionDenied({ subject: principal.subject, permission });
      });

    const auditSchedule = (r: ScheduleRecord, entry: Omit<AuditEntry, "scheduleId" | "operation">) =>
      audit.log({ ...entry, scheduleId: r.scheduleId, operation: r.action.operation, principal: entry.principal ?? r.owner });

    /**
     * Read-modify-write with compare-and-set on rev; `f` returns the new record (or none) and a
     * result. Starts from `start` (a record this process just read or wrote) when given, so the
     * common case costs one write and no read; returns the result and the record as stored.
     */
    const modifyFrom = <A>(
      scheduleId: string,
      start: ScheduleRecord | undefined,
      f: (r: ScheduleRecord, now: number) => { readonly record?: ScheduleRecord | undefined; readonly result: A },
      /** Settled with the write (one transaction), or alone when there is nothing to write. */
      settle?: ClaimSettlement,
    ) =>
      Effect.gen(function* () {
        const settleAlone = settle === undefined ? Effect.void : store.settleClaim(scheduleId, settle.claimId, settle.outcome, settle.executionId);
        let known = start;
        let guessed = false;
        if (known === undefined) {
          known = recent.get(scheduleId);
          guessed = known !== undefined;
        }
        for (;;) {
          let r: ScheduleRecord;
          if (known !== undefined) r = known;
          else {
            const found = yield* read(scheduleId);
            if (Option.isNone(found)) {
              yield* settleAlone;
              return Option.none<readonly [A, ScheduleRecord]>();
            }
            r = found.value;
          }
          known = undefined;
          const out = f(r, yield* now);
          if (out.record === undefined) {
            if (!guessed) {
              yield* settleAlone;
              return Option.some([out.result, r] as const);
            }
            guessed = false; // nothing to write: decide again on what is stored
            continue;
          }
          guessed = false;
          const written = { ...out.record, rev: r.rev + 1 };
          if (yield* store.replace(written, r.rev, settle)) {
            remember(written);
            return Option.some([out.result, written] as const);
          }
        }
      });
    const modify = <A>(scheduleId: string, f: (r: ScheduleRecord, now: number) => { readonly record?: ScheduleRecord | undefined; readonly result: A }) =>
      Effect.map(modifyFrom(scheduleId, undefined, f), Option.map(([a]) => a));

    const nextRunTimes = (r: ScheduleRecord): number[] => {
      if (r.state.paused || r.nextFireTime === undefined) return [];
      const limit = Math.min(10, r.state.remainingRuns ?? 10);
      const c = compiledOf(r);
      const out: number[] = [];
      for (let t: number | undefined = r.nextFireTime; t !== undefined && out.length < limit; t = c.next(t)) out.push(t);
      return out;
    };
    const view = (r: ScheduleRecord): ScheduleView => ({ record: r, nextRunTimes: nextRunTimes(r) });

    const getVisible = (principal: Principal, scheduleId: string) =>
      Effect.gen(function* () {
        const found = yield* store.get(scheduleId);
        // Another tenant's schedule is indistinguishable from a missing one.
        if (Option.isNone(found) || found.value.owner.tenant !== principal.tenant) return yield* new ScheduleNotFound({ scheduleId });
        return found.value;
      });

    /** Runs `run` once per (principal, request_id); a repeat returns the stored response. */
    const idempotent = <A, E, R>(
      principal: Principal,
      requestId: string | undefined,
      method: string,
      request: unknown,
      run: Effect.Effect<A, E, R>,
    ): Effect.Effect<A, E | ScheduleRequestIdReused | StoreError | InvalidInput, R> =>
      Effect.gen(function* () {
        const bad = validateRequestId(requestId);
        if (bad.length > 0) return yield* new InvalidInput({ violations: bad });
        if (requestId === undefined || requestId === "") return yield* run;
        const fp = fingerprint(method, request);
        const t = yield* now;
        const found = yield* store.findRequest(principal.subject, requestId);
        if (Option.isSome(found) && t - found.value.time < settings.requestTtlMs) {
          if (found.value.fingerprint !== fp) return yield* new ScheduleRequestIdReused({ requestId, method });
          return JSON.parse(found.value.response) as A;
        }
        const a = yield* run;
        yield* store.saveRequest(principal.subject, requestId, { fingerprint: fp, response: JSON.stringify(a ?? null), time: t }, t - settings.requestTtlMs);
        return a;
      });

    /** Everything about an action that needs the registry: the operation, its input, the owner's right to run it. */
    const checkAction = (owner: Principal, action: ScheduleAction, prefix: string, scheduleId: string) =>
      Effect.gen(function* () {
        const bad = validateAction(action, prefix, core.maxTimeoutMs, core.maxInputBytes);
        if (bad.length > 0) return yield* new InvalidInput({ violations: bad });
        const op = yield* registry.get(action.operation);
        yield* authorize(owner, permissionOf(op), scheduleId, op.name);
        yield* decodeInput(op, action.input).pipe(
          Effect.mapError((e) => new InvalidInput({ violations: e.violations.map((v) => ({ ...v, field: `${prefix}.${v.field}` })) })),
        );
      });

    const checkDefinition = (s: ScheduleInput, prefix: string) =>
      Effect.gen(function* () {
        const v: FieldViolation[] = [...validatePolicy(s.policy, `${prefix}.policy`), ...validateState(s.state, `${prefix}.state`)];
        const spec = checkSpec(s.spec, `${prefix}.spec`);
        if (Either.isLeft(spec)) v.push(...spec.left);
        if (v.length > 0) return yield* new InvalidInput({ violations: v });
        return Either.getOrThrow(spec);
      });

    // ---- firing -------------------------------------------------------------------------------

    /** Running entries whose run is over: ended in the store, or a start that never completed. */
    const staleRunning = (r: ScheduleRecord, t: number) =>
      Effect.gen(function* () {
        const stale = new Set<string>();
        for (const e of r.running) {
          if (e.instanceId === me) {
            if (!local.has(localKey(r.scheduleId, e.claimId))) stale.add(entryKey(e)); // this process no longer runs it
          } else if (e.executionId === undefined) {
            if (t - e.since > settings.leaseMs) stale.add(entryKey(e));
          } else if (!orchestrator.runsHere(e.executionId)) {
            // (One that runs here is active: awaitEnd would wait for its end.)
            const rec = yield* orchestrator.awaitEnd(e.executionId);
            if (rec === undefined || isTerminal(rec.state)) stale.add(entryKey(e));
          }
        }
        return stale;
      });
    /**
     * A running entry as staleRunning judged it. An entry changed since (it got its execution, or
     * another instance took its claim over) is another entry: judged stale as it was, it is not
     * dropped as it is now.
     */
    const entryKey = (e: RunningRun) => `${e.claimId}\u0000${e.instanceId}\u0000${e.executionId ?? ""}`;
    /** This process's placeholder for a claim whose execution it has not created. */
    const placeholderOf = (claimId: string) => (e: RunningRun) => e.claimId === claimId && e.instanceId === me && e.executionId === undefined;

    const decide = (r: ScheduleRecord, slot: BufferedRun, overlap: OverlapPolicy, stale: ReadonlySet<string>, t: number): { record: ScheduleRecord; decision: Decision } => {
      const running = r.running.filter((e) => !stale.has(entryKey(e)));
      // A claim taken over may have been decided already, by the instance that held it: it runs,
      // or it waits in the buffer. It is not decided a second time.
      if (running.some((e) => e.claimId === slot.claimId)) return { record: { ...r, running }, decision: { _tag: "Already" } };
      const waiting = r.buffer.some((b) => b.claimId === slot.claimId);
      const placeholder = (s: BufferedRun): RunningRun => ({ claimId: s.claimId, nominalTime: s.nominalTime, kind: s.kind, instanceId: me, since: t });
      if (running.length === 0) {
        // Slots may already wait (their starter died): the oldest goes first; this one queues
        // after them, or keeps its place.
        const [head, ...rest] = waiting ? r.buffer : [...r.buffer, slot];
        return { record: { ...r, running: [placeholder(head!)], buffer: rest }, decision: { _tag: "Start", slot: head! } };
      }
      const cancelAll = () => running.flatMap((e) => (e.executionId !== undefined ? [{ executionId: e.executionId, here: e.instanceId === me }] : []));
      // (CANCEL_OTHER: the instance that buffered it may have died before it cancelled: again.)
      if (waiting) return { record: { ...r, running }, decision: { _tag: "Buffer", cancel: overlap === "CANCEL_OTHER" ? cancelAll() : [], dropped: [] } };
      switch (overlap) {
        case "ALLOW_ALL":
          return { record: { ...r, running: [...running, placeholder(slot)] }, decision: { _tag: "Start", slot } };
        case "SKIP":
          return { record: { ...r, running, overlapSkippedCount: r.overlapSkippedCount + 1 }, decision: { _tag: "Skip" } };
        case "BUFFER_ONE":
          return r.buffer.length >= 1
            ? { record: { ...r, running, overlapSkippedCount: r.overlapSkippedCount + 1 }, decision: { _tag: "Skip" } }
            : { record: { ...r, running, buffer: [slot] }, decision: { _tag: "Buffer", cancel: [], dropped: [] } };
        case "BUFFER_ALL":
          return r.buffer.length >= maxBuffered
            ? { record: { ...r, running, overlapSkippedCount: r.overlapSkippedCount + 1 }, decision: { _tag: "Skip" } }
            : { record: { ...r, running, buffer: [...r.buffer, slot] }, decision: { _tag: "Buffer", cancel: [], dropped: [] } };
        case "CANCEL_OTHER": {
          // The newest slot wins: earlier waiting slots are dropped (counted as skipped).
          const cancel = cancelAll();
          return {
            record: { ...r, running, buffer: [slot], overlapSkippedCount: r.overlapSkippedCount + r.buffer.length },
            decision: { _tag: "Buffer", cancel, dropped: r.buffer },
          };
        }
      }
    };

    const dropPlaceholder = (scheduleId: string, claimId: string) =>
      modify(scheduleId, (cur) => {
        const mine = placeholderOf(claimId);
        return { record: cur.running.some(mine) ? { ...cur, running: cur.running.filter((e) => !mine(e)) } : undefined, result: undefined };
      });
    /**
     * Whether this process still holds the claim it is dispatching: false once another instance
     * has taken it over (this one stalled past the lease). A slot started from the buffer holds
     * no lease (its claim is settled BUFFERED): true.
     */
    const stillHeld = (scheduleId: string, claimId: string) => {
      const token = inflight.get(localKey(scheduleId, claimId));
      return token === undefined ? Effect.succeed(true) : store.confirmClaim(scheduleId, claimId, me, token, token);
    };

    /** Starts one slot whose running placeholder is written; records the outcome. */
    const startRun = (scheduleId: string, slot: BufferedRun, written?: ScheduleRecord): Effect.Effect<Dispatched, StoreError> =>
      Effect.gen(function* () {
        local.set(localKey(scheduleId, slot.claimId), undefined);
        // Fresh unless given: the action run and the runs left come from it.
        const found = written === undefined ? yield* read(scheduleId) : Option.some(written);
        if (Option.isNone(found)) {
          local.delete(localKey(scheduleId, slot.claimId));
          return { _tag: "Gone" } as const;
        }
        const r = found.value;
        const a = r.action;
        if (slot.kind === "CRON" && r.state.remainingRuns === 0) {
          // Out of runs while it waited: dropped.
          local.delete(localKey(scheduleId, slot.claimId));
          yield* modify(scheduleId, (cur) => ({ record: { ...cur, running: cur.running.filter((e) => e.claimId !== slot.claimId) }, result: undefined }));
          yield* store.settleClaim(scheduleId, slot.claimId, "SKIPPED", undefined);
          return { _tag: "Skipped", run: { nominalTime: slot.nominalTime, kind: slot.kind } } as const;
        }
        const fence = runRequestId(scheduleId, slot.claimId);
        const exit = yield* orchestrator
          .submit({
            operation: a.operation,
            input: a.input,
            principal: r.owner,
            retry: a.retry,
            timeoutMs: a.timeoutMs,
            attemptTimeoutMs: a.attemptTimeoutMs,
            labels: a.labels,
            scheduleId,
            nominalTime: slot.nominalTime,
            requestId: fence,
          })
          .pipe(Effect.exit);
        const t = yield* now;
        const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none();
        /** The run is another instance's: this process's mark and placeholder go; what waits may start. */
        const handOver = (why: string) =>
          Effect.gen(function* () {
            local.delete(localKey(scheduleId, slot.claimId));
            yield* dropPlaceholder(scheduleId, slot.claimId);
            yield* Effect.logWarning(`schedule ${scheduleId}: slot ${new Date(slot.nominalTime).toISOString()} ${why}`);
            yield* pumpLater(scheduleId);
            return { _tag: "TakenOver" } as const;
          });
        // The claim's execution may exist: an instance that took this claim over while this one
        // stalled past the lease (or that this one took it over from) started it first.
        let existing: string | undefined;
        if (Exit.isSuccess(exit)) existing = exit.value.deduplicated ? exit.value.executionId : undefined;
        else if (Option.isSome(failure) && failure.value._tag === "RequestIdReused") existing = failure.value.executionId;
        else {
          // Refused before its insert (policy, limits: a run already in flight may be the reason).
          const found = yield* orchestrator.findByRequestId(r.owner, fence).pipe(Effect.orElseSucceed(() => undefined));
          existing = found?.executionId;
        }
        if (existing !== undefined) {
          // Settled with that run, in case its starter died before settling it.
          yield* store.settleClaim(scheduleId, slot.claimId, "STARTED", existing);
          return yield* handOver(`was already started (execution ${existing}); not started twice`);
        }
        if (Exit.isFailure(exit) && !(yield* stillHeld(scheduleId, slot.claimId))) {
          // Refused (a rate limit, say) after another instance took the claim over.
          return yield* handOver("was taken over while this instance was starting it; its refusal here is dropped");
        }
        if (Exit.isFailure(exit)) {
          local.delete(localKey(scheduleId, slot.claimId));
          if (Option.isNone(failure)) yield* Effect.logError("schedule: starting a run failed", exit.cause);
          const error: ErrorDetail = Option.isSome(failure)
            ? startErrorDetail(failure.value)
            : { type: "INTERNAL", message: "the run could not be started", retryable: false };
          const run: ScheduleRun = { nominalTime: slot.nominalTime, kind: slot.kind, error };
          yield* dropPlaceholder(scheduleId, slot.claimId);
          yield* store.settleClaim(scheduleId, slot.claimId, "FAILED", undefined);
          yield* auditSchedule(r, { type: "SCHEDULE_SKIPPED", decision: "DENY", reason: error.message, details: { nominal_time: slot.nominalTime, kind: slot.kind, error_type: error.type } });
          yield* publish(scheduleId, { _tag: "Skipped", run });
          yield* pumpLater(scheduleId);
          return Option.isSome(failure) ? ({ _tag: "StartFailed", run, error: failure.value } as const) : ({ _tag: "Skipped", run } as const);
        }
        const executionId = exit.value.executionId;
        local.set(localKey(scheduleId, slot.claimId), executionId);
        const run: ScheduleRun = { nominalTime: slot.nominalTime, kind: slot.kind, actualTime: t, executionId, state: exit.value.accepted.state };
        yield* modifyFrom(scheduleId, r, (cur) => {
          const remaining = slot.kind === "CRON" && cur.state.remainingRuns !== undefined ? Math.max(0, cur.state.remainingRuns - 1) : cur.state.remainingRuns;
          return {
            record: {
              ...cur,
              // The entry is this instance's now, whoever wrote the placeholder (a taker that lost the start).
              running: cur.running.some((e) => e.claimId === slot.claimId)
                ? cur.running.map((e) => (e.claimId === slot.claimId ? { ...e, instanceId: me, executionId } : e))
                : [...cur.running, { claimId: slot.claimId, nominalTime: slot.nominalTime, kind: slot.kind, instanceId: me, since: t, executionId }],
              runCount: cur.runCount + 1,
              recentRuns: [run, ...cur.recentRuns].slice(0, maxRecentRuns),
              state: { ...cur.state, remainingRuns: remaining },
              ...(remaining === 0 ? { nextFireTime: undefined } : {}),
            },
            result: undefined,
          };
        }, { claimId: slot.claimId, outcome: "STARTED", executionId });
        yield* audit.log({
          type: "SCHEDULE_FIRED",
          principal: r.owner,
          operation: a.operation,
          scheduleId,
          executionId,
          details: { nominal_time: slot.nominalTime, actual_time: t, kind: slot.kind },
        });
        yield* publish(scheduleId, { _tag: "Fired", run });
        yield* watchEnd(scheduleId, slot, executionId);
        return { _tag: "Started", run } as const;
      }).pipe(
        Effect.onExit((exit) => {
          // Failed or interrupted on the way (a store error, a caller gone): this process's mark
          // must not outlive it, or its placeholder would count as active for good.
          const key = localKey(scheduleId, slot.claimId);
          if (Exit.isSuccess(exit) || !local.has(key)) return Effect.void;
          const executionId = local.get(key);
          if (executionId === undefined) return Effect.sync(() => void local.delete(key));
          // Started but not recorded: its end still clears the mark and the placeholder.
          return watchEnd(scheduleId, slot, executionId);
        }),
      );
    const watchEnd = (scheduleId: string, slot: BufferedRun, executionId: string) =>
      FiberSet.run(fibers, orchestrator.awaitEnd(executionId).pipe(Effect.flatMap((rec) => runEnded(scheduleId, slot, executionId, rec)))).pipe(Effect.asVoid);

    /** A run of this process ended: update the record, maybe pause, start what waits. */
    const runEnded = (scheduleId: string, slot: BufferedRun, executionId: string, rec: ExecutionRecord | undefined) =>
      Effect.gen(function* () {
        local.delete(localKey(scheduleId, slot.claimId));
        const state = rec?.state ?? "INTERRUPTED";
        const failed = state === "FAILED" || state === "TIMED_OUT";
        const ended = yield* modify(scheduleId, (cur) => {
          const pause = failed && cur.policy.pauseOnFailure && !cur.state.paused;
          return {
            record: {
              ...cur,
              running: cur.running.filter((e) => e.claimId !== slot.claimId),
              recentRuns: cur.recentRuns.map((x) => (x.executionId === executionId ? { ...x, state, ...(rec?.error === undefined ? {} : { error: rec.error }) } : x)),
              ...(pause
                ? {
                    state: { ...cur.state, paused: true, note: `paused: execution ${executionId} ended ${state}` },
                    nextFireTime: undefined,
                    version: cur.version + 1,
                    updateTime: Math.max(cur.updateTime, rec?.endTime ?? cur.updateTime),
                  }
                : {}),
            },
            result: { pause, record: cur, waiting: cur.buffer.length > 0 },
          };
        });
        if (Option.isNone(ended)) return;
        const run: ScheduleRun = {
          nominalTime: slot.nominalTime,
          kind: slot.kind,
          executionId,
          state,
          ...(rec?.startTime === undefined ? {} : { actualTime: rec.startTime }),
          ...(rec?.error === undefined ? {} : { error: rec.error }),
        };
        yield* publish(scheduleId, { _tag: "RunEnded", run });
        if (ended.value.pause) {
          yield* auditSchedule(ended.value.record, { type: "SCHEDULE_PAUSED", reason: `execution ${executionId} ended ${state}`, details: { pause_on_failure: true, execution_id: executionId } });
        }
        if (ended.value.waiting) yield* pump(scheduleId);
      }).pipe(Effect.catchAll((e) => Effect.logError("schedule: recording a run's end failed", e)));

    /** Starts the oldest waiting slot when nothing runs. */
    const pump = (scheduleId: string): Effect.Effect<void, StoreError> =>
      Effect.gen(function* () {
        const found = yield* store.get(scheduleId);
        if (Option.isNone(found) || found.value.buffer.length === 0) return;
        const t0 = yield* now;
        const stale = yield* staleRunning(found.value, t0);
        const picked = yield* modifyFrom(scheduleId, found.value, (cur, t) => {
          const running = cur.running.filter((e) => !stale.has(entryKey(e)));
          if (running.length > 0 || cur.buffer.length === 0) return { record: running.length === cur.running.length ? undefined : { ...cur, running }, result: undefined };
          const [head, ...rest] = cur.buffer;
          return {
            record: { ...cur, running: [{ claimId: head!.claimId, nominalTime: head!.nominalTime, kind: head!.kind, instanceId: me, since: t }], buffer: rest },
            result: head,
          };
        });
        if (Option.isSome(picked) && picked.value[0] !== undefined) yield* startRun(scheduleId, picked.value[0], picked.value[1]);
      });
    const pumpLater = (scheduleId: string) => FiberSet.run(fibers, pump(scheduleId).pipe(Effect.catchAll((e) => Effect.logError("schedule: pump failed", e))));

    /** Dispatches one claimed slot through the overlap policy. */
    const dispatch = (claim: Claim, takenOver: boolean, hint?: ScheduleRecord): Effect.Effect<Dispatched, StoreError> =>
      Effect.gen(function* () {
        const slot: BufferedRun = { claimId: claim.claimId, nominalTime: claim.nominalTime, kind: claim.kind };
        if (!(yield* confirm(claim))) return { _tag: "TakenOver" } as const;
        if (takenOver) {
          // Its instance may have died after starting the execution but before settling.
          const existing = yield* findExecution(claim);
          if (existing !== undefined) {
            yield* store.settleClaim(claim.scheduleId, claim.claimId, "STARTED", existing);
            return { _tag: "Started", run: { nominalTime: claim.nominalTime, kind: claim.kind, executionId: existing } } as const;
          }
        }
        const found = hint === undefined ? yield* recall(claim.scheduleId) : Option.some(hint);
        if (Option.isNone(found)) {
          yield* store.settleClaim(claim.scheduleId, claim.claimId, "SKIPPED", undefined);
          return { _tag: "Gone" } as const;
        }
        // Entries added after this read are not in `stale`: they count as active (the safe side).
        const stale = yield* staleRunning(found.value, yield* now);
        const decided = yield* modifyFrom(claim.scheduleId, found.value, (cur, t) => {
          const out = decide(cur, slot, claim.overlap ?? cur.policy.overlap, stale, t);
          return { record: out.record, result: out };
        });
        if (Option.isNone(decided)) {
          yield* store.settleClaim(claim.scheduleId, claim.claimId, "SKIPPED", undefined);
          return { _tag: "Gone" } as const;
        }
        return yield* act(claim, decided.value[0].decision, decided.value[0].record, decided.value[1]);
      }).pipe((body) => underWay(claim.scheduleId, claim.claimId, body)) as Effect.Effect<Dispatched, StoreError>;

    /**
     * Carries out the overlap decision for a claimed slot, written in `r` (as stored: `written`,
     * when known).
     */
    const act = (claim: Claim, d: Decision, r: ScheduleRecord, written: ScheduleRecord | undefined): Effect.Effect<Dispatched, StoreError> =>
      Effect.gen(function* () {
        const slot: BufferedRun = { claimId: claim.claimId, nominalTime: claim.nominalTime, kind: claim.kind };
        const run: ScheduleRun = { nominalTime: claim.nominalTime, kind: claim.kind };
        switch (d._tag) {
          case "Start": {
            if (d.slot.claimId !== slot.claimId) {
              // An older waiting slot started instead; this one waits.
              yield* store.settleClaim(claim.scheduleId, claim.claimId, "BUFFERED", undefined);
              yield* publish(claim.scheduleId, { _tag: "Buffered", run });
              yield* startRun(claim.scheduleId, d.slot, written);
              return { _tag: "Buffered", run } as const;
            }
            // The lease was renewed a moment ago (above): no second renewal before the start.
            return yield* startRun(claim.scheduleId, slot, written);
          }
          case "Buffer": {
            yield* store.settleClaim(claim.scheduleId, claim.claimId, "BUFFERED", undefined);
            yield* publish(claim.scheduleId, { _tag: "Buffered", run });
            for (const dropped of d.dropped) {
              yield* auditSchedule(r, { type: "SCHEDULE_SKIPPED", reason: "overlap policy CANCEL_OTHER: a newer slot replaced it", details: { nominal_time: dropped.nominalTime, kind: dropped.kind, overlap_policy: "CANCEL_OTHER" } });
              yield* publish(claim.scheduleId, { _tag: "Skipped", run: { nominalTime: dropped.nominalTime, kind: dropped.kind } });
            }
            for (const { executionId, here } of d.cancel) {
              const reason = `cancelled by schedule ${claim.scheduleId}: overlap policy CANCEL_OTHER`;
              if (here) yield* FiberSet.run(fibers, orchestrator.cancel(r.owner, executionId, reason).pipe(Effect.ignore));
              // Another instance runs it: that instance cancels it when told (its end starts what waits).
              else if (bus !== undefined) yield* bus.send(cancelChannel, JSON.stringify({ scheduleId: claim.scheduleId, executionId, reason } satisfies CancelMessage));
            }
            return { _tag: "Buffered", run } as const;
          }
          case "Skip": {
            yield* store.settleClaim(claim.scheduleId, claim.claimId, "SKIPPED", undefined);
            const overlap = claim.overlap ?? r.policy.overlap;
            yield* auditSchedule(r, { type: "SCHEDULE_SKIPPED", reason: `overlap policy ${overlap}: an earlier run is still active`, details: { nominal_time: claim.nominalTime, kind: claim.kind, overlap_policy: overlap } });
            yield* publish(claim.scheduleId, { _tag: "Skipped", run });
            return { _tag: "Skipped", run } as const;
          }
          case "Already":
            return { _tag: "TakenOver" } as const;
          case "Gone":
            return { _tag: "Gone" } as const;
        }
      }) as Effect.Effect<Dispatched, StoreError>;

    /**
     * The execution a claim has started, if any: the one with the claim's request id (the fence);
     * a cron slot's run started before runs had one is found by its nominal time.
     */
    const findExecution = (claim: Claim) =>
      Effect.gen(function* () {
        const r = yield* store.get(claim.scheduleId);
        if (Option.isNone(r)) return undefined;
        const fenced = yield* orchestrator.findByRequestId(r.value.owner, runRequestId(claim.scheduleId, claim.claimId));
        if (fenced !== undefined || claim.kind !== "CRON") return fenced?.executionId;
        const page = yield* orchestrator
          .list(r.value.owner, { filter: { scheduleId: claim.scheduleId }, order: "CREATE_TIME_DESCENDING", pageSize: 1000 })
          .pipe(Effect.orElseSucceed(() => ({ executions: [] as ReadonlyArray<ExecutionRecord>, nextPageToken: "" })));
        return page.executions.find((e) => e.requestId === undefined && e.nominalTime === claim.nominalTime)?.executionId;
      });

    /**
     * A stored spec that no longer compiles (e.g. a time zone the runtime stopped knowing) cannot
     * fire: the schedule is paused, saying why, rather than failing on every pass of the engine.
     */
    const pauseBroken = (r: ScheduleRecord, e: InvalidScheduleSpec) =>
      Effect.gen(function* () {
        const note = `paused: ${e.field} is no longer valid (${e.reason}); update the spec, then resume`;
        yield* Effect.logError(`schedule ${r.scheduleId}: ${note}`);
        const paused = yield* modifyFrom(r.scheduleId, r, (cur, t) =>
          Either.isRight(compiledEither(cur)) // updated meanwhile
            ? { result: undefined }
            : { record: { ...cur, state: { ...cur.state, paused: true, note }, nextFireTime: undefined, version: cur.version + 1, updateTime: t }, result: undefined },
        );
        if (Option.isSome(paused)) yield* auditSchedule(paused.value[1], { type: "SCHEDULE_PAUSED", reason: note, details: { field: e.field } });
      });

    /** A due schedule: advance its cursor past every due slot, claiming those to run; then dispatch them. */
    const fireDue = (scheduleId: string, t: number) =>
      Effect.gen(function* () {
        for (;;) {
          // Always read here: instances that share the store race for each slot on equal terms
          // (starting from a remembered record would let the last winner keep every schedule).
          const found = yield* read(scheduleId);
          if (Option.isNone(found)) return;
          const r = found.value;
          if (r.nextFireTime === undefined || r.nextFireTime > t) return;
          const compiledSpec = compiledEither(r);
          if (Either.isLeft(compiledSpec)) return yield* pauseBroken(r, compiledSpec.left);
          const c = compiledSpec.right;
          const runnable: number[] = [];
          const missed: number[] = [];
          let missedCount = 0;
          let cursor: number | undefined = r.nextFireTime;
          let scanned = 0;
          while (cursor !== undefined && cursor <= t && scanned < maxSlotsScanned) {
            const chunk = c.between(cursor, t, 1000);
            for (const s of chunk.times) {
              if (t - s > r.policy.catchupWindowMs) {
                missedCount++;
                if (missed.length < maxMissedEvents) missed.push(s);
              } else runnable.push(s);
            }
            scanned += chunk.times.length;
            const last = chunk.times.at(-1);
            cursor = chunk.truncated && last !== undefined ? c.next(last) : undefined;
          }
          // After a very long downtime, slots beyond the scan are skipped uncounted.
          const remaining = r.state.remainingRuns;
          const toRun = remaining === undefined ? runnable : runnable.slice(0, remaining);
          const next = remaining === 0 ? undefined : c.next(t);
          const jitterMax = r.spec.jitterMs ?? 0;
          const claims: Claim[] = toRun.map((s) => ({
            scheduleId,
            claimId: cronClaimId(s),
            nominalTime: s,
            kind: "CRON",
            instanceId: me,
            leaseUntil: t + settings.leaseMs + jitterMax,
          }));
          // The usual fire, one unjittered slot dispatched at once: its overlap decision goes into
          // the write that claims it (one write, not two). Several slots (a catch-up) and jittered
          // ones decide each when dispatched: a decision stored ahead of a slot's dispatch would
          // outlive a stall or crash before it, and the instance taking the claim over would
          // decide again on top of it.
          const only = jitterMax === 0 && claims.length === 1 ? claims[0] : undefined;
          // Entries added after this read are not in `stale`: they count as active (the safe side).
          const stale = only === undefined ? new Set<string>() : yield* staleRunning(r, t);
          const base: ScheduleRecord = { ...r, nextFireTime: next, missedCount: r.missedCount + missedCount };
          const decided = only === undefined ? undefined : decide(base, { claimId: only.claimId, nominalTime: only.nominalTime, kind: only.kind }, only.overlap ?? base.policy.overlap, stale, t);
          const advanced = { ...(decided?.record ?? base), rev: r.rev + 1 };
          if (!(yield* store.advance(advanced, r.rev, claims))) continue; // changed under us: re-read
          remember(advanced);
          for (const claim of claims) hold(claim);
          if (missedCount > 0) {
            yield* auditSchedule(r, {
              type: "SCHEDULE_MISSED",
              reason: `${missedCount} slot(s) older than the catch-up window of ${r.policy.catchupWindowMs} ms were not run`,
              details: { count: missedCount, first: missed[0] ?? null, last: missed.at(-1) ?? null },
            });
            for (const s of missed) yield* publish(scheduleId, { _tag: "Missed", run: { nominalTime: s, kind: "CRON" } });
          }
          if (only !== undefined && decided !== undefined) {
            // The lease was taken a moment ago: no renewal before the start.
            yield* underWay(scheduleId, only.claimId, act(only, decided.decision, decided.record, advanced)).pipe(
              Effect.catchAll((e) => Effect.logError("schedule: dispatch failed", e)),
            );
            return;
          }
          let hint: ScheduleRecord | undefined = advanced; // the record as just stored, for the first dispatch
          for (const claim of claims) {
            const after = c.next(claim.nominalTime);
            const delay = claim.nominalTime + jitterFor(scheduleId, claim.nominalTime, jitterMax, after) - t;
            const go = dispatch(claim, false, delay > 0 ? undefined : hint).pipe(Effect.catchAll((e) => Effect.logError("schedule: dispatch failed", e)));
            // Jittered slots wait in their own fiber; the lease covers the wait.
            if (delay > 0) yield* FiberSet.run(fibers, Effect.zipRight(Effect.sleep(Duration.millis(delay)), go));
            else yield* go;
            hint = undefined;
          }
          if (r.buffer.length > 0 && claims.length === 0) yield* pumpLater(scheduleId);
          return;
        }
      });

    // ---- the engine ---------------------------------------------------------------------------

    const engine = Effect.gen(function* () {
      for (;;) {
        if (dispatching >= settings.maxDispatching) {
          const t0 = yield* now;
          yield* Effect.logWarning(
            `scheduler: ${dispatching} claimed slots are being dispatched; claiming no more until half of them are done (this instance is over capacity)`,
          );
          // Checked again where the Deferred is made (no other fiber runs in between): dispatches
          // may have drained meanwhile, and then no letGo would ever complete it.
          yield* Effect.suspend(() => (dispatching <= settings.maxDispatching / 2 ? Effect.void : Deferred.await((drained = Deferred.unsafeMake<void>(FiberId.none)))));
          yield* Effect.logInfo(`scheduler: claiming again after ${(yield* now) - t0} ms`);
        }
        const t = yield* now;
        const ids = yield* store.due(t, settings.batch);
        let failed = false;
        const fire = (id: string) =>
          fireDue(id, t).pipe(Effect.catchAll((e) => Effect.zipRight(Effect.sync(() => void (failed = true)), Effect.logError(`schedule ${id}: firing failed`, e))));
        yield* Effect.forEach(ids, fire, { concurrency: 16, discard: true });
        if (failed) {
          // What could not be fired is still due: try again after a pause, not at once (a store
          // that reads but cannot write, e.g. a full disk, would otherwise spin the engine).
          yield* Effect.raceFirst(Effect.sleep(Duration.millis(Math.min(1_000, settings.pollMs))), Queue.take(wake));
          continue;
        }
        if (ids.length >= settings.batch) continue;
        const earliest = yield* store.earliest();
        const t2 = yield* now;
        const wait = Option.match(earliest, { onNone: () => settings.pollMs, onSome: (e) => Math.min(Math.max(0, e - t2), settings.pollMs) });
        if (wait > 0) yield* Effect.raceFirst(Effect.sleep(Duration.millis(wait)), Queue.take(wake));
        else yield* Queue.poll(wake);
      }
    });
    yield* engine.pipe(
      Effect.catchAllCause((cause) => Effect.logError("scheduler engine failed; restarting", cause).pipe(Effect.zipRight(Effect.sleep(Duration.seconds(1))))),
      Effect.forever,
      Effect.forkScoped,
    );

    // Claims whose instance died (or stalled past its lease) are taken over and dispatched.
    yield* Effect.gen(function* () {
      const t = yield* now;
      const taken = yield* store.takeExpiredClaims(t, me, t + settings.leaseMs, 100);
      for (const claim of taken) {
        const key = localKey(claim.scheduleId, claim.claimId);
        if (inflight.has(key)) {
          // Still being dispatched here (this process lagged past its lease): hand it the new lease.
          inflight.set(key, claim.leaseUntil);
          continue;
        }
        hold(claim);
        yield* Effect.logWarning(`schedule ${claim.scheduleId}: taking over slot ${new Date(claim.nominalTime).toISOString()} from an expired lease`);
        yield* dispatch(claim, true).pipe(Effect.catchAll((e) => Effect.logError("schedule: dispatch failed", e)));
      }
    }).pipe(
      Effect.catchAll((e) => Effect.logError("schedule: lease sweep failed", e)),
      Effect.repeat(Schedule.spaced(Duration.millis(Math.max(100, Math.floor(settings.leaseMs / 3))))),
      Effect.forkScoped,
    );

    // What the other instances sharing the store send: their events, to this process's watchers;
    // CANCEL_OTHER requests for runs of this process, carried out as the schedule's owner.
    if (bus !== undefined) {
      yield* bus.receive(eventsChannel).pipe(
        Stream.runForEach((text) => {
          const e = decodeEvent(text);
          return e === undefined ? Effect.logWarning("schedule: an unreadable event from another instance was ignored") : PubSub.publish(events, e);
        }),
        Effect.forkScoped,
      );
      yield* bus.receive(cancelChannel).pipe(
        Stream.runForEach((text) =>
          Effect.gen(function* () {
            const c = decodeCancel(text);
            // Only a run of that schedule, live here: a message naming another execution is not obeyed.
            if (c === undefined || !orchestrator.runsHere(c.executionId, c.scheduleId)) return;
            const r = yield* store.get(c.scheduleId).pipe(Effect.orElseSucceed(() => Option.none<ScheduleRecord>()));
            if (Option.isNone(r)) return;
            yield* FiberSet.run(fibers, orchestrator.cancel(r.value.owner, c.executionId, c.reason).pipe(Effect.ignore));
          }),
        ),
        Effect.forkScoped,
      );
    }

    // ---- the API ------------------------------------------------------------------------------

    const create = (principal: Principal, cmd: { readonly scheduleId: string; readonly schedule: ScheduleInput; readonly requestId?: string | undefined }) =>
      idempotent(
        principal,
        cmd.requestId,
        "CreateSchedule",
        cmd,
        Effect.gen(function* () {
          yield* authorize(principal, "schedules:write", cmd.scheduleId === "" ? undefined : cmd.scheduleId);
          const scheduleId = cmd.scheduleId === "" ? `s-${randomUUID().replaceAll("-", "").slice(0, 20)}` : cmd.scheduleId;
          const idBad = validateScheduleId(scheduleId, "schedule_id");
          if (idBad.length > 0) return yield* new InvalidInput({ violations: idBad });
          const c = yield* checkDefinition(cmd.schedule, "schedule");
          yield* checkAction(principal, cmd.schedule.action, "schedule.action", scheduleId);
          const t = yield* now;
          const s = cmd.schedule;
          const record: ScheduleRecord = {
            scheduleId,
            spec: s.spec,
            action: s.action,
            policy: s.policy,
            state: s.state,
            owner: principal,
            createTime: t,
            updateTime: t,
            version: 1,
            rev: 1,
            nextFireTime: s.state.paused || s.state.remainingRuns === 0 ? undefined : c.next(t),
            runCount: 0,
            missedCount: 0,
            overlapSkippedCount: 0,
            recentRuns: [],
            running: [],
            buffer: [],
          };
          if (!(yield* store.insert(record))) return yield* new ScheduleAlreadyExists({ scheduleId });
          remember(record);
          yield* auditSchedule(record, { type: "SCHEDULE_CREATED", principal, details: { cron: [...s.spec.cronExpressions], time_zone: s.spec.timeZone, paused: s.state.paused } });
          yield* signal;
          return view(record);
        }),
      );

    const checkEtag = (r: ScheduleRecord, etag: string | undefined) =>
      etag === undefined || etag === "" || etag === etagOf(r) ? Effect.void : Effect.fail(new EtagMismatch({ scheduleId: r.scheduleId, etag, current: etagOf(r) }));

    const applyPaths = (cur: ScheduleRecord, input: ScheduleInput, paths: ReadonlyArray<UpdatePath>) => {
      let spec = cur.spec;
      let action = cur.action;
      let policy = cur.policy;
      let state = cur.state;
      for (const p of paths.length === 0 ? (["spec", "action", "policy"] as const) : paths) {
        if (p === "spec") spec = input.spec;
        else if (p === "action") action = input.action;
        else if (p === "policy") policy = input.policy;
        else if (p === "state.remainingRuns") state = { ...state, remainingRuns: input.state.remainingRuns };
        else {
          const [head, field] = p.split(".") as [string, string];
          if (head === "spec") spec = { ...spec, [field]: (input.spec as unknown as Record<string, unknown>)[field] };
          else if (head === "action") action = { ...action, [field]: (input.action as unknown as Record<string, unknown>)[field] };
          else policy = { ...policy, [field]: (input.policy as unknown as Record<string, unknown>)[field] };
        }
      }
      return { spec, action, policy, state };
    };

    const update = (principal: Principal, cmd: UpdateCommand) =>
      idempotent(
        principal,
        cmd.requestId,
        "UpdateSchedule",
        cmd,
        Effect.gen(function* () {
          yield* authorize(principal, "schedules:write", cmd.scheduleId);
          const cur0 = yield* getVisible(principal, cmd.scheduleId);
          yield* checkEtag(cur0, cmd.etag);
          const next0 = applyPaths(cur0, cmd.schedule, cmd.paths);
          yield* checkDefinition(next0, "schedule");
          if (JSON.stringify(next0.action) !== JSON.stringify(cur0.action)) {
            // The owner runs it; the caller must be allowed to run it too.
            yield* checkAction(cur0.owner, next0.action, "schedule.action", cur0.scheduleId);
            if (principal.subject !== cur0.owner.subject) yield* checkAction(principal, next0.action, "schedule.action", cur0.scheduleId);
          }
          for (;;) {
            const cur = yield* getVisible(principal, cmd.scheduleId);
            yield* checkEtag(cur, cmd.etag);
            const n = applyPaths(cur, cmd.schedule, cmd.paths);
            const t = yield* now;
            const c = Either.getOrThrow(compileSpec(n.spec));
            const specChanged = JSON.stringify(n.spec) !== JSON.stringify(cur.spec);
            const runsChanged = n.state.remainingRuns !== cur.state.remainingRuns;
            const nextFireTime =
              n.state.paused || n.state.remainingRuns === 0 ? undefined : specChanged || runsChanged || cur.nextFireTime === undefined ? c.next(t) : cur.nextFireTime;
            const record: ScheduleRecord = { ...cur, ...n, nextFireTime, version: cur.version + 1, rev: cur.rev + 1, updateTime: t };
            if (yield* store.replace(record, cur.rev)) {
              remember(record);
              yield* auditSchedule(record, { type: "SCHEDULE_UPDATED", principal, details: { paths: cmd.paths.length === 0 ? ["spec", "action", "policy"] : [...cmd.paths] } });
              yield* signal;
              return view(record);
            }
          }
        }),
      );

    const setPaused = (principal: Principal, scheduleId: string, paused: boolean, note: string, requestId: string | undefined) =>
      idempotent(
        principal,
        requestId,
        paused ? "PauseSchedule" : "ResumeSchedule",
        { scheduleId, note },
        Effect.gen(function* () {
          yield* authorize(principal, "schedules:write", scheduleId);
          const bad = validateNote(note, "note");
          if (bad.length > 0) return yield* new InvalidInput({ violations: bad });
          yield* getVisible(principal, scheduleId);
          const text = note === "" ? (paused ? "paused" : "resumed") : note;
          const out = yield* modify(scheduleId, (cur, t) => {
            const nextFireTime = paused || cur.state.remainingRuns === 0 ? undefined : cur.state.paused || cur.nextFireTime === undefined ? compiledOf(cur).next(t) : cur.nextFireTime;
            const record: ScheduleRecord = { ...cur, state: { ...cur.state, paused, note: text }, nextFireTime, version: cur.version + 1, updateTime: t };
            return { record, result: { ...record, rev: cur.rev + 1 } };
          });
          if (Option.isNone(out)) return yield* new ScheduleNotFound({ scheduleId });
          yield* auditSchedule(out.value, { type: paused ? "SCHEDULE_PAUSED" : "SCHEDULE_RESUMED", principal, reason: text });
          yield* signal;
          return view(out.value);
        }),
      );

    const remove = (principal: Principal, cmd: { readonly scheduleId: string; readonly etag?: string | undefined; readonly allowMissing: boolean; readonly requestId?: string | undefined }) =>
      idempotent(
        principal,
        cmd.requestId,
        "DeleteSchedule",
        cmd,
        Effect.gen(function* () {
          yield* authorize(principal, "schedules:write", cmd.scheduleId);
          const found = yield* getVisible(principal, cmd.scheduleId).pipe(
            Effect.map(Option.some),
            Effect.catchTag("ScheduleNotFound", (e) => (cmd.allowMissing ? Effect.succeed(Option.none<ScheduleRecord>()) : Effect.fail(e))),
          );
          if (Option.isNone(found)) return null;
          yield* checkEtag(found.value, cmd.etag);
          if (!(yield* store.remove(cmd.scheduleId)) && !cmd.allowMissing) return yield* new ScheduleNotFound({ scheduleId: cmd.scheduleId });
          compiled.delete(cmd.scheduleId);
          recent.delete(cmd.scheduleId);
          yield* auditSchedule(found.value, { type: "SCHEDULE_DELETED", principal, details: { dropped_buffered: found.value.buffer.length } });
          yield* publish(cmd.scheduleId, { _tag: "Deleted" });
          return null;
        }),
      );

    const trigger = (principal: Principal, cmd: { readonly scheduleId: string; readonly overlap?: OverlapPolicy | undefined; readonly requestId?: string | undefined }) =>
      idempotent(
        principal,
        cmd.requestId,
        "TriggerSchedule",
        cmd,
        Effect.gen(function* () {
          yield* authorize(principal, "schedules:write", cmd.scheduleId);
          yield* getVisible(principal, cmd.scheduleId);
          const t = yield* now;
          const claim: Claim = { scheduleId: cmd.scheduleId, claimId: `trigger:${randomUUID()}`, nominalTime: t, kind: "TRIGGER", overlap: cmd.overlap, instanceId: me, leaseUntil: t + settings.leaseMs };
          yield* store.claim(claim);
          hold(claim);
          const d = yield* dispatch(claim, false);
          switch (d._tag) {
            case "Gone":
              return yield* new ScheduleNotFound({ scheduleId: cmd.scheduleId });
            case "StartFailed":
              return yield* Effect.fail(d.error);
            case "Started":
              return { outcome: "STARTED" as TriggerOutcome, run: d.run };
            case "Buffered":
              return { outcome: "BUFFERED" as TriggerOutcome, run: d.run };
            case "TakenOver":
              return { outcome: "BUFFERED" as TriggerOutcome, run: { nominalTime: t, kind: "TRIGGER" as RunKind } };
            case "Skipped":
              return { outcome: "SKIPPED" as TriggerOutcome, run: d.run };
          }
        }),
      );

    const backfill = (
      principal: Principal,
      cmd: { readonly scheduleId: string; readonly startTime: number; readonly endTime: number; readonly overlap?: OverlapPolicy | undefined; readonly requestId?: string | undefined },
    ) =>
      idempotent(
        principal,
        cmd.requestId,
        "BackfillSchedule",
        cmd,
        Effect.gen(function* () {
          yield* authorize(principal, "schedules:write", cmd.scheduleId);
          const t = yield* now;
          const v: FieldViolation[] = [];
          if (cmd.endTime <= cmd.startTime) v.push({ field: "end_time", description: "must be after start_time" });
          if (cmd.endTime > t) v.push({ field: "end_time", description: "must not be in the future" });
          if (v.length > 0) return yield* new InvalidInput({ violations: v });
          const r = yield* getVisible(principal, cmd.scheduleId);
          const slots = compiledOf(r).between(cmd.startTime, cmd.endTime - 1, maxBackfillSlots); // end exclusive
          if (slots.truncated) return yield* new BackfillTooLarge({ slotCount: maxBackfillSlots + 1, max: maxBackfillSlots });
          const batch = randomUUID();
          const claims: Claim[] = slots.times.map((s) => ({
            scheduleId: cmd.scheduleId,
            claimId: `backfill:${batch}:${s}`,
            nominalTime: s,
            kind: "BACKFILL" as RunKind,
            overlap: cmd.overlap ?? "BUFFER_ALL",
            instanceId: me,
            leaseUntil: t + settings.leaseMs,
          }));
          for (const c of claims) {
            yield* store.claim(c);
            hold(c);
          }
          // Queued in order, in the background: the call returns at once.
          yield* FiberSet.run(
            fibers,
            Effect.forEach(claims, (c) => dispatch(c, false), { discard: true }).pipe(
              Effect.catchAll((e) => Effect.logError("schedule: backfill failed; its remaining slots are taken over once their leases pass", e)),
              // Held claims not dispatched (a failure, or shutdown) go back to the sweeper, which would
              // otherwise take them for this process's own and never dispatch them.
              Effect.ensuring(Effect.sync(() => claims.forEach((c) => inflight.delete(localKey(c.scheduleId, c.claimId))))),
            ),
          );
          return [...slots.times];
        }),
      );

    const matchingTimes = (
      principal: Principal,
      q: { readonly source: { readonly scheduleId: string } | { readonly spec: ScheduleSpec }; readonly startTime?: number | undefined; readonly endTime?: number | undefined; readonly maxTimes: number },
    ) =>
      Effect.gen(function* () {
        yield* authorize(principal, "schedules:read", "scheduleId" in q.source ? q.source.scheduleId : undefined);
        const v: FieldViolation[] = [];
        if (q.maxTimes < 0 || !Number.isInteger(q.maxTimes)) v.push({ field: "max_times", description: "must be a whole number ≥ 0" });
        const start = q.startTime ?? (yield* now);
        if (q.endTime !== undefined && q.endTime <= start) v.push({ field: "end_time", description: "must be after start_time" });
        if (v.length > 0) return yield* new InvalidInput({ violations: v });
        let c: CompiledSpec;
        if ("scheduleId" in q.source) c = compiledOf(yield* getVisible(principal, q.source.scheduleId));
        else {
          const checked = checkSpec(q.source.spec, "spec");
          if (Either.isLeft(checked)) return yield* new InvalidInput({ violations: checked.left });
          c = checked.right;
        }
        const max = q.maxTimes === 0 ? 100 : Math.min(q.maxTimes, 1000);
        return c.between(start, q.endTime === undefined ? Number.MAX_SAFE_INTEGER : q.endTime - 1, max); // end exclusive
      });

    const list = (principal: Principal, q: { readonly operation?: string | undefined; readonly paused?: boolean | undefined; readonly labels?: Readonly<Record<string, string>> | undefined; readonly pageSize: number; readonly pageToken: string }) =>
      Effect.gen(function* () {
        yield* authorize(principal, "schedules:read");
        const pageSize = yield* resolvePageSize(q.pageSize);
        const filter: ScheduleFilter = { tenant: principal.tenant, operation: q.operation, paused: q.paused, labels: q.labels };
        const after = yield* decodePageToken<string>(q.pageToken, filter);
        const page = yield* store.list(filter, pageSize, after);
        return { schedules: page.items.map(view), nextPageToken: page.next === undefined ? "" : encodePageToken(page.next, filter) };
      });

    const get = (principal: Principal, scheduleId: string) =>
      Effect.gen(function* () {
        yield* authorize(principal, "schedules:read", scheduleId);
        return view(yield* getVisible(principal, scheduleId));
      });

    /** Snapshot first, then this schedule's events; ends when it is deleted. */
    const watch = (principal: Principal, scheduleId: string) =>
      Stream.unwrapScoped(
        Effect.gen(function* () {
          yield* authorize(principal, "schedules:read", scheduleId);
          const sub = yield* PubSub.subscribe(events);
          const r = yield* getVisible(principal, scheduleId);
          const t = yield* now;
          const snapshot: ScheduleEvent = { scheduleId, time: t, kind: { _tag: "Snapshot", schedule: r } };
          return Stream.concat(
            Stream.succeed(snapshot),
            Stream.fromQueue(sub).pipe(
              Stream.filter((e) => e.scheduleId === scheduleId),
              // A deletion counts if the store agrees: one heard late from another instance may be a
              // previous schedule's of the same id (clocks can differ, so not by its time).
              Stream.filterEffect((e) =>
                e.kind._tag !== "Deleted"
                  ? Effect.succeed(true)
                  : Effect.map(store.get(scheduleId).pipe(Effect.orElseSucceed(() => Option.none<ScheduleRecord>())), (cur) => !(Option.isSome(cur) && cur.value.createTime === r.createTime)),
              ),
              Stream.takeWhile((e) => e.kind._tag !== "Deleted"),
            ),
          );
        }),
      );

    return {
      create,
      get,
      list,
      update,
      remove,
      pause: (principal: Principal, scheduleId: string, note: string, requestId?: string) => setPaused(principal, scheduleId, true, note, requestId),
      resume: (principal: Principal, scheduleId: string, note: string, requestId?: string) => setPaused(principal, scheduleId, false, note, requestId),
      trigger,
      backfill,
      matchingTimes,
      watch,
      /** next_run_times etc. of a record (the transport uses it for snapshots). */
      view,
      /** Runs of this process still going (tests, metrics). */
      localRuns: () => local.size,
      /** Dispatches of claimed slots under way in this process (see maxDispatching). */
      dispatching: () => dispatching,
    };
  }),
}) {}
