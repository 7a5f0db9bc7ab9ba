/**
 * The audit log on PostgreSQL (a real server from Debian's packages, test/support/postgres.ts):
 * - two instances in this process (each its own pool, LISTEN connection, hub), writing at once:
 *   a subscriber on each sees every event of both, in sequence order, none twice, none missing,
 *   including across the replay → live seam;
 * - List, filters and retention on PostgreSQL;
 * - two server processes on one database, a gRPC Subscribe on each: both see all events.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest";
import { Context, Effect, Fiber, Layer } from "effect";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AuditService, AuditEventType } from "../../gen/orchestrator/v1/audit_service_pb.js";
import { ExecutionService } from "../../gen/orchestrator/v1/execution_service_pb.js";
import { AuditConfig } from "../../src/core/audit/AuditConfig.js";
import { AuditLog } from "../../src/core/audit/AuditLog.js";
import { AuditLogger, type AuditEntry } from "../../src/ports/AuditLogger.js";
import { AuditLoggerPostgres } from "../../src/ports/postgres/AuditLoggerPostgres.js";
import { PgDatabase } from "../../src/ports/postgres/PgDatabase.js";
import { admin, operator, viewer } from "../support/core.js";
import { startPostgres, type PostgresServer } from "../support/postgres.js";
import { collect } from "../support/rpc.js";
import { spawnServer, type ServerProcess } from "../support/server.js";
import { collectThrough, range, sequences } from "./support.js";

let pg: PostgresServer;
beforeAll(async () => {
  pg = await startPostgres();
});
afterAll(() => pg?.stop());

/** One "instance": its own pool, listener, writer and hub over the shared database. */
const instance = (url: string) =>
  AuditLog.Default.pipe(
    Layer.provideMerge(AuditLoggerPostgres),
    Layer.provide(AuditConfig.layer({ retentionMaxAgeMs: undefined, pollIntervalMs: 60_000 })),
    Layer.provide(PgDatabase.layer(url, { maxConnections: 4 })),
  );

const entry = (who: string, i: number): AuditEntry => ({ type: "EXECUTION_ATTEMPT_STARTED", principal: operator, executionId: `${who}-${i}`, details: { attempt: i } });

const writeMany = (ctx: Context.Context<AuditLogger>, who: string, n: number) =>
  Effect.gen(function* () {
    const audit = Context.get(ctx, AuditLogger);
    for (let i = 1; i <= n; i++) {
      yield* audit.log(entry(who, i));
      if (i % 25 === 0) yield* Effect.sleep("1 millis");
    }
    yield* audit.flush;
  });

describe("the audit log on PostgreSQL", () => {
  it.live("two instances writing at once: a subscriber on each sees every event of both, in order, once", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const url = yield* Effect.promise(() => pg.createDatabase());
        const a = yield* Layer.build(instance(url));
        const b = yield* Layer.build(instance(url));
        const logA = Context.get(a, AuditLog);
        const logB = Context.get(b, AuditLog);
        // Some history first, from both.
        yield* Effect.all([writeMany(a, "a", 200), writeMany(b, "b", 200)], { concurrency: 2 });
        const total = 400 + 2 * 1500;
        // Subscribers joining from the start, from the middle of the history, and live, on both.
        const subs = yield* Effect.forEach(
          [
            collectThrough(logA.subscribe(admin, {}, { _tag: "Earliest" }), total),
            collectThrough(logB.subscribe(admin, {}, { _tag: "Earliest" }), total),
            collectThrough(logA.subscribe(admin, {}, { _tag: "After", sequence: 123 }), total),
            collectThrough(logB.subscribe(admin, {}, { _tag: "After", sequence: 399 }), total),
          ],
          (s) => Effect.fork(s),
        );
        yield* Effect.all([writeMany(a, "a2", 1500), writeMany(b, "b2", 1500)], { concurrency: 2 });
        const [fromA, fromB, midA, midB] = yield* Effect.forEach(subs, Fiber.join);
        expect(sequences(fromA!)).toStrictEqual(range(1, total));
        expect(sequences(fromB!)).toStrictEqual(range(1, total));
        expect(sequences(midA!)).toStrictEqual(range(124, total));
        expect(sequences(midB!)).toStrictEqual(range(400, total));
        // The same events, whoever wrote them.
        expect(fromA!.map((e) => e.executionId)).toStrictEqual(fromB!.map((e) => e.executionId));
        const ids = new Set(fromA!.map((e) => e.executionId));
        for (const who of ["a2", "b2"]) for (let i = 1; i <= 1500; i++) expect(ids.has(`${who}-${i}`)).toBe(true);
      }),
    ),
  );

  it.live("List, filters, tenant scoping and retention on PostgreSQL", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const url = yield* Effect.promise(() => pg.createDatabase());
        const ctx = yield* Layer.build(instance(url));
        const audit = Context.get(ctx, AuditLogger);
        const log = Context.get(ctx, AuditLog);
        for (let i = 1; i <= 30; i++) {
          yield* audit.log({
            type: i % 3 === 0 ? "SCHEDULE_FIRED" : "EXECUTION_ACCEPTED",
            principal: i % 2 === 0 ? operator : { subject: "bob", tenant: "globex", roles: ["viewer"] },
            operation: i % 5 === 0 ? "report" : "demo.echo",
            executionId: `e${i}`,
            ...(i % 3 === 0 ? { scheduleId: "nightly" } : {}),
            details: { i, password: "p" },
          });
        }
        yield* audit.flush;
        const list = (filter: Parameters<typeof log.list>[1]["filter"], principal = admin) =>
          Effect.map(log.list(principal, { filter, pageSize: 100 }), (p) => sequences(p.events));
        expect(yield* list({ types: ["SCHEDULE_FIRED"] })).toStrictEqual(range(1, 10).map((i) => i * 3));
        expect(yield* list({ scheduleId: "nightly", operation: "report" })).toStrictEqual([15, 30]);
        expect(yield* list({ executionId: "e7" })).toStrictEqual([7]);
        expect(yield* list({ principalSubject: "bob" })).toStrictEqual(range(1, 15).map((i) => 2 * i - 1));
        expect(yield* list({}, viewer)).toStrictEqual(range(1, 15).map((i) => 2 * i));
        const page = yield* log.list(admin, { filter: {}, order: "DESCENDING", pageSize: 7 });
        expect(sequences(page.events)).toStrictEqual([30, 29, 28, 27, 26, 25, 24]);
        const next = yield* log.list(admin, { filter: {}, order: "DESCENDING", pageSize: 7, pageToken: page.nextPageToken });
        expect(sequences(next.events)).toStrictEqual([23, 22, 21, 20, 19, 18, 17]);
        expect((yield* audit.read(0, 1))[0]?.details).toStrictEqual({ i: 1, password: "[REDACTED]" });
        // Retention: keep the newest 10; resuming below that is refused, from it is complete.
        expect(yield* audit.prune({ keepLast: 10 })).toBe(20);
        expect(yield* audit.bounds).toStrictEqual({ earliest: 21, last: 30, prunedThrough: 20 });
        expect(yield* Effect.flip(collectThrough(log.subscribe(admin, {}, { _tag: "After", sequence: 5 }), 30))).toMatchObject({
          _tag: "AuditSequenceExpired",
          earliestSequence: 21,
        });
        expect(sequences(yield* collectThrough(log.subscribe(admin, {}, { _tag: "Earliest" }), 30))).toStrictEqual(range(21, 30));
        expect(yield* audit.prune({ olderThan: Number.MAX_SAFE_INTEGER })).toBe(10);
        expect(yield* audit.bounds).toStrictEqual({ earliest: 0, last: 30, prunedThrough: 30 });
      }),
    ),
  );
});

describe("two server processes on one PostgreSQL", () => {
  it("a Subscribe on each instance sees the events written by both", async () => {
    const url = await pg.createDatabase();
    const servers: ServerProcess[] = [];
    try {
      servers.push(await spawnServer(["--demo-operations", "--database-url", url]));
      servers.push(await spawnServer(["--demo-operations", "--database-url", url]));
      const perServer = 15;
      const abort = new AbortController();
      // A subscriber on each, following every event, until it has seen all 2×15 executions end.
      const follow = async (baseUrl: string) => {
        const audit = createClient(AuditService, createGrpcTransport({ baseUrl }));
        const seen: { sequence: number; executionId: string; type: AuditEventType }[] = [];
        const ended = new Set<string>();
        try {
          for await (const r of audit.subscribe({ start: { case: "fromEarliest", value: {} } }, { signal: abort.signal })) {
            if (r.kind.case !== "event") continue;
            const e = r.kind.value;
            seen.push({ sequence: Number(e.sequence), executionId: e.executionId, type: e.type });
            if (e.type === AuditEventType.EXECUTION_SUCCEEDED) ended.add(e.executionId);
            if (ended.size === 2 * perServer) break;
          }
        } catch (e) {
          if (!abort.signal.aborted) throw e;
        }
        return seen;
      };
      const followers = servers.map((s) => follow(s.baseUrl));
      const runs = await Promise.all(
        servers.flatMap((s, n) =>
          Array.from({ length: perServer }, (_, i) => collect(createClient(ExecutionService, createGrpcTransport({ baseUrl: s.baseUrl })), { operation: "demo.echo", input: { message: `s${n}-${i}` } })),
        ),
      );
      const executionIds = new Set(runs.map((events) => events[0]!.executionId));
      const timer = setTimeout(() => abort.abort(), 30_000);
      const [seenA, seenB] = await Promise.all(followers);
      clearTimeout(timer);
      for (const seen of [seenA!, seenB!]) {
        const ended = new Set(seen.filter((e) => e.type === AuditEventType.EXECUTION_SUCCEEDED).map((e) => e.executionId));
        expect(ended).toStrictEqual(executionIds);
        // In order, no duplicate, no gap (the counter hands out every number once).
        expect(seen.map((e) => e.sequence)).toStrictEqual(range(1, seen.length));
      }
      // Both instances delivered the same log, event for event, up to where the shorter stopped.
      const n = Math.min(seenA!.length, seenB!.length);
      expect(seenA!.slice(0, n)).toStrictEqual(seenB!.slice(0, n));
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
    }
  });
});
