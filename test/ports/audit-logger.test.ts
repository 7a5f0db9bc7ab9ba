/** One suite, every AuditLogger implementation: memory and SQLite (a real file). */
import { describe, expect, it } from "@effect/vitest";
import { Effect, TestClock } from "effect";
import { type AuditEntry, AuditLogger } from "../../src/ports/AuditLogger.js";
import { auditLoggers, principal } from "./fixtures.js";

const full: AuditEntry = {
  type: "POLICY_EVALUATED",
  principal: principal("bob", "globex"),
  operation: "summarize",
  executionId: "ex-1",
  scheduleId: "nightly",
  traceId: "0af7651916cd43dd8448eb211c80319c",
  decision: "DENY",
  reason: "outside business hours",
  details: { rule: "hours", window: [9, 17], nested: { ok: false, none: null } },
};

for (const impl of auditLoggers) {
  describe(`AuditLogger (${impl.name})`, () => {
    const run = <A, E>(self: Effect.Effect<A, E, AuditLogger>) => Effect.provide(self, impl.layer);

    it.effect("numbers events 1, 2, 3… with the Clock's time and reads them back exactly", () =>
      run(
        Effect.gen(function* () {
          const audit = yield* AuditLogger;
          yield* TestClock.setTime(1_700_000_000_000);
          yield* audit.log({ type: "AUTH_SUCCEEDED" });
          yield* TestClock.adjust(250);
          yield* audit.log(full);
          yield* TestClock.adjust(1);
          yield* audit.log({ type: "EXECUTION_ACCEPTED", executionId: "ex-2", decision: "ALLOW" });

          const events = yield* audit.read(0, 100);
          expect(events).toStrictEqual([
            { type: "AUTH_SUCCEEDED", sequence: 1, time: 1_700_000_000_000 },
            { ...full, sequence: 2, time: 1_700_000_000_250 },
            { type: "EXECUTION_ACCEPTED", executionId: "ex-2", decision: "ALLOW", sequence: 3, time: 1_700_000_000_251 },
          ]);
          // Absent stays absent: no undefined or null keys appear on the way back.
          expect(Object.keys(events[0]!).sort()).toStrictEqual(["sequence", "time", "type"]);
        }),
      ),
    );

    it.effect("read pages by sequence: after is exclusive, limit caps, oldest first", () =>
      run(
        Effect.gen(function* () {
          const audit = yield* AuditLogger;
          for (let i = 0; i < 10; i++) yield* audit.log({ type: "RATE_LIMIT_CHECKED", reason: `n${i}` });
          const seq = (after: number, limit: number) =>
            Effect.map(audit.read(after, limit), (es) => es.map((e) => e.sequence));
          expect(yield* seq(0, 3)).toStrictEqual([1, 2, 3]);
          expect(yield* seq(3, 3)).toStrictEqual([4, 5, 6]);
          expect(yield* seq(8, 100)).toStrictEqual([9, 10]);
          expect(yield* seq(10, 100)).toStrictEqual([]);
          expect(yield* seq(0, 0)).toStrictEqual([]);
          expect(yield* seq(-5, 1)).toStrictEqual([1]);
          expect((yield* audit.read(4, 1))[0]?.reason).toBe("n4");
        }),
      ),
    );

    it.effect("concurrent logs get distinct, gapless sequence numbers", () =>
      run(
        Effect.gen(function* () {
          const audit = yield* AuditLogger;
          yield* Effect.forEach(
            Array.from({ length: 40 }, (_, i) => i),
            (i) => audit.log({ type: "EXECUTION_ATTEMPT_STARTED", executionId: `ex-${i}` }),
            { concurrency: "unbounded", discard: true },
          );
          const events = yield* audit.read(0, 100);
          expect(events.map((e) => e.sequence)).toStrictEqual(Array.from({ length: 40 }, (_, i) => i + 1));
          expect(new Set(events.map((e) => e.executionId)).size).toBe(40);
        }),
      ),
    );
  });
}
