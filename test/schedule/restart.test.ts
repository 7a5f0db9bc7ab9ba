/**
 * Catch-up across a real restart of a single SQLite server process: every-second schedules,
 * the server stopped for ~22 s, then started again on the same data directory. Slots missed by
 * at most the catch-up window (10 s) run, through the overlap policy; older ones are counted
 * missed and never run; no slot runs twice. (Real processes and real time: ~30 s.)
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { durationFromMs, timestampDate } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { OverlapPolicy, ScheduleService } from "../../gen/orchestrator/v1/schedule_service_pb.js";
import { ExecutionService, type Execution } from "../../gen/orchestrator/v1/execution_service_pb.js";
import { spawnServer } from "../support/server.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const clients = (baseUrl: string) => {
  const t = createGrpcTransport({ baseUrl });
  return { schedules: createClient(ScheduleService, t), executions: createClient(ExecutionService, t) };
};

async function executionsOf(c: ReturnType<typeof clients>, scheduleId: string): Promise<Execution[]> {
  const out: Execution[] = [];
  let pageToken = "";
  do {
    const page = await c.executions.listExecutions({ scheduleId, pageSize: 1000, pageToken });
    out.push(...page.executions);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return out;
}

const nominal = (e: Execution) => timestampDate(e.nominalTime!).getTime();

describe("schedules across a restart (SQLite)", () => {
  it("runs slots within the catch-up window per the overlap policy and records older ones as missed", { timeout: 90_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "schedule-restart-"));
    const args = ["--demo-operations", "--data-dir", dataDir, "--drain-timeout", "200ms"];
    const first = await spawnServer(args);
    let stoppedAt: number;
    try {
      const c = clients(first.baseUrl);
      const every = (scheduleId: string, overlapPolicy: OverlapPolicy, action: { operation: string; input: Record<string, unknown> }) =>
        c.schedules.createSchedule({
          scheduleId,
          schedule: {
            spec: { cronExpressions: ["* * * * * *"] },
            action: action as never,
            policy: { overlapPolicy, catchupWindow: durationFromMs(10_000) },
          },
        });
      await every("all", OverlapPolicy.ALLOW_ALL, { operation: "demo.echo", input: { message: "tick" } });
      // Runs that outlive the slots: under SKIP, one caught-up slot runs and the rest are skipped.
      await every("skip", OverlapPolicy.SKIP, { operation: "demo.sleep", input: { durationMs: 600_000 } });
      await sleep(2_500);
      stoppedAt = Date.now();
    } finally {
      await first.stop();
    }
    await sleep(22_000);
    const second = await spawnServer(args);
    try {
      const startedAt = Date.now();
      await sleep(3_000);
      const c = clients(second.baseUrl);

      // ALLOW_ALL: every slot of the gap ran or was counted missed, none twice.
      const all = await executionsOf(c, "all");
      const times = all.map(nominal).sort((a, b) => a - b);
      expect(new Set(times).size).toBe(times.length);
      const { schedule } = await c.schedules.getSchedule({ scheduleId: "all" });
      const missed = Number(schedule!.info!.missedCount);
      const first = times[0]!;
      const last = times.at(-1)!;
      expect(times.length + missed).toBe((last - first) / 1000 + 1);
      // About 22 s of downtime minus the 10 s window were missed…
      expect(missed).toBeGreaterThanOrEqual(8);
      // …and the slots of the gap that were within the window at restart ran (caught up).
      const caughtUp = all.filter((e) => nominal(e) > stoppedAt && nominal(e) < startedAt);
      expect(caughtUp.length).toBeGreaterThanOrEqual(5);
      // None of the missed ones ran: every caught-up run is for a slot at most the window old.
      for (const e of caughtUp) expect(timestampDate(e.createTime!).getTime() - nominal(e)).toBeLessThanOrEqual(10_000 + 2_000);

      // SKIP with long runs: after the restart (the earlier run was interrupted), the oldest
      // slot within the window ran, the other caught-up slots were skipped.
      const skip = await executionsOf(c, "skip");
      const skipCaughtUp = skip.filter((e) => nominal(e) > stoppedAt && nominal(e) < startedAt);
      expect(skipCaughtUp).toHaveLength(1);
      const s2 = (await c.schedules.getSchedule({ scheduleId: "skip" })).schedule!;
      expect(Number(s2.info!.missedCount)).toBeGreaterThanOrEqual(8);
      expect(Number(s2.info!.overlapSkippedCount)).toBeGreaterThanOrEqual(5);
      expect(s2.info!.runningExecutionIds).toEqual([skipCaughtUp[0]!.executionId]);
    } finally {
      await second.stop();
    }
  });
});
