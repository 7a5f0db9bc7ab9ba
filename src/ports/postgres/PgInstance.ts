/**
 * This process as one of several instances sharing a PostgreSQL database: a row in `instances`
 * with a heartbeat refreshed every `heartbeatEvery`. An instance whose heartbeat is older than
 * `leaseMs` is taken for dead, and what it held (running executions, claimed work) may be taken
 * over by the others. The row is deleted when the scope closes (a clean stop needs no wait).
 */
import * as SqlClient from "@effect/sql/SqlClient";
import type { SqlError } from "@effect/sql/SqlError";
import type { Fragment } from "@effect/sql/Statement";
import { Clock, Context, Duration, Effect, Layer, Schedule } from "effect";
import { randomUUID } from "node:crypto";

export interface PgInstanceShape {
  readonly instanceId: string;
  /** How long an instance may stay silent before it is taken for dead. */
  readonly leaseMs: number;
  /** A condition on `column` (an instance id column): the instance is alive at `now`. */
  readonly isAlive: (sql: SqlClient.SqlClient, column: Fragment, now: number) => Fragment;
}

export class PgInstance extends Context.Tag("orchestrator/PgInstance")<PgInstance, PgInstanceShape>() {}

export interface PgInstanceOptions {
  readonly heartbeatEvery?: Duration.DurationInput;
  readonly lease?: Duration.DurationInput;
}

export const layer = (options: PgInstanceOptions = {}): Layer.Layer<PgInstance, SqlError, SqlClient.SqlClient> =>
  Layer.scoped(
    PgInstance,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient;
      const every = Duration.decode(options.heartbeatEvery ?? "2 seconds");
      const leaseMs = Duration.toMillis(options.lease ?? "10 seconds");
      const instanceId = randomUUID();
      const now = yield* Clock.currentTimeMillis;
      yield* sql`INSERT INTO instances ${sql.insert({ instance_id: instanceId, start_time: now, heartbeat_time: now })}`;
      yield* Effect.addFinalizer(() => sql`DELETE FROM instances WHERE instance_id = ${instanceId}`.pipe(Effect.ignore));
      yield* Effect.gen(function* () {
        const t = yield* Clock.currentTimeMillis;
        // Upsert: a row removed by someone's cleanup while this process was stalled comes back.
        yield* sql`
          INSERT INTO instances ${sql.insert({ instance_id: instanceId, start_time: now, heartbeat_time: t })}
          ON CONFLICT (instance_id) DO UPDATE SET heartbeat_time = EXCLUDED.heartbeat_time`;
        // Rows of instances long dead: nothing refers to them once their work was taken over.
        yield* sql`DELETE FROM instances WHERE heartbeat_time < ${t - 100 * leaseMs}`;
      }).pipe(
        Effect.catchAll((e) => Effect.logWarning("instance heartbeat failed", e)),
        Effect.repeat(Schedule.spaced(every)),
        Effect.forkScoped,
      );
      return PgInstance.of({
        instanceId,
        leaseMs,
        isAlive: (sql, column, now) =>
          sql`${column} IN (SELECT instance_id FROM instances WHERE heartbeat_time >= ${now - leaseMs})`,
      });
    }),
  );

export const PgInstanceLayer = { layer } as const;
