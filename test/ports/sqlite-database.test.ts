/**
 * What only the SQLite Layers have: a file that outlives the process, migrations, pragmas, and
 * failures that must stay typed (or, for the audit log, swallowed).
 */
import * as SqlClient from "@effect/sql/SqlClient";
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient";
import { describe, expect, it } from "@effect/vitest";
import { Effect, Layer, Metric, Option } from "effect";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { AuditLogger } from "../../src/ports/AuditLogger.js";
import { ExecutionStore } from "../../src/ports/ExecutionStore.js";
import { auditDatabaseFileName } from "../../src/ports/sqlite/AuditDatabase.js";
import { AuditLoggerSqlite, auditWriteFailures } from "../../src/ports/sqlite/AuditLoggerSqlite.js";
import { ExecutionStoreSqlite } from "../../src/ports/sqlite/ExecutionStoreSqlite.js";
import { SqliteDatabase } from "../../src/ports/sqlite/SqliteDatabase.js";
import { execution, fullExecution, tempDir } from "./fixtures.js";

/** Everything SQLite over one data directory; each `Effect.provide` opens and then closes it. */
const database = (dir: string) =>
  Layer.mergeAll(ExecutionStoreSqlite, AuditLoggerSqlite).pipe(Layer.provideMerge(SqliteDatabase.layer(dir)));

describe("SQLite database", () => {
  it.scoped("data survives closing the database and opening it again", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir;
      const full = fullExecution("kept");
      const pending = execution("pending", { requestId: "r1", attempts: [{ number: 1, startTime: 1_001 }] });

      yield* Effect.gen(function* () {
        const store = yield* ExecutionStore;
        yield* store.insert(full);
        yield* store.insert(pending);
        yield* (yield* AuditLogger).log({ type: "EXECUTION_ACCEPTED", executionId: "kept" });
      }).pipe(Effect.provide(database(dir)));

      yield* Effect.gen(function* () {
        const store = yield* ExecutionStore;
        expect(yield* store.get("kept")).toStrictEqual(Option.some(full));
        expect(yield* store.findByRequestId("alice", "r1")).toStrictEqual(Option.some(pending));
        // The constraint is on disk too, not only in the previous process.
        const again = yield* store.insert(execution("other", { requestId: "r1" }));
        expect(again).toStrictEqual({ _tag: "Duplicate", existing: pending });
        expect(yield* store.interruptUnfinished(2_000, { type: "INTERRUPTED", message: "restart", retryable: false })).toStrictEqual(["pending"]);
        const audit = yield* AuditLogger;
        yield* audit.log({ type: "EXECUTION_INTERRUPTED", executionId: "pending" });
        expect((yield* audit.read(0, 10)).map((e) => [e.sequence, e.type])).toStrictEqual([
          [1, "EXECUTION_ACCEPTED"],
          [2, "EXECUTION_INTERRUPTED"],
        ]);
      }).pipe(Effect.provide(database(dir)));
    }),
  );

  it.scoped("migrations run once; reopening finds the schema in place", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir;
      const migrations = Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient;
        return yield* sql<{ migration_id: number; name: string }>`SELECT migration_id, name FROM effect_sql_migrations`;
      });
      for (let i = 0; i < 3; i++) {
        const rows = yield* migrations.pipe(Effect.provide(SqliteDatabase.layer(dir)));
        expect(rows).toStrictEqual([
          { migration_id: 1, name: "executions_and_audit" },
          { migration_id: 2, name: "api_keys" },
          { migration_id: 3, name: "audit_log" },
          { migration_id: 4, name: "schedules" },
        ]);
      }
      const tables = yield* Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient;
        return yield* sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`;
      }).pipe(Effect.provide(SqliteDatabase.layer(dir)));
      expect(tables.map((t) => t.name)).toEqual(
        expect.arrayContaining(["api_keys", "audit_events", "execution_attempts", "executions", "effect_sql_migrations"]),
      );
    }),
  );

  it.scoped("opens in WAL mode with a busy timeout and foreign keys enforced", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir;
      const pragmas = yield* Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient;
        const [journal] = yield* sql<{ journal_mode: string }>`PRAGMA journal_mode`;
        const [timeout] = yield* sql<{ timeout: number }>`PRAGMA busy_timeout`;
        const [fk] = yield* sql<{ foreign_keys: number }>`PRAGMA foreign_keys`;
        return { journal: journal?.journal_mode, timeout: timeout?.timeout, fk: fk?.foreign_keys };
      }).pipe(Effect.provide(SqliteDatabase.layer(dir)));
      expect(pragmas).toStrictEqual({ journal: "wal", timeout: 5_000, fk: 1 });
    }),
  );

  it.scoped("prune takes the attempts with their execution", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir;
      yield* Effect.gen(function* () {
        const store = yield* ExecutionStore;
        const sql = yield* SqlClient.SqlClient;
        const attempts = [{ number: 1, startTime: 1 }, { number: 2, startTime: 2, endTime: 3 }];
        yield* store.insert(execution("gone", { state: "FAILED", endTime: 10, attempts }));
        yield* store.insert(execution("kept", { state: "FAILED", endTime: 20, attempts }));
        expect(yield* store.prune(15)).toBe(1);
        const rows = yield* sql<{ execution_id: string }>`SELECT DISTINCT execution_id FROM execution_attempts`;
        expect(rows).toStrictEqual([{ execution_id: "kept" }]);
      }).pipe(Effect.provide(database(dir)));
    }),
  );

  it.scoped("a data directory that cannot be used fails the Layer with a typed error", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir;
      const notADir = join(dir, "file");
      yield* Effect.promise(() => writeFile(notADir, "x"));
      const error = yield* Effect.flip(Effect.provide(ExecutionStore, database(notADir)));
      expect(error._tag).toBe("SqlError");

      yield* Effect.promise(() => writeFile(join(dir, "orchestrator.db"), "not a database, just text long enough"));
      const corrupt = yield* Effect.flip(Effect.provide(ExecutionStore, database(dir)));
      expect(corrupt._tag).toBe("SqlError");
    }),
  );

  it.scoped("store failures are StoreErrors; a failed audit write is logged, counted and swallowed", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir;
      yield* Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient;
        const store = yield* ExecutionStore;
        const audit = yield* AuditLogger;
        // The audit log has a file of its own (src/ports/sqlite/AuditDatabase.ts).
        yield* Effect.flatMap(SqlClient.SqlClient, (auditSql) => auditSql`DROP TABLE audit_events`).pipe(
          Effect.provide(SqliteClient.layer({ filename: join(dir, auditDatabaseFileName) })),
        );
        const before = yield* Metric.value(auditWriteFailures);
        yield* audit.log({ type: "AUTH_DENIED", reason: "no table" });
        yield* audit.flush;
        expect((yield* Metric.value(auditWriteFailures)).count).toBe(before.count + 1);

        yield* sql`DROP TABLE execution_attempts`;
        yield* sql`DROP TABLE executions`;
        for (const failure of [
          store.insert(execution("x")),
          store.update(execution("x")),
          store.get("x"),
          store.findByRequestId("alice", "r"),
          store.list({ labels: { a: "b" } }, "CREATE_TIME_DESCENDING", 10, undefined),
          store.interruptUnfinished(1, { type: "INTERRUPTED", message: "m", retryable: false }),
          store.prune(1),
        ]) {
          const error = yield* Effect.flip(failure);
          expect(error._tag).toBe("StoreError");
        }
      }).pipe(Effect.provide(database(dir)));
    }),
  );
});
