/**
 * LISTEN on a connection of its own: the notifications of one channel, as a stream that fails
 * when its connection errors or ends (a database restart, a failover, a killed backend), so that
 * the caller can retry it on a new connection. `PgClient.listen` (@effect/sql-pg 0.53) shares one
 * client among listeners and swallows its errors: after a dropped connection its streams neither
 * fail nor deliver, for good.
 */
import * as PgClient from "@effect/sql-pg/PgClient";
import { Data, Effect, Redacted, Schedule, Stream } from "effect";
import Pg from "pg";

export class ListenFailed extends Data.TaggedError("ListenFailed")<{ readonly channel: string; readonly cause: unknown }> {
  override get message() {
    return `the LISTEN connection for ${this.channel} failed or ended`;
  }
}

/** The payloads notified on `channel`, over a new connection to the database `pg` uses. */
export const listen = (pg: PgClient.PgClient, channel: string): Stream.Stream<string, ListenFailed> =>
  Stream.asyncScoped<string, ListenFailed>((emit) =>
    Effect.gen(function* () {
      const url = pg.config.url === undefined ? undefined : Redacted.value(pg.config.url);
      const client = new Pg.Client(url === undefined ? {} : { connectionString: url });
      const failed = (cause: unknown) => void emit.fail(new ListenFailed({ channel, cause }));
      client.on("error", failed);
      client.on("end", () => failed("the connection closed"));
      client.on("notification", (m) => {
        if (m.channel === channel && m.payload !== undefined) void emit.single(m.payload);
      });
      yield* Effect.acquireRelease(
        Effect.tryPromise({ try: () => client.connect(), catch: (cause) => new ListenFailed({ channel, cause }) }),
        () => Effect.promise(() => client.end().catch(() => undefined)).pipe(Effect.timeoutOption("1 second")),
      );
      yield* Effect.tryPromise({ try: () => client.query(`LISTEN ${Pg.escapeIdentifier(channel)}`), catch: (cause) => new ListenFailed({ channel, cause }) });
      yield* Effect.logInfo(`listening for notifications on ${channel}`);
    }),
  );

/** How a failed LISTEN is retried: quickly at first, then every 5 s at most. */
export const relisten = Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced("5 seconds")));
