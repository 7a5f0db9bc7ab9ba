/**
 * LISTEN on a connection of its own: the notifications of one channel, as a stream that fails
 * when its connection errors, ends or stops answering (a database restart, a failover, a killed
 * backend, a network partition), so that the caller can retry it on a new connection.
 * `PgClient.listen` (@effect/sql-pg 0.53) shares one client among listeners and swallows its
 * errors: after a dropped connection its streams neither fail nor deliver, for good.
 *
 * Why a heartbeat: a connection that dies silently (a partition, a failover without a TCP reset,
 * a stuck proxy) raises neither `error` nor `end`, and a LISTEN connection never sends anything on
 * its own, so nothing would notice. Every `heartbeatMs` the connection runs `SELECT 1`; an error,
 * or no answer within `heartbeatTimeoutMs`, fails the stream. TCP keepalive is on as well, but it
 * only catches a peer whose kernel is gone: a proxy or load balancer in between answers the probes
 * itself. How long a notification can go missing unnoticed is at most heartbeatMs +
 * heartbeatTimeoutMs (25 s by default), plus the caller's retry delay.
 */
import * as PgClient from "@effect/sql-pg/PgClient";
import { Data, Effect, Option, Redacted, Schedule, Stream } from "effect";
import Pg from "pg";

export class ListenFailed extends Data.TaggedError("ListenFailed")<{ readonly channel: string; readonly cause: unknown }> {
  override get message() {
    return `the LISTEN connection for ${this.channel} failed, ended or stopped answering`;
  }
}

export interface ListenOptions {
  /** How often the listening connection is checked with `SELECT 1`, in ms. Default 15 000. */
  readonly heartbeatMs?: number;
  /** How long a check may take before the connection is taken for dead, in ms. Default 10 000. */
  readonly heartbeatTimeoutMs?: number;
}

/** Connecting (TCP, startup, authentication) longer than this fails, so a retry can try again. */
const connectTimeoutMs = 10_000;
/** Keepalive probes start after this much silence (0 would leave the OS default, 2 h on Linux). */
const keepAliveInitialDelayMs = 10_000;
/** What `client.end()` gets on release before its socket is destroyed. */
const endTimeout = "1 second";

/**
 * pg's Client has no public way to drop its socket, and `end()` settles only when the socket
 * closes, which needs the peer's FIN: a silently dead peer never sends it, so without this the
 * socket (and the Client) would stay open for good. `connection.stream` is the net.Socket of
 * pg 8 (pg itself destroys it the same way on a connect timeout); guarded in case a pg version
 * moves it, in which case the socket is left to the OS's keepalive.
 */
const destroySocket = (client: Pg.Client): void => {
  const stream: unknown = (client as unknown as { readonly connection?: { readonly stream?: unknown } }).connection?.stream;
  if (typeof stream === "object" && stream !== null && "destroy" in stream && typeof stream.destroy === "function") {
    (stream.destroy as () => void).call(stream);
  }
};

/** The payloads notified on `channel`, over a new connection to the database `pg` uses. */
export const listen = (pg: PgClient.PgClient, channel: string, options: ListenOptions = {}): Stream.Stream<string, ListenFailed> =>
  Stream.asyncScoped<string, ListenFailed>((emit) =>
    Effect.gen(function* () {
      const heartbeatMs = options.heartbeatMs ?? 15_000;
      const heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? 10_000;
      const url = pg.config.url === undefined ? undefined : Redacted.value(pg.config.url);
      const client = new Pg.Client({
        ...(url === undefined ? {} : { connectionString: url }),
        keepAlive: true,
        keepAliveInitialDelayMillis: keepAliveInitialDelayMs,
        connectionTimeoutMillis: connectTimeoutMs,
      });
      const failed = (cause: unknown) => void emit.fail(new ListenFailed({ channel, cause }));
      // Never removed: a socket error after release (or after destroySocket) must not go unhandled.
      client.on("error", failed);
      client.on("end", () => failed("the connection closed"));
      client.on("notification", (m) => {
        if (m.channel === channel && m.payload !== undefined) void emit.single(m.payload);
      });
      yield* Effect.acquireRelease(
        Effect.tryPromise({ try: () => client.connect(), catch: (cause) => new ListenFailed({ channel, cause }) }),
        () =>
          // Interruptible: a release runs uninterruptibly, and there the timeout could not stop the
          // wait for end(), so it would wait as long as end() does (for good, on a dead peer).
          Effect.promise(() => client.end().catch(() => undefined)).pipe(
            Effect.interruptible,
            Effect.timeoutOption(endTimeout),
            Effect.flatMap(Option.match({ onNone: () => Effect.sync(() => destroySocket(client)), onSome: () => Effect.void })),
          ),
      );
      yield* Effect.tryPromise({ try: () => client.query(`LISTEN ${Pg.escapeIdentifier(channel)}`), catch: (cause) => new ListenFailed({ channel, cause }) });
      yield* Effect.logInfo(`listening for notifications on ${channel}`);
      // Forked in the stream's scope: it stops with the stream. A check that times out leaves its
      // query active, so the release's `client.end()` destroys the socket rather than waiting.
      yield* Effect.tryPromise({ try: () => client.query("SELECT 1"), catch: (cause) => new ListenFailed({ channel, cause }) }).pipe(
        Effect.timeoutFail({
          duration: heartbeatTimeoutMs,
          onTimeout: () => new ListenFailed({ channel, cause: `the heartbeat (SELECT 1) got no answer within ${heartbeatTimeoutMs} ms` }),
        }),
        Effect.schedule(Schedule.spaced(heartbeatMs)),
        Effect.catchAll((e) => Effect.sync(() => void emit.fail(e))),
        Effect.forkScoped,
      );
    }),
  );

/** How a failed LISTEN is retried: quickly at first, then every 5 s at most. */
export const relisten = Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced("5 seconds")));
