/**
 * What only the PostgreSQL stores do: several instances on one database. An instance's running
 * executions are left alone while it heartbeats, and interrupted once it is gone; migrations run
 * once when instances start together; the first-run API key is created once.
 */
import { describe, expect, it } from "@effect/vitest";
import * as SqlClient from "@effect/sql/SqlClient";
import { Context, Effect, Exit, Layer, Option, Scope, TestClock } from "effect";
import { ExecutionStore } from "../../src/ports/ExecutionStore.js";
import { ApiKeyStore } from "../../src/ports/ApiKeyStore.js";
import { PgDatabase } from "../../src/ports/postgres/PgDatabase.js";
import { PgInstanceLayer } from "../../src/ports/postgres/PgInstance.js";
import { ExecutionStorePostgres } from "../../src/ports/postgres/ExecutionStorePostgres.js";
import { ApiKeyStoreSql } from "../../src/ports/sql/ApiKeyStoreSql.js";
import { execution } from "./fixtures.js";
import { sharedPostgres } from "../support/postgres.js";

const interruption = { type: "INTERRUPTED", message: "gone", retryable: false };

/** One instance's ExecutionStore (its own pool and heartbeat) on the database at `url`, built in `scope`. */
const instance = (url: string, scope: Scope.Scope) =>
  Layer.buildWithScope(
    ExecutionStorePostgres.pipe(Layer.provide(PgInstanceLayer.layer({ lease: "10 seconds", heartbeatEvery: "2 seconds" })), Layer.provide(PgDatabase.layer(url, { maxConnections: 2 }))),
    scope,
  ).pipe(Effect.map((ctx) => ctx.unsafeMap.get(ExecutionStore.key) as ExecutionStore["Type"]));

/** A client of its own on `url`, open for the enclosing scope. */
const client = (url: string) => Layer.build(PgDatabase.layer(url, { maxConnections: 1 })).pipe(Effect.map(Context.get(SqlClient.SqlClient)));

describe("PostgreSQL, several instances", () => {
  it.scoped("a live instance's executions are never interrupted by another; a stopped one's are", () =>
    Effect.gen(function* () {
      const url = yield* Effect.promise(async () => (await sharedPostgres()).createDatabase());
      const scopeA = yield* Scope.make();
      const a = yield* instance(url, scopeA);
      const b = yield* instance(url, yield* Effect.scope);
      yield* a.insert(execution("on-a", { state: "RUNNING", attempts: [{ number: 1, startTime: 1_000 }] }));
      yield* b.insert(execution("on-b", { state: "RUNNING", attempts: [{ number: 1, startTime: 1_000 }] }));

      // Both heartbeat while time passes: nothing is taken for dead.
      yield* TestClock.adjust("60 seconds");
      expect(yield* b.interruptUnfinished(60_000, interruption)).toStrictEqual([]);
      expect(yield* a.interruptUnfinished(60_000, interruption)).toStrictEqual([]);

      // A stops (its instance row goes): B takes A's execution over as interrupted, not its own.
      yield* Scope.close(scopeA, Exit.void);
      expect(yield* b.interruptUnfinished(61_000, interruption)).toStrictEqual(["on-a"]);
      expect(Option.map(yield* b.get("on-a"), (r) => r.state)).toStrictEqual(Option.some("INTERRUPTED"));
      expect(Option.map(yield* b.get("on-b"), (r) => r.state)).toStrictEqual(Option.some("RUNNING"));
      expect(b.recoverEvery).toBeDefined();
    }),
  );

  it.scoped("an instance that stops heartbeating (killed) is taken for dead after its lease", () =>
    Effect.gen(function* () {
      const url = yield* Effect.promise(async () => (await sharedPostgres()).createDatabase());
      const b = yield* instance(url, yield* Effect.scope);
      const sql = yield* client(url);
      // An instance that heartbeated at 0 and then vanished without cleaning up.
      yield* sql`INSERT INTO instances (instance_id, start_time, heartbeat_time) VALUES ('ghost', 0, 0)`;
      yield* sql`INSERT INTO executions ${sql.insert({
        execution_id: "on-ghost", operation: "echo", state: "RUNNING", principal_subject: "alice", principal_tenant: "acme",
        principal: JSON.stringify({ subject: "alice", tenant: "acme", roles: [] }), labels: "{}", input: "{}",
        create_time: 0, retry_policy: JSON.stringify(execution("x").retryPolicy), timeout_ms: 1000, instance_id: "ghost",
      })}`;
      expect(yield* b.interruptUnfinished(5_000, interruption)).toStrictEqual([]); // within its lease
      expect(yield* b.interruptUnfinished(10_001, interruption)).toStrictEqual(["on-ghost"]);
    }),
  );

  it.scoped("instances starting together on an empty database migrate it once, and create one first-run key", () =>
    Effect.gen(function* () {
      const url = yield* Effect.promise(async () => (await sharedPostgres()).createDatabase());
      const record = (id: string) => ({ id, hash: id, subject: "admin", tenant: "default", roles: ["admin"], description: "first run", createTime: 0 });
      const results = yield* Effect.forEach(
        ["k1", "k2", "k3", "k4"],
        (id) =>
          Effect.flatMap(ApiKeyStore, (keys) => keys.insertIfNone(record(id))).pipe(
            Effect.provide(ApiKeyStoreSql.pipe(Layer.provide(PgDatabase.layer(url, { maxConnections: 1 })))),
          ),
        { concurrency: "unbounded" },
      );
      expect(results.filter((inserted) => inserted)).toHaveLength(1);
      const sql = yield* client(url);
      const migrations = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM effect_sql_migrations`;
      expect(migrations[0]!.n).toBe(PgDatabase_migrationCount);
    }),
  );
});

const PgDatabase_migrationCount = await Effect.runPromise(PgDatabase.migrations).then((m) => m.length);
