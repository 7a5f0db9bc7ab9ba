/**
 * InstanceBus over PostgreSQL: NOTIFY to send, LISTEN to receive, on the database the instances
 * share. Each message is prefixed with the sending instance's id so that an instance skips its
 * own (a session hears its own notifications). Sends go through one fiber in order, off the
 * caller's path: a caller never waits for the database to pass a message on, and a database that
 * is down costs lost messages (logged), not stalled fires. Each LISTEN has a connection of its
 * own; when it fails or ends, it is reconnected (messages sent meanwhile are lost).
 */
import * as PgClient from "@effect/sql-pg/PgClient";
import { Chunk, Effect, Layer, Queue, Stream } from "effect";
import { InstanceBus, maxMessageBytes } from "../InstanceBus.js";
import { listen, relisten } from "./listen.js";
import { PgInstance } from "./PgInstance.js";

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
    return InstanceBus.of({
      send: (channel, message) =>
        Effect.suspend(() => {
          const bytes = Buffer.byteLength(message);
          if (bytes > maxMessageBytes) return Effect.logWarning(`instance bus: a message of ${bytes} bytes on ${channel} is over ${maxMessageBytes}; not sent`);
          return Queue.offer(outbox, [channel, prefix + message]).pipe(Effect.asVoid);
        }),
      receive: (channel) =>
        // Its own connection (listen.ts), retried on a new one when it fails or ends.
        listen(pg, channel).pipe(
          Stream.tapErrorCause((cause) => Effect.logWarning(`instance bus: LISTEN ${channel} failed; reconnecting`, cause)),
          Stream.retry(relisten),
          Stream.orDie,
          Stream.filter((payload) => !payload.startsWith(prefix)),
          Stream.map((payload) => payload.slice(payload.indexOf(":") + 1)),
        ),
    });
  }),
);
