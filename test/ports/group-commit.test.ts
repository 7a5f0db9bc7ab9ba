/**
 * Group commit (src/ports/sql/group-commit.ts) on a real SQLite file: writes that arrive together
 * share one transaction, each still succeeds or fails on its own, and a write made inside the
 * caller's own transaction belongs to it.
 */
import * as SqlClient from "@effect/sql/SqlClient";
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient";
import { describe, expect, it } from "@effect/vitest";
import { Cause, Effect, Either, Exit, Layer } from "effect";
import { join } from "node:path";
import { makeGroupCommit } from "../../src/ports/sql/group-commit.js";
import { ExecutionStore } from "../../src/ports/ExecutionStore.js";
import { ExecutionStoreSqlite } from "../../src/ports/sqlite/ExecutionStoreSqlite.js";
import { SqliteDatabase } from "../../src/ports/sqlite/SqliteDatabase.js";
import { execution, tempDir } from "./fixtures.js";

const client = (dir: string) => SqliteClient.layer({ filename: join(dir, "g.db") });

/** Frames in the WAL since it was last emptied: every commit appends the pages it changed. */
const walFrames = Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ log: number }>`PRAGMA wal_checkpoint(PASSIVE)`).pipe(Effect.map((rows) => rows[0]!.log));
const emptyWal = Effect.flatMap(SqlClient.SqlClient, (sql) => sql`PRAGMA wal_checkpoint(TRUNCATE)`);

const setup = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient;
  yield* sql`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)`;
  // Checkpoints only when asked, so that the frame count says how many commits there were.
  yield* sql`PRAGMA wal_autocheckpoint = 0`;
  yield* emptyWal;
  return sql;
});

/** `body` on a fresh file with table t, and a group commit over it. */
const withTable = <A, E>(body: (sql: SqlClient.SqlClient, grouped: ReturnType<typeof makeGroupCommit>) => Effect.Effect<A, E, SqlClient.SqlClient>) =>
  Effect.flatMap(tempDir, (dir) =>
    Effect.flatMap(setup, (sql) => body(sql, makeGroupCommit(sql, true))).pipe(Effect.provide(client(dir))),
  );

const ids = (sql: SqlClient.SqlClient) => Effect.map(sql<{ id: number }>`SELECT id FROM t ORDER BY id`, (rows) => rows.map((r) => r.id));

describe("group commit", () => {
  it.scoped("writes that arrive together share one commit; the same writes one after another commit once each", () =>
    withTable((sql, grouped) =>
      Effect.gen(function* () {
        const write = (id: number) => grouped(sql`INSERT INTO t (id, v) VALUES (${id}, ${"x".repeat(100)})`);

        yield* Effect.forEach(Array.from({ length: 50 }, (_, i) => i), write, { concurrency: "unbounded", discard: true });
        const together = yield* walFrames;
        expect(yield* ids(sql)).toHaveLength(50);

        yield* emptyWal;
        yield* Effect.forEach(Array.from({ length: 50 }, (_, i) => 100 + i), write, { discard: true });
        const apart = yield* walFrames;
        expect(yield* ids(sql)).toHaveLength(100);

        // One commit of the few table pages the rows fill, against a frame or more for each of 50 commits.
        expect(together).toBeLessThanOrEqual(5);
        expect(apart).toBeGreaterThanOrEqual(50);
      }),
    ),
  );

  it.scoped("a write that fails is rolled back alone and fails alone; the others in its transaction are committed", () =>
    withTable((sql, grouped) =>
      Effect.gen(function* () {
        const results = yield* Effect.forEach(
          [1, 2, 3],
          (id) =>
            grouped(
              Effect.gen(function* () {
                yield* sql`INSERT INTO t (id, v) VALUES (${id}, 'a')`;
                if (id === 2) return yield* Effect.fail(`write ${id} refused after its insert`);
                yield* sql`INSERT INTO t (id, v) VALUES (${id * 10}, 'b')`;
                return id;
              }),
            ).pipe(Effect.either),
          { concurrency: "unbounded" },
        );
        expect(results).toStrictEqual([Either.right(1), Either.left("write 2 refused after its insert"), Either.right(3)]);
        expect(yield* ids(sql)).toStrictEqual([1, 3, 10, 30]);
        // A constraint violation is the same: that write fails with the database's error, not the batch.
        const dup = yield* Effect.all([grouped(sql`INSERT INTO t (id, v) VALUES (1, 'again')`), grouped(sql`INSERT INTO t (id, v) VALUES (4, 'new')`)].map(Effect.either), {
          concurrency: "unbounded",
        });
        expect(Either.isLeft(dup[0]!)).toBe(true);
        expect(Either.isRight(dup[1]!)).toBe(true);
        expect(yield* ids(sql)).toStrictEqual([1, 3, 4, 10, 30]);
      }),
    ),
  );

  it.scoped("a database failure in a batch (SQLITE_FULL) gives the batch up: each write is tried alone and hears its own outcome", () =>
    withTable((sql, grouped) =>
      Effect.gen(function* () {
        // The file may not grow past a few pages: a 1 MB row cannot be stored.
        const pages = (yield* sql<{ page_count: number }>`PRAGMA page_count`)[0]!.page_count;
        yield* sql.unsafe(`PRAGMA max_page_count = ${pages + 4}`);
        const results = yield* Effect.forEach(
          [1, 2, 3],
          (id) => grouped(sql`INSERT INTO t (id, v) VALUES (${id}, ${id === 2 ? "x".repeat(1_000_000) : "small"})`).pipe(Effect.exit),
          { concurrency: "unbounded" },
        );
        // The big write fails (SQLite rolls its whole transaction back on SQLITE_FULL, so
        // @effect/sql's ROLLBACK after it dies: a defect, as it is without grouping); the others are
        // stored and told so.
        expect(results.map(Exit.isSuccess)).toStrictEqual([true, false, true]);
        expect(Cause.pretty((results[1] as Exit.Failure<unknown, unknown>).cause)).toMatch(/SqlError/);
        expect(yield* ids(sql)).toStrictEqual([1, 3]);
      }),
    ),
  );

  it.scoped("a write inside the caller's transaction runs in it (no wait for a leader) and goes with its rollback", () =>
    withTable((sql, grouped) =>
      Effect.gen(function* () {
        const outcome = yield* sql
          .withTransaction(
            Effect.gen(function* () {
              yield* grouped(sql`INSERT INTO t (id, v) VALUES (7, 'inner')`);
              expect(yield* ids(sql)).toStrictEqual([7]);
              return yield* Effect.fail("the caller changes its mind");
            }),
          )
          .pipe(Effect.either);
        expect(outcome).toStrictEqual(Either.left("the caller changes its mind"));
        expect(yield* ids(sql)).toStrictEqual([]);
      }),
    ),
  );

  it.scoped("the SQLite execution store: concurrent inserts and updates all land, a duplicate request id still answers Duplicate", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir;
      yield* Effect.gen(function* () {
        const store = yield* ExecutionStore;
        const records = Array.from({ length: 40 }, (_, i) => execution(`e${i}`, i % 10 === 0 ? { requestId: `r${i}` } : {}));
        const inserted = yield* Effect.forEach(records, (r) => store.insert(r), { concurrency: "unbounded" });
        expect(inserted.every((x) => x._tag === "Inserted")).toBe(true);
        const again = yield* Effect.forEach([execution("other", { requestId: "r10" }), execution("e41")], (r) => store.insert(r), { concurrency: "unbounded" });
        expect(again.map((x) => x._tag)).toStrictEqual(["Duplicate", "Inserted"]);
        yield* Effect.forEach(records, (r) => store.update({ ...r, state: "SUCCEEDED", endTime: 2_000, result: { ok: r.executionId } }), { concurrency: "unbounded", discard: true });
        const missing = yield* store.update(execution("never-inserted")).pipe(Effect.either);
        expect(Either.isLeft(missing)).toBe(true);
        for (const r of records) {
          const got = yield* store.get(r.executionId);
          expect(got._tag === "Some" && got.value.state).toBe("SUCCEEDED");
        }
      }).pipe(Effect.provide(ExecutionStoreSqlite.pipe(Layer.provideMerge(SqliteDatabase.layer(dir)))));
    }),
  );
});
