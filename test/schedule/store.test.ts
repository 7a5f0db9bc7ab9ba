/**
 * The ScheduleStore contract, against the memory store and the SQLite store (a real file):
 * insert/get/list (filters, paging), compare-and-set, advance with claims, the due queue,
 * claim uniqueness, lease takeover and idempotency keys.
 */
import { afterAll } from "vitest";
import { describe, expect, it } from "@effect/vitest";
import { Context, Effect, Layer, Option } from "effect";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Claim, ScheduleRecord } from "../../src/core/schedule/model.js";
import { ScheduleStore } from "../../src/ports/ScheduleStore.js";
import { ScheduleStoreMemory } from "../../src/ports/memory/ScheduleStoreMemory.js";
import { ScheduleStoreSqlite } from "../../src/ports/sqlite/ScheduleStoreSqlite.js";
import { SqliteDatabase } from "../../src/ports/sqlite/SqliteDatabase.js";
import { admin, otherTenant } from "../support/core.js";
import { sharedPostgres, stopSharedPostgres } from "../support/postgres.js";
import { PgDatabase } from "../../src/ports/postgres/PgDatabase.js";
import { ScheduleStorePostgres } from "../../src/ports/postgres/ScheduleStorePostgres.js";

export const record = (id: string, o: Partial<ScheduleRecord> = {}): ScheduleRecord => ({
  scheduleId: id,
  spec: { cronExpressions: ["* * * * * *"], timeZone: "UTC" },
  action: { operation: "demo.echo", input: { message: "hi" }, labels: { team: "a" } },
  policy: { overlap: "SKIP", catchupWindowMs: 300_000, pauseOnFailure: false },
  state: { paused: false, note: "" },
  owner: admin,
  createTime: 0,
  updateTime: 0,
  version: 1,
  rev: 1,
  nextFireTime: 1000,
  runCount: 0,
  missedCount: 0,
  overlapSkippedCount: 0,
  recentRuns: [],
  running: [],
  buffer: [],
  ...o,
});

const claim = (scheduleId: string, nominal: number, leaseUntil: number, instanceId = "a"): Claim => ({
  scheduleId,
  claimId: `cron:${nominal}`,
  nominalTime: nominal,
  kind: "CRON",
  instanceId,
  leaseUntil,
});

export const storeContract = (name: string, layer: () => Layer.Layer<ScheduleStore, unknown>) =>
  describe(`ScheduleStore contract: ${name}`, () => {
    const run = <A, E>(body: Effect.Effect<A, E, ScheduleStore>) => body.pipe(Effect.provide(layer()));

    it.effect("insert, get, duplicate ids; records round-trip", () =>
      run(
        Effect.gen(function* () {
          const s = yield* ScheduleStore;
          expect(yield* s.insert(record("a"))).toBe(true);
          expect(yield* s.insert(record("a"))).toBe(false);
          expect(Option.getOrThrow(yield* s.get("a"))).toEqual(record("a"));
          const none = record("b", { nextFireTime: undefined, state: { paused: true, note: "x", remainingRuns: 3 } });
          const { nextFireTime: _n, ...expected } = none;
          yield* s.insert(none);
          expect(Option.getOrThrow(yield* s.get("b"))).toEqual(expected);
          expect(Option.isNone(yield* s.get("zz"))).toBe(true);
          expect(yield* s.count()).toBe(2);
        }),
      ),
    );

    it.effect("list: tenant, operation, paused and label filters; pages in id order", () =>
      run(
        Effect.gen(function* () {
          const s = yield* ScheduleStore;
          for (let i = 0; i < 7; i++) {
            yield* s.insert(record(`s${i}`, { state: { paused: i % 2 === 0, note: "" }, action: { operation: i < 5 ? "demo.echo" : "demo.sleep", input: {}, labels: { team: i < 3 ? "a" : "b" } } }));
          }
          yield* s.insert(record("other", { owner: otherTenant }));
          const base = { tenant: admin.tenant };
          const p1 = yield* s.list(base, 3, undefined);
          expect(p1.items.map((r) => r.scheduleId)).toEqual(["s0", "s1", "s2"]);
          const p2 = yield* s.list(base, 3, p1.next);
          expect(p2.items.map((r) => r.scheduleId)).toEqual(["s3", "s4", "s5"]);
          const p3 = yield* s.list(base, 3, p2.next);
          expect(p3.items.map((r) => r.scheduleId)).toEqual(["s6"]);
          expect(p3.next).toBeUndefined();
          expect((yield* s.list({ ...base, paused: true }, 10, undefined)).items.map((r) => r.scheduleId)).toEqual(["s0", "s2", "s4", "s6"]);
          expect((yield* s.list({ ...base, operation: "demo.sleep" }, 10, undefined)).items.map((r) => r.scheduleId)).toEqual(["s5", "s6"]);
          expect((yield* s.list({ ...base, labels: { team: "a" } }, 2, undefined)).items.map((r) => r.scheduleId)).toEqual(["s0", "s1"]);
          expect((yield* s.list({ ...base, labels: { team: "a" } }, 2, "s1")).items.map((r) => r.scheduleId)).toEqual(["s2"]);
          expect((yield* s.list({ tenant: otherTenant.tenant }, 10, undefined)).items.map((r) => r.scheduleId)).toEqual(["other"]);
        }),
      ),
    );

    it.effect("replace and advance are compare-and-set on rev; advance inserts its claims once", () =>
      run(
        Effect.gen(function* () {
          const s = yield* ScheduleStore;
          yield* s.insert(record("a"));
          expect(yield* s.replace(record("a", { rev: 2, runCount: 1 }), 1)).toBe(true);
          expect(yield* s.replace(record("a", { rev: 2, runCount: 9 }), 1)).toBe(false);
          expect(Option.getOrThrow(yield* s.get("a")).runCount).toBe(1);
          expect(yield* s.advance(record("a", { rev: 3, nextFireTime: 3000 }), 2, [claim("a", 1000, 10_000), claim("a", 2000, 10_000)])).toBe(true);
          expect(yield* s.advance(record("a", { rev: 3, nextFireTime: 4000 }), 2, [claim("a", 3000, 10_000)])).toBe(false);
          expect(yield* s.claim(claim("a", 1000, 10_000, "b"))).toBe(false);
          expect(yield* s.claim(claim("a", 3000, 10_000, "b"))).toBe(true);
        }),
      ),
    );

    it.effect("due and earliest follow next_fire_time", () =>
      run(
        Effect.gen(function* () {
          const s = yield* ScheduleStore;
          yield* s.insert(record("late", { nextFireTime: 5000 }));
          yield* s.insert(record("early", { nextFireTime: 1000 }));
          yield* s.insert(record("never", { nextFireTime: undefined }));
          expect(Option.getOrThrow(yield* s.earliest())).toBe(1000);
          expect(yield* s.due(999, 10)).toEqual([]);
          expect(yield* s.due(5000, 10)).toEqual(["early", "late"]);
          expect(yield* s.due(5000, 1)).toEqual(["early"]);
          yield* s.replace(record("early", { rev: 2, nextFireTime: 9000 }), 1);
          expect(yield* s.due(5000, 10)).toEqual(["late"]);
          expect(Option.getOrThrow(yield* s.earliest())).toBe(5000);
          yield* s.remove("late");
          expect(Option.getOrThrow(yield* s.earliest())).toBe(9000);
        }),
      ),
    );

    it.effect("expired leases are taken over once; settled claims are not", () =>
      run(
        Effect.gen(function* () {
          const s = yield* ScheduleStore;
          yield* s.insert(record("a"));
          yield* s.claim(claim("a", 1000, 5000));
          yield* s.claim(claim("a", 2000, 5000));
          yield* s.settleClaim("a", "cron:2000", "STARTED", "e1");
          expect(yield* s.takeExpiredClaims(4000, "b", 20_000, 10)).toEqual([]);
          const taken = yield* s.takeExpiredClaims(6000, "b", 20_000, 10);
          expect(taken).toEqual([{ ...claim("a", 1000, 20_000, "b") }]);
          expect(yield* s.takeExpiredClaims(6000, "c", 30_000, 10)).toEqual([]);
          // The holder's lease token moved with the takeover: the old holder can no longer renew it.
          expect(yield* s.confirmClaim("a", "cron:1000", "a", 5000, 40_000)).toBe(false);
          expect(yield* s.confirmClaim("a", "cron:1000", "b", 20_000, 40_000)).toBe(true);
          expect(yield* s.confirmClaim("a", "cron:1000", "b", 20_000, 50_000)).toBe(false);
          expect(yield* s.confirmClaim("a", "cron:1000", "b", 40_000, 50_000)).toBe(true);
        }),
      ),
    );

    it.effect("replace with a settlement settles the claim only when the write wins", () =>
      run(
        Effect.gen(function* () {
          const s = yield* ScheduleStore;
          yield* s.insert(record("a"));
          yield* s.claim(claim("a", 1000, 5000));
          yield* s.claim(claim("a", 2000, 5000));
          // A stale rev: nothing written, nothing settled.
          expect(yield* s.replace(record("a", { rev: 2, runCount: 1 }), 7, { claimId: "cron:1000", outcome: "STARTED", executionId: "e1" })).toBe(false);
          expect(yield* s.replace(record("a", { rev: 2, runCount: 1 }), 1, { claimId: "cron:2000", outcome: "STARTED", executionId: "e2" })).toBe(true);
          expect(Option.getOrThrow(yield* s.get("a")).runCount).toBe(1);
          // The settled claim is no longer leased; the other one still is, and is taken over.
          expect(yield* s.takeExpiredClaims(6000, "b", 20_000, 10)).toEqual([{ ...claim("a", 1000, 20_000, "b") }]);
        }),
      ),
    );

    it.effect("request ids: the first response is kept", () =>
      run(
        Effect.gen(function* () {
          const s = yield* ScheduleStore;
          yield* s.saveRequest("alice", "r1", { fingerprint: "f", response: "1", time: 10 }, 0);
          yield* s.saveRequest("alice", "r1", { fingerprint: "g", response: "2", time: 11 }, 1);
          expect(Option.getOrThrow(yield* s.findRequest("alice", "r1"))).toEqual({ fingerprint: "f", response: "1", time: 10 });
          expect(Option.isNone(yield* s.findRequest("bob", "r1"))).toBe(true);
        }),
      ),
    );

    it.effect("request ids: an expired key is replaced by the next save, and other expired keys go", () =>
      run(
        Effect.gen(function* () {
          const s = yield* ScheduleStore;
          yield* s.saveRequest("alice", "r1", { fingerprint: "f", response: "1", time: 10 }, 0);
          yield* s.saveRequest("bob", "old", { fingerprint: "f", response: "1", time: 20 }, 0);
          yield* s.saveRequest("bob", "live", { fingerprint: "f", response: "1", time: 60 }, 0);
          yield* s.saveRequest("alice", "r1", { fingerprint: "g", response: "2", time: 100 }, 50);
          expect(Option.getOrThrow(yield* s.findRequest("alice", "r1"))).toEqual({ fingerprint: "g", response: "2", time: 100 });
          expect(yield* s.findRequest("bob", "old")).toEqual(Option.none());
          expect(Option.isSome(yield* s.findRequest("bob", "live"))).toBe(true);
        }),
      ),
    );
  });

afterAll(() => stopSharedPostgres());

storeContract("memory", () => ScheduleStoreMemory);
storeContract("sqlite", () => ScheduleStoreSqlite.pipe(Layer.provide(SqliteDatabase.layer(mkdtempSync(join(tmpdir(), "schedule-store-"))))));
storeContract("postgres", () =>
  ScheduleStorePostgres.pipe(
    Layer.provide(Layer.unwrapEffect(Effect.promise(async () => PgDatabase.layer(await (await sharedPostgres()).createDatabase(), { maxConnections: 2 })))),
  ),
);

describe("ScheduleStore on PostgreSQL: concurrent lease takeover", () => {
  it.scoped("two sweepers split the expired claims; each claim goes to one", () =>
    Effect.gen(function* () {
      const url = yield* Effect.promise(async () => (await sharedPostgres()).createDatabase());
      const open = () =>
        Layer.build(ScheduleStorePostgres.pipe(Layer.provide(PgDatabase.layer(url, { maxConnections: 2 })))).pipe(Effect.map(Context.get(ScheduleStore)));
      const a = yield* open();
      const b = yield* open();
      yield* a.insert(record("s"));
      for (let i = 1; i <= 200; i++) yield* a.claim(claim("s", i * 1000, 5000));
      const [ta, tb] = yield* Effect.all([a.takeExpiredClaims(6000, "a", 60_000, 150), b.takeExpiredClaims(6000, "b", 60_000, 150)], { concurrency: 2 });
      const ids = [...ta, ...tb].map((c) => c.claimId);
      expect(new Set(ids).size).toBe(ids.length);
      expect(ids.length).toBe(200);
    }),
  );
});
