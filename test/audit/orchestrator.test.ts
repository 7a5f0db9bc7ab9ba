/**
 * The audit log under the real Orchestrator: an execution's events are committed (SQLite, group
 * commit) before its outcome reaches the caller; a stuck subscriber never holds executions up;
 * sensitive input fields are redacted in EXECUTION_ACCEPTED.
 */
import { describe, expect, it } from "@effect/vitest";
import { Chunk, Effect, Fiber, Layer, Option, Schema, Stream } from "effect";
import { AuditConfig } from "../../src/core/audit/AuditConfig.js";
import { AuditLog } from "../../src/core/audit/AuditLog.js";
import { redacted } from "../../src/core/audit/redact.js";
import { Orchestrator } from "../../src/core/Orchestrator.js";
import { OrchestratorConfig } from "../../src/core/OrchestratorConfig.js";
import { classifyOperationError, defineOperation, OperationRegistry } from "../../src/core/operation.js";
import { demoOperations } from "../../src/operations/demo.js";
import { AuditLogger } from "../../src/ports/AuditLogger.js";
import { ExecutionStoreMemory } from "../../src/ports/memory/ExecutionStoreMemory.js";
import { PolicyService } from "../../src/ports/PolicyService.js";
import { RateLimiterMemory } from "../../src/ports/RateLimiter.js";
import { AuditLoggerSqlite, auditLoggerSqlite } from "../../src/ports/sqlite/AuditLoggerSqlite.js";
import { admin, operator } from "../support/core.js";
import { freshDatabase } from "../ports/fixtures.js";
import { collectThrough, eventsOf } from "./support.js";

const login = defineOperation({
  name: "test.login",
  description: "takes a password",
  input: Schema.Struct({ user: Schema.String, password: Schema.String, options: Schema.Struct({ otp: Schema.String, remember: Schema.Boolean }) }),
  classify: classifyOperationError,
  sensitiveFields: ["password", "options.otp"],
  run: (input) => Effect.succeed({ user: input.user }),
});

const layer = (bufferSize = 10_000, logger: Layer.Layer<AuditLogger, unknown> = AuditLoggerSqlite.pipe(Layer.provide(freshDatabase))) => {
  const deps = Layer.mergeAll(
    OrchestratorConfig.layer(),
    OperationRegistry.layer([...demoOperations, login]),
    ExecutionStoreMemory,
    PolicyService.allowAll,
    RateLimiterMemory,
  ).pipe(Layer.provideMerge(logger));
  const auditLog = AuditLog.Default.pipe(Layer.provide(AuditConfig.layer({ retentionMaxAgeMs: undefined, subscriberBufferSize: bufferSize, deliveryIntervalMs: 0 })));
  return Layer.mergeAll(Orchestrator.Default, auditLog).pipe(Layer.provideMerge(deps));
};

describe("the audit log under the Orchestrator (SQLite)", () => {
  it.scoped("while the audit commit is held back, the execution's outcome is not reported; once committed, it is", () =>
    Effect.gen(function* () {
      const gate = yield* Effect.makeLatch(true);
      yield* Effect.gen(function* () {
        const o = yield* Orchestrator;
        const audit = yield* AuditLogger;
        yield* gate.close;
        const seen: string[] = [];
        const run = yield* Effect.fork(Stream.runForEach(o.executeStream({ operation: "demo.echo", input: { message: "held" }, principal: operator }), (e) => Effect.sync(() => void seen.push(e.kind._tag))));
        for (let i = 0; i < 200; i++) yield* Effect.yieldNow();
        // The run has finished its work, but the caller has not been told.
        expect(seen).toStrictEqual(["Accepted", "AttemptStarted"]);
        expect(yield* audit.query({ filter: {}, order: "ASCENDING", limit: 10 })).toStrictEqual([]);
        yield* gate.open;
        yield* Fiber.join(run);
        expect(seen).toStrictEqual(["Accepted", "AttemptStarted", "Succeeded"]);
        const stored = yield* audit.query({ filter: {}, order: "ASCENDING", limit: 100 });
        expect(stored.map((e) => e.type)).toContain("EXECUTION_SUCCEEDED");
      }).pipe(Effect.ensuring(gate.open), Effect.provide(layer(10_000, auditLoggerSqlite({ beforeCommit: gate.await }).pipe(Layer.provide(freshDatabase)))));
    }),
  );

  it.scoped("an execution's audit events are committed before its outcome is reported", () =>
    Effect.gen(function* () {
      const o = yield* Orchestrator;
      const audit = yield* AuditLogger;
      for (let i = 0; i < 20; i++) {
        const events = Chunk.toReadonlyArray(yield* Stream.runCollect(o.executeStream({ operation: "demo.echo", input: { message: `m${i}` }, principal: operator })));
        const last = events[events.length - 1]!;
        expect(last.kind._tag).toBe("Succeeded");
        // query reads the table as it is (no flush): the terminal event is already there.
        const stored = yield* audit.query({ filter: { executionId: last.executionId }, order: "ASCENDING", limit: 100 });
        expect(stored.map((e) => e.type)).toStrictEqual(["EXECUTION_ACCEPTED", "EXECUTION_ATTEMPT_STARTED", "EXECUTION_SUCCEEDED"]);
      }
      // The same through the in-process API.
      const result = yield* o.execute("demo.echo", { message: "x" }, { principal: operator });
      expect(result).toMatchObject({ echo: { message: "x" } });
      const succeeded = yield* audit.query({ filter: { types: ["EXECUTION_SUCCEEDED"] }, order: "ASCENDING", limit: 100 });
      expect(succeeded).toHaveLength(21);
    }).pipe(Effect.provide(layer())),
  );

  it.scoped("a subscriber that stops reading is cut off; executions and a fast subscriber carry on", () =>
    Effect.gen(function* () {
      const o = yield* Orchestrator;
      const log = yield* AuditLog;
      const audit = yield* AuditLogger;
      const slow = yield* Stream.toPull(log.subscribe(admin, {}, { _tag: "Earliest" }));
      yield* o.execute("demo.echo", { message: "first" }, { principal: operator });
      expect(eventsOf(Chunk.toReadonlyArray(yield* slow)).length).toBeGreaterThan(0);
      const fast = yield* Effect.fork(
        log.subscribe(admin, { types: ["EXECUTION_SUCCEEDED"] }, { _tag: "Now" }).pipe(
          Stream.take(100),
          Stream.runCollect,
        ),
      );
      for (let i = 0; i < 100 && log.subscribers() < 2; i++) yield* Effect.yieldNow();
      const results = yield* Effect.forEach(
        Array.from({ length: 100 }, (_, i) => i),
        (i) => o.execute("demo.echo", { message: `m${i}` }, { principal: operator }),
        { concurrency: 20 },
      );
      expect(results).toHaveLength(100);
      expect(Chunk.size(yield* Fiber.join(fast))).toBe(100);
      const failure = yield* Effect.flip(slow);
      const error = Option.getOrThrow(failure);
      expect(error).toMatchObject({ _tag: "SubscriberTooSlow", bufferSize: 50 });
      // Resuming where it was cut off gets the rest, without a gap.
      const b = yield* audit.bounds;
      const lastSequence = (error as { lastSequence: number }).lastSequence;
      const rest = yield* collectThrough(log.subscribe(admin, {}, { _tag: "After", sequence: lastSequence }), b.last);
      expect(rest[0]!.sequence).toBe(lastSequence + 1);
      expect(rest[rest.length - 1]!.sequence).toBe(b.last);
      expect(rest.every((e, i) => i === 0 || e.sequence === rest[i - 1]!.sequence + 1)).toBe(true);
    }).pipe(Effect.provide(layer(50))),
  );

  it.scoped("sensitive input fields are redacted in EXECUTION_ACCEPTED; the rest of the input is kept", () =>
    Effect.gen(function* () {
      const o = yield* Orchestrator;
      const audit = yield* AuditLogger;
      yield* o.execute("test.login", { user: "ann", password: "hunter2", options: { otp: "123456", remember: true } }, { principal: operator });
      const events = yield* audit.read(0, 100);
      expect(JSON.stringify(events)).not.toContain("hunter2");
      expect(JSON.stringify(events)).not.toContain("123456");
      const accepted = events.find((e) => e.type === "EXECUTION_ACCEPTED");
      expect(accepted?.details?.["input"]).toStrictEqual({ user: "ann", password: redacted, options: { otp: redacted, remember: true } });
    }).pipe(Effect.provide(layer())),
  );
});
