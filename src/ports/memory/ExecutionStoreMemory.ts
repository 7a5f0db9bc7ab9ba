/**
 * ExecutionStore in process memory, for tests and for embedding without a disk. Same semantics
 * as the SQLite store (one shared test suite runs against both); it holds every execution until
 * prune removes it.
 */
import { Effect, Layer, Option } from "effect";
import { ExecutionNotFound, StoreError } from "../../core/errors.js";
import type {
  ErrorDetail,
  ExecutionCursor,
  ExecutionFilter,
  ExecutionOrder,
  ExecutionPage,
  ExecutionRecord,
} from "../../core/model.js";
import { isTerminal } from "../../core/model.js";
import { ExecutionStore, type InsertResult } from "../ExecutionStore.js";

/** Store spans skip the call-site stack trace: it costs an Error per call on every execution's path. */
const spanOptions = { captureStackTrace: false } as const;

// Code-unit order, the same as SQLite's BINARY collation for the ASCII ids the core generates.
const compareKey = (a: ExecutionCursor, b: ExecutionCursor): number =>
  a.createTime !== b.createTime
    ? a.createTime - b.createTime
    : a.executionId < b.executionId
      ? -1
      : a.executionId > b.executionId
        ? 1
        : 0;

const matches = (filter: ExecutionFilter, r: ExecutionRecord): boolean =>
  (filter.operation === undefined || r.operation === filter.operation) &&
  (filter.states === undefined || filter.states.length === 0 || filter.states.includes(r.state)) &&
  (filter.scheduleId === undefined || r.scheduleId === filter.scheduleId) &&
  (filter.principalSubject === undefined || r.principal.subject === filter.principalSubject) &&
  (filter.tenant === undefined || r.principal.tenant === filter.tenant) &&
  Object.entries(filter.labels ?? {}).every(([k, v]) => Object.hasOwn(r.labels, k) && r.labels[k] === v);

const requestKey = (subject: string, requestId: string) => JSON.stringify([subject, requestId]);

const make = Effect.sync(() => {
  const byId = new Map<string, ExecutionRecord>();
  /** (subject, requestId) → executionId: the uniqueness SQLite gets from its constraint. */
  const byRequest = new Map<string, string>();

  // Stored copies, so a caller that keeps mutating its object (despite readonly) cannot change
  // what the store holds, as with SQLite.
  const put = (record: ExecutionRecord) => {
    const copy = structuredClone(record);
    byId.set(copy.executionId, copy);
    if (copy.requestId !== undefined) byRequest.set(requestKey(copy.principal.subject, copy.requestId), copy.executionId);
  };
  const remove = (record: ExecutionRecord) => {
    byId.delete(record.executionId);
    if (record.requestId !== undefined) byRequest.delete(requestKey(record.principal.subject, record.requestId));
  };

  // Each method body is synchronous, so it runs without interleaving: that is the atomicity.

  const insert = Effect.fn("ExecutionStoreMemory.insert", spanOptions)(function* (record: ExecutionRecord) {
    if (record.requestId !== undefined) {
      const existingId = byRequest.get(requestKey(record.principal.subject, record.requestId));
      const existing = existingId === undefined ? undefined : byId.get(existingId);
      if (existing !== undefined) return { _tag: "Duplicate", existing } as InsertResult;
    }
    if (byId.has(record.executionId)) {
      return yield* new StoreError({ operation: "insert", cause: `execution "${record.executionId}" already exists` });
    }
    put(record);
    return { _tag: "Inserted" } as InsertResult;
  });

  const update = Effect.fn("ExecutionStoreMemory.update", spanOptions)(function* (record: ExecutionRecord) {
    const previous = byId.get(record.executionId);
    if (previous === undefined) {
      return yield* new StoreError({ operation: "update", cause: new ExecutionNotFound({ executionId: record.executionId }) });
    }
    if (record.requestId !== undefined) {
      const holder = byRequest.get(requestKey(record.principal.subject, record.requestId));
      if (holder !== undefined && holder !== record.executionId) {
        return yield* new StoreError({ operation: "update", cause: `request id already held by "${holder}"` });
      }
    }
    remove(previous);
    put(record);
  });

  const get = (executionId: string) => Effect.sync(() => Option.fromNullable(byId.get(executionId)));

  const findByRequestId = (subject: string, requestId: string) =>
    Effect.sync(() => {
      const id = byRequest.get(requestKey(subject, requestId));
      return id === undefined ? Option.none() : Option.fromNullable(byId.get(id));
    });

  const list = (filter: ExecutionFilter, order: ExecutionOrder, pageSize: number, after: ExecutionCursor | undefined) =>
    Effect.sync((): ExecutionPage => {
      const size = Math.max(1, Math.floor(pageSize));
      const direction = order === "CREATE_TIME_ASCENDING" ? 1 : -1;
      const rows = [...byId.values()]
        .filter((r) => matches(filter, r) && (after === undefined || direction * compareKey(r, after) > 0))
        .sort((a, b) => direction * compareKey(a, b));
      const items = rows.slice(0, size);
      const last = items[items.length - 1];
      return rows.length > size && last !== undefined
        ? { items, next: { createTime: last.createTime, executionId: last.executionId } }
        : { items };
    });

  const interruptUnfinished = (now: number, error: ErrorDetail) =>
    Effect.sync(() => {
      const changed: Array<string> = [];
      for (const r of byId.values()) {
        if (isTerminal(r.state)) continue;
        const lastNumber = r.attempts.reduce((max, a) => Math.max(max, a.number), -Infinity);
        const attempts = r.attempts.map((a) =>
          a.number === lastNumber && a.endTime === undefined ? { ...a, endTime: now, error } : a,
        );
        // An ended execution has no next attempt.
        const { nextAttemptTime: _none, ...rest } = r;
        put({ ...rest, state: "INTERRUPTED", endTime: now, error, attempts });
        changed.push(r.executionId);
      }
      return changed as ReadonlyArray<string>;
    });

  const prune = (endedBefore: number) =>
    Effect.sync(() => {
      let count = 0;
      for (const r of [...byId.values()]) {
        if (isTerminal(r.state) && r.endTime !== undefined && r.endTime < endedBefore) {
          remove(r);
          count++;
        }
      }
      return count;
    });

  return ExecutionStore.of({ insert, update, get, findByRequestId, list, interruptUnfinished, prune });
});

/** A fresh, empty store per Layer build. */
export const ExecutionStoreMemory: Layer.Layer<ExecutionStore> = Layer.effect(ExecutionStore, make);
