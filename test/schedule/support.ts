/**
 * Test Layers for the scheduler: the real Orchestrator and Scheduler over in-memory ports.
 */
import { Effect, Layer } from "effect";
import { Scheduler, SchedulerConfig, type ScheduleInput, type SchedulerSettings } from "../../src/core/schedule/Scheduler.js";
import type { OverlapPolicy } from "../../src/core/schedule/model.js";
import type { JsonObject } from "../../src/core/model.js";
import { ScheduleStoreMemory } from "../../src/ports/memory/ScheduleStoreMemory.js";
import { ExecutionStore } from "../../src/ports/ExecutionStore.js";
import type { ScheduleStore } from "../../src/ports/ScheduleStore.js";
import { ScheduleStoreSqlite } from "../../src/ports/sqlite/ScheduleStoreSqlite.js";
import { SqliteDatabase } from "../../src/ports/sqlite/SqliteDatabase.js";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { coreLayer, type Probe } from "../support/core.js";

/** Orchestrator, its in-memory ports and a memory ScheduleStore (no Scheduler: tests build it, possibly several times). */
export const baseLayer = (probe: Probe, store: Layer.Layer<ScheduleStore, unknown> = ScheduleStoreMemory) => Layer.merge(coreLayer(probe), store);

/** A ScheduleStore on a fresh SQLite file. */
export const sqliteStore = () => ScheduleStoreSqlite.pipe(Layer.provide(SqliteDatabase.layer(mkdtempSync(join(tmpdir(), "schedule-")))));

export const schedulerLayer = (settings: Partial<SchedulerSettings> = {}) =>
  Scheduler.Default.pipe(Layer.provideMerge(SchedulerConfig.layer({ pollMs: 60_000, ...settings })));

export const fullLayer = (probe: Probe, settings: Partial<SchedulerSettings> = {}) => schedulerLayer(settings).pipe(Layer.provideMerge(baseLayer(probe)));

export const input = (
  o: {
    cron?: ReadonlyArray<string>;
    operation?: string;
    actionInput?: JsonObject;
    overlap?: OverlapPolicy;
    catchupWindowMs?: number;
    pauseOnFailure?: boolean;
    paused?: boolean;
    remainingRuns?: number;
    startTime?: number;
    endTime?: number;
    jitterMs?: number;
    maxAttempts?: number;
  } = {},
): ScheduleInput => ({
  spec: {
    cronExpressions: o.cron ?? ["* * * * * *"],
    timeZone: "UTC",
    ...(o.startTime === undefined ? {} : { startTime: o.startTime }),
    ...(o.endTime === undefined ? {} : { endTime: o.endTime }),
    ...(o.jitterMs === undefined ? {} : { jitterMs: o.jitterMs }),
  },
  action: {
    operation: o.operation ?? "test.count",
    input: o.actionInput ?? (o.operation === undefined || o.operation === "test.count" ? { n: 1 } : {}),
    labels: {},
    ...(o.maxAttempts === undefined ? {} : { retry: { maximumAttempts: o.maxAttempts } }),
  },
  policy: { overlap: o.overlap ?? "SKIP", catchupWindowMs: o.catchupWindowMs ?? 300_000, pauseOnFailure: o.pauseOnFailure ?? false },
  state: { paused: o.paused ?? false, note: "", ...(o.remainingRuns === undefined ? {} : { remainingRuns: o.remainingRuns }) },
});

/** Executions of a schedule, oldest first. */
export const executionsOf = (scheduleId: string) =>
  Effect.flatMap(ExecutionStore, (s) => s.list({ scheduleId }, "CREATE_TIME_ASCENDING", 1000, undefined)).pipe(Effect.map((p) => p.items));

/** Lets forked fibers (runs, their ends, the engine) make progress without moving the clock. */
export const settle = Effect.repeatN(Effect.yieldNow(), 100);
