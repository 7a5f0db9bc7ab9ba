/**
 * AuditLogger in process memory, for tests and for embedding without a disk: sequences 1, 2, 3…
 * in append order. `log` appends at once (there is nothing to make durable), so `flush` has
 * nothing to wait for. Retention (`prune`) drops the oldest.
 */
import { Clock, Effect, Layer } from "effect";
import { scrubDetails, scrubReason } from "../../core/audit/redact.js";
import {
  type AuditEntry,
  type AuditEvent,
  AuditLogger,
  type AuditQuery,
  type AuditRetention,
  type CommitListener,
  matchesFilter,
} from "../AuditLogger.js";

const make = Effect.sync(() => {
  // Oldest first; events[i].sequence === offset + i + 1.
  let events: Array<AuditEvent> = [];
  let offset = 0;
  let prunedThrough = 0;
  const listeners = new Set<CommitListener>();

  const log = (entry: AuditEntry): Effect.Effect<void> =>
    Effect.map(Clock.currentTimeMillis, (time) => {
      // A copy, so that the caller's object cannot change the record afterwards.
      const copy = structuredClone(entry) as AuditEntry;
      const event: AuditEvent = {
        ...copy,
        ...(copy.details === undefined ? {} : { details: scrubDetails(copy.details) }),
        ...(copy.reason === undefined ? {} : { reason: scrubReason(copy.reason) }),
        sequence: offset + events.length + 1,
        time,
      };
      events.push(event);
      for (const l of listeners) l([event]);
    });

  const query = (q: AuditQuery) =>
    Effect.sync(() => {
      const out: AuditEvent[] = [];
      if (q.limit <= 0) return out;
      const lo = Math.max(q.after ?? 0, offset);
      const hi = Math.min(q.through ?? Infinity, (q.before ?? Infinity) - 1, offset + events.length);
      if (q.order === "ASCENDING") {
        for (let s = lo + 1; s <= hi && out.length < q.limit; s++) {
          const e = events[s - offset - 1]!;
          if (matchesFilter(e, q.filter)) out.push(e);
        }
      } else {
        for (let s = hi; s > lo && out.length < q.limit; s--) {
          const e = events[s - offset - 1]!;
          if (matchesFilter(e, q.filter)) out.push(e);
        }
      }
      return out;
    });

  const read = (afterSequence: number, limit: number) =>
    query({ filter: {}, after: Math.floor(afterSequence), order: "ASCENDING", limit: Math.floor(limit) });

  const bounds = Effect.sync(() => ({
    earliest: events.length === 0 ? 0 : offset + 1,
    last: offset + events.length,
    prunedThrough,
  }));

  const prune = (r: AuditRetention) =>
    Effect.sync(() => {
      let drop = 0;
      if (r.olderThan !== undefined) {
        const young = events.findIndex((e) => e.time >= r.olderThan!);
        drop = young === -1 ? events.length : young;
      }
      if (r.keepLast !== undefined) drop = Math.max(drop, events.length - Math.max(0, r.keepLast));
      if (drop <= 0) return 0;
      events = events.slice(drop);
      offset += drop;
      prunedThrough = offset;
      return drop;
    });

  const watch = (listener: CommitListener) =>
    Effect.acquireRelease(
      Effect.sync(() => void listeners.add(listener)),
      () => Effect.sync(() => void listeners.delete(listener)),
    );

  return AuditLogger.of({ log, flush: Effect.void, read, query, bounds, prune, watch });
});

/** A fresh, empty log per Layer build. */
export const AuditLoggerMemory: Layer.Layer<AuditLogger> = Layer.effect(AuditLogger, make);
