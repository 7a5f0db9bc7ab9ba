/**
 * Subscribe in the core, over every AuditLogger (memory, SQLite on a real file): replay then
 * live with events being written during the switch (no gap, no duplicate, in order), resume by
 * sequence, a slow subscriber cut off with its resume point while writers and a fast subscriber
 * go on, heartbeats, start-point errors, retention.
 */
import { describe, expect, it } from "@effect/vitest";
import { Chunk, Effect, Either, Exit, Fiber, Option, Stream, TestClock } from "effect";
import { AuditLog, type SubscribeItem } from "../../src/core/audit/AuditLog.js";
import { AuditLogger, type AuditEntry } from "../../src/ports/AuditLogger.js";
import { admin } from "../support/core.js";
import { auditImpls, auditLayer, collectThrough, eventsOf, range, sequences } from "./support.js";

const entry = (i: number): AuditEntry => ({ type: "EXECUTION_ATTEMPT_STARTED", executionId: `ex-${i}`, principal: admin, details: { attempt: i } });

/** Logs events from..to, yielding now and then so that readers interleave with the writer. */
const writeRange = (from: number, to: number, every = 7) =>
  Effect.flatMap(AuditLogger, (audit) =>
    Effect.forEach(range(from, to), (i) => audit.log(entry(i)).pipe(Effect.zipLeft(i % every === 0 ? Effect.yieldNow() : Effect.void)), { discard: true }),
  );

/** Waits (yielding, no clock) until the hub has n subscribers. */
const untilSubscribers = (n: number) =>
  Effect.flatMap(AuditLog, (log) =>
    Effect.gen(function* () {
      for (let i = 0; i < 10_000 && log.subscribers() !== n; i++) yield* Effect.yieldNow();
      expect(log.subscribers()).toBe(n);
    }),
  );

for (const impl of auditImpls) {
  describe(`Subscribe (${impl.name})`, () => {
    // Small pages and no ring force many replay rounds and joins that chase the writer.
    for (const settings of [{}, { replayPageSize: 7, recentEvents: 0 }, { replayPageSize: 50, recentEvents: 16 }]) {
      it.scoped(`replay then live while events are written: every event once, in order (${JSON.stringify(settings)})`, () =>
        Effect.gen(function* () {
          const log = yield* AuditLog;
          const audit = yield* AuditLogger;
          yield* writeRange(1, 500);
          yield* audit.flush;
          const writer = yield* Effect.fork(writeRange(501, 3000));
          // Several subscribers joining at different points while the writer runs.
          const subscribers = yield* Effect.all(
            [
              collectThrough(log.subscribe(admin, {}, { _tag: "Earliest" }), 3000),
              collectThrough(log.subscribe(admin, {}, { _tag: "After", sequence: 250 }), 3000),
              collectThrough(log.subscribe(admin, {}, { _tag: "After", sequence: 499 }), 3000),
              Effect.yieldNow().pipe(Effect.zipRight(collectThrough(log.subscribe(admin, {}, { _tag: "After", sequence: 0 }), 3000))),
            ],
            { concurrency: "unbounded" },
          );
          yield* Fiber.join(writer);
          expect(sequences(subscribers[0])).toStrictEqual(range(1, 3000));
          expect(sequences(subscribers[1])).toStrictEqual(range(251, 3000));
          expect(sequences(subscribers[2])).toStrictEqual(range(500, 3000));
          expect(sequences(subscribers[3])).toStrictEqual(range(1, 3000));
          // The events are the ones written, with their fields.
          expect(subscribers[0].map((e) => e.executionId)).toStrictEqual(range(1, 3000).map((i) => `ex-${i}`));
          expect(subscribers[0][41]).toMatchObject({ type: "EXECUTION_ATTEMPT_STARTED", principal: admin, details: { attempt: 42 } });
        }).pipe(Effect.provide(auditLayer(impl.logger, settings))),
      );
    }

    it.scoped("from_now gets only what is written after it joined", () =>
      Effect.gen(function* () {
        const log = yield* AuditLog;
        const audit = yield* AuditLogger;
        yield* writeRange(1, 20);
        yield* audit.flush;
        const fiber = yield* Effect.fork(collectThrough(log.subscribe(admin, {}, { _tag: "Now" }), 40));
        yield* untilSubscribers(1);
        yield* writeRange(21, 40);
        expect(sequences(yield* Fiber.join(fiber))).toStrictEqual(range(21, 40));
      }).pipe(Effect.provide(auditLayer(impl.logger))),
    );

    it.scoped("disconnect and resume from the last sequence received: nothing lost, nothing twice", () =>
      Effect.gen(function* () {
        const log = yield* AuditLog;
        yield* writeRange(1, 300);
        const writer = yield* Effect.fork(writeRange(301, 2000));
        const first = eventsOf(Chunk.toReadonlyArray(yield* Stream.runCollect(log.subscribe(admin, {}, { _tag: "Earliest" }).pipe(Stream.take(700)))));
        const resumeAt = first[first.length - 1]!.sequence;
        const second = yield* collectThrough(log.subscribe(admin, {}, { _tag: "After", sequence: resumeAt }), 2000);
        yield* Fiber.join(writer);
        expect([...sequences(first), ...sequences(second)]).toStrictEqual(range(1, 2000));
      }).pipe(Effect.provide(auditLayer(impl.logger))),
    );

    it.scoped("a slow subscriber is cut off with its resume point; the writer and a fast subscriber are not held up", () =>
      Effect.gen(function* () {
        const log = yield* AuditLog;
        const audit = yield* AuditLogger;
        yield* writeRange(1, 10);
        yield* audit.flush;
        const fast = yield* Effect.fork(collectThrough(log.subscribe(admin, {}, { _tag: "Earliest" }), 1000));
        // The slow one reads its first chunk, then stops reading.
        const slow = yield* Stream.toPull(log.subscribe(admin, {}, { _tag: "After", sequence: 0 }));
        const firstChunk = eventsOf(Chunk.toReadonlyArray(yield* slow));
        expect(sequences(firstChunk)).toStrictEqual(range(1, 10));
        // Every write completes although the slow subscriber reads nothing.
        yield* writeRange(11, 1000);
        yield* audit.flush;
        expect(sequences(yield* Fiber.join(fast))).toStrictEqual(range(1, 1000));
        // Its next read ends the stream with SUBSCRIBER_TOO_SLOW and where to resume.
        const failure = yield* Effect.either(slow);
        expect(Either.isLeft(failure)).toBe(true);
        const error = Option.getOrThrow((failure as Either.Left<Option.Option<unknown>, unknown>).left as Option.Option<{ _tag: string; lastSequence: number }>);
        expect(error).toMatchObject({ _tag: "SubscriberTooSlow", lastSequence: 10, bufferSize: 64 });
        expect(log.subscribers()).toBe(0);
        const rest = yield* collectThrough(log.subscribe(admin, {}, { _tag: "After", sequence: error.lastSequence }), 1000);
        expect([...sequences(firstChunk), ...sequences(rest)]).toStrictEqual(range(1, 1000));
      }).pipe(Effect.provide(auditLayer(impl.logger, { subscriberBufferSize: 64 }))),
    );

    it.scoped("a heartbeat every interval while nothing matches, carrying how far the log was read", () =>
      Effect.gen(function* () {
        const log = yield* AuditLog;
        const audit = yield* AuditLogger;
        yield* writeRange(1, 5);
        yield* audit.flush;
        const items: SubscribeItem[] = [];
        const fiber = yield* Effect.fork(
          Stream.runForEach(log.subscribe(admin, { types: ["SCHEDULE_FIRED"] }, { _tag: "After", sequence: 0 }), (i) => Effect.sync(() => void items.push(i))),
        );
        yield* untilSubscribers(1);
        yield* TestClock.adjust("14 seconds");
        expect(items).toStrictEqual([]);
        yield* TestClock.adjust("1 second");
        yield* untilSubscribers(1);
        expect(items).toMatchObject([{ _tag: "Heartbeat", lastSequence: 5 }]);
        yield* writeRange(6, 8);
        yield* audit.flush;
        yield* TestClock.adjust("15 seconds");
        yield* untilSubscribers(1);
        expect(items).toMatchObject([{ _tag: "Heartbeat", lastSequence: 5 }, { _tag: "Heartbeat", lastSequence: 8 }]);
        yield* Fiber.interrupt(fiber);
        expect(log.subscribers()).toBe(0);
      }).pipe(Effect.provide(auditLayer(impl.logger))),
    );

    it.scoped("start points beyond the log or before what is retained are refused", () =>
      Effect.gen(function* () {
        const log = yield* AuditLog;
        const audit = yield* AuditLogger;
        yield* writeRange(1, 30);
        yield* audit.flush;
        const ahead = yield* Effect.flip(Stream.runCollect(log.subscribe(admin, {}, { _tag: "After", sequence: 31 })));
        expect(ahead).toMatchObject({ _tag: "AuditSequenceAhead", afterSequence: 31, lastSequence: 30 });
        expect(yield* audit.prune({ keepLast: 10 })).toBe(20);
        const expired = yield* Effect.flip(Stream.runCollect(log.subscribe(admin, {}, { _tag: "After", sequence: 19 })));
        expect(expired).toMatchObject({ _tag: "AuditSequenceExpired", afterSequence: 19, earliestSequence: 21 });
        // From exactly the pruned point, or from the earliest retained, nothing is missing.
        expect(sequences(yield* collectThrough(log.subscribe(admin, {}, { _tag: "After", sequence: 20 }), 30))).toStrictEqual(range(21, 30));
        expect(sequences(yield* collectThrough(log.subscribe(admin, {}, { _tag: "Earliest" }), 30))).toStrictEqual(range(21, 30));
      }).pipe(Effect.provide(auditLayer(impl.logger))),
    );

    it.scoped("retention prunes by age and by count in the background", () =>
      Effect.gen(function* () {
        const audit = yield* AuditLogger;
        const log = yield* AuditLog;
        for (let i = 1; i <= 10; i++) {
          yield* audit.log(entry(i));
          yield* TestClock.adjust("1 hour");
        }
        yield* audit.flush;
        yield* TestClock.adjust("1 hour");
        const b = yield* audit.bounds;
        // Times are 0 h..9 h; at 11 h a 5 h retention keeps those at ≥ 6 h: events 7..10.
        expect(b).toMatchObject({ earliest: 7, last: 10, prunedThrough: 6 });
        for (let i = 11; i <= 30; i++) yield* audit.log(entry(i));
        yield* audit.flush;
        yield* TestClock.adjust("1 hour");
        // The count limit keeps the newest 15.
        expect(yield* audit.bounds).toMatchObject({ earliest: 16, last: 30, prunedThrough: 15 });
        expect(sequences(yield* collectThrough(log.subscribe(admin, {}, { _tag: "Earliest" }), 30))).toStrictEqual(range(16, 30));
      }).pipe(Effect.provide(auditLayer(impl.logger, { retentionMaxAgeMs: 5 * 3_600_000, retentionMaxEvents: 15, pruneIntervalMs: 3_600_000, pollIntervalMs: 86_400_000 }))),
    );
  });
}

describe("Subscribe streams end cleanly", () => {
  it.scoped("interrupting a subscriber unregisters it", () =>
    Effect.gen(function* () {
      const log = yield* AuditLog;
      const fiber = yield* Effect.fork(Stream.runDrain(log.subscribe(admin, {}, { _tag: "Now" })));
      yield* untilSubscribers(1);
      const exit = yield* Fiber.interrupt(fiber);
      expect(Exit.isInterrupted(exit)).toBe(true);
      expect(log.subscribers()).toBe(0);
    }).pipe(Effect.provide(auditLayer(auditImpls[0]!.logger))),
  );
});
