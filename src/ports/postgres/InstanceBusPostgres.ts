/**
 * InstanceBus over PostgreSQL: NOTIFY to send, LISTEN to receive, on the database the instances
 * share. Each message is prefixed with the sending instance's id so that an instance skips its
 * own (a session hears its own notifications). Sends go through one fiber in order, off the
 * caller's path: a caller never waits for the database to pass a message on, and a database that
 * is down costs lost messages (logged), not stalled fires. Each LISTEN has a connection of its
 * own; when it fails or ends, it is reconnected (messages sent meanwhile are lost).
 */
import * as PgClient from "@effect/sql-pg/PgClient";
import { Chunk, Data, Effect, Layer, Queue, Redacted, Schedule, Stream } from "effect";
import Pg from "pg";
import { InstanceBus, maxMessageBytes } from "../InstanceBus.js";
import { PgInstance } from "./PgInstance.js";

class ListenEnded extends Data.TaggedError("ListenEnded")<{ readonly cause: unknown }> {
  override get message() {
    return "the LISTEN connection failed or ended";
  }
}

/** Messages waiting to be sent; beyond this (a database down for long) the oldest are dropped. */
const maxWaiting = 10_000;

export const InstanceBusPostgres: Layer.Layer<InstanceBus, never, PgClient.PgClient | PgInstance> = Layer.scoped(
  InstanceBus,
  Effect.gen(function* () {
    const pg = yield* PgClient.PgClient;
    const me = (yield* PgInstance).instanceId;
    const outbox = yield* Queue.sliding<readonly [channel: string, payload: string]>(maxWaiting);
    // What waits goes in one statement (one round trip, however many messages): pg_notify, not
    // PgClient.notify, which sends `NOTIFY channel, $1` and PostgreSQL does not take a bound payload.
    yield* Queue.takeBetween(outbox, 1, 256).pipe(
      Effect.map(Chunk.toReadonlyArray),
      Effect.flatMap((batch) =>
        pg
          .unsafe(`SELECT ${batch.map((_, i) => `pg_notify($${2 * i + 1}, $${2 * i + 2})`).join(", ")}`, batch.flat())
          .pipe(Effect.catchAllCause((cause) => Effect.logWarning(`instance bus: NOTIFY failed; ${batch.length} message(s) lost`, cause))),
      ),
      Effect.forever,
      Effect.forkScoped,
    );
    const prefix = `${me}:`;
    // LISTEN on a connection of its own, not PgClient.listen: that one shares a client whose
    // errors it swallows, so a dropped connection (a restart, a failover) would end delivery
    // silently and for good. Here the stream fails when the connection does, and is retried on a
    // new one.
    const url = pg.config.url === undefined ? undefined : Redacted.value(pg.config.url);
    const listen = (channel: string): Stream.Stream<string, ListenEnded> =>
      Stream.asyncScoped<string, ListenEnded>((emit) =>
        Effect.gen(function* () {
          const client = new Pg.Client(url === undefined ? {} : { connectionString: url });
          client.on("error", (cause) => void emit.fail(new ListenEnded({ cause })));
          client.on("end", () => void emit.fail(new ListenEnded({ cause: "the connection closed" })));
          client.on("notification", (m) => {
            if (m.channel === channel && m.payload !== undefined) void emit.single(m.payload);
          });
          yield* Effect.acquireRelease(
            Effect.tryPromise({ try: () => client.connect(), catch: (cause) => new ListenEnded({ cause }) }),
            () => Effect.promise(() => client.end().catch(() => undefined)).pipe(Effect.timeoutOption("1 second")),
          );
          yield* Effect.tryPromise({ try: () => client.query(`LISTEN ${Pg.escapeIdentifier(channel)}`), catch: (cause) => new ListenEnded({ cause }) });
        }),
      );
    return InstanceBus.of({
      send: (channel, message) =>
        Effect.suspend(() => {
          if (Buffer.byteLength(message) > maxMessageBytes) return Effect.logWarning(`instance bus: a message of ${Buffer.byteLength(message)} bytes on ${channel} is over ${maxMessageBytes}; not sent`);
          return Queue.offer(outbox, [channel, prefix + message]).pipe(Effect.asVoid);
        }),
      receive: (channel) =>
        listen(channel).pipe(
          Stream.tapErrorCause((cause) => Effect.logWarning(`instance bus: LISTEN ${channel} failed; reconnecting`, cause)),
          Stream.retry(Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced("5 seconds")))),
          Stream.orDie,
          Stream.filter((payload) => !payload.startsWith(prefix)),
          Stream.map((payload) => payload.slice(payload.indexOf(":") + 1)),
        ),
    });
  }),
);
