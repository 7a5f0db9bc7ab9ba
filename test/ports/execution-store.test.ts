/**
 * One suite, every ExecutionStore implementation: memory and SQLite (a real file) must behave
 * identically.
 */
import { describe, expect, it } from "@effect/vitest";
import { Effect, Option } from "effect";
import type {
  ErrorDetail,
  ExecutionFilter,
  ExecutionOrder,
  ExecutionRecord,
  ExecutionState,
} from "../../src/core/model.js";
import { ExecutionStore } from "../../src/ports/ExecutionStore.js";
import { execution, executionStores, fullExecution, principal } from "./fixtures.js";

const allStates: ReadonlyArray<ExecutionState> = [
  "PENDING",
  "RUNNING",
  "BACKING_OFF",
  "SUCCEEDED",
  "FAILED",
  "CANCELLED",
  "TIMED_OUT",
  "INTERRUPTED",
];

const byKey = (a: ExecutionRecord, b: ExecutionRecord) =>
  a.createTime - b.createTime || (a.executionId < b.executionId ? -1 : a.executionId > b.executionId ? 1 : 0);

/** 40 executions with tied create times and ids out of create-time order. */
const population: ReadonlyArray<ExecutionRecord> = Array.from({ length: 40 }, (_, i) =>
  execution(`ex-${String((i * 17) % 40).padStart(2, "0")}`, {
    createTime: 10_000 + Math.floor(i / 3),
    operation: i % 2 === 0 ? "echo" : "summarize",
    state: allStates[i % allStates.length]!,
    principal: principal(i % 4 < 2 ? "alice" : "bob", i % 3 === 0 ? "globex" : "acme"),
    labels: { env: i % 2 === 0 ? "dev" : "prod", "team.name/x-y": i % 3 === 0 ? "core" : "edge" },
    ...(i % 5 === 0 ? { scheduleId: "hourly" } : {}),
  }),
);

const expected = (filter: ExecutionFilter, order: ExecutionOrder): ReadonlyArray<string> => {
  const rows = population.filter(
    (r) =>
      (filter.operation === undefined || r.operation === filter.operation) &&
      (filter.states === undefined || filter.states.length === 0 || filter.states.includes(r.state)) &&
      (filter.scheduleId === undefined || r.scheduleId === filter.scheduleId) &&
      (filter.principalSubject === undefined || r.principal.subject === filter.principalSubject) &&
      (filter.tenant === undefined || r.principal.tenant === filter.tenant) &&
      Object.entries(filter.labels ?? {}).every(([k, v]) => r.labels[k] === v),
  );
  const sorted = [...rows].sort(byKey);
  return (order === "CREATE_TIME_ASCENDING" ? sorted : sorted.reverse()).map((r) => r.executionId);
};

/** Follows `next` to the end; checks each page's size and that `next` is the page's last item. */
const walk = (filter: ExecutionFilter, order: ExecutionOrder, pageSize: number) =>
  Effect.gen(function* () {
    const store = yield* ExecutionStore;
    const seen: Array<string> = [];
    let after: { createTime: number; executionId: string } | undefined;
    let pages = 0;
    for (;;) {
      const page = yield* store.list(filter, order, pageSize, after);
      pages++;
      expect(page.items.length).toBeLessThanOrEqual(pageSize);
      seen.push(...page.items.map((r) => r.executionId));
      if (page.next === undefined) break;
      const last = page.items[page.items.length - 1]!;
      expect(page.next).toStrictEqual({ createTime: last.createTime, executionId: last.executionId });
      expect(page.items.length).toBe(pageSize);
      after = page.next;
      if (pages > 100) throw new Error("pagination does not end");
    }
    return { seen, pages };
  });

const interruption: ErrorDetail = { type: "INTERRUPTED", message: "server restarted", retryable: false };

for (const impl of executionStores) {
  describe(`ExecutionStore (${impl.name})`, () => {
    const run = <A, E>(self: Effect.Effect<A, E, ExecutionStore>) => Effect.provide(self, impl.layer);

    it.effect("reads back exactly what it wrote, absent fields absent and null results null", () =>
      run(
        Effect.gen(function* () {
          const store = yield* ExecutionStore;
          const minimal = execution("min");
          const full = fullExecution("full");
          const nullResult = execution("null-result", { state: "SUCCEEDED", result: null, endTime: 2_000 });
          for (const r of [minimal, full, nullResult]) {
            expect(yield* store.insert(r)).toStrictEqual({ _tag: "Inserted" });
          }
          expect(yield* store.get("min")).toStrictEqual(Option.some(minimal));
          expect(yield* store.get("full")).toStrictEqual(Option.some(full));
          const back = Option.getOrThrow(yield* store.get("null-result"));
          expect(back).toStrictEqual(nullResult);
          expect("result" in back && back.result === null).toBe(true);
          expect(Object.keys(Option.getOrThrow(yield* store.get("min"))).sort()).toStrictEqual(
            Object.keys(minimal).sort(),
          );
          expect(yield* store.get("missing")).toStrictEqual(Option.none());
          expect(yield* store.findByRequestId("svc-reporting", "req-full")).toStrictEqual(Option.some(full));
          expect(yield* store.findByRequestId("alice", "req-full")).toStrictEqual(Option.none());
        }),
      ),
    );

    it.effect("scopes request ids to the subject; executions without one never collide", () =>
      run(
        Effect.gen(function* () {
          const store = yield* ExecutionStore;
          const first = execution("a1", { requestId: "r1" });
          expect(yield* store.insert(first)).toStrictEqual({ _tag: "Inserted" });
          expect(yield* store.insert(execution("a2", { requestId: "r1", input: { other: 1 } }))).toStrictEqual({
            _tag: "Duplicate",
            existing: first,
          });
          expect(yield* store.get("a2")).toStrictEqual(Option.none());
          // Same request id, another subject: a different key.
          expect(yield* store.insert(execution("b1", { requestId: "r1", principal: principal("bob") }))).toStrictEqual({
            _tag: "Inserted",
          });
          expect(yield* store.insert(execution("n1"))).toStrictEqual({ _tag: "Inserted" });
          expect(yield* store.insert(execution("n2"))).toStrictEqual({ _tag: "Inserted" });
          expect(Option.map(yield* store.findByRequestId("bob", "r1"), (r) => r.executionId)).toStrictEqual(
            Option.some("b1"),
          );
        }),
      ),
    );

    it.effect("50 concurrent inserts of one request id: exactly one wins, the rest see it", () =>
      run(
        Effect.gen(function* () {
          const store = yield* ExecutionStore;
          const results = yield* Effect.all(
            Array.from({ length: 50 }, (_, i) =>
              store.insert(
                execution(`race-${i}`, {
                  requestId: "same",
                  attempts: [{ number: 1, startTime: 1_000 + i }],
                }),
              ),
            ),
            { concurrency: "unbounded" },
          );
          const inserted = results.filter((r) => r._tag === "Inserted");
          const duplicates = results.flatMap((r) => (r._tag === "Duplicate" ? [r.existing] : []));
          expect(inserted).toHaveLength(1);
          expect(duplicates).toHaveLength(49);
          const winner = Option.getOrThrow(yield* store.findByRequestId("alice", "same"));
          for (const existing of duplicates) expect(existing).toStrictEqual(winner);
          const page = yield* store.list({}, "CREATE_TIME_ASCENDING", 100, undefined);
          expect(page.items.map((r) => r.executionId)).toStrictEqual([winner.executionId]);
        }),
      ),
    );

    it.effect("a second execution with the same id fails with StoreError, not a defect", () =>
      run(
        Effect.gen(function* () {
          const store = yield* ExecutionStore;
          yield* store.insert(execution("dup"));
          const error = yield* Effect.flip(store.insert(execution("dup", { operation: "other" })));
          expect(error._tag).toBe("StoreError");
          expect(error.operation).toBe("insert");
          expect(Option.map(yield* store.get("dup"), (r) => r.operation)).toStrictEqual(Option.some("echo"));
        }),
      ),
    );

    it.effect("update stores the changing fields and the attempts appended or ended; optional fields can go away", () =>
      run(
        Effect.gen(function* () {
          const store = yield* ExecutionStore;
          const full = fullExecution("u1");
          yield* store.insert(full);
          const { result: _result, error: _error, cancelReason: _reason, nextAttemptTime: _next, ...rest } = full;
          const changed: ExecutionRecord = {
            ...rest,
            state: "FAILED",
            endTime: 99,
            attempts: [{ number: 1, startTime: 5 }, { number: 2, startTime: 6, endTime: 7 }, { number: 3, startTime: 8 }],
          };
          yield* store.update(changed);
          expect(yield* store.get("u1")).toStrictEqual(Option.some(changed));
          // Attempts are appended and ended, never taken back.
          const ended: ExecutionRecord = {
            ...changed,
            attempts: [{ number: 1, startTime: 5 }, { number: 2, startTime: 6, endTime: 7 }, { number: 3, startTime: 8, endTime: 9, error: { type: "X", message: "m", retryable: false } }, { number: 4, startTime: 10 }],
          };
          yield* store.update(ended);
          expect(yield* store.get("u1")).toStrictEqual(Option.some(ended));
          const error = yield* Effect.flip(store.update(execution("never-inserted")));
          expect(error._tag).toBe("StoreError");
          expect(error.operation).toBe("update");
          expect(yield* store.get("never-inserted")).toStrictEqual(Option.none());
        }),
      ),
    );

    it.effect("pagination visits every matching row exactly once, in both orders, under filters", () =>
      run(
        Effect.gen(function* () {
          const store = yield* ExecutionStore;
          for (const r of population) yield* store.insert(r);
          const filters: ReadonlyArray<ExecutionFilter> = [
            {},
            { operation: "echo" },
            { states: ["PENDING", "FAILED", "INTERRUPTED"] },
            { states: [] },
            { tenant: "globex" },
            { principalSubject: "bob", operation: "summarize" },
            { scheduleId: "hourly" },
            { labels: { env: "prod", "team.name/x-y": "core" } },
            { labels: { env: "prod" }, tenant: "acme", states: ["RUNNING", "SUCCEEDED", "CANCELLED"] },
            { operation: "nothing-matches" },
          ];
          for (const filter of filters) {
            for (const order of ["CREATE_TIME_ASCENDING", "CREATE_TIME_DESCENDING"] as const) {
              const want = expected(filter, order);
              for (const pageSize of [1, 7, 40, 100]) {
                const { seen, pages } = yield* walk(filter, order, pageSize);
                expect(seen, `${JSON.stringify(filter)} ${order} ${pageSize}`).toStrictEqual(want);
                // `next` only when a further row exists: no trailing empty page.
                expect(pages).toBe(Math.max(1, Math.ceil(want.length / pageSize)));
              }
            }
          }
          expect(expected({}, "CREATE_TIME_ASCENDING")).toHaveLength(40);
          expect(expected({ tenant: "globex" }, "CREATE_TIME_ASCENDING").length).toBeGreaterThan(5);
        }),
      ),
    );

    it.effect("labels: every pair must match; keys and values are data, never query text", () =>
      run(
        Effect.gen(function* () {
          const store = yield* ExecutionStore;
          yield* store.insert(execution("l1", { labels: { "a.b": "1", "x/y-z_0": "v" } }));
          yield* store.insert(execution("l2", { labels: { "a.b": "1" } }));
          yield* store.insert(execution("l3", { labels: { 'q"k': "it's", "$.a": "' OR 1=1 --" } }));
          yield* store.insert(execution("l4", { labels: { a: "1" }, input: { a: { b: "1" } } }));
          yield* store.insert(execution("l5", { labels: { "a.b": "10" } }));
          const ids = (labels: Readonly<Record<string, string>>) =>
            Effect.map(store.list({ labels }, "CREATE_TIME_ASCENDING", 100, undefined), (p) =>
              p.items.map((r) => r.executionId).sort(),
            );
          expect(yield* ids({ "a.b": "1" })).toStrictEqual(["l1", "l2"]);
          expect(yield* ids({ "a.b": "1", "x/y-z_0": "v" })).toStrictEqual(["l1"]);
          expect(yield* ids({ "a.b": "1", "x/y-z_0": "w" })).toStrictEqual([]);
          expect(yield* ids({ 'q"k': "it's" })).toStrictEqual(["l3"]);
          expect(yield* ids({ "$.a": "' OR 1=1 --" })).toStrictEqual(["l3"]);
          expect(yield* ids({ "$.a": "x' OR '1'='1" })).toStrictEqual([]);
          expect(yield* ids({ a: "1" })).toStrictEqual(["l4"]);
          expect(yield* ids({})).toStrictEqual(["l1", "l2", "l3", "l4", "l5"]);
        }),
      ),
    );

    it.effect("interruptUnfinished ends every unfinished execution and its open attempt, and only those", () =>
      run(
        Effect.gen(function* () {
          const store = yield* ExecutionStore;
          const running = execution("running", {
            state: "RUNNING",
            startTime: 1_100,
            attempts: [
              { number: 1, startTime: 1_100, endTime: 1_200, error: { type: "TIMEOUT", message: "slow", retryable: true }, retryDelayMs: 50 },
              { number: 2, startTime: 1_250 },
            ],
          });
          const backingOff = execution("backing-off", {
            state: "BACKING_OFF",
            nextAttemptTime: 5_000,
            attempts: [{ number: 1, startTime: 1_100, endTime: 1_200, retryDelayMs: 3_800 }],
          });
          const pending = execution("pending");
          const succeeded = execution("succeeded", {
            state: "SUCCEEDED",
            endTime: 1_500,
            result: "done",
            attempts: [{ number: 1, startTime: 1_100, endTime: 1_500 }],
          });
          const cancelled = execution("cancelled", { state: "CANCELLED", endTime: 1_400, cancelReason: "user" });
          for (const r of [running, backingOff, pending, succeeded, cancelled]) yield* store.insert(r);

          const changed = yield* store.interruptUnfinished(9_000, interruption);
          expect([...changed].sort()).toStrictEqual(["backing-off", "pending", "running"]);

          expect(yield* store.get("running")).toStrictEqual(
            Option.some({
              ...running,
              state: "INTERRUPTED",
              endTime: 9_000,
              error: interruption,
              attempts: [running.attempts[0]!, { number: 2, startTime: 1_250, endTime: 9_000, error: interruption }],
            }),
          );
          // Its only attempt had ended already: left as it was; no next attempt any more.
          const { nextAttemptTime: _next, ...backingOffRest } = backingOff;
          expect(yield* store.get("backing-off")).toStrictEqual(
            Option.some({ ...backingOffRest, state: "INTERRUPTED", endTime: 9_000, error: interruption }),
          );
          expect(yield* store.get("pending")).toStrictEqual(
            Option.some({ ...pending, state: "INTERRUPTED", endTime: 9_000, error: interruption }),
          );
          expect(yield* store.get("succeeded")).toStrictEqual(Option.some(succeeded));
          expect(yield* store.get("cancelled")).toStrictEqual(Option.some(cancelled));
          expect(yield* store.interruptUnfinished(10_000, interruption)).toStrictEqual([]);
        }),
      ),
    );

    it.effect("prune deletes terminal executions that ended before the cut-off, and frees their request ids", () =>
      run(
        Effect.gen(function* () {
          const store = yield* ExecutionStore;
          const attempts = [{ number: 1, startTime: 100, endTime: 200 }];
          yield* store.insert(execution("old-ok", { state: "SUCCEEDED", endTime: 500, requestId: "r-old", attempts }));
          yield* store.insert(execution("old-failed", { state: "FAILED", endTime: 999, attempts }));
          yield* store.insert(execution("at-cutoff", { state: "TIMED_OUT", endTime: 1_000 }));
          yield* store.insert(execution("new", { state: "INTERRUPTED", endTime: 2_000 }));
          // Not terminal: kept whatever its times say.
          yield* store.insert(execution("running", { state: "RUNNING", endTime: 10, attempts: [{ number: 1, startTime: 5 }] }));

          expect(yield* store.prune(1_000)).toBe(2);
          expect(yield* store.get("old-ok")).toStrictEqual(Option.none());
          expect(yield* store.get("old-failed")).toStrictEqual(Option.none());
          expect(yield* store.findByRequestId("alice", "r-old")).toStrictEqual(Option.none());
          const left = yield* store.list({}, "CREATE_TIME_ASCENDING", 100, undefined);
          expect(left.items.map((r) => r.executionId).sort()).toStrictEqual(["at-cutoff", "new", "running"]);
          expect(yield* store.prune(1_000)).toBe(0);
          // The request id may be used again once its execution is gone.
          expect(yield* store.insert(execution("again", { requestId: "r-old" }))).toStrictEqual({ _tag: "Inserted" });
          // Attempt numbers of a pruned execution do not linger under a reused id either.
          yield* store.insert(execution("old-ok"));
          expect(Option.map(yield* store.get("old-ok"), (r) => r.attempts)).toStrictEqual(Option.some([]));
        }),
      ),
    );
  });
}
