/**
 * Shared pieces of the port suites: every implementation of a port, as a fresh Layer per test
 * (SQLite on a real file in its own temp directory, removed when the test's scope ends), and
 * record builders.
 */
import type * as SqlClient from "@effect/sql/SqlClient";
import { Effect, Layer } from "effect";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ExecutionRecord, Principal, RetryPolicy } from "../../src/core/model.js";
import type { AuditLogger } from "../../src/ports/AuditLogger.js";
import type { ExecutionStore } from "../../src/ports/ExecutionStore.js";
import { AuditLoggerMemory } from "../../src/ports/memory/AuditLoggerMemory.js";
import { ExecutionStoreMemory } from "../../src/ports/memory/ExecutionStoreMemory.js";
import { AuditLoggerSqlite } from "../../src/ports/sqlite/AuditLoggerSqlite.js";
import { ExecutionStoreSqlite } from "../../src/ports/sqlite/ExecutionStoreSqlite.js";
import { SqliteDatabase } from "../../src/ports/sqlite/SqliteDatabase.js";
import { PgDatabase } from "../../src/ports/postgres/PgDatabase.js";
import { PgInstanceLayer } from "../../src/ports/postgres/PgInstance.js";
import { ExecutionStorePostgres } from "../../src/ports/postgres/ExecutionStorePostgres.js";
import { sharedPostgres, stopSharedPostgres } from "../support/postgres.js";
import { afterAll } from "vitest";

/** A directory that exists for the enclosing scope. */
export const tempDir = Effect.acquireRelease(
  Effect.promise(() => mkdtemp(join(tmpdir(), "orchestrator-ports-"))),
  (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true })),
);

/** A migrated database in a fresh temp directory; the file is closed before the directory goes. */
export const freshDatabase: Layer.Layer<SqlClient.SqlClient, unknown> = Layer.unwrapScoped(
  Effect.map(tempDir, (dir) => SqliteDatabase.layer(dir)),
);

/**
 * A fresh, migrated database on this file's PostgreSQL server (started on first use, stopped
 * after the file's tests).
 */
export const freshPostgres: Layer.Layer<SqlClient.SqlClient, unknown> = Layer.unwrapEffect(
  Effect.promise(async () => PgDatabase.layer(await (await sharedPostgres()).createDatabase(), { maxConnections: 4 })),
);
afterAll(stopSharedPostgres);

export interface Implementation<S> {
  readonly name: string;
  /** Built afresh for every test that provides it. */
  readonly layer: Layer.Layer<S, unknown>;
}

export const executionStores: ReadonlyArray<Implementation<ExecutionStore>> = [
  { name: "memory", layer: ExecutionStoreMemory },
  { name: "sqlite", layer: ExecutionStoreSqlite.pipe(Layer.provideMerge(freshDatabase)) },
  {
    name: "postgres",
    // A 1 ms lease: under the test clock this instance's heartbeat is at 0, so by the times the
    // suite recovers at, the instance counts as gone, as after a restart. Live instances are
    // covered in postgres-store.test.ts.
    layer: ExecutionStorePostgres.pipe(Layer.provide(PgInstanceLayer.layer({ lease: "1 millis" })), Layer.provideMerge(freshPostgres)),
  },
];

export const auditLoggers: ReadonlyArray<Implementation<AuditLogger>> = [
  { name: "memory", layer: AuditLoggerMemory },
  { name: "sqlite", layer: AuditLoggerSqlite.pipe(Layer.provideMerge(freshDatabase)) },
];

export const principal = (subject = "alice", tenant = "acme"): Principal => ({
  subject,
  tenant,
  roles: ["operator"],
});

export const retryPolicy: RetryPolicy = {
  initialIntervalMs: 1_000,
  backoffCoefficient: 2,
  maximumIntervalMs: 60_000,
  maximumAttempts: 5,
  nonRetryableErrorTypes: ["InvalidArgument"],
  jitter: 0.2,
  maxRetryDurationMs: 0,
};

/** A minimal record: only the required fields, so that absent stays absent on the way back. */
export const execution = (executionId: string, fields: Partial<ExecutionRecord> = {}): ExecutionRecord => ({
  executionId,
  operation: "echo",
  input: { text: "hi" },
  state: "PENDING",
  principal: principal(),
  labels: {},
  attempts: [],
  createTime: 1_000,
  retryPolicy,
  timeoutMs: 30_000,
  ...fields,
});

/** Every optional field set, nested JSON included. */
export const fullExecution = (executionId: string): ExecutionRecord => ({
  executionId,
  operation: "summarize",
  input: { text: "long", nested: { list: [1, 2.5, "x", null, true, { deep: false }] } },
  state: "SUCCEEDED",
  principal: { subject: "svc-reporting", tenant: "globex", roles: ["operator", "viewer"] },
  labels: { "team": "data", "app.kubernetes.io/name": "rep-ort_1" },
  requestId: "req-full",
  scheduleId: "nightly",
  nominalTime: 1_700_000_000_000,
  attempts: [
    {
      number: 1,
      startTime: 1_700_000_000_100,
      endTime: 1_700_000_000_900,
      error: { type: "HTTP_STATUS", message: "503", retryable: true, details: { status: 503 } },
      retryDelayMs: 1_000,
    },
    { number: 2, startTime: 1_700_000_001_900, endTime: 1_700_000_002_500 },
  ],
  result: { summary: "ok", scores: [0.25, 1e-7, -3] },
  error: { type: "NONE", message: "kept for the round trip", retryable: false },
  tokenUsage: { inputTokens: 10, outputTokens: 20, totalTokens: 30, model: "small" },
  traceId: "0af7651916cd43dd8448eb211c80319c",
  createTime: 1_700_000_000_000,
  startTime: 1_700_000_000_100,
  endTime: 1_700_000_002_500,
  retryPolicy: { ...retryPolicy, maxRetryDurationMs: 120_000 },
  timeoutMs: 60_000,
  attemptTimeoutMs: 10_000,
  nextAttemptTime: 1_700_000_001_900,
  cancelReason: "none really",
});
