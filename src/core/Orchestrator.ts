/**
 * The orchestrator core: may this principal run this operation now, and run it well.
 *
 * Pipeline, in order, each step audited: authorize → validate → idempotency → policy →
 * operation rate limit → run with retry → record the outcome. Nothing is counted for a
 * principal (policy, limits) before it is authorized, and a replayed request_id counts nothing.
 *
 * Each execution runs in its own fiber owned by this service's scope: closing the runtime
 * interrupts them (they end INTERRUPTED); cancelling one interrupts its running attempt or its
 * backoff sleep, the operation's finalizers run, and it ends CANCELLED. Only running
 * executions are held in memory; everything else is in the ExecutionStore.
 */
import { randomUUID } from "node:crypto";
import {
  Cause,
  Clock,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberMap,
  Option,
  PubSub,
  Queue,
  Schedule,
  Scope,
  Stream,
} from "effect";
import { AuditLogger, type AuditEntry } from "../ports/AuditLogger.js";
import { redactInput } from "./audit/redact.js";
import { ExecutionStore } from "../ports/ExecutionStore.js";
import { PolicyService, type PolicyContext } from "../ports/PolicyService.js";
import { RateLimiter } from "../ports/RateLimiter.js";
import { enforceLimits, executionLimits } from "./limits.js";
import * as CoreMetrics from "./metrics.js";
import {
  AttemptFailed,
  BudgetExhausted,
  Cancelled,
  DeadlineExceeded,
  ExecutionAlreadyEnded,
  ExecutionNotFound,
  Interrupted,
  InvalidInput,
  PermissionDenied,
  RequestIdReused,
  RetriesExhausted,
  type FieldViolation,
  type RunError,
  type StartError,
  type StoreError,
} from "./errors.js";
import {
  isTerminal,
  isTerminalEvent,
  scheduleRunRequestIdPrefix,
  type AttemptRecord,
  type ErrorDetail,
  type ExecutionCursor,
  type ExecutionEvent,
  type ExecutionEventKind,
  type ExecutionFilter,
  type ExecutionOrder,
  type ExecutionRecord,
  type JsonObject,
  type JsonValue,
  type Principal,
  type RetryPolicyInput,
  type TokenUsage,
} from "./model.js";
import { decodeInput, OperationRegistry, permissionOf, type ClassifiedError, type ExecutionContext, type Operation } from "./operation.js";
import { OrchestratorConfig } from "./OrchestratorConfig.js";
import { decodePageToken, encodePageToken, resolvePageSize } from "./paging.js";
import { hasPermission } from "./permissions.js";
import { makeRetryStepper, resolveRetryPolicy, validateRetryPolicy } from "./retry.js";
import { MinHeap } from "./min-heap.js";

/** Everything needed to start one execution. */
export interface ExecuteCommand {
  readonly operation: string;
  readonly input: JsonObject;
  /** Derived from the caller's credential by the transport; never from the request. */
  readonly principal: Principal;
  /** Idempotency key, scoped to principal.subject. */
  readonly requestId?: string | undefined;
  readonly retry?: RetryPolicyInput | undefined;
  readonly timeoutMs?: number | undefined;
  readonly attemptTimeoutMs?: number | undefined;
  readonly labels?: Readonly<Record<string, string>> | undefined;
  readonly scheduleId?: string | undefined;
  readonly nominalTime?: number | undefined;
  readonly traceId?: string | undefined;
}

/** The in-process form of execute's options. */
export interface ExecuteOptions {
  readonly principal: Principal;
  readonly retry?: RetryPolicyInput;
  readonly timeout?: Duration.DurationInput;
  readonly attemptTimeout?: Duration.DurationInput;
  /** Aborting it cancels the execution. */
  readonly signal?: AbortSignal;
  readonly idempotencyKey?: string;
  readonly labels?: Readonly<Record<string, string>>;
}

export interface ListExecutionsQuery {
  readonly filter: ExecutionFilter;
  readonly order?: ExecutionOrder;
  readonly pageSize?: number;
  readonly pageToken?: string;
}

/** How an execution ended, with the operation's own error when it failed. */
interface Ending {
  readonly record: ExecutionRecord;
  readonly cause?: unknown;
}

/** An execution running in this process. */
interface Live {
  record: ExecutionRecord;
  readonly events: PubSub.PubSub<ExecutionEvent>;
  readonly done: Deferred.Deferred<Ending>;
  /** Set before interrupting the fiber, so that the ending says why. */
  cancelReason: string | undefined;
  finished: boolean;
  lastCause: unknown;
  readonly usage: Map<number, TokenUsage>;
  readonly policy: PolicyContext;
  /**
   * Why the run is being stopped when not cancelled: set (once, and only while nothing else
   * stops it) right before its fiber is interrupted; the fiber's interruption handler ends it so.
   */
  stop: { readonly _tag: "Timeout" } | { readonly _tag: "Budget"; readonly budget: BudgetExhausted } | undefined;
  /** The run's fiber, once it runs. */
  fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined;
  /** When the run times out (epoch ms), once it runs. */
  deadline: number;
}

const labelKey = /^[a-z][a-z0-9_.\-/]{0,62}$/;
const maxLabels = 64;
const maxLabelValue = 256;
const maxRequestId = 128;
const maxCancelReason = 1024;

const interruptedDetail = (message: string): ErrorDetail => ({ type: "INTERRUPTED", message, retryable: false });

export class Orchestrator extends Effect.Service<Orchestrator>()("orchestrator/Orchestrator", {
  scoped: Effect.gen(function* () {
    const config = yield* OrchestratorConfig;
    const registry = yield* OperationRegistry;
    const store = yield* ExecutionStore;
    const audit = yield* AuditLogger;
    const policy = yield* PolicyService;
    const limiter = yield* RateLimiter;
    // --operation-rate-limit is shorthand for the limits file's "operation" (and wins over it).
    const limits = config.operationRateLimit === undefined ? config.limits : { ...config.limits, operation: config.operationRateLimit };
    const fibers = yield* FiberMap.make<string>();
    const live = new Map<string, Live>();

    /** Stops a live run for `why` (interrupting its fiber), unless it is ending or stopping already. */
    const stopRun = (l: Live, why: NonNullable<Live["stop"]>) =>
      Effect.suspend(() => {
        if (l.finished || l.cancelReason !== undefined || l.stop !== undefined || l.fiber === undefined) return Effect.void;
        l.stop = why;
        return Fiber.interruptFork(l.fiber);
      });

    // Run timeouts: one fiber for every execution's deadline (a heap of them, slept until the
    // earliest), instead of a timer fiber raced against each run. Entries of runs that ended
    // are dropped as they surface, or all at once when they outnumber the live runs.
    const deadlines = new MinHeap<string>();
    const deadlineWake = yield* Queue.sliding<void>(1);
    const watchDeadline = (l: Live) => {
      const earliest = deadlines.peek()?.[0];
      if (deadlines.size > 2 * live.size + 1024) {
        deadlines.clear();
        for (const x of live.values()) {
          if (x !== l && x.fiber !== undefined && !x.finished) deadlines.push([x.deadline, x.record.executionId]);
        }
      }
      deadlines.push([l.deadline, l.record.executionId]);
      if (earliest === undefined || l.deadline < earliest) Queue.unsafeOffer(deadlineWake, undefined);
    };
    yield* Effect.gen(function* () {
      for (;;) {
        const now = yield* Clock.currentTimeMillis;
        for (let top = deadlines.peek(); top !== undefined && top[0] <= now; top = deadlines.peek()) {
          deadlines.pop();
          const l = live.get(top[1]);
          if (l !== undefined && l.deadline === top[0]) yield* stopRun(l, { _tag: "Timeout" });
        }
        const next = deadlines.peek();
        if (next === undefined) yield* Queue.take(deadlineWake);
        else yield* Effect.raceFirst(Effect.sleep(Duration.millis(next[0] - now)), Queue.take(deadlineWake));
      }
    }).pipe(Effect.forkScoped);
    let shuttingDown = false;
    yield* Effect.addFinalizer(() => Effect.sync(() => void (shuttingDown = true)));

    const logStoreFailure = (what: string) => (e: StoreError) =>
      Effect.logError(`execution store: ${what} failed`, e.cause);

    // Executions left running by a process that is gone cannot be resumed: say so, once. At
    // start-up, and periodically when the store is shared with other processes.
    const recover = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis;
      const ids = yield* store
        .interruptUnfinished(now, interruptedDetail("the server stopped while this execution was running"))
        .pipe(Effect.catchAll((e) => logStoreFailure("recovery")(e).pipe(Effect.as([] as ReadonlyArray<string>))));
      for (const executionId of ids) {
        yield* audit.log({ type: "EXECUTION_INTERRUPTED", executionId, reason: "server restart" });
      }
      if (ids.length > 0) yield* Effect.logWarning(`marked ${ids.length} executions interrupted by the restart`);
    });
    yield* recover;
    if (store.recoverEvery !== undefined) {
      yield* recover.pipe(Effect.delay(store.recoverEvery), Effect.forever, Effect.forkScoped);
    }

    // Retention: ended executions older than the retention period are pruned in the background.
    yield* Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis;
      const n = yield* store.prune(now - config.retentionMs);
      if (n > 0) yield* Effect.logInfo(`pruned ${n} ended executions`);
    }).pipe(
      Effect.catchAll(logStoreFailure("prune")),
      Effect.repeat(Schedule.spaced(Duration.millis(config.pruneIntervalMs))),
      Effect.forkScoped,
    );

    const authorize = (principal: Principal, permission: string, operation?: string) =>
      Effect.gen(function* () {
        const allowed = hasPermission(principal, permission, config.roles);
        yield* audit.log({
          type: allowed ? "AUTH_SUCCEEDED" : "AUTH_DENIED",
          principal,
          ...(operation === undefined ? {} : { operation }),
          decision: allowed ? "ALLOW" : "DENY",
          details: { permission },
        });
        if (!allowed) return yield* new PermissionDenied({ subject: principal.subject, permission });
      }).pipe(Effect.withSpan("Orchestrator.authorize", { attributes: { permission }, captureStackTrace: false }));

    const validate = (cmd: ExecuteCommand) =>
      Effect.gen(function* () {
        const v: FieldViolation[] = [...validateRetryPolicy(cmd.retry)];
        if (cmd.requestId !== undefined && cmd.requestId.length > maxRequestId) {
          v.push({ field: "request_id", description: `must be at most ${maxRequestId} characters` });
        } else if (cmd.scheduleId === undefined && cmd.requestId?.startsWith(scheduleRunRequestIdPrefix) === true) {
          // Schedules start their runs with these (a slot's fence against running twice): a
          // caller's own could stand in for a slot's run, which would then never start.
          v.push({ field: "request_id", description: `must not start with "${scheduleRunRequestIdPrefix}" (reserved for schedules' runs)` });
        }
        const span = (field: string, ms: number | undefined) => {
          if (ms === undefined) return;
          if (!(ms > 0)) v.push({ field, description: "must be positive" });
          else if (ms > config.maxTimeoutMs) v.push({ field, description: `must be at most ${config.maxTimeoutMs / 3_600_000}h` });
        };
        span("timeout", cmd.timeoutMs);
        span("attempt_timeout", cmd.attemptTimeoutMs);
        const labels = Object.entries(cmd.labels ?? {});
        if (labels.length > maxLabels) v.push({ field: "labels", description: `at most ${maxLabels} labels` });
        for (const [k, value] of labels) {
          if (!labelKey.test(k)) v.push({ field: `labels[${JSON.stringify(k)}]`, description: "keys are 1-63 of [a-z0-9_.-/], starting with a letter" });
          if (value.length > maxLabelValue) v.push({ field: `labels[${JSON.stringify(k)}]`, description: `values are at most ${maxLabelValue} characters` });
        }
        if (Buffer.byteLength(JSON.stringify(cmd.input)) > config.maxInputBytes) {
          v.push({ field: "input", description: `must be at most ${config.maxInputBytes} bytes as JSON` });
        }
        if (v.length > 0) return yield* new InvalidInput({ violations: v });
      });

    const emit = (l: Live, kind: ExecutionEventKind) =>
      Effect.flatMap(Clock.currentTimeMillis, (time) =>
        PubSub.publish(l.events, { executionId: l.record.executionId, time, kind }),
      );

    const save = (l: Live, patch: Partial<ExecutionRecord>) =>
      Effect.suspend(() => {
        l.record = { ...l.record, ...patch };
        return store.update(l.record).pipe(Effect.catchAll(logStoreFailure("update")));
      });

    /**
     * Changes the live record only: for a change that `finish` stores next anyway (an attempt
     * that ended the run), one write instead of two.
     */
    const remember = (l: Live, patch: Partial<ExecutionRecord>) =>
      Effect.sync(() => {
        l.record = { ...l.record, ...patch };
      });

    const auditExecution = (l: Live, entry: Omit<AuditEntry, "principal" | "operation" | "executionId">) =>
      audit.log({
        ...entry,
        principal: l.record.principal,
        operation: l.record.operation,
        executionId: l.record.executionId,
        ...(l.record.scheduleId === undefined ? {} : { scheduleId: l.record.scheduleId }),
        ...(l.record.traceId === undefined ? {} : { traceId: l.record.traceId }),
      });

    const totalUsage = (l: Live): TokenUsage | undefined => {
      if (l.usage.size === 0) return undefined;
      let inputTokens = 0;
      let outputTokens = 0;
      let model: string | undefined;
      for (const u of l.usage.values()) {
        inputTokens += u.inputTokens;
        outputTokens += u.outputTokens;
        model ??= u.model;
      }
      return { inputTokens, outputTokens, totalTokens: inputTokens + outputTokens, ...(model === undefined ? {} : { model }) };
    };

    const setAttempt = (l: Live, n: number, patch: Partial<AttemptRecord>): ReadonlyArray<AttemptRecord> =>
      l.record.attempts.map((a) => (a.number === n ? { ...a, ...patch } : a));

    /** Ends an execution exactly once: store, event, audit, policy, waiters. */
    const finish = (l: Live, state: EndState, fields: Partial<ExecutionRecord>, cause?: unknown) =>
      Effect.uninterruptible(
        Effect.gen(function* () {
          if (l.finished) return;
          l.finished = true;
          const now = yield* Clock.currentTimeMillis;
          const usage = totalUsage(l);
          // An attempt still open ends with the execution, and for the same reason.
          const attempts = l.record.attempts.map((a) =>
            a.endTime === undefined ? { ...a, endTime: now, ...(fields.error === undefined ? {} : { error: fields.error }) } : a,
          );
          const { nextAttemptTime: _drop, ...rest } = l.record;
          l.record = { ...rest, ...fields, attempts, state, endTime: now, ...(usage === undefined ? {} : { tokenUsage: usage }) };
          yield* store.update(l.record).pipe(Effect.catchAll(logStoreFailure("update")));
          const n = attempts.length;
          const r = l.record;
          yield* auditExecution(l, {
            type: `EXECUTION_${state}`,
            details: {
              attempts: n,
              ...(r.error === undefined ? {} : { error_type: r.error.type, error: r.error.message }),
              ...(r.cancelReason === undefined ? {} : { reason: r.cancelReason }),
            },
          });
          // The execution's audit events are committed before anyone learns how it ended.
          yield* audit.flush;
          yield* emit(l, terminalKind(r));
          yield* policy.record(l.policy, state, usage);
          live.delete(r.executionId);
          yield* CoreMetrics.executionEnded(r.operation, state);
          yield* Deferred.succeed(l.done, { record: l.record, cause });
        }),
      );

    const classify = (op: Operation, cause: Cause.Cause<unknown>): { classified: ClassifiedError; error: unknown } => {
      const failure = Cause.failureOption(cause);
      if (Option.isSome(failure)) {
        const e = failure.value;
        if (e instanceof AttemptTimeout) {
          return { classified: { detail: { type: "TIMEOUT", message: `the attempt exceeded its attempt_timeout of ${e.ms} ms`, retryable: true } }, error: e };
        }
        return { classified: op.classify(e), error: e };
      }
      // A defect: the operation threw. Say nothing internal to the caller; the log has it.
      return {
        classified: { detail: { type: "INTERNAL", message: "the operation failed unexpectedly", retryable: false } },
        error: Cause.squash(cause),
      };
    };

    const runAttempts = (l: Live, op: Operation, input: unknown) =>
      Effect.gen(function* () {
        const r0 = l.record;
        const stepper = makeRetryStepper(r0.retryPolicy);
        const firstStart = yield* Clock.currentTimeMillis;
        for (let attempt = 1; ; attempt++) {
          const started = attempt === 1 ? firstStart : yield* Clock.currentTimeMillis;
          const { nextAttemptTime: _n, ...withoutNext } = l.record;
          l.record = withoutNext;
          // RUNNING, its start time and the first attempt: one write.
          yield* save(l, {
            state: "RUNNING",
            ...(attempt === 1 ? { startTime: firstStart } : {}),
            attempts: [...l.record.attempts, { number: attempt, startTime: started }],
          });
          yield* emit(l, { _tag: "AttemptStarted", attempt });
          yield* auditExecution(l, { type: "EXECUTION_ATTEMPT_STARTED", details: { attempt } });

          const ctx: ExecutionContext = {
            executionId: r0.executionId,
            attempt,
            principal: r0.principal,
            labels: r0.labels,
            log: (message, fields) =>
              Effect.logInfo(message).pipe(
                Effect.annotateLogs({ execution_id: r0.executionId, operation: r0.operation, attempt, ...fields }),
              ),
            progress: (message, data) => emit(l, { _tag: "Progress", message, ...(data === undefined ? {} : { data }) }),
            // Policy hears the run's total so far; a budget that cannot take it stops the run here
            // (runExecution interrupts the attempt, whose finalizers run, and ends it FAILED).
            reportUsage: (usage) =>
              Effect.suspend(() => {
                l.usage.set(attempt, usage);
                return policy.usage(l.policy, totalUsage(l)?.totalTokens ?? 0);
              }).pipe(Effect.catchAll((e) => stopRun(l, { _tag: "Budget", budget: e }).pipe(Effect.zipRight(Effect.interruptible(Effect.never))))),
          };
          const run = op.run(input, ctx);
          const exit = yield* Effect.exit(
            Effect.withSpan(
              r0.attemptTimeoutMs === undefined
                ? run
                : run.pipe(Effect.timeoutFail({ duration: Duration.millis(r0.attemptTimeoutMs), onTimeout: () => new AttemptTimeout(r0.attemptTimeoutMs!) })),
              "Orchestrator.attempt",
              { attributes: { attempt }, captureStackTrace: false },
            ),
          );
          yield* CoreMetrics.attemptEnded(r0.operation, Exit.isSuccess(exit));
          const ended = yield* Clock.currentTimeMillis;
          if (Exit.isSuccess(exit)) {
            yield* remember(l, { attempts: setAttempt(l, attempt, { endTime: ended }) });
            return { _tag: "Succeeded" as const, result: exit.value };
          }
          const { classified, error } = classify(op, exit.cause);
          if (classified.detail.type === "INTERNAL") yield* Effect.logError("operation defect", exit.cause);
          l.lastCause = error;
          const detail = classified.detail;
          const retryable = detail.retryable && !r0.retryPolicy.nonRetryableErrorTypes.includes(detail.type);
          let delayMs = retryable ? Option.getOrUndefined(yield* stepper.next(ended)) : undefined;
          if (delayMs !== undefined && classified.retryAfterMs !== undefined) {
            delayMs = Math.max(delayMs, classified.retryAfterMs); // the remote side's Retry-After
          }
          const budget = r0.retryPolicy.maxRetryDurationMs;
          if (delayMs !== undefined && budget > 0 && ended + delayMs - firstStart > budget) delayMs = undefined;
          const willRetry = delayMs !== undefined;
          const nextAttemptTime = delayMs === undefined ? undefined : ended + delayMs;
          // BACKING_OFF is stored; a last attempt is stored with the run's end by `finish`.
          yield* (nextAttemptTime === undefined ? remember : save)(l, {
            attempts: setAttempt(l, attempt, { endTime: ended, error: detail, ...(delayMs === undefined ? {} : { retryDelayMs: delayMs }) }),
            ...(nextAttemptTime === undefined ? {} : { state: "BACKING_OFF" as const, nextAttemptTime }),
          });
          yield* emit(l, {
            _tag: "AttemptFailed",
            attempt,
            error: detail,
            willRetry,
            ...(delayMs === undefined || nextAttemptTime === undefined ? {} : { retryDelayMs: delayMs, nextAttemptTime }),
          });
          yield* auditExecution(l, { type: "EXECUTION_ATTEMPT_FAILED", details: { attempt, error_type: detail.type, error: detail.message, retryable } });
          if (delayMs === undefined) {
            return { _tag: "Failed" as const, error: detail, exhausted: retryable, attempts: attempt, cause: error };
          }
          yield* auditExecution(l, { type: "EXECUTION_RETRY_SCHEDULED", details: { attempt: attempt + 1, delay_ms: delayMs } });
          yield* Effect.sleep(Duration.millis(delayMs)).pipe(Effect.withSpan("Orchestrator.retryDelay", { attributes: { delay_ms: delayMs, next_attempt: attempt + 1 }, captureStackTrace: false }));
        }
      });

    /**
     * The fiber of one execution, from RUNNING to its end. A timeout (the deadline fiber above),
     * a token budget (reportUsage) or a cancel interrupts it, having said why: the attempt's
     * finalizers run, then the interruption handler ends it accordingly.
     */
    const runExecution = (l: Live, op: Operation, input: unknown) =>
      Effect.withFiberRuntime<void>((fiber) =>
        Effect.flatMap(Clock.currentTimeMillis, (t) => {
          l.fiber = fiber;
          l.deadline = t + l.record.timeoutMs;
          watchDeadline(l);
          return runAttempts(l, op, input);
        }).pipe(
          Effect.flatMap((o) =>
            o._tag === "Succeeded" ? finish(l, "SUCCEEDED", { result: o.result }) : finish(l, "FAILED", { error: o.error }, o.cause),
          ),
          Effect.onInterrupt(() => {
            const stop = l.stop;
            if (stop?._tag === "Budget") return stopForBudget(l, stop.budget);
            if (stop?._tag === "Timeout") {
              return finish(l, "TIMED_OUT", {
                error: { type: "TIMEOUT", message: `the execution exceeded its timeout of ${l.record.timeoutMs} ms`, retryable: false },
              }, l.lastCause);
            }
            return l.cancelReason !== undefined
              ? finish(l, "CANCELLED", { cancelReason: l.cancelReason, error: { type: "CANCELLED", message: l.cancelReason, retryable: false } })
              : finish(l, "INTERRUPTED", { error: interruptedDetail(shuttingDown ? "the server shut down while this execution was running" : "the execution was interrupted") });
          }),
        ),
      );

    /** The run's usage exceeded a token budget: its attempt failed (not retryable), and so did the run. */
    const stopForBudget = (l: Live, e: BudgetExhausted) =>
      Effect.gen(function* () {
        const error: ErrorDetail = {
          type: "TOKEN_BUDGET_EXHAUSTED",
          message: `stopped: token budget ${e.budget} exhausted mid-run: ${e.remaining} of ${e.limit} left, ${e.requested} more used`,
          retryable: false,
          details: { budget: e.budget, limit: e.limit, remaining: e.remaining, requested: e.requested, retry_after_ms: e.retryAfterMs },
        };
        const attempt = l.record.attempts.at(-1)?.number ?? 0;
        const now = yield* Clock.currentTimeMillis;
        yield* save(l, { attempts: setAttempt(l, attempt, { endTime: now, error }) });
        yield* emit(l, { _tag: "AttemptFailed", attempt, error, willRetry: false });
        yield* auditExecution(l, { type: "EXECUTION_ATTEMPT_FAILED", details: { attempt, error_type: error.type, error: error.message, retryable: false } });
        yield* finish(l, "FAILED", { error }, e);
      });

    /** Accepted (a snapshot), then every later event, ending with the terminal one. */
    const follow = (l: Live, deduplicated: boolean): Effect.Effect<Stream.Stream<ExecutionEvent>, never, Scope.Scope> =>
      Effect.gen(function* () {
        const sub = yield* PubSub.subscribe(l.events);
        const now = yield* Clock.currentTimeMillis;
        const accepted: ExecutionEvent = { executionId: l.record.executionId, time: now, kind: { _tag: "Accepted", execution: l.record, deduplicated } };
        if (l.finished) return replayEnded(l.record, deduplicated, now);
        return Stream.concat(Stream.succeed(accepted), Stream.fromQueue(sub).pipe(Stream.takeUntil(isTerminalEvent)));
      });

    const replayEnded = (record: ExecutionRecord, deduplicated: boolean, now: number): Stream.Stream<ExecutionEvent> =>
      Stream.make<[ExecutionEvent, ExecutionEvent]>(
        { executionId: record.executionId, time: now, kind: { _tag: "Accepted", execution: record, deduplicated } },
        { executionId: record.executionId, time: record.endTime ?? now, kind: terminalKind(record) },
      );

    const sameRequest = (a: ExecutionRecord, cmd: ExecuteCommand) =>
      a.operation === cmd.operation && JSON.stringify(a.input) === JSON.stringify(cmd.input);

    /** Attach to an execution found by request id: live events if it runs, its ending if not. */
    const attach = (existing: ExecutionRecord, cmd: ExecuteCommand, following: boolean) =>
      Effect.gen(function* () {
        if (!sameRequest(existing, cmd)) {
          return yield* new RequestIdReused({ requestId: cmd.requestId ?? "", executionId: existing.executionId });
        }
        const l = live.get(existing.executionId);
        if (l !== undefined) {
          return { executionId: existing.executionId, deduplicated: true, live: l, events: following ? yield* follow(l, true) : Stream.empty, accepted: l.record };
        }
        const now = yield* Clock.currentTimeMillis;
        return {
          executionId: existing.executionId,
          deduplicated: true,
          live: undefined,
          accepted: existing,
          events: isTerminal(existing.state)
            ? replayEnded(existing, true, now)
            : Stream.make<[ExecutionEvent]>({ executionId: existing.executionId, time: now, kind: { _tag: "Accepted", execution: existing, deduplicated: true } }),
        };
      });

    /**
     * Starts (or, for a known request id, attaches to) an execution. The returned event stream
     * is subscribed before the run begins, so it misses nothing; it belongs to the caller's scope.
     * Not `following`: no subscription, the stream is empty (a caller that wants the id only).
     */
    const start = Effect.fn("Orchestrator.start", { captureStackTrace: false })(function* (cmd: ExecuteCommand, following: boolean) {
      const op = yield* registry.get(cmd.operation);
      yield* Effect.annotateCurrentSpan({ operation: op.name, principal: cmd.principal.subject });
      yield* authorize(cmd.principal, permissionOf(op), op.name);
      yield* validate(cmd);
      const input = yield* decodeInput(op, cmd.input);

      // A schedule's run skips the lookup: its request id is its slot's fence, almost always new,
      // and the insert below still finds the rare duplicate (a slot started by two instances).
      if (cmd.requestId !== undefined && cmd.requestId !== "" && cmd.scheduleId === undefined) {
        const found = yield* store.findByRequestId(cmd.principal.subject, cmd.requestId);
        if (Option.isSome(found)) return yield* attach(found.value, cmd, following);
      }

      const executionId = randomUUID();
      const labels = cmd.labels ?? {};
      const model = op.model?.(input);
      const estimatedTokens = op.estimateTokens?.(input);
      const policyContext: PolicyContext = {
        principal: cmd.principal,
        operation: op.name,
        labels,
        executionId,
        ...(model === undefined ? {} : { model }),
        ...(estimatedTokens === undefined ? {} : { estimatedTokens }),
      };
      const decision = yield* policy.check(policyContext).pipe(
        // One POLICY_EVALUATED row per decision: the rule (and policy version) or the budget that refused.
        Effect.tapError((e) =>
          audit.log({
            type: "POLICY_EVALUATED",
            principal: cmd.principal,
            operation: op.name,
            decision: "DENY",
            reason: e._tag === "PolicyDenied" ? e.reason : e.message,
            details:
              e._tag === "PolicyDenied"
                ? { rule: e.rule, ...(e.policyVersion === undefined ? {} : { policy_version: e.policyVersion }) }
                : e._tag === "BudgetExhausted"
                  ? { budget: e.budget, limit: e.limit, remaining: e.remaining, requested: e.requested }
                  : { error: e.error },
          }),
        ),
        Effect.tapError((e) => CoreMetrics.policyDenied(op.name, e._tag === "PolicyDenied" ? e.rule : e._tag === "BudgetExhausted" ? "budget" : "ledger_unavailable")),
        Effect.withSpan("Orchestrator.policy", { captureStackTrace: false }),
      );
      yield* audit.log({ type: "POLICY_EVALUATED", principal: cmd.principal, operation: op.name, decision: "ALLOW", details: { rule: decision.rule, policy_version: decision.policyVersion } });
      // The check reserved tokens; the run's end settles them. Until the run is forked, a later
      // refusal (rate limit, store) or a duplicate gives them back: NOT_STARTED, 0 tokens used.
      let runForked = false;
      yield* Effect.addFinalizer(() => (runForked ? Effect.void : policy.record(policyContext, "NOT_STARTED", { inputTokens: 0, outputTokens: 0, totalTokens: 0 })));

      // Operation, min interval, tenant and model limits and the in-flight cap: one atomic decision.
      const { lease } = yield* enforceLimits(limiter, audit, {
        request: executionLimits(limits, cmd.principal, op.name, model),
        principal: cmd.principal,
        operation: op.name,
        shadow: limits.shadow,
        auditAdmissions: true,
      }).pipe(
        Effect.tapBoth({
          onSuccess: (a) => (a.binding === undefined && a.lease === undefined ? Effect.void : CoreMetrics.rateLimitDecided("execution", "allow")),
          onFailure: (e) => CoreMetrics.rateLimitDecided("execution", e._tag === "RateLimited" ? "deny" : "unavailable"),
        }),
        Effect.withSpan("Orchestrator.rateLimit", { captureStackTrace: false }),
      );
      // The in-flight slot belongs to this start until the run is forked, then to the run.
      let slotHandedOver = false;
      if (lease !== undefined) yield* Effect.addFinalizer(() => (slotHandedOver ? Effect.void : lease.release));

      const now = yield* Clock.currentTimeMillis;
      // The caller's span (the RPC's): the execution takes its trace id, and its run, which outlives
      // this call, hangs under it. An in-process caller without a span gets start's own trace.
      const span = Option.getOrUndefined(yield* Effect.option(Effect.currentSpan));
      const caller = span === undefined ? undefined : Option.getOrElse(span.parent, () => span);
      const traceId = cmd.traceId ?? span?.traceId;
      const record: ExecutionRecord = {
        executionId,
        operation: op.name,
        input: cmd.input,
        state: "PENDING",
        principal: cmd.principal,
        labels,
        attempts: [],
        createTime: now,
        retryPolicy: resolveRetryPolicy(cmd.retry, op.retry, config.retryDefaults),
        timeoutMs: cmd.timeoutMs ?? config.defaultTimeoutMs,
        ...(cmd.requestId === undefined || cmd.requestId === "" ? {} : { requestId: cmd.requestId }),
        ...(cmd.attemptTimeoutMs === undefined ? {} : { attemptTimeoutMs: cmd.attemptTimeoutMs }),
        ...(cmd.scheduleId === undefined ? {} : { scheduleId: cmd.scheduleId }),
        ...(cmd.nominalTime === undefined ? {} : { nominalTime: cmd.nominalTime }),
        ...(traceId === undefined ? {} : { traceId }),
      };
      const inserted = yield* store.insert(record);
      if (inserted._tag === "Duplicate") return yield* attach(inserted.existing, cmd, following); // lost a same-request_id race

      const l: Live = {
        record,
        events: yield* PubSub.unbounded<ExecutionEvent>(),
        done: yield* Deferred.make<Ending>(),
        cancelReason: undefined,
        finished: false,
        lastCause: undefined,
        usage: new Map(),
        policy: policyContext,
        stop: undefined,
        fiber: undefined,
        deadline: 0,
      };
      live.set(executionId, l);
      yield* CoreMetrics.executionStarted;
      yield* auditExecution(l, { type: "EXECUTION_ACCEPTED", details: { input: redactInput(cmd.input, op.sensitiveFields), retry_policy: { ...record.retryPolicy, nonRetryableErrorTypes: [...record.retryPolicy.nonRetryableErrorTypes] }, timeout_ms: record.timeoutMs } });
      const events = following ? yield* follow(l, false) : Stream.empty;
      const accepted = l.record;
      const run = runExecution(l, op, input).pipe(
        Effect.withSpan("Orchestrator.run", { attributes: { execution_id: executionId, operation: op.name }, captureStackTrace: false, ...(caller === undefined ? {} : { parent: caller }) }),
      );
      yield* FiberMap.run(fibers, executionId, lease === undefined ? run : Effect.ensuring(run, lease.release));
      slotHandedOver = true;
      runForked = true;
      return { executionId, deduplicated: false, live: l as Live | undefined, events, accepted };
    });

    /** Cancels a running execution (its attempt or its backoff sleep) and waits for its end. */
    const cancelLive = (l: Live, reason: string) =>
      Effect.suspend(() => {
        l.cancelReason ??= reason;
        return FiberMap.remove(fibers, l.record.executionId);
      }).pipe(Effect.zipRight(Deferred.await(l.done)));

    const visible = (principal: Principal, r: ExecutionRecord) => r.principal.tenant === principal.tenant;

    const getRecord = (principal: Principal, executionId: string) =>
      Effect.gen(function* () {
        const l = live.get(executionId);
        const record = l !== undefined ? l.record : Option.getOrUndefined(yield* store.get(executionId));
        // Another tenant's execution is indistinguishable from a missing one.
        if (record === undefined || !visible(principal, record)) return yield* new ExecutionNotFound({ executionId });
        return record;
      });

    const toRunError = (e: Ending): RunError => {
      const r = e.record;
      switch (r.state) {
        case "CANCELLED":
          return new Cancelled({ executionId: r.executionId, reason: r.cancelReason ?? "cancelled" });
        case "TIMED_OUT":
          return new DeadlineExceeded({ executionId: r.executionId, timeoutMs: r.timeoutMs });
        case "INTERRUPTED":
          return new Interrupted({ executionId: r.executionId });
        default: {
          if (e.cause instanceof BudgetExhausted && r.error?.type === "TOKEN_BUDGET_EXHAUSTED") {
            const { budget, limit, remaining, retryAfterMs, requested } = e.cause;
            return new BudgetExhausted({ budget, limit, remaining, retryAfterMs, requested, executionId: r.executionId });
          }
          const error = r.error ?? interruptedDetail("unknown failure");
          const last = r.attempts.at(-1);
          return error.retryable && !r.retryPolicy.nonRetryableErrorTypes.includes(error.type)
            ? new RetriesExhausted({ executionId: r.executionId, attempts: r.attempts.length, lastError: error, cause: e.cause })
            : new AttemptFailed({ executionId: r.executionId, attempt: last?.number ?? 0, error, cause: e.cause });
        }
      }
    };

    return {
      /**
       * Starts an execution and follows it: Accepted, then its events, ending with the terminal
       * one (or right after Accepted when detached). If the consumer stops early and it is not
       * detached, the execution is cancelled.
       */
      executeStream: (
        cmd: ExecuteCommand,
        options: { readonly detach?: boolean; readonly cancelReason?: () => string } = {},
      ): Stream.Stream<ExecutionEvent, StartError> =>
        Stream.unwrapScoped(
          Effect.gen(function* () {
            const s = yield* start(cmd, true);
            const l = s.live;
            if (options.detach === true) return s.events.pipe(Stream.take(1));
            if (l !== undefined) {
              yield* Effect.addFinalizer(() =>
                l.finished ? Effect.void : cancelLive(l, options.cancelReason?.() ?? "the consumer stopped following").pipe(Effect.asVoid),
              );
            }
            return s.events;
          }),
        ),

      /**
       * Starts an execution without following it (a schedule's run): the id and the record as
       * accepted, or, for a request id already used, the execution that holds it.
       */
      submit: (cmd: ExecuteCommand): Effect.Effect<{ readonly executionId: string; readonly accepted: ExecutionRecord; readonly deduplicated: boolean }, StartError> =>
        Effect.scoped(Effect.map(start(cmd, false), (s) => ({ executionId: s.executionId, accepted: s.accepted, deduplicated: s.deduplicated }))),

      /**
       * Runs an operation in-process and returns its result, failing with the start refusal or
       * the run's ending. Interrupting the caller, or aborting the signal, cancels it.
       */
      execute: (operation: string, input: JsonObject, options: ExecuteOptions): Effect.Effect<JsonValue, StartError | RunError> =>
        Effect.scoped(
          Effect.gen(function* () {
            // It waits for the ending, not for events: nothing to subscribe to.
            const s = yield* start(
              {
                operation,
                input,
                principal: options.principal,
                requestId: options.idempotencyKey,
                retry: options.retry,
                timeoutMs: options.timeout === undefined ? undefined : Duration.toMillis(options.timeout),
                attemptTimeoutMs: options.attemptTimeout === undefined ? undefined : Duration.toMillis(options.attemptTimeout),
                labels: options.labels,
              },
              false,
            );
            let ending: Ending;
            if (s.live === undefined) {
              const record = Option.getOrThrow(yield* store.get(s.executionId));
              if (!isTerminal(record.state)) return yield* new Interrupted({ executionId: s.executionId });
              ending = { record };
            } else {
              const l = s.live;
              const aborted = abortOf(options.signal);
              ending = yield* Effect.raceFirst(
                Deferred.await(l.done),
                aborted.pipe(Effect.zipRight(cancelLive(l, "aborted by the caller's signal"))),
              ).pipe(Effect.onInterrupt(() => (l.finished ? Effect.void : cancelLive(l, "the caller was interrupted"))));
            }
            if (ending.record.state === "SUCCEEDED") return ending.record.result ?? null;
            return yield* Effect.fail(toRunError(ending));
          }),
        ),

      get: (principal: Principal, executionId: string) =>
        Effect.gen(function* () {
          yield* authorize(principal, "executions:read");
          return yield* getRecord(principal, executionId);
        }),

      list: (principal: Principal, query: ListExecutionsQuery) =>
        Effect.gen(function* () {
          yield* authorize(principal, "executions:read");
          const pageSize = yield* resolvePageSize(query.pageSize ?? 0);
          const order = query.order ?? "CREATE_TIME_DESCENDING";
          const filter: ExecutionFilter = { ...query.filter, tenant: principal.tenant };
          const after = yield* decodePageToken<ExecutionCursor>(query.pageToken ?? "", { filter, order });
          const page = yield* store.list(filter, order, pageSize, after);
          return {
            executions: page.items,
            nextPageToken: page.next === undefined ? "" : encodePageToken(page.next, { filter, order }),
          };
        }),

      cancel: (principal: Principal, executionId: string, reason: string) =>
        Effect.gen(function* () {
          if (reason.length > maxCancelReason) {
            return yield* new InvalidInput({ violations: [{ field: "reason", description: `must be at most ${maxCancelReason} characters` }] });
          }
          const record = yield* getRecord(principal, executionId);
          if (record.principal.subject !== principal.subject) yield* authorize(principal, "executions:cancel", record.operation);
          const l = live.get(executionId);
          if (l === undefined || l.finished) {
            // Cancelling twice is not an error: the first one won, nothing changes.
            if (record.state === "CANCELLED") return record;
            return yield* new ExecutionAlreadyEnded({ executionId, state: record.state });
          }
          const ending = yield* cancelLive(l, reason === "" ? "cancelled by request" : reason);
          return ending.record;
        }),

      /** Executions running in this process now. */
      running: () => live.size,

      /** Whether this execution runs in this process (not ended, not elsewhere); given a schedule, as one of its runs. */
      runsHere: (executionId: string, scheduleId?: string) => {
        const l = live.get(executionId);
        return l !== undefined && !l.finished && (scheduleId === undefined || l.record.scheduleId === scheduleId);
      },

      /** The execution a principal started with this request id, if any (no permission check: the scheduler's). */
      findByRequestId: (principal: Principal, requestId: string): Effect.Effect<ExecutionRecord | undefined, StoreError> =>
        Effect.map(store.findByRequestId(principal.subject, requestId), Option.getOrUndefined),

      /**
       * The ended record of an execution, waiting for it if it runs in this process (without
       * cancelling it when the waiter is interrupted); a stored record as it is otherwise
       * (possibly not ended: it runs elsewhere); undefined if unknown. Used by the scheduler.
       */
      awaitEnd: (executionId: string): Effect.Effect<ExecutionRecord | undefined> =>
        Effect.suspend(() => {
          const l = live.get(executionId);
          if (l !== undefined) return Effect.map(Deferred.await(l.done), (e) => e.record);
          return store.get(executionId).pipe(Effect.map(Option.getOrUndefined), Effect.orElseSucceed(() => undefined));
        }),
    };
  }),
}) {}

/** The failure an attempt gets when it outlives attempt_timeout. */
class AttemptTimeout {
  readonly _tag = "AttemptTimeout";
  constructor(readonly ms: number) {}
}

const abortOf = (signal: AbortSignal | undefined): Effect.Effect<void> =>
  signal === undefined
    ? Effect.never
    : Effect.async<void>((resume) => {
        if (signal.aborted) return resume(Effect.void);
        const onAbort = () => resume(Effect.void);
        signal.addEventListener("abort", onAbort, { once: true });
        return Effect.sync(() => signal.removeEventListener("abort", onAbort));
      });

/** The states an execution ends in. */
type EndState = "SUCCEEDED" | "FAILED" | "CANCELLED" | "TIMED_OUT" | "INTERRUPTED";

/** The terminal event of an ended execution, from its record (also used to replay one). */
export function terminalKind(r: ExecutionRecord): ExecutionEventKind {
  const attempts = r.attempts.length;
  const error = r.error ?? interruptedDetail("no error recorded");
  switch (r.state) {
    case "SUCCEEDED":
      return { _tag: "Succeeded", result: r.result ?? null, attempts, ...(r.tokenUsage === undefined ? {} : { tokenUsage: r.tokenUsage }) };
    case "CANCELLED":
      return { _tag: "Cancelled", reason: r.cancelReason ?? "cancelled", attempts };
    case "TIMED_OUT":
      return { _tag: "TimedOut", error, attempts };
    case "INTERRUPTED":
      return { _tag: "Interrupted", error, attempts };
    default:
      return { _tag: "Failed", error, attempts };
  }
}
