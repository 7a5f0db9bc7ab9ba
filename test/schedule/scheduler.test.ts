/**
 * The scheduler's engine and policies under TestClock, over memory stores: firing on time,
 * overlap policies (×5), catch-up after downtime, jitter bounds, run limits, pause/resume,
 * start/end, pause_on_failure, trigger and backfill, and one slot claimed once by two engines.
 */
import { describe, expect, it } from "@effect/vitest";
import { Chunk, Context, Deferred, Effect, Fiber, Layer, Option, PubSub, Stream, TestClock } from "effect";
import { Scheduler } from "../../src/core/schedule/Scheduler.js";
import { PolicyDenied, StoreError } from "../../src/core/errors.js";
import type { OverlapPolicy } from "../../src/core/schedule/model.js";
import { Orchestrator } from "../../src/core/Orchestrator.js";
import { AuditLogger } from "../../src/ports/AuditLogger.js";
import { InstanceBus } from "../../src/ports/InstanceBus.js";
import { PolicyService } from "../../src/ports/PolicyService.js";
import { ScheduleStore } from "../../src/ports/ScheduleStore.js";
import { ExecutionStore } from "../../src/ports/ExecutionStore.js";
import { admin, makeProbe, viewer, type Probe } from "../support/core.js";
import { ScheduleStoreMemory } from "../../src/ports/memory/ScheduleStoreMemory.js";
import { baseLayer, executionsOf, fullLayer, input, schedulerLayer, settle, sqliteStore } from "./support.js";

const withScheduler = <A, E>(body: (probe: Probe) => Effect.Effect<A, E, any>) =>
  Effect.gen(function* () {
    const probe = yield* makeProbe;
    return yield* (body(probe) as Effect.Effect<A, E, never>).pipe(Effect.provide(fullLayer(probe)));
  });

/** An InstanceBus on which what the other instances send on `channel` is what the test publishes (PostgreSQL's NOTIFY in production). */
const otherInstances = (channel: string, sent: PubSub.PubSub<string>) =>
  Layer.succeed(InstanceBus, { send: () => Effect.void, receive: (c) => (c === channel ? Stream.fromPubSub(sent) : Stream.never) });

const seconds = (n: number) => TestClock.adjust(`${n} seconds`).pipe(Effect.zipRight(settle));

/** Nominal times of a schedule's executions, ascending (runs started at one instant have no order). */
const nominals = (id: string) => Effect.map(executionsOf(id), (xs) => xs.map((x) => x.nominalTime!).sort((a, b) => a - b));

describe("Scheduler: firing", () => {
  it.effect("fires every slot once, as the owner, linking the execution back", () =>
    withScheduler(() =>
      Effect.gen(function* () {
        const s = yield* Scheduler;
        yield* s.create(admin, { scheduleId: "tick", schedule: input() });
        yield* seconds(5);
        const xs = yield* executionsOf("tick");
        expect(xs.map((x) => x.nominalTime)).toEqual([1000, 2000, 3000, 4000, 5000]);
        expect(xs.every((x) => x.principal.subject === admin.subject && x.scheduleId === "tick")).toBe(true);
        // The slot's fence: a second start of the same claim is deduplicated to this execution.
        expect(xs.map((x) => x.requestId)).toEqual([1000, 2000, 3000, 4000, 5000].map((t) => `sch:tick:cron:${t}`));
        const v = yield* s.get(admin, "tick");
        expect(v.record.runCount).toBe(5);
        expect(v.record.recentRuns[0]).toMatchObject({ nominalTime: 5000, kind: "CRON", state: "SUCCEEDED" });
        expect(v.nextRunTimes.slice(0, 2)).toEqual([6000, 7000]);
        const audit = yield* AuditLogger;
        const types = (yield* audit.read(0, 10_000)).map((e) => e.type);
        expect(types.filter((t) => t === "SCHEDULE_FIRED")).toHaveLength(5);
        expect(types).toContain("SCHEDULE_CREATED");
      }),
    ),
  );

  it.effect("a stored schedule whose spec no longer compiles does not hold up the others", () =>
    withScheduler(() =>
      Effect.gen(function* () {
        const s = yield* Scheduler;
        const store = yield* ScheduleStore;
        yield* s.create(admin, { scheduleId: "good", schedule: input() });
        yield* s.create(admin, { scheduleId: "bad", schedule: input() });
        // E.g. a time zone the runtime's ICU data no longer knows.
        const bad = (yield* store.get("bad")).pipe(Option.getOrThrow);
        expect(yield* store.replace({ ...bad, spec: { ...bad.spec, timeZone: "Nowhere/Gone" }, rev: bad.rev + 1 }, bad.rev)).toBe(true);
        yield* seconds(5);
        expect(yield* nominals("good")).toEqual([1000, 2000, 3000, 4000, 5000]);
        expect(yield* executionsOf("bad")).toEqual([]);
        // It is paused, saying why, rather than failing at every pass of the engine.
        const v = yield* s.get(admin, "bad");
        expect(v.record.state.paused).toBe(true);
        expect(v.record.state.note).toContain("spec.time_zone");
        expect(v.nextRunTimes).toEqual([]);
        const audit = yield* AuditLogger;
        expect((yield* audit.read(0, 10_000)).filter((e) => e.type === "SCHEDULE_PAUSED" && e.scheduleId === "bad")).toHaveLength(1);
      }),
    ),
  );

  it.effect("a store that cannot write does not spin the engine: a failed fire is retried after a pause", () =>
    Effect.gen(function* () {
      const probe = yield* makeProbe;
      let dueCalls = 0;
      let writable = true;
      const store = Layer.effect(
        ScheduleStore,
        Effect.map(ScheduleStore, (s) => ({
          ...s,
          due: (now: number, limit: number) => Effect.zipRight(Effect.sync(() => void dueCalls++), s.due(now, limit)),
          advance: (...args: Parameters<typeof s.advance>) =>
            writable ? s.advance(...args) : Effect.fail(new StoreError({ operation: "advance", cause: "disk full" })),
        })),
      ).pipe(Layer.provide(ScheduleStoreMemory));
      yield* Effect.gen(function* () {
        const s = yield* Scheduler;
        yield* s.create(admin, { scheduleId: "tick", schedule: input() });
        writable = false;
        dueCalls = 0;
        yield* seconds(3);
        expect(dueCalls).toBeLessThanOrEqual(8);
        writable = true;
        yield* seconds(2);
        expect((yield* nominals("tick")).length).toBeGreaterThan(0);
      }).pipe(Effect.provide(schedulerLayer().pipe(Layer.provideMerge(baseLayer(probe, store)))));
    }),
  );

  it.effect("refuses a caller without schedules:write, and an owner without the operation's permission", () =>
    withScheduler(() =>
      Effect.gen(function* () {
        const s = yield* Scheduler;
        const e1 = yield* Effect.flip(s.create(viewer, { scheduleId: "v", schedule: input() }));
        expect(e1).toMatchObject({ _tag: "PermissionDenied", permission: "schedules:write" });
        const limited = { subject: "sam", tenant: "acme", roles: ["scheduler"] };
        // A principal whose roles grant nothing: refused for the operation too (roles unknown → no grants).
        const e2 = yield* Effect.flip(s.create(limited, { scheduleId: "l", schedule: input() }));
        expect(e2._tag).toBe("PermissionDenied");
      }),
    ),
  );

  it.effect("validates the definition with field paths", () =>
    withScheduler(() =>
      Effect.gen(function* () {
        const s = yield* Scheduler;
        const bad = input({ cron: ["not a cron"], catchupWindowMs: 1 });
        const e = yield* Effect.flip(s.create(admin, { scheduleId: "Bad_Id", schedule: bad }));
        expect(e._tag).toBe("InvalidInput");
        const e2 = yield* Effect.flip(s.create(admin, { scheduleId: "ok", schedule: bad }));
        expect(e2._tag === "InvalidInput" ? e2.violations.map((v) => v.field).sort() : []).toEqual(["schedule.policy.catchup_window", "schedule.spec.cron_expressions[0]"]);
        const e3 = yield* Effect.flip(s.create(admin, { scheduleId: "ok", schedule: input({ operation: "nope" }) }));
        expect(e3._tag).toBe("OperationNotFound");
        const e4 = yield* Effect.flip(s.create(admin, { scheduleId: "ok", schedule: input({ actionInput: { n: "x" } }) }));
        expect(e4._tag === "InvalidInput" ? e4.violations[0]!.field : "").toBe("schedule.action.input.n");
      }),
    ),
  );
});

describe("Scheduler: overlap policies", () => {
  const blocked = (overlap: OverlapPolicy) => input({ operation: "test.block", overlap });

  it.effect("SKIP: a slot due while a run is active is skipped and counted", () =>
    withScheduler(() =>
      Effect.gen(function* () {
        const s = yield* Scheduler;
        yield* s.create(admin, { scheduleId: "skip", schedule: blocked("SKIP") });
        yield* seconds(3);
        expect(yield* nominals("skip")).toEqual([1000]);
        const r = (yield* s.get(admin, "skip")).record;
        expect(r.overlapSkippedCount).toBe(2);
        expect(r.running.map((x) => x.executionId)).toHaveLength(1);
      }),
    ),
  );

  it.effect("SKIP holds while another schedule's runs of the same slots end (claims are per schedule)", () =>
    withScheduler(() =>
      Effect.gen(function* () {
        const s = yield* Scheduler;
        yield* s.create(admin, { scheduleId: "quick", schedule: input({ overlap: "ALLOW_ALL" }) });
        yield* s.create(admin, { scheduleId: "slow", schedule: blocked("SKIP") });
        yield* seconds(3);
        expect(yield* nominals("quick")).toEqual([1000, 2000, 3000]);
        expect(yield* nominals("slow")).toEqual([1000]);
        expect((yield* s.get(admin, "slow")).record.overlapSkippedCount).toBe(2);
      }),
    ),
  );

  it.effect("BUFFER_ONE: one slot waits and starts when the run ends; more are skipped", () =>
    withScheduler(() =>
      Effect.gen(function* () {
        const s = yield* Scheduler;
        const o = yield* Orchestrator;
        yield* s.create(admin, { scheduleId: "b1", schedule: blocked("BUFFER_ONE") });
        yield* seconds(3);
        let r = (yield* s.get(admin, "b1")).record;
        expect(r.buffer.map((b) => b.nominalTime)).toEqual([2000]);
        expect(r.overlapSkippedCount).toBe(1);
        yield* o.cancel(admin, r.running[0]!.executionId!, "test");
        yield* settle;
        expect(yield* nominals("b1")).toEqual([1000, 2000]);
        r = (yield* s.get(admin, "b1")).record;
        expect(r.buffer).toEqual([]);
        expect(r.running.map((x) => x.nominalTime)).toEqual([2000]);
      }),
    ),
  );

  it.effect("BUFFER_ALL: every slot waits and they run one after another, in order", () =>
    withScheduler(() =>
      Effect.gen(function* () {
        const s = yield* Scheduler;
        const o = yield* Orchestrator;
        yield* s.create(admin, { scheduleId: "ba", schedule: blocked("BUFFER_ALL") });
        yield* seconds(4);
        let r = (yield* s.get(admin, "ba")).record;
        expect(r.buffer.map((b) => b.nominalTime)).toEqual([2000, 3000, 4000]);
        expect(r.overlapSkippedCount).toBe(0);
        for (const expected of [2000, 3000]) {
          yield* o.cancel(admin, r.running[0]!.executionId!, "test");
          yield* settle;
          r = (yield* s.get(admin, "ba")).record;
          expect(r.running.map((x) => x.nominalTime)).toEqual([expected]);
        }
        expect(yield* nominals("ba")).toEqual([1000, 2000, 3000]);
      }),
    ),
  );

  it.effect("CANCEL_OTHER: the active run is cancelled and the new slot starts", () =>
    withScheduler(() =>
      Effect.gen(function* () {
        const s = yield* Scheduler;
        yield* s.create(admin, { scheduleId: "co", schedule: blocked("CANCEL_OTHER") });
        yield* seconds(1);
        yield* seconds(1);
        yield* settle;
        const xs = yield* executionsOf("co");
        expect(xs.map((x) => [x.nominalTime, x.state])).toEqual([
          [1000, "CANCELLED"],
          [2000, "RUNNING"],
        ]);
      }),
    ),
  );

  it.effect("CANCEL_OTHER from another instance: obeyed for a live run of the schedule it names, not for any other execution", () =>
    Effect.gen(function* () {
      const probe = yield* makeProbe;
      const cancels = yield* PubSub.unbounded<string>();
      const bus = otherInstances("orchestrator_schedule_cancel", cancels);
      yield* Effect.gen(function* () {
        const s = yield* Scheduler;
        const o = yield* Orchestrator;
        yield* s.create(admin, { scheduleId: "co", schedule: input({ operation: "test.block", actionInput: {}, remainingRuns: 1 }) });
        yield* seconds(1);
        const run = (yield* executionsOf("co"))[0]!;
        const other = yield* o.submit({ operation: "test.block", input: {}, principal: admin });
        const ask = (executionId: string) => PubSub.publish(cancels, JSON.stringify({ scheduleId: "co", executionId, reason: "cancelled by schedule co: overlap policy CANCEL_OTHER" }));
        yield* ask(other.executionId);
        yield* settle;
        expect(o.runsHere(other.executionId)).toBe(true); // not a run of "co": ignored
        yield* ask(run.executionId);
        yield* settle;
        expect((yield* executionsOf("co")).map((x) => x.state)).toEqual(["CANCELLED"]);
        expect(o.runsHere(other.executionId)).toBe(true);
      }).pipe(Effect.provide(fullLayer(probe).pipe(Layer.provide(bus))));
    }),
  );

  it.effect("ALLOW_ALL: slots start alongside the active runs", () =>
    withScheduler(() =>
      Effect.gen(function* () {
        const s = yield* Scheduler;
        yield* s.create(admin, { scheduleId: "aa", schedule: blocked("ALLOW_ALL") });
        yield* seconds(3);
        expect(yield* nominals("aa")).toEqual([1000, 2000, 3000]);
        expect((yield* s.get(admin, "aa")).record.running).toHaveLength(3);
      }),
    ),
  );
});

describe("Scheduler: catch-up after downtime", () => {
  /** Creates a schedule, stops the scheduler for `downMs`, starts a new one: what ran? */
  const downtime = (schedule: ReturnType<typeof input>, downMs: number) =>
    Effect.gen(function* () {
      const probe = yield* makeProbe;
      return yield* Effect.gen(function* () {
        yield* Effect.scoped(
          Effect.gen(function* () {
            const s = yield* Scheduler;
            yield* s.create(admin, { scheduleId: "cu", schedule });
          }).pipe(Effect.provide(schedulerLayer())),
        );
        yield* TestClock.adjust(downMs);
        return yield* Effect.scoped(
          Effect.gen(function* () {
            const s = yield* Scheduler;
            yield* settle;
            return { view: yield* s.get(admin, "cu"), nominals: yield* nominals("cu") };
          }).pipe(Effect.provide(schedulerLayer())),
        );
      }).pipe(Effect.provide(baseLayer(probe)));
    });

  it.effect("slots within the window run (ALLOW_ALL: all of them); older ones are counted missed, not run", () =>
    Effect.gen(function* () {
      // Every minute; down 10 minutes; window 3 minutes: slots 1..6 min missed, 7..10 run.
      const { view, nominals: ns } = yield* downtime(input({ cron: ["0 * * * * *"], overlap: "ALLOW_ALL", catchupWindowMs: 180_000 }), 600_000);
      expect(ns).toEqual([420_000, 480_000, 540_000, 600_000]);
      expect(view.record.missedCount).toBe(6);
      expect(view.record.runCount).toBe(4);
    }),
  );

  it.effect("within the window, missed slots follow the overlap policy (SKIP with a blocking run: one runs)", () =>
    Effect.gen(function* () {
      const { view, nominals: ns } = yield* downtime(input({ cron: ["0 * * * * *"], operation: "test.block", overlap: "SKIP", catchupWindowMs: 180_000 }), 600_000);
      expect(ns).toEqual([420_000]);
      expect(view.record.overlapSkippedCount).toBe(3);
      expect(view.record.missedCount).toBe(6);
    }),
  );
});

describe("Scheduler: spec and state", () => {
  it.effect("jitter delays each fire by [0, jitter) and keeps the nominal time", () =>
    withScheduler(() =>
      Effect.gen(function* () {
        const s = yield* Scheduler;
        yield* s.create(admin, { scheduleId: "jit", schedule: input({ cron: ["*/10 * * * * *"], jitterMs: 5000 }) });
        yield* seconds(200);
        const xs = yield* executionsOf("jit");
        expect(xs.length).toBeGreaterThanOrEqual(19);
        const delays = xs.map((x) => x.createTime - x.nominalTime!);
        for (const d of delays) {
          expect(d).toBeGreaterThanOrEqual(0);
          expect(d).toBeLessThan(5000);
        }
        expect(new Set(delays).size).toBeGreaterThan(1);
        expect(xs.every((x) => x.nominalTime! % 10_000 === 0)).toBe(true);
      }),
    ),
  );

  it.effect("remaining_runs: stops after N cron fires; triggers do not count", () =>
    withScheduler(() =>
      Effect.gen(function* () {
        const s = yield* Scheduler;
        yield* s.create(admin, { scheduleId: "lim", schedule: input({ remainingRuns: 3 }) });
        yield* seconds(10);
        expect(yield* nominals("lim")).toEqual([1000, 2000, 3000]);
        const v = yield* s.get(admin, "lim");
        expect(v.record.state.remainingRuns).toBe(0);
        expect(v.nextRunTimes).toEqual([]);
        const t = yield* s.trigger(admin, { scheduleId: "lim" });
        expect(t.outcome).toBe("STARTED");
        expect((yield* s.get(admin, "lim")).record.state.remainingRuns).toBe(0);
      }),
    ),
  );

  it.effect("pause stops firing (slots are not counted missed); resume fires from the next slot", () =>
    withScheduler(() =>
      Effect.gen(function* () {
        const s = yield* Scheduler;
        yield* s.create(admin, { scheduleId: "pr", schedule: input() });
        yield* seconds(2);
        const p = yield* s.pause(admin, "pr", "maintenance");
        expect(p.record.state).toMatchObject({ paused: true, note: "maintenance" });
        expect(p.nextRunTimes).toEqual([]);
        yield* seconds(5);
        expect(yield* nominals("pr")).toEqual([1000, 2000]);
        const r = yield* s.resume(admin, "pr", "");
        expect(r.record.state).toMatchObject({ paused: false, note: "resumed" });
        yield* seconds(2);
        expect(yield* nominals("pr")).toEqual([1000, 2000, 8000, 9000]);
        expect((yield* s.get(admin, "pr")).record.missedCount).toBe(0);
        const types = (yield* (yield* AuditLogger).read(0, 10_000)).map((e) => e.type);
        expect(types).toContain("SCHEDULE_PAUSED");
        expect(types).toContain("SCHEDULE_RESUMED");
      }),
    ),
  );

  it.effect("start and end bound the slots", () =>
    withScheduler(() =>
      Effect.gen(function* () {
        const s = yield* Scheduler;
        yield* s.create(admin, { scheduleId: "se", schedule: input({ startTime: 5000, endTime: 8000 }) });
        yield* seconds(12);
        expect(yield* nominals("se")).toEqual([5000, 6000, 7000, 8000]);
        expect((yield* s.get(admin, "se")).nextRunTimes).toEqual([]);
      }),
    ),
  );

  it.effect("pause_on_failure: a failed run pauses the schedule with a note naming it", () =>
    withScheduler(() =>
      Effect.gen(function* () {
        const s = yield* Scheduler;
        yield* s.create(admin, { scheduleId: "pf", schedule: input({ operation: "test.crash", pauseOnFailure: true, maxAttempts: 1 }) });
        yield* seconds(3);
        const xs = yield* executionsOf("pf");
        expect(xs.map((x) => x.state)).toEqual(["FAILED"]);
        const r = (yield* s.get(admin, "pf")).record;
        expect(r.state.paused).toBe(true);
        expect(r.state.note).toContain(xs[0]!.executionId);
      }),
    ),
  );
});

describe("Scheduler: over capacity", () => {
  it.effect("claims no more while maxDispatching dispatches are under way; the rest wait in the store and run once", () =>
    Effect.gen(function* () {
      const probe = yield* makeProbe;
      yield* Effect.gen(function* () {
        // Every start waits at the gate (its policy check): nothing claimed can be dispatched.
        const gate = yield* Deferred.make<void>();
        const policy = Layer.succeed(
          PolicyService,
          PolicyService.of({ check: () => Deferred.await(gate).pipe(Effect.as({ rule: "default-allow", policyVersion: 0 })), usage: () => Effect.void, record: () => Effect.void }),
        );
        const s = Context.get(yield* Layer.build(schedulerLayer({ maxDispatching: 6 }).pipe(Layer.provide(Orchestrator.Default.pipe(Layer.provide(policy))))), Scheduler);
        for (let i = 0; i < 4; i++) yield* s.create(admin, { scheduleId: `j${i}`, schedule: input({ jitterMs: 900, overlap: "ALLOW_ALL" }) });
        yield* seconds(10);
        // Two passes of the engine (4 slots each, each dispatched when its jitter passed), then it waits: 40 without the bound.
        expect(s.dispatching()).toBe(8);
        yield* Deferred.succeed(gate, undefined);
        yield* settle;
        yield* seconds(5);
        for (let i = 0; i < 4; i++) expect(yield* nominals(`j${i}`)).toEqual(Array.from({ length: 14 }, (_, k) => (k + 1) * 1000));
        expect(s.dispatching()).toBeLessThanOrEqual(4);
      }).pipe(Effect.scoped, Effect.provide(baseLayer(probe)));
    }),
  );
});

describe("Scheduler: trigger, backfill, watch, update", () => {
  it.effect("trigger runs now under the overlap policy, even when paused", () =>
    withScheduler(() =>
      Effect.gen(function* () {
        const s = yield* Scheduler;
        yield* s.create(admin, { scheduleId: "tr", schedule: input({ operation: "test.block", paused: true }) });
        yield* TestClock.adjust(1234);
        const t1 = yield* s.trigger(admin, { scheduleId: "tr" });
        expect(t1.outcome).toBe("STARTED");
        expect(t1.run).toMatchObject({ nominalTime: 1234, kind: "TRIGGER" });
        const t2 = yield* s.trigger(admin, { scheduleId: "tr" });
        expect(t2.outcome).toBe("SKIPPED");
        const t3 = yield* s.trigger(admin, { scheduleId: "tr", overlap: "ALLOW_ALL" });
        expect(t3.outcome).toBe("STARTED");
        const again = yield* s.trigger(admin, { scheduleId: "tr", overlap: "ALLOW_ALL", requestId: "k1" });
        const same = yield* s.trigger(admin, { scheduleId: "tr", overlap: "ALLOW_ALL", requestId: "k1" });
        expect(same).toEqual(again);
        expect(yield* Effect.flip(s.trigger(admin, { scheduleId: "tr", requestId: "k1" }))).toMatchObject({ _tag: "ScheduleRequestIdReused" });
        expect(yield* Effect.flip(s.trigger(admin, { scheduleId: "missing" }))).toMatchObject({ _tag: "ScheduleNotFound" });
      }),
    ),
  );

  it.effect("backfill runs the window's slots, oldest first, one after another", () =>
    withScheduler(() =>
      Effect.gen(function* () {
        const s = yield* Scheduler;
        yield* s.create(admin, { scheduleId: "bf", schedule: input({ paused: true }) });
        yield* TestClock.adjust(100_000);
        const times = yield* s.backfill(admin, { scheduleId: "bf", startTime: 10_000, endTime: 15_000 });
        expect(times).toEqual([10_000, 11_000, 12_000, 13_000, 14_000]);
        yield* settle;
        yield* settle;
        expect(yield* nominals("bf")).toEqual(times);
        const e = yield* Effect.flip(s.backfill(admin, { scheduleId: "bf", startTime: 0, endTime: 5000 }).pipe(Effect.zipRight(s.backfill(admin, { scheduleId: "bf", startTime: 0, endTime: 200_000 }))));
        expect(e._tag).toBe("InvalidInput");
        const big = yield* Effect.flip(s.backfill(admin, { scheduleId: "bf", startTime: 0, endTime: 99_000 }).pipe(Effect.zipRight(Effect.void), Effect.zipRight(TestClock.adjust(2_000_000)), Effect.zipRight(s.backfill(admin, { scheduleId: "bf", startTime: 0, endTime: 1_500_000 }))));
        expect(big._tag).toBe("BackfillTooLarge");
      }),
    ),
  );

  it.effect("watch: a snapshot, then fires and run ends; the stream ends when the schedule is deleted", () =>
    withScheduler(() =>
      Effect.gen(function* () {
        const s = yield* Scheduler;
        yield* s.create(admin, { scheduleId: "w", schedule: input() });
        const fiber = yield* Stream.runCollect(s.watch(admin, "w")).pipe(Effect.fork);
        yield* settle;
        yield* seconds(2);
        yield* s.remove(admin, { scheduleId: "w", allowMissing: false });
        const events = Chunk.toArray(yield* Fiber.join(fiber));
        const tags = events.map((e) => e.kind._tag);
        expect(tags[0]).toBe("Snapshot");
        expect(tags.filter((t) => t === "Fired")).toHaveLength(2);
        expect(tags.filter((t) => t === "RunEnded")).toHaveLength(2);
        expect(yield* Effect.flip(s.get(admin, "w"))).toMatchObject({ _tag: "ScheduleNotFound" });
      }),
    ),
  );

  it.effect("watch: a late deletion of a previous schedule of the same id (from another instance) does not end the watch", () =>
    Effect.gen(function* () {
      const probe = yield* makeProbe;
      const remote = yield* PubSub.unbounded<string>();
      const bus = otherInstances("orchestrator_schedule_events", remote);
      yield* Effect.gen(function* () {
        const s = yield* Scheduler;
        yield* TestClock.adjust("10 seconds");
        yield* s.create(admin, { scheduleId: "w", schedule: input() }); // created at 10,000
        const fiber = yield* Stream.runCollect(s.watch(admin, "w")).pipe(Effect.fork);
        yield* settle;
        // The previous "w", deleted on another instance at 9,000, heard only now.
        yield* PubSub.publish(remote, JSON.stringify({ scheduleId: "w", time: 9_000, kind: { _tag: "Deleted" } }));
        yield* settle;
        yield* seconds(1);
        yield* s.remove(admin, { scheduleId: "w", allowMissing: false });
        const tags = Chunk.toArray(yield* Fiber.join(fiber)).map((e) => e.kind._tag);
        expect(tags[0]).toBe("Snapshot");
        expect(tags).toContain("Fired"); // still watched after the late deletion
      }).pipe(Effect.provide(fullLayer(probe).pipe(Layer.provide(bus))));
    }),
  );

  it.effect("update: masks, etag concurrency, new times", () =>
    withScheduler(() =>
      Effect.gen(function* () {
        const s = yield* Scheduler;
        const c = yield* s.create(admin, { scheduleId: "up", schedule: input() });
        const etag = `"v${c.record.version}"`;
        const u = yield* s.update(admin, { scheduleId: "up", schedule: input({ cron: ["*/5 * * * * *"] }), paths: ["spec.cronExpressions"], etag });
        expect(u.record.spec.cronExpressions).toEqual(["*/5 * * * * *"]);
        expect(u.nextRunTimes.slice(0, 2)).toEqual([5000, 10_000]);
        const stale = yield* Effect.flip(s.update(admin, { scheduleId: "up", schedule: input(), paths: [], etag }));
        expect(stale._tag).toBe("EtagMismatch");
        const rr = yield* s.update(admin, { scheduleId: "up", schedule: input({ remainingRuns: 1 }), paths: ["state.remainingRuns"] });
        expect(rr.record.state.remainingRuns).toBe(1);
        yield* seconds(11);
        expect(yield* nominals("up")).toEqual([5000]);
      }),
    ),
  );
});

describe.each([
  ["memory", () => ScheduleStoreMemory],
  ["sqlite", sqliteStore],
] as const)("Scheduler: exactly once (%s store)", (_name, storeLayer) => {
  it.effect("two engines on one store claim each slot once", () =>
    Effect.gen(function* () {
      const probe = yield* makeProbe;
      yield* Effect.gen(function* () {
        const sa = Context.get(yield* Layer.build(schedulerLayer({ instanceId: "a" })), Scheduler);
        const sb = Context.get(yield* Layer.build(schedulerLayer({ instanceId: "b" })), Scheduler);
        for (let i = 0; i < 5; i++) yield* (i % 2 === 0 ? sa : sb).create(admin, { scheduleId: `x${i}`, schedule: input() });
        yield* seconds(10);
        for (let i = 0; i < 5; i++) expect(yield* nominals(`x${i}`)).toEqual([1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10_000]);
        const store = yield* ScheduleStore;
        expect(yield* store.count()).toBe(5);
      }).pipe(Effect.scoped, Effect.provide(baseLayer(probe, storeLayer())));
    }),
  );

  /**
   * A scheduler instance with an Orchestrator of its own whose first policy check (after the
   * claim, before the execution exists) waits until released: a stall. `deny`: that check then
   * refuses (a refusal after the stall, like a rate limit would).
   */
  const stallingInstance = (instanceId: string, answer: "allow" | "deny" = "allow", stallAfterInsert = false) =>
    Effect.gen(function* () {
      const entered = yield* Deferred.make<void>();
      const gate = yield* Deferred.make<void>();
      // stallAfterInsert: its first execution insert is committed, then it waits (before the schedule hears of it).
      const inserted = yield* Deferred.make<void>();
      const afterInsert = yield* Deferred.make<void>();
      let firstInsert = true;
      const executions = Layer.effect(
        ExecutionStore,
        Effect.map(ExecutionStore, (st) => ({
          ...st,
          insert: (r: Parameters<typeof st.insert>[0]) =>
            Effect.tap(st.insert(r), () => {
              if (!stallAfterInsert || !firstInsert) return Effect.void;
              firstInsert = false;
              return Effect.zipRight(Deferred.succeed(inserted, undefined), Deferred.await(afterInsert));
            }),
        })),
      );
      let first = true;
      const policy = Layer.succeed(
        PolicyService,
        PolicyService.of({
          check: () => {
            if (!first) return Effect.succeed({ rule: "default-allow", policyVersion: 0 });
            first = false;
            return Deferred.succeed(entered, undefined).pipe(
              Effect.zipRight(Deferred.await(gate)),
              Effect.zipRight(answer === "allow" ? Effect.succeed({ rule: "default-allow", policyVersion: 0 }) : Effect.fail(new PolicyDenied({ rule: "late", reason: "refused after the stall" }))),
            );
          },
          usage: () => Effect.void,
          record: () => Effect.void,
        }),
      );
      const layer = schedulerLayer({ instanceId, leaseMs: 3_000 }).pipe(Layer.provide(Orchestrator.Default.pipe(Layer.provide(Layer.merge(policy, executions)))));
      const scheduler = Context.get(yield* Layer.build(layer), Scheduler);
      return {
        scheduler,
        entered: Deferred.await(entered),
        release: Effect.zipRight(Deferred.succeed(gate, undefined), settle),
        inserted: Deferred.await(inserted),
        finish: Effect.zipRight(Deferred.succeed(afterInsert, undefined), settle),
      };
    });

  /** Slot 1000 of a one-run schedule on instance a, which stalls on it; b is built 500 ms later. */
  const stalledSlot = (
    operation: string,
    a: { readonly answer?: "allow" | "deny"; readonly stallAfterInsert?: boolean } = {},
    b: { readonly stalls?: boolean; readonly answer?: "allow" | "deny" } = {},
  ) =>
    Effect.gen(function* () {
      const ia = yield* stallingInstance("a", a.answer, a.stallAfterInsert);
      yield* ia.scheduler.create(admin, { scheduleId: "once", schedule: input({ remainingRuns: 1, operation, actionInput: operation === "test.count" ? { n: 1 } : {} }) });
      yield* seconds(1); // slot 1000: a claims it (lease until 4000) and stalls
      yield* ia.entered;
      yield* TestClock.adjust("500 millis");
      // b's lease sweep runs at 1500, 2500, … (a's at 1000, 2000, …): b is first to see the lease expired.
      const ib = b.stalls === true ? yield* stallingInstance("b", b.answer) : { scheduler: Context.get(yield* Layer.build(schedulerLayer({ instanceId: "b", leaseMs: 3_000 })), Scheduler), entered: Effect.void, release: Effect.void, inserted: Effect.void, finish: Effect.void };
      yield* seconds(3); // t = 4500: b takes the slot over
      return { a: ia, b: ib };
    });

  it.effect("an instance that stalls past its lease before starting its slot does not start it again once the slot was taken over", () =>
    Effect.gen(function* () {
      const probe = yield* makeProbe;
      yield* Effect.gen(function* () {
        const { a } = yield* stalledSlot("test.count");
        expect(yield* nominals("once")).toEqual([1000]); // b took the slot over and started it
        yield* a.release;
        yield* seconds(1);
        expect(yield* nominals("once")).toEqual([1000]);
        const r = yield* a.scheduler.get(admin, "once");
        expect(r.record.runCount).toBe(1);
        expect(r.record.running).toEqual([]);
        expect(r.record.recentRuns.map((x) => [x.nominalTime, x.state])).toEqual([[1000, "SUCCEEDED"]]);
      }).pipe(Effect.scoped, Effect.provide(baseLayer(probe, storeLayer())));
    }),
  );

  it.effect("a catch-up of two slots whose instance stalls on the first: the taker decides each once, and each runs once", () =>
    Effect.gen(function* () {
      const probe = yield* makeProbe;
      yield* Effect.gen(function* () {
        // Created while no engine runs slots 1000 and 2000: the next engine catches both up at once.
        yield* Effect.scoped(
          Effect.flatMap(Scheduler, (s) => s.create(admin, { scheduleId: "once", schedule: input({ operation: "test.block", actionInput: {}, overlap: "BUFFER_ALL", endTime: 2_500 }) })).pipe(
            Effect.provide(schedulerLayer({ instanceId: "z" })),
          ),
        );
        yield* TestClock.adjust("2 seconds");
        const a = yield* stallingInstance("a"); // claims 1000 and 2000, stalls starting 1000
        yield* settle;
        yield* a.entered;
        yield* TestClock.adjust("500 millis");
        const b = Context.get(yield* Layer.build(schedulerLayer({ instanceId: "b", leaseMs: 3_000 })), Scheduler);
        yield* seconds(3); // t = 5500: b has taken both claims over: 1000 runs, 2000 waits
        const first = yield* executionsOf("once");
        expect(first.map((x) => [x.nominalTime, x.state])).toEqual([[1000, "RUNNING"]]);
        yield* a.release; // a's start of 1000 is deduplicated; its claim of 2000 is no longer its own
        yield* seconds(1);
        const r = yield* b.get(admin, "once");
        expect(r.record.buffer.map((x) => x.nominalTime)).toEqual([2000]);
        expect(r.record.running.map((x) => [x.nominalTime, x.executionId])).toEqual([[1000, first[0]!.executionId]]);
        // 1000 ends: 2000 starts, once.
        yield* Effect.flatMap(Orchestrator, (o) => o.cancel(admin, first[0]!.executionId, "done"));
        yield* settle;
        yield* seconds(1);
        expect((yield* executionsOf("once")).map((x) => [x.nominalTime, x.state])).toEqual([
          [1000, "CANCELLED"],
          [2000, "RUNNING"],
        ]);
        const after = yield* b.get(admin, "once");
        expect(after.record.buffer).toEqual([]);
        expect(after.record.runCount).toBe(2);
      }).pipe(Effect.scoped, Effect.provide(baseLayer(probe, storeLayer())));
    }),
  );

  it.effect("a backfill slot taken over from a stalled instance runs, though a cron run of the same time exists", () =>
    Effect.gen(function* () {
      const probe = yield* makeProbe;
      yield* Effect.gen(function* () {
        // Slot 1000 runs as a cron slot, on an engine that then stops.
        yield* Effect.scoped(
          Effect.gen(function* () {
            const s = yield* Scheduler;
            yield* s.create(admin, { scheduleId: "once", schedule: input({ endTime: 1_500 }) });
            yield* seconds(1);
          }).pipe(Effect.provide(schedulerLayer({ instanceId: "z" }))),
        );
        expect(yield* nominals("once")).toEqual([1000]);
        yield* TestClock.adjust("1 second");
        const a = yield* stallingInstance("a");
        // The backfill of [1000, 2000) on a: its run of slot 1000 stalls; b takes the claim over.
        yield* a.scheduler.backfill(admin, { scheduleId: "once", startTime: 1_000, endTime: 2_000 });
        yield* settle;
        yield* a.entered;
        yield* TestClock.adjust("500 millis");
        yield* Layer.build(schedulerLayer({ instanceId: "b", leaseMs: 3_000 }));
        yield* seconds(3);
        const xs = yield* executionsOf("once");
        expect(xs.map((x) => x.nominalTime)).toEqual([1000, 1000]); // the cron run, and the backfill's (b's)
        yield* a.release; // a's start of the same claim is deduplicated
        yield* seconds(1);
        expect(yield* nominals("once")).toEqual([1000, 1000]);
      }).pipe(Effect.scoped, Effect.provide(baseLayer(probe, storeLayer())));
    }),
  );

  it.effect("a trigger whose caller goes away while its run is being started: the slot is taken over later and runs", () =>
    Effect.gen(function* () {
      const probe = yield* makeProbe;
      yield* Effect.gen(function* () {
        const a = yield* stallingInstance("a");
        yield* a.scheduler.create(admin, { scheduleId: "tr", schedule: input({ cron: ["0 0 1 1 *"], overlap: "SKIP" }) });
        const call = yield* Effect.fork(a.scheduler.trigger(admin, { scheduleId: "tr" }));
        yield* a.entered; // its start waits in the policy check
        yield* Fiber.interrupt(call); // the caller is gone
        yield* seconds(5); // past the 3 s lease: the sweeper takes the claim over
        expect((yield* executionsOf("tr")).map((x) => x.state)).toEqual(["SUCCEEDED"]);
        const r = yield* a.scheduler.get(admin, "tr");
        expect(r.record.running).toEqual([]);
        // Nothing is left active: the next trigger starts (SKIP would skip it otherwise).
        expect(yield* a.scheduler.trigger(admin, { scheduleId: "tr" })).toMatchObject({ outcome: "STARTED" });
      }).pipe(Effect.scoped, Effect.provide(baseLayer(probe, storeLayer())));
    }),
  );

  it.effect("the stalled instance starts first and the taker is deduplicated: one run, which overlap still sees", () =>
    Effect.gen(function* () {
      const probe = yield* makeProbe;
      yield* Effect.gen(function* () {
        const { a, b } = yield* stalledSlot("test.block", {}, { stalls: true });
        yield* b.entered; // b took the slot over and stalls too
        yield* a.release; // a creates the execution first
        yield* b.release; // b's start finds it
        yield* seconds(1);
        const xs = yield* executionsOf("once");
        expect(xs.map((x) => [x.nominalTime, x.state])).toEqual([[1000, "RUNNING"]]);
        const r = yield* b.scheduler.get(admin, "once");
        expect(r.record.running).toMatchObject([{ claimId: "cron:1000", instanceId: "a", executionId: xs[0]!.executionId }]);
        expect(r.record.runCount).toBe(1);
        // The run is active for both instances' overlap policy (SKIP).
        expect(yield* b.scheduler.trigger(admin, { scheduleId: "once" })).toMatchObject({ outcome: "SKIPPED" });
        expect(yield* a.scheduler.trigger(admin, { scheduleId: "once" })).toMatchObject({ outcome: "SKIPPED" });
        expect(yield* executionsOf("once")).toHaveLength(1);
      }).pipe(Effect.scoped, Effect.provide(baseLayer(probe, storeLayer())));
    }),
  );

  it.effect("the taker is refused after the stalled instance started the slot: the run and its claim stand", () =>
    Effect.gen(function* () {
      const probe = yield* makeProbe;
      yield* Effect.gen(function* () {
        const { a, b } = yield* stalledSlot("test.block", { stallAfterInsert: true }, { stalls: true, answer: "deny" });
        yield* b.entered; // b took the slot over and stalls too
        yield* a.release; // a creates the execution, and stalls again before recording it
        yield* a.inserted;
        yield* b.release; // b's start is refused (by its policy; a limit that a's run fills would do the same)
        yield* a.finish;
        yield* seconds(1);
        const xs = yield* executionsOf("once");
        expect(xs.map((x) => [x.nominalTime, x.state])).toEqual([[1000, "RUNNING"]]);
        const r = yield* b.scheduler.get(admin, "once");
        expect(r.record.running).toMatchObject([{ claimId: "cron:1000", instanceId: "a", executionId: xs[0]!.executionId }]);
        expect(r.record.recentRuns.map((x) => [x.nominalTime, x.executionId, x.error])).toEqual([[1000, xs[0]!.executionId, undefined]]);
        const audit = yield* AuditLogger;
        expect((yield* audit.read(0, 10_000)).filter((e) => e.type === "SCHEDULE_SKIPPED" && e.details?.["nominal_time"] === 1000)).toEqual([]);
      }).pipe(Effect.scoped, Effect.provide(baseLayer(probe, storeLayer())));
    }),
  );

  it.effect("the stalled instance is refused after the takeover: the taker's run and its claim stand", () =>
    Effect.gen(function* () {
      const probe = yield* makeProbe;
      yield* Effect.gen(function* () {
        const { a } = yield* stalledSlot("test.block", { answer: "deny" });
        const xs = yield* executionsOf("once");
        expect(xs.map((x) => [x.nominalTime, x.state])).toEqual([[1000, "RUNNING"]]); // b's
        yield* a.release; // a's late start is refused by its policy
        yield* seconds(1);
        const r = yield* a.scheduler.get(admin, "once");
        expect(r.record.running).toMatchObject([{ claimId: "cron:1000", instanceId: "b", executionId: xs[0]!.executionId }]);
        expect(r.record.recentRuns.map((x) => [x.nominalTime, x.executionId, x.error])).toEqual([[1000, xs[0]!.executionId, undefined]]);
        const audit = yield* AuditLogger;
        // (Later slots are skipped by the overlap policy: the run of slot 1000 is active.)
        expect((yield* audit.read(0, 10_000)).filter((e) => e.type === "SCHEDULE_SKIPPED" && e.details?.["nominal_time"] === 1000)).toEqual([]);
        expect(yield* a.scheduler.trigger(admin, { scheduleId: "once" })).toMatchObject({ outcome: "SKIPPED" });
      }).pipe(Effect.scoped, Effect.provide(baseLayer(probe, storeLayer())));
    }),
  );
});
