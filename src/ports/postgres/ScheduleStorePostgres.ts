/**
 * ScheduleStore on PostgreSQL, shared by several instances: the SQL store of
 * ../sqlite/ScheduleStoreSqlite.ts with row locks on lease takeover. Why these choices:
 *
 * - A slot is claimed exactly once by the compare-and-set `advance` (UPDATE … WHERE rev = $read)
 *   plus the unique key (schedule_id, claim_id = cron:<slot>) of the claim it inserts in the same
 *   transaction. Nothing is held between statements, so a stalled or killed instance blocks
 *   nobody (an advisory lock per schedule would need a session per schedule, or would be held
 *   across the run start).
 * - Claims are leased. When an instance dies after claiming and before starting (or settling), its
 *   claim's lease runs out and another instance takes it over with
 *   `UPDATE … WHERE (…) IN (SELECT … FOR UPDATE SKIP LOCKED)`: concurrent sweepers split the
 *   expired claims instead of queueing on each other's locks, and each claim goes to one of them.
 *   The taker first looks for an execution of that schedule and nominal time (the dead instance
 *   may have started it), so the slot fires once, late, rather than twice or never.
 */
import type * as SqlClient from "@effect/sql/SqlClient";
import { Layer } from "effect";
import { ScheduleStore } from "../ScheduleStore.js";
import { makeScheduleStore } from "../sqlite/ScheduleStoreSqlite.js";

export const ScheduleStorePostgres: Layer.Layer<ScheduleStore, never, SqlClient.SqlClient> = Layer.effect(
  ScheduleStore,
  makeScheduleStore({ name: "ScheduleStorePostgres", lockPicked: (sql) => sql`FOR UPDATE SKIP LOCKED` }),
);
