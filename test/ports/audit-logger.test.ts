/**
 * One suite, every AuditLogger implementation: memory and SQLite (a real file); then what only
 * the SQLite one has (its own file, its writer thread).
 */
import { describe, expect, it } from "@effect/vitest";
import * as SqlClient from "@effect/sql/SqlClient";
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient";
import { Context, Deferred, Effect, Fiber, Layer, Logger, Metric, Option, type Scope, TestClock } from "effect";
import { join } from "node:path";
import type { Worker } from "node:worker_threads";
import { makeGroupCommit } from "../../src/core/audit/group-commit.js";
import { type AuditEntry, AuditLogger } from "../../src/ports/AuditLogger.js";
import { auditDatabaseFileName } from "../../src/ports/sqlite/AuditDatabase.js";
import { AuditLoggerSqlite, auditLoggerSqlite, auditWriteFailures } from "../../src/ports/sqlite/AuditLoggerSqlite.js";
import { SqliteDatabase } from "../../src/ports/sqlite/SqliteDatabase.js";
import { auditLoggers, principal, tempDir } from "./fixtures.js";

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

/** The SQLite logger's own parts: audit.db next to orchestrator.db, and its writer thread. */
describe("AuditLogger (sqlite): audit.db and the writer thread", () => {
  const withDir = <A, E>(dir: string, self: Effect.Effect<A, E, AuditLogger | SqlClient.SqlClient | Scope.Scope>, logger = AuditLoggerSqlite) =>
    Effect.scoped(Effect.provide(self, logger.pipe(Layer.provideMerge(SqliteDatabase.layer(dir)))));
  const bob = principal("bob", "globex");
  const auditFile = (dir: string) => SqliteClient.layer({ filename: join(dir, auditDatabaseFileName) });

  it.scoped("an audit log in orchestrator.db (earlier versions) moves to audit.db with its sequences and watermark, once", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir;
      // What an earlier version left: its tables in orchestrator.db (SqliteDatabase's migrations
      // still create them), rows 5, 7, 9 after a prune through 4, and a counter at 12 (10..12
      // rolled back).
      yield* Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient;
        for (const [sequence, type] of [[5, "AUTH_SUCCEEDED"], [7, "POLICY_EVALUATED"], [9, "EXECUTION_ACCEPTED"]] as const) {
          yield* sql`INSERT INTO audit_events (sequence, time, type, principal, principal_subject, tenant, operation, execution_id, decision, details)
            VALUES (${sequence}, ${1_000 + sequence}, ${type}, ${JSON.stringify(bob)}, 'bob', 'globex', 'summarize', ${`ex-${sequence}`}, 'ALLOW', '{"n":1}')`;
        }
        yield* sql`UPDATE audit_state SET last_sequence = 12, pruned_through = 4 WHERE id = 1`;
      }).pipe(Effect.provide(SqliteDatabase.layer(dir)));

      for (let open = 0; open < 2; open++) {
        yield* withDir(
          dir,
          Effect.gen(function* () {
            const audit = yield* AuditLogger;
            const before = yield* audit.query({ filter: { tenant: "globex" }, order: "ASCENDING", limit: 10 });
            expect(before.map((e) => [e.sequence, e.type])).toStrictEqual([
              [5, "AUTH_SUCCEEDED"],
              [7, "POLICY_EVALUATED"],
              [9, "EXECUTION_ACCEPTED"],
              ...(open === 0 ? [] : [[13, "AUTH_DENIED"]]),
            ]);
            expect(before[0]).toStrictEqual({ sequence: 5, time: 1_005, type: "AUTH_SUCCEEDED", principal: bob, operation: "summarize", executionId: "ex-5", decision: "ALLOW", details: { n: 1 } });
            expect(yield* audit.bounds).toStrictEqual({ earliest: 5, last: 12 + open, prunedThrough: 4 });
            // The counter continues where the old one stopped.
            yield* audit.log({ type: "AUTH_DENIED", principal: bob });
            expect((yield* audit.read(12, 10)).map((e) => e.sequence)).toStrictEqual(open === 0 ? [13] : [13, 14]);
            // The old tables are gone from orchestrator.db.
            const sql = yield* SqlClient.SqlClient;
            const tables = yield* sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'audit%'`;
            expect(tables).toStrictEqual([]);
          }),
        );
      }
      // And audit.db has the events once: the import ran with the first open only.
      const rows = yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ n: number }>`SELECT count(*) AS n FROM audit_events`).pipe(Effect.provide(auditFile(dir)));
      expect(rows).toStrictEqual([{ n: 5 }]);
    }),
  );

  it.scoped("audit.db: 16 KiB pages, WAL, no AUTOINCREMENT; read from there even inside a transaction of orchestrator.db", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir;
      yield* withDir(
        dir,
        Effect.gen(function* () {
          const audit = yield* AuditLogger;
          yield* audit.log({ type: "AUTH_SUCCEEDED" });
          yield* audit.flush;
          // Read inside a transaction of orchestrator.db: still from audit.db.
          const sql = yield* SqlClient.SqlClient;
          const inside = yield* sql.withTransaction(Effect.all([audit.query({ filter: {}, order: "ASCENDING", limit: 10 }), audit.bounds]));
          expect(inside.map((x) => (Array.isArray(x) ? x.map((e) => e.type) : x))).toStrictEqual([["AUTH_SUCCEEDED"], { earliest: 1, last: 1, prunedThrough: 0 }]);
        }),
      );
      const found = yield* Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient;
        const [page] = yield* sql<{ page_size: number }>`PRAGMA page_size`;
        const [journal] = yield* sql<{ journal_mode: string }>`PRAGMA journal_mode`;
        const [table] = yield* sql<{ sql: string }>`SELECT sql FROM sqlite_master WHERE name = 'audit_events'`;
        return { page: page?.page_size, journal: journal?.journal_mode, autoincrement: table?.sql.includes("AUTOINCREMENT") };
      }).pipe(Effect.provide(auditFile(dir)));
      expect(found).toStrictEqual({ page: 16_384, journal: "wal", autoincrement: false });
    }),
  );

  it.scoped("a writer thread that dies with a batch in flight: the batch is counted and logged as dropped, the next goes to a new thread", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir;
      const workers: Worker[] = [];
      let stopNext = false;
      const logged: string[] = [];
      const logger = auditLoggerSqlite({
        onWorkerStart: (w) => void workers.push(w),
        // Runs on the writer fiber right before the batch is handed over, with no turn of the
        // event loop between: the thread gets the stop first, the batch after it.
        beforeCommit: Effect.sync(() => {
          if (stopNext) {
            stopNext = false;
            workers[workers.length - 1]!.postMessage({ exit: true });
          }
        }),
      });
      yield* withDir(
        dir,
        Effect.gen(function* () {
          const audit = yield* AuditLogger;
          yield* audit.log({ type: "AUTH_SUCCEEDED", reason: "before" });
          yield* audit.flush;
          expect(workers.length).toBe(1);
          const before = (yield* Metric.value(auditWriteFailures)).count;
          stopNext = true;
          yield* audit.log({ type: "AUTH_DENIED", reason: "lost" });
          yield* audit.log({ type: "AUTH_DENIED", reason: "lost too" });
          // flush returns: a dropped batch does not hold it forever.
          yield* audit.flush;
          expect((yield* Metric.value(auditWriteFailures)).count).toBe(before + 2);
          expect(logged).toStrictEqual(["audit write failed: 2 events dropped"]);
          yield* audit.log({ type: "AUTH_SUCCEEDED", reason: "after" });
          yield* audit.flush;
          expect(workers.length).toBe(2);
          expect((yield* audit.read(0, 10)).map((e) => [e.sequence, e.reason])).toStrictEqual([
            [1, "before"],
            [2, "after"],
          ]);
        }),
        // The writer's fibers log, and they start with the Layer: the logger goes there.
        logger.pipe(Layer.provide(Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => void logged.push(String(Array.isArray(message) ? message[0] : message)))))),
      );
    }),
  );

  it.scoped("prune waits for the writer thread's lock without blocking this thread, and then deletes", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir;
      yield* withDir(
        dir,
        Effect.gen(function* () {
          const audit = yield* AuditLogger;
          for (let i = 0; i < 10; i++) yield* audit.log({ type: "RATE_LIMIT_CHECKED", reason: `n${i}` });
          yield* audit.flush;
          // Another connection holds the write lock, as the writer thread does during a batch.
          const other = Context.get(yield* Layer.build(auditFile(dir)), SqlClient.SqlClient);
          yield* other`BEGIN IMMEDIATE`;
          const pruning = yield* Effect.fork(audit.prune({ keepLast: 4 }));
          // Each attempt meets SQLITE_BUSY at once and sleeps (on the Clock: this fiber runs on).
          yield* TestClock.adjust("2 seconds");
          expect(Option.isNone(yield* Fiber.poll(pruning))).toBe(true);
          yield* other`COMMIT`;
          yield* TestClock.adjust("1 second");
          expect(yield* Fiber.join(pruning)).toBe(6);
          expect(yield* audit.bounds).toStrictEqual({ earliest: 7, last: 10, prunedThrough: 6 });
        }),
      );
    }),
  );
});

/** The group commit the SQL loggers write through, with two batches in flight (the SQLite writer thread). */
describe("group commit with batches in flight", () => {
  it.scoped("batches are handed over without waiting, their ends run in batch order, flush waits for its own", () =>
    Effect.gen(function* () {
      const handed: number[][] = [];
      const commits: Array<Deferred.Deferred<void>> = [];
      const ended: number[][] = [];
      const gc = yield* makeGroupCommit<number>({
        capacity: 100,
        maxBatch: 2,
        inFlight: 2,
        commit: (batch) =>
          Effect.map(Deferred.make<void>(), (committed) => {
            handed.push([...batch]);
            commits.push(committed);
            return Effect.zipRight(Deferred.await(committed), Effect.sync(() => void ended.push([...batch])));
          }),
      });
      for (let i = 1; i <= 5; i++) yield* gc.offer(i);
      const flushed = yield* Effect.fork(gc.flush);
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow();
      // Two in flight at most, nothing ended yet.
      expect(handed).toStrictEqual([[1, 2], [3, 4]]);
      // The second batch commits first: its end waits for the first one's.
      yield* Deferred.succeed(commits[1]!, undefined);
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow();
      expect(ended).toStrictEqual([]);
      yield* Deferred.succeed(commits[0]!, undefined);
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow();
      expect(ended).toStrictEqual([[1, 2], [3, 4]]);
      expect(handed).toStrictEqual([[1, 2], [3, 4], [5]]);
      expect(Option.isNone(yield* Fiber.poll(flushed))).toBe(true);
      yield* Deferred.succeed(commits[2]!, undefined);
      yield* Fiber.join(flushed);
      expect(ended).toStrictEqual([[1, 2], [3, 4], [5]]);
    }),
  );
});
