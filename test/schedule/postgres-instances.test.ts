/**
 * Exactly once across instances: two server processes on one PostgreSQL, 50 every-second
 * schedules for ~20 s, one process SIGKILLed half-way. Every slot of the window must have fired
 * exactly once (one execution per schedule and nominal_time), including slots the killed
 * process had claimed but not started (taken over when their lease ran out; jitter makes sure there
 * are some). Real processes and
 * real time: it asserts counts, not timing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { durationFromMs, timestampDate } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { OverlapPolicy, ScheduleService, type ScheduleEvent } from "../../gen/orchestrator/v1/schedule_service_pb.js";
import { ExecutionService, ExecutionState } from "../../gen/orchestrator/v1/execution_service_pb.js";
import { spawnServer, type ServerProcess } from "../support/server.js";
import { startPostgres, type PostgresServer } from "../support/postgres.js";

let pg: PostgresServer;
beforeAll(async () => (pg = await startPostgres()));
afterAll(() => pg?.stop());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const warnings = (s: ServerProcess) => JSON.stringify(s.logs.filter((l) => l["level"] !== "info").map((l) => [l["msg"], l["args"]]));
const schedules = 50;

describe("schedules on several instances sharing PostgreSQL", () => {
  it("fires every slot exactly once while one instance is SIGKILLed mid-way", { timeout: 120_000 }, async () => {
    const url = await pg.createDatabase();
    const servers: ServerProcess[] = [];
    try {
      const a = await spawnServer(["--demo-operations", "--database-url", url]);
      servers.push(a);
      const b = await spawnServer(["--demo-operations", "--database-url", url]);
      servers.push(b);
      const onA = createClient(ScheduleService, createGrpcTransport({ baseUrl: a.baseUrl }));
      const onB = createGrpcTransport({ baseUrl: b.baseUrl });
      for (let i = 0; i < schedules; i++) {
        // ALLOW_ALL: a run of the killed instance, left RUNNING until its lease is up, must not
        // make the survivor skip the next slots; this test is about claims, not overlap.
        await onA.createSchedule({
          scheduleId: `every-${i}`,
          schedule: {
            // Jitter keeps each claimed slot waiting (leased) for up to 0.8 s before it starts, so the
            // killed instance surely dies holding claims: the survivor must take them over.
            spec: { cronExpressions: ["* * * * * *"], jitter: durationFromMs(800) },
            action: { operation: "demo.echo", input: { message: `s${i}` } },
            policy: { overlapPolicy: OverlapPolicy.ALLOW_ALL },
          },
        });
      }
      const windowStart = Math.ceil(Date.now() / 1000) * 1000 + 1000;
      await sleep(10_000);
      // Kill early in a second: the slots claimed at its start still wait out their jitter (up to
      // 0.8 s), so the killed instance surely holds claims. Late in a second (as a loaded machine's
      // timers can make it) it may hold none, and there is nothing to take over.
      await sleep(1_150 - (Date.now() % 1_000));
      a.child.kill("SIGKILL");
      await a.exited;
      const killedAt = Date.now();
      await sleep(10_000);
      const windowEnd = Math.floor(Date.now() / 1000) * 1000 - 1000;
      // Claims A held when it died are taken over after their 10 s lease: wait for them.
      await sleep(13_000);

      const executions = createClient(ExecutionService, onB);
      const expected: number[] = [];
      for (let t = windowStart; t <= windowEnd; t += 1000) expected.push(t);
      expect(expected.length).toBeGreaterThanOrEqual(15);
      const problems: string[] = [];
      let total = 0;
      for (let i = 0; i < schedules; i++) {
        const scheduleId = `every-${i}`;
        const counts = new Map<number, number>();
        let pageToken = "";
        do {
          const page = await executions.listExecutions({ scheduleId, pageSize: 1000, pageToken });
          for (const e of page.executions) {
            const t = timestampDate(e.nominalTime!).getTime();
            counts.set(t, (counts.get(t) ?? 0) + 1);
          }
          pageToken = page.nextPageToken;
        } while (pageToken !== "");
        for (const t of expected) {
          const n = counts.get(t) ?? 0;
          total += n;
          if (n !== 1) problems.push(`${scheduleId} @ ${new Date(t).toISOString()}: ${n} executions`);
        }
        for (const [t, n] of counts) if (n > 1) problems.push(`${scheduleId} @ ${new Date(t).toISOString()} (outside the window): ${n} executions`);
      }
      expect(problems).toEqual([]);
      expect(total).toBe(schedules * expected.length);
      expect(killedAt).toBeGreaterThan(windowStart);
      const takeovers = b.logs.filter((l) => String(l["msg"]).includes("taking over slot")).length;
      expect(takeovers).toBeGreaterThan(0);
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
    }
  });

  it("WatchSchedule on one instance sees what another does; CANCEL_OTHER cancels a run of another instance", { timeout: 60_000 }, async () => {
    const url = await pg.createDatabase();
    const a = await spawnServer(["--demo-operations", "--database-url", url]);
    const b = await spawnServer(["--demo-operations", "--database-url", url]).catch(async (e: unknown) => {
      await a.stop();
      throw e;
    });
    const watching = new AbortController();
    try {
      const onA = createClient(ScheduleService, createGrpcTransport({ baseUrl: a.baseUrl }));
      const onB = createClient(ScheduleService, createGrpcTransport({ baseUrl: b.baseUrl }));
      const executionsOnB = createClient(ExecutionService, createGrpcTransport({ baseUrl: b.baseUrl }));
      await onA.createSchedule({
        scheduleId: "long-runs",
        schedule: {
          // Once a year: only the triggers below run it.
          spec: { cronExpressions: ["0 0 1 1 *"] },
          action: { operation: "demo.sleep", input: { durationMs: 60_000 } },
          policy: { overlapPolicy: OverlapPolicy.CANCEL_OTHER },
        },
      });
      // Both instances hear the other's messages from here on (their LISTEN connections are up).
      for (const s of [a, b]) {
        for (const channel of ["orchestrator_schedule_events", "orchestrator_schedule_cancel"]) {
          const listening = () => s.logs.some((l) => l["msg"] === `listening for notifications on ${channel}`);
          for (let i = 0; i < 200 && !listening(); i++) await sleep(50);
          expect(listening()).toBe(true);
        }
      }
      // A watcher connected to B.
      const seen: ScheduleEvent[] = [];
      let snapshot: () => void = () => {};
      const started = new Promise<void>((resolve) => (snapshot = resolve));
      const watch = (async () => {
        for await (const m of onB.watchSchedule({ scheduleId: "long-runs" }, { signal: watching.signal })) {
          seen.push(m.event!);
          if (m.event!.kind.case === "snapshot") snapshot();
        }
      })().catch(() => {});
      await started;
      const until = async (what: string, ok: () => boolean) => {
        for (let i = 0; i < 200 && !ok(); i++) await sleep(50);
        if (!ok()) throw new Error(`waited 10 s for ${what}; the watcher on B saw ${JSON.stringify(seen.map((e) => e.kind.case))}; warnings of A: ${warnings(a)}; of B: ${warnings(b)}`);
      };
      const runOf = (kind: string, executionId: string) => () => seen.some((e) => e.kind.case === kind && e.kind.value !== undefined && "executionId" in e.kind.value && e.kind.value.executionId === executionId);

      // A starts the first run: B's watcher hears of it.
      const first = await onA.triggerSchedule({ scheduleId: "long-runs" });
      const firstId = first.run!.executionId;
      expect(firstId).not.toBe("");
      await until("A's fire", runOf("fired", firstId));

      // B gets the next slot while A's run is going: CANCEL_OTHER stops A's run, and the slot that
      // waited starts when it has ended.
      await onB.triggerSchedule({ scheduleId: "long-runs" });
      await until("the end of A's run", runOf("runEnded", firstId));
      const ended = await executionsOnB.getExecution({ executionId: firstId });
      expect(ended.execution!.state).toBe(ExecutionState.CANCELLED);
      expect(ended.execution!.error?.message).toContain("CANCEL_OTHER");
      await until("the waiting slot's start", () => seen.some((e) => e.kind.case === "fired" && e.kind.value.executionId !== firstId));
      const second = seen.find((e) => e.kind.case === "fired" && e.kind.value.executionId !== firstId)!;
      const secondId = second.kind.case === "fired" ? second.kind.value.executionId : "";
      expect((await executionsOnB.getExecution({ executionId: secondId })).execution!.state).toBe(ExecutionState.RUNNING);
      watching.abort();
      await watch;
    } finally {
      watching.abort();
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
