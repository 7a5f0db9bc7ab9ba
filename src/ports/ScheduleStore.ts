/**
 * Port: where schedules, their claimed slots and their idempotency keys live. Layers:
 * ScheduleStoreMemory (tests, embedding), ScheduleStoreSqlite (the embedded default, one
 * instance), ScheduleStorePostgres (several instances sharing one database).
 *
 * Exactly-once firing rests on two primitives every implementation provides atomically:
 * - `replace` is a compare-and-set on the record's `rev`: two writers of one schedule (an RPC
 *   and the engine, or two instances) cannot both win;
 * - `advance` moves a schedule's cursor (nextFireTime) past the due slots AND inserts their
 *   claims in one step, so the instance whose advance wins owns those slots, and a slot is never
 *   advanced over without its claim existing. A claim is leased; an instance that dies before
 *   dispatching it loses the lease, and another instance takes it over (`takeExpiredClaims`).
 */
import { Context, type Effect, type Option } from "effect";
import type { StoreError } from "../core/errors.js";
import type { Claim, ClaimOutcome, ScheduleFilter, ScheduleRecord } from "../core/schedule/model.js";

export interface SchedulePage {
  readonly items: ReadonlyArray<ScheduleRecord>;
  /** The last schedule_id of this page, when there may be more. */
  readonly next?: string | undefined;
}

/** How a claim ended, written with a schedule's record by `replace`. */
export interface ClaimSettlement {
  readonly claimId: string;
  readonly outcome: ClaimOutcome;
  readonly executionId: string | undefined;
}

/** A stored response for an idempotency key. */
export interface StoredRequest {
  readonly fingerprint: string;
  readonly response: string;
  readonly time: number;
}

export interface ScheduleStoreShape {
  /** Inserts a new schedule; false when the id is taken. */
  readonly insert: (record: ScheduleRecord) => Effect.Effect<boolean, StoreError>;
  readonly get: (scheduleId: string) => Effect.Effect<Option.Option<ScheduleRecord>, StoreError>;
  /** Ordered by schedule_id, after `after` (exclusive). */
  readonly list: (filter: ScheduleFilter, pageSize: number, after: string | undefined) => Effect.Effect<SchedulePage, StoreError>;
  /**
   * Writes `record` iff the stored one still has rev `expectedRev`; false otherwise (re-read and
   * retry). With `settle`, a successful write also settles that claim of the schedule, in the
   * same transaction (as settleClaim would).
   */
  readonly replace: (record: ScheduleRecord, expectedRev: number, settle?: ClaimSettlement) => Effect.Effect<boolean, StoreError>;
  /** Like replace, and inserts the claims in the same transaction (an existing claim key is left alone). */
  readonly advance: (record: ScheduleRecord, expectedRev: number, claims: ReadonlyArray<Claim>) => Effect.Effect<boolean, StoreError>;
  /** Deletes the schedule and its claims; false when it did not exist. */
  readonly remove: (scheduleId: string) => Effect.Effect<boolean, StoreError>;
  /** Ids of schedules whose nextFireTime ≤ now, earliest first, at most `limit` (an index, not a scan). */
  readonly due: (now: number, limit: number) => Effect.Effect<ReadonlyArray<string>, StoreError>;
  /** The earliest nextFireTime of all schedules, if any. */
  readonly earliest: () => Effect.Effect<Option.Option<number>, StoreError>;
  /** Inserts a claim if its (scheduleId, claimId) is free; false when taken. */
  readonly claim: (claim: Claim) => Effect.Effect<boolean, StoreError>;
  /**
   * Renews the lease of a claim this instance holds: only if it is unsettled, held by
   * `instanceId` and its lease is still `leaseUntil` (the token this holder was given). False when
   * it was taken over meanwhile (the lease ran out and a sweeper, maybe of this very process, took
   * it): then the caller must not run it.
   */
  readonly confirmClaim: (scheduleId: string, claimId: string, instanceId: string, leaseUntil: number, newLeaseUntil: number) => Effect.Effect<boolean, StoreError>;
  /** Records how a claim ended; it is no longer leased. */
  readonly settleClaim: (scheduleId: string, claimId: string, outcome: ClaimOutcome, executionId: string | undefined) => Effect.Effect<void, StoreError>;
  /**
   * Claims still unsettled whose lease ended before `now` (their instance died or stalled),
   * re-leased to `instanceId` until `leaseUntil`; each is handed to one caller only.
   */
  readonly takeExpiredClaims: (now: number, instanceId: string, leaseUntil: number, limit: number) => Effect.Effect<ReadonlyArray<Claim>, StoreError>;
  /** Number of schedules (for metrics and the bench). */
  readonly count: () => Effect.Effect<number, StoreError>;
  readonly findRequest: (subject: string, requestId: string) => Effect.Effect<Option.Option<StoredRequest>, StoreError>;
  /**
   * Saves the response of an idempotent call. An existing key saved before `expiredBefore` (past
   * the caller's lifetime for keys) is replaced; a live one is kept (the first call wins). Every
   * other key saved before `expiredBefore` is deleted on the way, so the keys kept are those of
   * one lifetime.
   */
  readonly saveRequest: (subject: string, requestId: string, request: StoredRequest, expiredBefore: number) => Effect.Effect<void, StoreError>;
}

export class ScheduleStore extends Context.Tag("orchestrator/ScheduleStore")<ScheduleStore, ScheduleStoreShape>() {}
