/**
 * Test Layers for the audit log's readers: AuditLog over each AuditLogger (memory, SQLite on a
 * real file), and helpers to collect Subscribe streams.
 */
import { Chunk, Effect, Layer, Stream } from "effect";
import { AuditConfig, type AuditSettings } from "../../src/core/audit/AuditConfig.js";
import { AuditLog, type SubscribeItem } from "../../src/core/audit/AuditLog.js";
import type { AuditEvent } from "../../src/ports/AuditLogger.js";
import { AuditLogger } from "../../src/ports/AuditLogger.js";
import { AuditLoggerMemory } from "../../src/ports/memory/AuditLoggerMemory.js";
import { auditLoggerSqlite } from "../../src/ports/sqlite/AuditLoggerSqlite.js";
import { freshDatabase } from "../ports/fixtures.js";

export interface AuditImpl {
  readonly name: string;
  readonly logger: Layer.Layer<AuditLogger, unknown>;
}

export const auditImpls: ReadonlyArray<AuditImpl> = [
  { name: "memory", logger: AuditLoggerMemory },
  // Commits end on the writer thread, so a tight loop of logs makes batches of up to maxBatch;
  // one batch larger than a subscriber's buffer drops even a fast subscriber (AuditHub.publish),
  // and the subscribe tests use 64-event buffers: batches of 32 at most keep that out of them.
  { name: "sqlite", logger: auditLoggerSqlite({ maxBatch: 32 }).pipe(Layer.provide(freshDatabase)) },
];

/**
 * AuditLog and its AuditLogger, retention off unless asked for. Under TestClock, deliveries are
 * not coalesced (deliveryIntervalMs 0: a coalescing sleep would wait for the test to move the
 * clock); the server tests (real clock) run with the default interval.
 */
export const auditLayer = (logger: Layer.Layer<AuditLogger, unknown>, settings: Partial<AuditSettings> = {}) =>
  AuditLog.Default.pipe(
    Layer.provideMerge(logger),
    Layer.provide(AuditConfig.layer({ retentionMaxAgeMs: undefined, retentionMaxEvents: undefined, deliveryIntervalMs: 0, ...settings })),
  );

export const eventsOf = (items: Iterable<SubscribeItem>): AuditEvent[] => {
  const out: AuditEvent[] = [];
  for (const i of items) if (i._tag === "Event") out.push(i.event);
  return out;
};

/** Runs a subscription until it has delivered an event with sequence ≥ `through`. */
export const collectThrough = <E, R>(stream: Stream.Stream<SubscribeItem, E, R>, through: number) =>
  stream.pipe(
    Stream.takeUntil((i) => i._tag === "Event" && i.event.sequence >= through),
    Stream.runCollect,
    Effect.map((c) => eventsOf(Chunk.toReadonlyArray(c))),
  );

/** Sequences strictly increasing, with nothing between `from` and `to` missing. */
export const sequences = (events: ReadonlyArray<AuditEvent>) => events.map((e) => e.sequence);
export const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
