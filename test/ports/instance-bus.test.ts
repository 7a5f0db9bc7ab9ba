/**
 * InstanceBusPostgres on a real PostgreSQL: what one instance sends the others receive, in
 * order; an instance never hears itself; a message too large for NOTIFY is not sent (and does not
 * stop the ones after it); a LISTEN connection that is killed is replaced.
 */
import { describe, expect, it } from "@effect/vitest";
import * as SqlClient from "@effect/sql/SqlClient";
import { Context, Effect, Layer, Stream } from "effect";
import { InstanceBus, maxMessageBytes } from "../../src/ports/InstanceBus.js";
import { InstanceBusPostgres } from "../../src/ports/postgres/InstanceBusPostgres.js";
import { PgDatabase } from "../../src/ports/postgres/PgDatabase.js";
import { PgInstanceLayer } from "../../src/ports/postgres/PgInstance.js";
import { sharedPostgres } from "../support/postgres.js";

/** One instance's bus (its own pool and instance row) on the database at `url`, open for the enclosing scope. */
const instance = (url: string) =>
  Layer.build(InstanceBusPostgres.pipe(Layer.provide(PgInstanceLayer.layer()), Layer.provide(PgDatabase.layer(url, { maxConnections: 2 })))).pipe(
    Effect.map((ctx) => ctx.unsafeMap.get(InstanceBus.key) as InstanceBus["Type"]),
  );

describe("InstanceBus on PostgreSQL", () => {
  it.live("the other instances receive what one sends, in order; the sender does not; an oversized message is dropped; killed LISTEN connections come back", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const url = yield* Effect.promise(async () => (await sharedPostgres()).createDatabase());
        const a = yield* instance(url);
        const b = yield* instance(url);
        const c = yield* instance(url);
        const heard = { a: [] as string[], b: [] as string[], c: [] as string[] };
        for (const [name, bus] of [["a", a], ["b", b], ["c", c]] as const) {
          yield* bus.receive("test_channel").pipe(
            Stream.runForEach((m) => Effect.sync(() => heard[name].push(m))),
            Effect.forkScoped,
          );
        }
        /** Waits (real time, bounded) until `ok`; LISTEN connections come up asynchronously. */
        const until = (ok: () => boolean) =>
          Effect.gen(function* () {
            for (let i = 0; i < 200 && !ok(); i++) yield* Effect.sleep("50 millis");
            expect(ok()).toBe(true);
          });
        // Ping until B and C both listen; then what A sends from here on reaches them.
        for (let i = 0; !(heard.b.includes("ping") && heard.c.includes("ping")) && i < 100; i++) {
          yield* a.send("test_channel", "ping");
          yield* Effect.sleep("100 millis");
        }
        const after = (xs: string[]) => xs.slice(xs.lastIndexOf("ping") + 1);
        yield* a.send("test_channel", "one");
        yield* a.send("test_channel", "x".repeat(maxMessageBytes + 1));
        yield* a.send("test_channel", "two:with a colon");
        yield* a.send("test_channel", JSON.stringify({ three: 3 }));
        const expected = ["one", "two:with a colon", '{"three":3}'];
        yield* until(() => after(heard.b).length >= 3 && after(heard.c).length >= 3);
        expect(after(heard.b)).toStrictEqual(expected);
        expect(after(heard.c)).toStrictEqual(expected);
        // B answers: A hears B, and never itself.
        yield* b.send("test_channel", "from b");
        yield* until(() => heard.a.includes("from b"));
        expect(heard.a).toStrictEqual(["from b"]);

        // Every LISTEN connection is killed (as a database restart would): the buses reconnect,
        // and what is sent afterwards arrives again.
        const sql = yield* Layer.build(PgDatabase.layer(url, { maxConnections: 1 })).pipe(Effect.map(Context.get(SqlClient.SqlClient)));
        const killed = yield* sql<{ n: number }>`
          SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()`;
        expect(killed[0]!.n).toBeGreaterThanOrEqual(3);
        heard.b.length = 0;
        heard.c.length = 0;
        for (let i = 0; !(heard.b.includes("ping") && heard.c.includes("ping")) && i < 150; i++) {
          yield* a.send("test_channel", "ping");
          yield* Effect.sleep("100 millis");
        }
        yield* a.send("test_channel", "after the restart");
        yield* until(() => after(heard.b).includes("after the restart") && after(heard.c).includes("after the restart"));
      }),
    ),
  );
});
