/**
 * listen() on a real PostgreSQL through a loopback TCP proxy that can go silent ("black hole":
 * sockets stay open, no byte passes either way, no RST or FIN reaches the client), as a network
 * partition or a stuck proxy would. Such a connection raises neither `error` nor `end`; only the
 * heartbeat notices it, fails the stream, and the retry the bus uses (relisten) connects again.
 * Real sockets, so real time: short heartbeats, polled conditions, bounded waits.
 */
import * as Reactivity from "@effect/experimental/Reactivity";
import * as SqlClient from "@effect/sql/SqlClient";
import * as PgClient from "@effect/sql-pg/PgClient";
import { afterAll, describe, expect, it } from "@effect/vitest";
import { Cause, Context, Effect, Fiber, Layer, Redacted, Stream } from "effect";
import * as net from "node:net";
import { listen, ListenFailed, relisten } from "../../src/ports/postgres/listen.js";
import { PgDatabase } from "../../src/ports/postgres/PgDatabase.js";
import { sharedPostgres, stopSharedPostgres } from "../support/postgres.js";

afterAll(stopSharedPostgres);

interface Pair {
  readonly client: net.Socket;
  readonly upstream: net.Socket;
  /** The client's first bytes: its startup message (with its application_name), in latin1. */
  startup: string;
  holed: boolean;
  clientClosed: boolean;
}

interface Proxy {
  readonly port: number;
  /** Stops forwarding on the open connections `which` picks, both ways, silently; new connections forward as usual. */
  blackHole(which: (pair: Pair) => boolean): ReadonlyArray<Pair>;
  /** Destroys every socket and closes the server. Safe to call twice. */
  close(): Promise<void>;
}

/** A loopback TCP proxy to 127.0.0.1:targetPort. Half-open allowed, so a FIN is not answered either. */
const startProxy = (targetPort: number): Promise<Proxy> =>
  new Promise((resolve, reject) => {
    const pairs = new Set<Pair>();
    const server = net.createServer({ allowHalfOpen: true }, (client) => {
      const upstream = net.connect({ host: "127.0.0.1", port: targetPort, allowHalfOpen: true });
      const pair: Pair = { client, upstream, startup: "", holed: false, clientClosed: false };
      pairs.add(pair);
      client.once("data", (d: Buffer) => (pair.startup = d.toString("latin1")));
      const forward = (from: net.Socket, to: net.Socket) => {
        from.on("data", (d) => void (pair.holed ? undefined : to.write(d)));
        from.on("end", () => void (pair.holed ? undefined : to.end()));
        from.on("error", () => void (pair.holed ? undefined : to.destroy()));
        from.on("close", () => void (pair.holed ? undefined : to.destroy()));
      };
      forward(client, upstream);
      forward(upstream, client);
      client.on("close", () => (pair.clientClosed = true));
    });
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      let closed: Promise<void> | undefined;
      resolve({
        port: (server.address() as net.AddressInfo).port,
        blackHole: (which) => {
          const open = [...pairs].filter((p) => !p.clientClosed && which(p));
          for (const p of open) p.holed = true;
          return open;
        },
        close: () =>
          (closed ??= new Promise<void>((done) => {
            for (const p of pairs) (p.client.destroy(), p.upstream.destroy());
            server.close(() => done());
          })),
      });
    });
  });

/** A NoticeResponse with no fields: pg emits it as a `notice` event, which nothing here listens to. */
const harmlessMessage = Buffer.from([0x4e, 0, 0, 0, 5, 0]);

/**
 * Whether the client really closed its end of each pair, not just half-closed it: a message
 * written to a socket the client has closed is answered with RST (the proxy's socket then
 * closes); one it has only half-closed takes it (and pg ignores it) and stays open.
 */
const clientsClosed = (pairs: ReadonlyArray<Pair>) =>
  Effect.sync(() => {
    for (const p of pairs) if (!p.clientClosed && p.client.writable) p.client.write(harmlessMessage);
    return pairs.every((p) => p.clientClosed);
  });

/** Polls `ok` every 50 ms (real time) until it holds, up to `ms`; then asserts it. */
const until = (what: string, ok: Effect.Effect<boolean>, ms: number) =>
  Effect.gen(function* () {
    for (let i = 0; i * 50 < ms && !(yield* ok); i++) yield* Effect.sleep("50 millis");
    expect(yield* ok, `${what} (waited ${ms} ms)`).toBe(true);
  });

const poolName = "listen-test-pool";
/** Black-holes the LISTEN connections (every connection through the proxy but the pool's). */
const listeners = (pair: Pair) => !pair.startup.includes(poolName);

/** A database on the shared server, a proxy in front of it (closed with the scope), and two clients: direct, and through the proxy. */
const setup = Effect.gen(function* () {
  const pg = yield* Effect.promise(() => sharedPostgres());
  const url = yield* Effect.promise(() => pg.createDatabase());
  const proxy = yield* Effect.acquireRelease(Effect.promise(() => startProxy(pg.port)), (p) => Effect.promise(() => p.close()));
  const direct = yield* Layer.build(PgDatabase.layer(url, { maxConnections: 1 })).pipe(Effect.map(Context.get(SqlClient.SqlClient)));
  const proxied = new URL(url);
  proxied.port = String(proxy.port);
  // listen() takes its connection settings from a PgClient: one whose pool goes through the proxy
  // too, under an application_name of its own so that the proxy can tell its connection apart.
  const viaProxy = yield* Layer.build(
    PgClient.layer({ url: Redacted.make(proxied.href), maxConnections: 1, applicationName: poolName }).pipe(Layer.provide(Reactivity.layer)),
  ).pipe(Effect.map(Context.get(PgClient.PgClient)));
  const notify = (channel: string, payload: string) => direct`SELECT pg_notify(${channel}, ${payload})`.pipe(Effect.orDie);
  return { proxy, viaProxy, notify };
});

describe("listen() on PostgreSQL", () => {
  it.live(
    "a LISTEN connection that goes silent (black-holed, no RST/FIN) fails its heartbeat, is relistened, and notifications arrive again; its socket is closed",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const { proxy, viaProxy, notify } = yield* setup;
          const channel = "listen_test";
          const heard: string[] = [];
          const failures: ListenFailed[] = [];
          // As InstanceBusPostgres receives: failures retried with relisten on a new connection.
          yield* listen(viaProxy, channel, { heartbeatMs: 300, heartbeatTimeoutMs: 300 }).pipe(
            Stream.tapErrorCause((cause) => Effect.sync(() => failures.push(...Cause.failures(cause)))),
            Stream.retry(relisten),
            Stream.runForEach((m) => Effect.sync(() => heard.push(m))),
            Effect.forkScoped,
          );
          /** Sends `payload` every 100 ms until it is heard (LISTEN comes up asynchronously). */
          const sendUntilHeard = (payload: string, ms: number) =>
            until(
              `${payload} is heard`,
              Effect.map(notify(channel, payload), () => heard.includes(payload)),
              ms,
            );
          yield* sendUntilHeard("before", 5_000);
          expect(failures).toStrictEqual([]);

          const holed = proxy.blackHole(listeners);
          expect(holed.length).toBe(1);
          // Sent after the black hole: the old connection's backend still hears it, but no byte
          // reaches the client; only a new LISTEN connection (through the proxy, which forwards
          // new connections) can deliver it.
          yield* sendUntilHeard("after", 10_000);
          expect(failures.length).toBeGreaterThanOrEqual(1);
          expect(String(failures[0]!.cause)).toMatch(/heartbeat \(SELECT 1\) got no answer within 300 ms/);
          // The dead connection's socket was closed, not left half-open.
          yield* until("the black-holed socket is closed", clientsClosed(holed), 3_000);
        }),
      ),
    30_000,
  );

  it.live(
    "a stream stopped while its connection is black-holed closes the socket after 1 s, though end() never completes",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const { proxy, viaProxy, notify } = yield* setup;
          const channel = "listen_test_release";
          const heard: string[] = [];
          // No heartbeat during the test: release finds no query in flight, so pg's end() sends
          // Terminate and waits for a close that never comes.
          const fiber = yield* listen(viaProxy, channel, { heartbeatMs: 60_000 }).pipe(
            Stream.runForEach((m) => Effect.sync(() => heard.push(m))),
            Effect.forkScoped,
          );
          yield* until(
            "up is heard",
            Effect.map(notify(channel, "up"), () => heard.includes("up")),
            5_000,
          );
          const holed = proxy.blackHole(listeners);
          expect(holed.length).toBe(1);
          const started = Date.now();
          yield* Fiber.interrupt(fiber);
          expect(Date.now() - started).toBeLessThan(3_000);
          yield* until("the black-holed socket is closed", clientsClosed(holed), 3_000);
        }),
      ),
    30_000,
  );
});
