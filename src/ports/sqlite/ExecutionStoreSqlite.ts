/**
 * ExecutionStore on the embedded SQLite database (schema in SqliteDatabase.ts). One process owns
 * the file, so every unfinished row found at start-up belongs to a previous process.
 */
import type * as SqlClient from "@effect/sql/SqlClient";
import { Layer } from "effect";
import { ExecutionStore } from "../ExecutionStore.js";
import { makeExecutionStore } from "../sql/ExecutionStoreSql.js";

export { CorruptRow } from "../sql/ExecutionStoreSql.js";

/** ExecutionStore over the SqlClient of SqliteDatabase.layer. */
export const ExecutionStoreSqlite: Layer.Layer<ExecutionStore, never, SqlClient.SqlClient> = Layer.effect(
  ExecutionStore,
  makeExecutionStore({
    name: "ExecutionStoreSqlite",
    groupCommit: true,
    // json_each compares the key as a bound value: no JSON path is built from it, so no key
    // (whatever its characters) can change the query.
    labelEquals: (sql, key, value) => sql`EXISTS (
      SELECT 1 FROM json_each(executions.labels) AS l
      WHERE l.key = ${key} AND l.type = 'text' AND l.value = ${value})`,
  }),
);
