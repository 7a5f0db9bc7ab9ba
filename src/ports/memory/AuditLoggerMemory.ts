/**
 * AuditLogger in process memory, for tests and for embedding without a disk: sequences 1, 2, 3…
 * in append order. It keeps every event (retention comes with the audit issue, #7).
 */
import { Clock, Effect, Layer } from "effect";
import { type AuditEntry, type AuditEvent, AuditLogger } from "../AuditLogger.js";

const make = Effect.sync(() => {
  // events[i] has sequence i + 1, so a read is a slice.
  const events: Array<AuditEvent> = [];

  const log = (entry: AuditEntry): Effect.Effect<void> =>
    Effect.map(Clock.currentTimeMillis, (time) => {
      // A copy, so that the caller's object cannot change the record afterwards.
      events.push({ ...structuredClone(entry), sequence: events.length + 1, time });
    });

  const read = (afterSequence: number, limit: number): Effect.Effect<ReadonlyArray<AuditEvent>> =>
    Effect.sync(() => {
      if (limit <= 0) return [];
      const start = Math.max(0, Math.floor(afterSequence));
      return events.slice(start, start + Math.floor(limit));
    });

  return AuditLogger.of({ log, read });
});

/** A fresh, empty log per Layer build. */
export const AuditLoggerMemory: Layer.Layer<AuditLogger> = Layer.effect(AuditLogger, make);
