/**
 * ExecutionStore over any SqlClient whose schema has the executions and execution_attempts
 * tables (SqliteDatabase.ts, PgDatabase.ts): the statements are the same in both dialects except
 * the few a dialect supplies. Records are stored column by column where the store filters or
 * orders on them, and as JSON text where it only hands them back.
 */
import * as SqlClient from "@effect/sql/SqlClient";
import type { Fragment } from "@effect/sql/Statement";
import { Array as Arr, Data, Duration, Effect, Option } from "effect";
import type { Mutable } from "effect/Types";
import { ExecutionNotFound, StoreError } from "../../core/errors.js";
import type {
  AttemptRecord,
  ErrorDetail,
  ExecutionCursor,
  ExecutionFilter,
  ExecutionOrder,
  ExecutionPage,
  ExecutionRecord,
  ExecutionState,
} from "../../core/model.js";
import { terminalStates } from "../../core/model.js";
import { ExecutionStore, type InsertResult } from "../ExecutionStore.js";
import { makeGroupCommit } from "./group-commit.js";

/** Store spans skip the call-site stack trace: it costs an Error per call on every execution's path. */
const spanOptions = { captureStackTrace: false } as const;

/** A stored row that does not decode back into a record; the cause of the StoreError. */
export class CorruptRow extends Data.TaggedError("CorruptRow")<{
  readonly table: string;
  readonly key: string;
  readonly cause: unknown;
}> {
  override get message() {
    return `row ${this.key} of ${this.table} could not be decoded`;
  }
}

type ExecutionRow = {
  readonly execution_id: string;
  readonly operation: string;
  readonly state: string;
  readonly principal_subject: string;
  readonly principal_tenant: string;
  readonly principal: string;
  readonly labels: string;
  readonly request_id: string | null;
  readonly schedule_id: string | null;
  readonly nominal_time: number | null;
  readonly input: string;
  readonly result: string | null;
  readonly error: string | null;
  readonly token_usage: string | null;
  readonly trace_id: string | null;
  readonly create_time: number;
  readonly start_time: number | null;
  readonly end_time: number | null;
  readonly retry_policy: string;
  readonly timeout_ms: number;
  readonly attempt_timeout_ms: number | null;
  readonly next_attempt_time: number | null;
  readonly cancel_reason: string | null;
};

type AttemptRow = {
  readonly execution_id: string;
  readonly number: number;
  readonly start_time: number;
  readonly end_time: number | null;
  readonly error: string | null;
  readonly retry_delay_ms: number | null;
};

const unfinishedStates: ReadonlyArray<ExecutionState> = ["PENDING", "RUNNING", "BACKING_OFF"];
const finishedStates: ReadonlyArray<ExecutionState> = [...terminalStates];

/** Multi-row inserts stay well under SQLite's bound-parameter limit. */
const attemptsPerInsert = 500;

// `result` may legitimately be JSON null: it is stored as the text "null", and only an absent
// value becomes SQL NULL, so absence and null stay distinct.
const json = (value: unknown): string | null => (value === undefined ? null : JSON.stringify(value));

const executionRow = (r: ExecutionRecord): ExecutionRow => ({
  execution_id: r.executionId,
  operation: r.operation,
  state: r.state,
  principal_subject: r.principal.subject,
  principal_tenant: r.principal.tenant,
  principal: JSON.stringify(r.principal),
  labels: JSON.stringify(r.labels),
  request_id: r.requestId ?? null,
  schedule_id: r.scheduleId ?? null,
  nominal_time: r.nominalTime ?? null,
  input: JSON.stringify(r.input),
  result: json(r.result),
  error: json(r.error),
  token_usage: json(r.tokenUsage),
  trace_id: r.traceId ?? null,
  create_time: r.createTime,
  start_time: r.startTime ?? null,
  end_time: r.endTime ?? null,
  retry_policy: JSON.stringify(r.retryPolicy),
  timeout_ms: r.timeoutMs,
  attempt_timeout_ms: r.attemptTimeoutMs ?? null,
  next_attempt_time: r.nextAttemptTime ?? null,
  cancel_reason: r.cancelReason ?? null,
});

const attemptRow = (executionId: string, a: AttemptRecord): AttemptRow => ({
  execution_id: executionId,
  number: a.number,
  start_time: a.startTime,
  end_time: a.endTime ?? null,
  error: json(a.error),
  retry_delay_ms: a.retryDelayMs ?? null,
});

// Optional fields are only set when the column holds a value: the model uses
// exactOptionalPropertyTypes, and a round trip must not add `undefined` keys.

const decodeAttempt = (row: AttemptRow): AttemptRecord => {
  const a: Mutable<AttemptRecord> = { number: row.number, startTime: row.start_time };
  if (row.end_time !== null) a.endTime = row.end_time;
  if (row.error !== null) a.error = JSON.parse(row.error);
  if (row.retry_delay_ms !== null) a.retryDelayMs = row.retry_delay_ms;
  return a;
};

const decodeExecution = (row: ExecutionRow, attempts: ReadonlyArray<AttemptRecord>): ExecutionRecord => {
  const r: Mutable<ExecutionRecord> = {
    executionId: row.execution_id,
    operation: row.operation,
    input: JSON.parse(row.input),
    state: row.state as ExecutionState,
    principal: JSON.parse(row.principal),
    labels: JSON.parse(row.labels),
    attempts,
    createTime: row.create_time,
    retryPolicy: JSON.parse(row.retry_policy),
    timeoutMs: row.timeout_ms,
  };
  if (row.request_id !== null) r.requestId = row.request_id;
  if (row.schedule_id !== null) r.scheduleId = row.schedule_id;
  if (row.nominal_time !== null) r.nominalTime = row.nominal_time;
  if (row.result !== null) r.result = JSON.parse(row.result);
  if (row.error !== null) r.error = JSON.parse(row.error);
  if (row.token_usage !== null) r.tokenUsage = JSON.parse(row.token_usage);
  if (row.trace_id !== null) r.traceId = row.trace_id;
  if (row.start_time !== null) r.startTime = row.start_time;
  if (row.end_time !== null) r.endTime = row.end_time;
  if (row.attempt_timeout_ms !== null) r.attemptTimeoutMs = row.attempt_timeout_ms;
  if (row.next_attempt_time !== null) r.nextAttemptTime = row.next_attempt_time;
  if (row.cancel_reason !== null) r.cancelReason = row.cancel_reason;
  return r;
};

/** What differs between the databases. */
export interface ExecutionStoreDialect {
  /** Prefix of span names, e.g. "ExecutionStoreSqlite". */
  readonly name: string;
  /** The label `key` of the row's JSON `labels` equals `value` (both bound, never spliced). */
  readonly labelEquals: (sql: SqlClient.SqlClient, key: string, value: string) => Fragment;
  /** Extra columns written with every row (e.g. the instance running it). */
  readonly extraColumns?: Readonly<Record<string, string | number | null>>;
  /**
   * Which unfinished rows belong to a process that is gone. Undefined: all of them (one process
   * per database, asked once at start-up).
   */
  readonly orphaned?: (sql: SqlClient.SqlClient, now: number) => Fragment;
  /** See ExecutionStoreShape.recoverEvery. */
  readonly recoverEvery?: Duration.Duration;
  /**
   * Inserts and updates share commits (group-commit.ts). For a database one process owns: rows
   * that other instances also write could deadlock a shared transaction.
   */
  readonly groupCommit?: boolean;
}

export const makeExecutionStore = (dialect: ExecutionStoreDialect) => Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient;
  // Inserts and updates come in bursts (every running execution writes at its start and end):
  // they share commits where the dialect allows it; otherwise each is a transaction of its own.
  const grouped = makeGroupCommit(sql, dialect.groupCommit === true);
  const rowOf = (r: ExecutionRecord) => (dialect.extraColumns === undefined ? executionRow(r) : { ...executionRow(r), ...dialect.extraColumns });

  const storeError = (operation: string) => (cause: unknown) => new StoreError({ operation, cause });

  /** Reads the executions a WHERE clause selects, with their attempts, in the given order. */
  const select = (where: Fragment, orderBy: Fragment, limit: number) =>
    Effect.gen(function* () {
      const rows = yield* sql<ExecutionRow>`SELECT * FROM executions WHERE ${where} ${orderBy} LIMIT ${limit}`;
      if (rows.length === 0) return [];
      const attemptRows = yield* sql<AttemptRow>`
        SELECT * FROM execution_attempts
        WHERE execution_id IN ${sql.in(rows.map((r) => r.execution_id))}
        ORDER BY execution_id, number`;
      const attempts = Arr.groupBy(attemptRows, (a) => a.execution_id);
      return yield* Effect.forEach(rows, (row) =>
        Effect.try({
          try: () => decodeExecution(row, (attempts[row.execution_id] ?? []).map(decodeAttempt)),
          catch: (cause) => new CorruptRow({ table: "executions", key: row.execution_id, cause }),
        }),
      );
    });

  const selectOne = (where: Fragment) => Effect.map(select(where, sql``, 1), Arr.head);

  const insertAttempts = (record: ExecutionRecord) =>
    Effect.forEach(
      Arr.chunksOf(
        record.attempts.map((a) => attemptRow(record.executionId, a)),
        attemptsPerInsert,
      ),
      (chunk) => sql`INSERT INTO execution_attempts ${sql.insert(chunk)}`,
      { discard: true },
    );

  const findByRequestId = Effect.fn(`${dialect.name}.findByRequestId`, spanOptions)(function* (subject: string, requestId: string) {
    return yield* selectOne(sql`principal_subject = ${subject} AND request_id = ${requestId}`).pipe(
      Effect.mapError(storeError("findByRequestId")),
    );
  });

  const insert = Effect.fn(`${dialect.name}.insert`, spanOptions)(function* (record: ExecutionRecord) {
    return yield* grouped(
      Effect.gen(function* () {
        // The UNIQUE constraint decides who wins a race on the request id; the loser sees no
        // row returned and reads the winner back within the same transaction.
        const inserted = yield* sql`
          INSERT INTO executions ${sql.insert(rowOf(record))}
          ON CONFLICT (principal_subject, request_id) DO NOTHING
          RETURNING execution_id`;
        if (inserted.length > 0) {
          yield* insertAttempts(record);
          return { _tag: "Inserted" } as InsertResult;
        }
        const existing = yield* selectOne(
          sql`principal_subject = ${record.principal.subject} AND request_id = ${record.requestId ?? null}`,
        );
        if (Option.isNone(existing)) {
          return yield* new CorruptRow({ table: "executions", key: record.executionId, cause: "conflict without a row" });
        }
        return { _tag: "Duplicate", existing: existing.value } as InsertResult;
      }),
    ).pipe(Effect.mapError(storeError("insert")));
  });

  // An execution's identity, input, owner and policies never change after insert: an update
  // writes only the columns that do, so the indexes on the others (tenant, operation, schedule,
  // create time) are not rewritten on every state change.
  const changingColumns = (r: ExecutionRecord) => ({
    state: r.state,
    result: json(r.result),
    error: json(r.error),
    token_usage: json(r.tokenUsage),
    start_time: r.startTime ?? null,
    end_time: r.endTime ?? null,
    next_attempt_time: r.nextAttemptTime ?? null,
    cancel_reason: r.cancelReason ?? null,
    ...dialect.extraColumns,
  });

  // Attempts are only ever appended or ended: upserted by (execution_id, number), never
  // deleted and reinserted.
  const upsertAttempts = (record: ExecutionRecord) =>
    Effect.forEach(
      Arr.chunksOf(
        record.attempts.map((a) => attemptRow(record.executionId, a)),
        attemptsPerInsert,
      ),
      (chunk) => sql`
        INSERT INTO execution_attempts ${sql.insert(chunk)}
        ON CONFLICT (execution_id, number) DO UPDATE SET
          start_time = excluded.start_time, end_time = excluded.end_time,
          error = excluded.error, retry_delay_ms = excluded.retry_delay_ms`,
      { discard: true },
    );

  const update = Effect.fn(`${dialect.name}.update`, spanOptions)(function* (record: ExecutionRecord) {
    yield* grouped(
      Effect.gen(function* () {
        const changed = yield* sql`
          UPDATE executions SET ${sql.update(changingColumns(record))}
          WHERE execution_id = ${record.executionId}
          RETURNING execution_id`;
        if (changed.length === 0) return yield* new ExecutionNotFound({ executionId: record.executionId });
        if (record.attempts.length > 0) yield* upsertAttempts(record);
      }),
    ).pipe(Effect.mapError(storeError("update")));
  });

  const get = Effect.fn(`${dialect.name}.get`, spanOptions)(function* (executionId: string) {
    return yield* selectOne(sql`execution_id = ${executionId}`).pipe(Effect.mapError(storeError("get")));
  });

  const list = Effect.fn(`${dialect.name}.list`, spanOptions)(function* (
    filter: ExecutionFilter,
    order: ExecutionOrder,
    pageSize: number,
    after: ExecutionCursor | undefined,
  ) {
    const size = Math.max(1, Math.floor(pageSize));
    const ascending = order === "CREATE_TIME_ASCENDING";
    const where: Array<Fragment> = [];
    if (filter.operation !== undefined) where.push(sql`operation = ${filter.operation}`);
    if (filter.states !== undefined && filter.states.length > 0) where.push(sql`state IN ${sql.in(filter.states)}`);
    if (filter.scheduleId !== undefined) where.push(sql`schedule_id = ${filter.scheduleId}`);
    if (filter.principalSubject !== undefined) where.push(sql`principal_subject = ${filter.principalSubject}`);
    if (filter.tenant !== undefined) where.push(sql`principal_tenant = ${filter.tenant}`);
    for (const [key, value] of Object.entries(filter.labels ?? {})) {
      where.push(dialect.labelEquals(sql, key, value));
    }
    if (after !== undefined) {
      where.push(
        ascending
          ? sql`(create_time, execution_id) > (${after.createTime}, ${after.executionId})`
          : sql`(create_time, execution_id) < (${after.createTime}, ${after.executionId})`,
      );
    }
    const orderBy = ascending
      ? sql`ORDER BY create_time ASC, execution_id ASC`
      : sql`ORDER BY create_time DESC, execution_id DESC`;
    // One row more than the page tells whether a next page exists without a second query.
    const rows = yield* select(sql.and(where), orderBy, size + 1).pipe(Effect.mapError(storeError("list")));
    const items = rows.slice(0, size);
    const last = items[items.length - 1];
    return (
      rows.length > size && last !== undefined
        ? { items, next: { createTime: last.createTime, executionId: last.executionId } }
        : { items }
    ) satisfies ExecutionPage;
  });

  const interruptUnfinished = Effect.fn(`${dialect.name}.interruptUnfinished`, spanOptions)(function* (
    now: number,
    error: ErrorDetail,
  ) {
    const errorJson = JSON.stringify(error);
    return yield* sql
      .withTransaction(
        Effect.gen(function* () {
          const orphaned = dialect.orphaned === undefined ? sql`TRUE` : dialect.orphaned(sql, now);
          yield* sql`
            UPDATE execution_attempts SET end_time = ${now}, error = ${errorJson}
            WHERE end_time IS NULL
              AND execution_id IN (SELECT execution_id FROM executions WHERE state IN ${sql.in(unfinishedStates)} AND ${orphaned})
              AND number = (
                SELECT max(a.number) FROM execution_attempts AS a
                WHERE a.execution_id = execution_attempts.execution_id)`;
          const changed = yield* sql<{ readonly execution_id: string }>`
            UPDATE executions SET state = 'INTERRUPTED', end_time = ${now}, error = ${errorJson}, next_attempt_time = NULL
            WHERE state IN ${sql.in(unfinishedStates)} AND ${orphaned}
            RETURNING execution_id`;
          return changed.map((r) => r.execution_id);
        }),
      )
      .pipe(Effect.mapError(storeError("interruptUnfinished")));
  });

  const prune = Effect.fn(`${dialect.name}.prune`, spanOptions)(function* (endedBefore: number) {
    // Attempts go with their execution through ON DELETE CASCADE (foreign_keys is on).
    const deleted = yield* sql`
      DELETE FROM executions
      WHERE end_time < ${endedBefore} AND state IN ${sql.in(finishedStates)}
      RETURNING execution_id`.pipe(Effect.mapError(storeError("prune")));
    return deleted.length;
  });

  return ExecutionStore.of({
    insert,
    update,
    get,
    findByRequestId,
    list,
    interruptUnfinished,
    prune,
    ...(dialect.recoverEvery === undefined ? {} : { recoverEvery: dialect.recoverEvery }),
  });
});
