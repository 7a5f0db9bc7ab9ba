/**
 * Coalesced delivery (deliveryIntervalMs > 0) over a logger whose commits the test ends by hand,
 * as a commit on another thread or connection ends when it ends: a delivery round first takes in
 * the commits of what was logged before it (so they go out in that round rather than the next),
 * but waits for them one interval at most; and subscribers never see an uncommitted event.
 * AuditHub: subscribers taking every event share one array per round, which never changes once
 * handed out.
 */
import { describe, expect, it } from "@effect/vitest";
import { Chunk, Deferred, Effect, Fiber, Layer, Stream, TestClock } from "effect";
import { AuditConfig } from "../../src/core/audit/AuditConfig.js";
import { AuditHub } from "../../src/core/audit/AuditHub.js";
import { AuditLog } from "../../src/core/audit/AuditLog.js";
import { AuditLogger, type AuditEntry, type AuditEvent, type CommitListener, matchesFilter } from "../../src/ports/AuditLogger.js";
import { admin } from "../support/core.js";
import { eventsOf } from "./support.js";

/** A logger whose logged events stay uncommitted until `commit(n)` commits the oldest n. */
const heldLogger = Effect.gen(function* () {
  const committed: AuditEvent[] = [];
  const pending: AuditEntry[] = [];
  const listeners = new Set<CommitListener>();
  let appended = 0;
  const barriers: Array<{ readonly target: number; readonly done: Deferred.Deferred<void> }> = [];
  const commit = (n: number) =>
    Effect.gen(function* () {
      const events = pending.splice(0, n).map((e, i): AuditEvent => ({ ...e, sequence: committed.length + i + 1, time: 0 }));
      committed.push(...events);
      for (const l of listeners) l(events);
      for (const b of barriers.splice(0)) {
        if (b.target <= committed.length) yield* Deferred.succeed(b.done, undefined);
        else barriers.push(b);
      }
    });
  const logger = AuditLogger.of({
    log: (entry) => Effect.sync(() => void (pending.push(entry), appended++)),
    flush: Effect.suspend(() => {
      if (committed.length >= appended) return Effect.void;
      return Effect.flatMap(Deferred.make<void>(), (done) => {
        barriers.push({ target: appended, done });
        return Deferred.await(done);
      });
    }),
    read: (after, limit) => Effect.succeed(committed.filter((e) => e.sequence > after).slice(0, limit)),
    query: (q) => Effect.succeed(committed.filter((e) => e.sequence > (q.after ?? 0) && e.sequence <= (q.through ?? Infinity) && matchesFilter(e, q.filter)).slice(0, q.limit)),
    bounds: Effect.sync(() => ({ earliest: committed.length === 0 ? 0 : 1, last: committed.length, prunedThrough: 0 })),
    prune: () => Effect.succeed(0),
    watch: (l) => Effect.acquireRelease(Effect.sync(() => void listeners.add(l)), () => Effect.sync(() => void listeners.delete(l))),
  });
  return { logger, commit };
});

const entry = (i: number): AuditEntry => ({ type: "EXECUTION_SUCCEEDED", executionId: `ex-${i}`, principal: admin });

/** Lets every fiber that can run do so (no clock). */
const settle = Effect.forEach(Array.from({ length: 50 }), () => Effect.yieldNow(), { discard: true });

describe("AuditLog coalesced delivery", () => {
  it.scoped("a round takes in the commits in flight, for one interval at most; nothing uncommitted is delivered", () =>
    Effect.gen(function* () {
      const { logger, commit } = yield* heldLogger;
      const layer = AuditLog.Default.pipe(
        Layer.provideMerge(Layer.succeed(AuditLogger, logger)),
        Layer.provide(AuditConfig.layer({ retentionMaxAgeMs: undefined, deliveryIntervalMs: 10, pollIntervalMs: 86_400_000 })),
      );
      yield* Effect.gen(function* () {
        const log = yield* AuditLog;
        const chunks: number[][] = [];
        const fiber = yield* log.subscribe(admin, {}, { _tag: "Now" }).pipe(
          Stream.runForEachChunk((c) => Effect.sync(() => void chunks.push(eventsOf(Chunk.toReadonlyArray(c)).map((e) => e.sequence)))),
          Effect.fork,
        );
        for (let i = 0; i < 10_000 && log.subscribers() !== 1; i++) yield* Effect.yieldNow();
        expect(log.subscribers()).toBe(1);

        // 1 commits while 2 is still in flight: the round waits for 2 and carries both.
        yield* logger.log(entry(1));
        yield* logger.log(entry(2));
        yield* commit(1);
        yield* settle;
        expect(chunks).toStrictEqual([]);
        yield* commit(1);
        yield* settle;
        expect(chunks).toStrictEqual([[1, 2]]);

        // 3 commits, 4 does not: after the interval between rounds and one more of waiting,
        // 3 goes out alone; 4 goes out in a later round once committed.
        yield* logger.log(entry(3));
        yield* logger.log(entry(4));
        yield* commit(1);
        yield* TestClock.adjust("10 millis");
        yield* settle;
        expect(chunks).toStrictEqual([[1, 2]]);
        yield* TestClock.adjust("10 millis");
        yield* settle;
        expect(chunks).toStrictEqual([[1, 2], [3]]);
        yield* commit(1);
        yield* TestClock.adjust("10 millis");
        yield* settle;
        expect(chunks).toStrictEqual([[1, 2], [3], [4]]);
        yield* Fiber.interrupt(fiber);
      }).pipe(Effect.provide(layer));
    }),
  );
});

describe("AuditHub", () => {
  const ev = (sequence: number, tenant = "acme"): AuditEvent => ({ sequence, time: 0, type: "EXECUTION_SUCCEEDED", principal: { ...admin, tenant } });
  const seqs = (items: ReadonlyArray<{ readonly event: AuditEvent }>) => items.map((i) => i.event.sequence);

  it("subscribers in step share one array across commits; an array handed out never changes; filtered and late ones get their own", () => {
    const hub = new AuditHub(0, 16);
    const a = hub.register(0, {}, 100)!;
    const b = hub.register(0, {}, 100)!;
    const f = hub.register(0, { tenant: "other" }, 100)!;
    hub.publish([ev(1), ev(2)]);
    hub.publish([ev(3, "other")]);
    const late = hub.register(2, {}, 100)!;
    hub.publish([ev(4)]);
    expect([a.buffered, b.buffered, f.buffered, late.buffered]).toStrictEqual([4, 4, 1, 2]);
    const ta = hub.take(a);
    const tb = hub.take(b);
    expect(ta).toBe(tb);
    expect(seqs(ta)).toStrictEqual([1, 2, 3, 4]);
    expect(seqs(hub.take(f))).toStrictEqual([3]);
    expect(seqs(hub.take(late))).toStrictEqual([3, 4]);
    // Taken, the shared array is closed: later events go into a new one.
    hub.publish([ev(5)]);
    hub.publish([ev(6)]);
    expect(seqs(ta)).toStrictEqual([1, 2, 3, 4]);
    // a took after 4; b too; both in step again on the new array.
    const ta2 = hub.take(a);
    expect(seqs(ta2)).toStrictEqual([5, 6]);
    hub.publish([ev(7)]);
    expect(seqs(ta2)).toStrictEqual([5, 6]);
    expect(seqs(hub.take(b))).toStrictEqual([5, 6, 7]);
    expect(seqs(hub.take(a))).toStrictEqual([7]);
    expect(seqs(hub.take(late))).toStrictEqual([5, 6, 7]);
  });

  it("with nobody in step, nothing accumulates; a subscriber over its capacity is dropped", () => {
    const hub = new AuditHub(0, 0);
    const f = hub.register(0, { tenant: "other" }, 2)!;
    for (let i = 1; i <= 100; i++) hub.publish([ev(i)]);
    expect((hub as unknown as { open: unknown }).open).toBeUndefined();
    const a = hub.register(100, {}, 2)!;
    hub.publish([ev(101), ev(102)]);
    hub.publish([ev(103)]);
    expect(a.overflowed).toBe(true);
    expect(f.overflowed).toBe(false);
    expect(hub.size).toBe(1);
  });
});
