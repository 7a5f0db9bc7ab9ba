/**
 * ExecutionStore on PostgreSQL, shared by several instances. Each row records the instance
 * running it; an execution whose instance stopped heartbeating (PgInstance) is marked
 * INTERRUPTED by whichever instance sweeps next, so a SIGKILLed instance's executions do not
 * stay RUNNING forever, and a live instance's executions are never touched.
 */
import * as SqlClient from "@effect/sql/SqlClient";
import { Duration, Effect, Layer } from "effect";
import { ExecutionStore } from "../ExecutionStore.js";
import { makeExecutionStore } from "../sql/ExecutionStoreSql.js";
import { PgInstance } from "./PgInstance.js";

export const ExecutionStorePostgres: Layer.Layer<ExecutionStore, never, SqlClient.SqlClient | PgInstance> = Layer.effect(
  ExecutionStore,
  Effect.gen(function* () {
    const instance = yield* PgInstance;
    return yield* makeExecutionStore({
      name: "ExecutionStorePostgres",
      // The key is a bound parameter of ->>, never part of a JSON path string.
      labelEquals: (sql, key, value) => sql`(executions.labels::jsonb ->> ${key}::text) = ${value}`,
      extraColumns: { instance_id: instance.instanceId },
      orphaned: (sql, now) => sql`(instance_id IS NULL OR NOT ${instance.isAlive(sql, sql`instance_id`, now)})`,
      recoverEvery: Duration.millis(instance.leaseMs),
    });
  }),
);
