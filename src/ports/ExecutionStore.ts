/**
 * Port: where executions and their attempts live. Layers: ExecutionStoreSqlite (the embedded
 * default), ExecutionStorePostgres (several instances on one database), ExecutionStoreMemory
 * (tests, embedding without a disk).
 */
import { Context, type Duration, type Effect, type Option } from "effect";
import type { StoreError } from "../core/errors.js";
import type {
  ErrorDetail,
  ExecutionCursor,
  ExecutionFilter,
  ExecutionOrder,
  ExecutionPage,
  ExecutionRecord,
} from "../core/model.js";

export type InsertResult =
  | { readonly _tag: "Inserted" }
  /** Another execution of the same principal already holds this request id. */
  | { readonly _tag: "Duplicate"; readonly existing: ExecutionRecord };

export interface ExecutionStoreShape {
  /** Inserts a new execution; atomic on (principal.subject, requestId) when requestId is set. */
  readonly insert: (record: ExecutionRecord) => Effect.Effect<InsertResult, StoreError>;
  /**
   * Stores this version of an execution: its state, outcome, times, cancel reason and attempts
   * (attempts are only appended or ended). What is fixed at insert (id, operation, input,
   * principal, labels, request id, schedule, policies) is not rewritten.
   */
  readonly update: (record: ExecutionRecord) => Effect.Effect<void, StoreError>;
  readonly get: (executionId: string) => Effect.Effect<Option.Option<ExecutionRecord>, StoreError>;
  readonly findByRequestId: (
    subject: string,
    requestId: string,
  ) => Effect.Effect<Option.Option<ExecutionRecord>, StoreError>;
  /**
   * One page in (createTime, executionId) order; `after` is the last item of the previous page.
   * Returns `next` when there may be more.
   */
  readonly list: (
    filter: ExecutionFilter,
    order: ExecutionOrder,
    pageSize: number,
    after: ExecutionCursor | undefined,
  ) => Effect.Effect<ExecutionPage, StoreError>;
  /**
   * Marks every execution not in a terminal state whose process is gone as INTERRUPTED, ending
   * its open attempt and clearing next_attempt_time. Returns the ids it changed. Called at
   * start-up, and every `recoverEvery` when the store sets it.
   */
  readonly interruptUnfinished: (now: number, error: ErrorDetail) => Effect.Effect<ReadonlyArray<string>, StoreError>;
  /**
   * Set by stores that several processes share: a process can die while others keep running, so
   * its executions are looked for periodically, not only when this one starts. Unset: at
   * start-up only (every unfinished row then belongs to a previous process).
   */
  readonly recoverEvery?: Duration.Duration;
  /** Deletes terminal executions that ended before the given time. Returns how many. */
  readonly prune: (endedBefore: number) => Effect.Effect<number, StoreError>;
}

export class ExecutionStore extends Context.Tag("orchestrator/ExecutionStore")<ExecutionStore, ExecutionStoreShape>() {}
