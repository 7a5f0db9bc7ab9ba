/**
 * ScheduleService over gRPC on a real socket (in-process server, real API keys, SQLite store):
 * every RPC, bad input with field paths, NOT_FOUND, etag conflicts (ABORTED, AIP-154),
 * idempotent create/trigger, permissions and tenant isolation, and WatchSchedule's stream.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { timestampDate, timestampFromMs, durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, createClient, type Client, type ConnectError } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  OverlapPolicy,
  ScheduleRunKind,
  ScheduleService,
  TriggerOutcome,
  type ScheduleSchema,
} from "../../gen/orchestrator/v1/schedule_service_pb.js";
import { ExecutionService } from "../../gen/orchestrator/v1/execution_service_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { failure } from "../support/rpc.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { bearer, createKey } from "../support/auth.js";

const tokens = { admin: "", viewer: "", other: "" };
let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ args: ["--auth", "api-keys"] });
  tokens.admin = await createKey(server, { subject: "alice", tenant: "acme", roles: ["admin"] });
  tokens.viewer = await createKey(server, { subject: "vera", tenant: "acme", roles: ["viewer"] });
  tokens.other = await createKey(server, { subject: "olga", tenant: "globex", roles: ["admin"] });
});
afterAll(() => server.shutdown());

const transport = (token: string) => createGrpcTransport({ baseUrl: server.baseUrl, interceptors: [bearer(token)] });
const client = (token = tokens.admin): Client<typeof ScheduleService> => createClient(ScheduleService, transport(token));
const executions = () => createClient(ExecutionService, transport(tokens.admin));

/** A yearly schedule: it does not fire by itself while the tests run. */
const yearly = (o: Partial<MessageInitShape<typeof ScheduleSchema>> = {}): MessageInitShape<typeof ScheduleSchema> => ({
  spec: { cronExpressions: ["0 0 1 1 *"], timeZone: "UTC" },
  action: { operation: "demo.echo", input: { message: "hi" }, labels: { team: "core" } },
  ...o,
}) as MessageInitShape<typeof ScheduleSchema>;

const reason = (e: ConnectError) => e.findDetails(ErrorInfoSchema)[0];
const fields = (e: ConnectError) => e.findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations.map((v) => v.field));

describe("ScheduleService: create, get, list", () => {
  it("creates a schedule owned by the caller, with etag, info and next times", async () => {
    const { schedule } = await client().createSchedule({ scheduleId: "create-1", schedule: yearly() });
    expect(schedule?.scheduleId).toBe("create-1");
    expect(schedule?.owner?.subject).toBe("alice");
    expect(schedule?.etag).not.toBe("");
    expect(schedule?.policy?.overlapPolicy).toBe(OverlapPolicy.SKIP);
    expect(schedule?.policy?.catchupWindow?.seconds).toBe(300n);
    expect(schedule?.info?.nextRunTimes.length).toBe(10);
    expect(timestampDate(schedule!.info!.nextRunTimes[0]!).getUTCMonth()).toBe(0);
    const got = await client().getSchedule({ scheduleId: "create-1" });
    expect(got.schedule?.etag).toBe(schedule?.etag);
  });

  it("generates an id when none is given", async () => {
    const { schedule } = await client().createSchedule({ schedule: yearly() });
    expect(schedule?.scheduleId).toMatch(/^s-[0-9a-f]{20}$/);
  });

  it("is idempotent on request_id; reusing it for another request is ALREADY_EXISTS", async () => {
    const a = await client().createSchedule({ scheduleId: "idem-1", schedule: yearly(), requestId: "req-1" });
    const b = await client().createSchedule({ scheduleId: "idem-1", schedule: yearly(), requestId: "req-1" });
    expect(b.schedule?.etag).toBe(a.schedule?.etag);
    const e = await failure(client().createSchedule({ scheduleId: "idem-2", schedule: yearly(), requestId: "req-1" }));
    expect(e.code).toBe(Code.AlreadyExists);
    expect(reason(e)?.reason).toBe("REQUEST_ID_REUSED");
    const dup = await failure(client().createSchedule({ scheduleId: "idem-1", schedule: yearly() }));
    expect(dup.code).toBe(Code.AlreadyExists);
    expect(reason(dup)).toMatchObject({ reason: "SCHEDULE_ALREADY_EXISTS", metadata: { schedule_id: "idem-1" } });
  });

  it("refuses bad input with field violations", async () => {
    const cases: Array<[MessageInitShape<typeof ScheduleSchema> | undefined, string, string?]> = [
      [undefined, "schedule"],
      [{ action: { operation: "demo.echo", input: { message: "x" } } }, "schedule.spec"],
      [yearly({ spec: { cronExpressions: ["61 * * * *"] } }), "schedule.spec.cron_expressions[0]"],
      [yearly({ spec: { cronExpressions: ["* * * * *"], timeZone: "Mars/Olympus" } }), "schedule.spec.time_zone"],
      [yearly({ spec: { cronExpressions: ["* * * * *"], jitter: durationFromMs(7_200_000) } }), "schedule.spec.jitter"],
      [yearly({ spec: { cronExpressions: ["* * * * *"], startTime: timestampFromMs(2000), endTime: timestampFromMs(1000) } }), "schedule.spec.end_time"],
      [yearly({ policy: { catchupWindow: durationFromMs(1000) } }), "schedule.policy.catchup_window"],
      [yearly({ policy: { overlapPolicy: 42 as OverlapPolicy } }), "schedule.policy.overlap_policy"],
      [yearly({ action: { operation: "demo.echo", input: { message: 5 } } }), "schedule.action.input.message"],
      [yearly({ action: { operation: "demo.echo", input: { message: "x" }, labels: { "Bad Key": "v" } } }), 'schedule.action.labels["Bad Key"]'],
      [yearly({ state: { remainingRuns: -1n } }), "schedule.state.remaining_runs"],
    ];
    for (const [schedule, field] of cases) {
      const e = await failure(client().createSchedule({ scheduleId: "bad", ...(schedule === undefined ? {} : { schedule }) }));
      expect(e.code, field).toBe(Code.InvalidArgument);
      expect(fields(e), field).toContain(field);
    }
    const id = await failure(client().createSchedule({ scheduleId: "Not_Valid-", schedule: yearly() }));
    expect(fields(id)).toEqual(["schedule_id"]);
    const op = await failure(client().createSchedule({ scheduleId: "bad", schedule: yearly({ action: { operation: "no.such" } }) }));
    expect(op.code).toBe(Code.NotFound);
    expect(reason(op)?.reason).toBe("OPERATION_NOT_FOUND");
    const rid = await failure(client().createSchedule({ scheduleId: "bad", schedule: yearly(), requestId: "x".repeat(200) }));
    expect(fields(rid)).toEqual(["request_id"]);
  });

  it("NOT_FOUND for unknown ids and other tenants' schedules; viewers may read, not write", async () => {
    const e = await failure(client().getSchedule({ scheduleId: "missing" }));
    expect(e.code).toBe(Code.NotFound);
    expect(reason(e)).toMatchObject({ reason: "SCHEDULE_NOT_FOUND", metadata: { schedule_id: "missing" } });
    await client().createSchedule({ scheduleId: "tenant-a", schedule: yearly() });
    expect((await failure(client(tokens.other).getSchedule({ scheduleId: "tenant-a" }))).code).toBe(Code.NotFound);
    expect((await client(tokens.viewer).getSchedule({ scheduleId: "tenant-a" })).schedule?.scheduleId).toBe("tenant-a");
    const denied = await failure(client(tokens.viewer).createSchedule({ scheduleId: "by-viewer", schedule: yearly() }));
    expect(denied.code).toBe(Code.PermissionDenied);
    expect(reason(denied)?.metadata["permission"]).toBe("schedules:write");
    expect((await failure(client().getSchedule({ scheduleId: "" }))).code).toBe(Code.InvalidArgument);
  });

  it("lists by id with paging and filters; tokens are bound to the filter", async () => {
    for (const i of [1, 2, 3, 4, 5]) {
      await client().createSchedule({
        scheduleId: `list-${i}`,
        schedule: yearly({
          action: { operation: i <= 3 ? "demo.echo" : "demo.sleep", input: i <= 3 ? { message: "m" } : { durationMs: 1 }, labels: { group: "list" } },
          state: { paused: i % 2 === 0 },
        }),
      });
    }
    const p1 = await client().listSchedules({ pageSize: 2, labels: { group: "list" } });
    expect(p1.schedules.map((s) => s.scheduleId)).toEqual(["list-1", "list-2"]);
    const p2 = await client().listSchedules({ pageSize: 2, labels: { group: "list" }, pageToken: p1.nextPageToken });
    expect(p2.schedules.map((s) => s.scheduleId)).toEqual(["list-3", "list-4"]);
    const p3 = await client().listSchedules({ pageSize: 2, labels: { group: "list" }, pageToken: p2.nextPageToken });
    expect(p3.schedules.map((s) => s.scheduleId)).toEqual(["list-5"]);
    expect(p3.nextPageToken).toBe("");
    const paused = await client().listSchedules({ labels: { group: "list" }, paused: true });
    expect(paused.schedules.map((s) => s.scheduleId)).toEqual(["list-2", "list-4"]);
    const sleep = await client().listSchedules({ labels: { group: "list" }, operation: "demo.sleep" });
    expect(sleep.schedules.map((s) => s.scheduleId)).toEqual(["list-4", "list-5"]);
    const mismatched = await failure(client().listSchedules({ pageSize: 2, operation: "demo.sleep", pageToken: p1.nextPageToken }));
    expect(fields(mismatched)).toEqual(["page_token"]);
    expect(fields(await failure(client().listSchedules({ pageSize: -1 })))).toEqual(["page_size"]);
    expect((await client(tokens.other).listSchedules({ labels: { group: "list" } })).schedules).toEqual([]);
  });
});

describe("ScheduleService: update, delete, pause, resume", () => {
  it("updates the masked fields only; a stale etag is ABORTED", async () => {
    const { schedule } = await client().createSchedule({ scheduleId: "upd-1", schedule: yearly() });
    const u = await client().updateSchedule({
      schedule: { scheduleId: "upd-1", spec: { cronExpressions: ["0 12 * * *"], timeZone: "Europe/Paris" }, policy: { overlapPolicy: OverlapPolicy.BUFFER_ALL } },
      updateMask: { paths: ["spec", "policy.overlap_policy"] },
      etag: schedule!.etag,
    });
    expect(u.schedule?.spec?.timeZone).toBe("Europe/Paris");
    expect(u.schedule?.policy?.overlapPolicy).toBe(OverlapPolicy.BUFFER_ALL);
    expect(u.schedule?.action?.operation).toBe("demo.echo");
    expect(u.schedule?.etag).not.toBe(schedule?.etag);
    const stale = await failure(client().updateSchedule({ schedule: { scheduleId: "upd-1" }, updateMask: { paths: ["policy"] }, etag: schedule!.etag }));
    expect(stale.code).toBe(Code.Aborted);
    expect(reason(stale)?.reason).toBe("ETAG_MISMATCH");
    const badMask = await failure(client().updateSchedule({ schedule: { scheduleId: "upd-1" }, updateMask: { paths: ["state.paused"] } }));
    expect(fields(badMask)).toEqual(["update_mask"]);
    const badCron = await failure(client().updateSchedule({ schedule: { scheduleId: "upd-1", spec: { cronExpressions: ["nope"] } }, updateMask: { paths: ["spec.cron_expressions"] } }));
    expect(fields(badCron)).toEqual(["schedule.spec.cron_expressions[0]"]);
    const missing = await failure(client().updateSchedule({ schedule: { scheduleId: "nope" }, updateMask: { paths: ["policy"] } }));
    expect(missing.code).toBe(Code.NotFound);
    const runs = await client().updateSchedule({ schedule: { scheduleId: "upd-1", state: { remainingRuns: 2n } }, updateMask: { paths: ["state.remaining_runs"] } });
    expect(runs.schedule?.state?.remainingRuns).toBe(2n);
    expect(runs.schedule?.info?.nextRunTimes).toHaveLength(2);
  });

  it("pauses and resumes with notes", async () => {
    await client().createSchedule({ scheduleId: "pause-1", schedule: yearly() });
    const p = await client().pauseSchedule({ scheduleId: "pause-1", note: "maintenance" });
    expect(p.schedule?.state).toMatchObject({ paused: true, note: "maintenance" });
    expect(p.schedule?.info?.nextRunTimes).toEqual([]);
    const r = await client().resumeSchedule({ scheduleId: "pause-1" });
    expect(r.schedule?.state).toMatchObject({ paused: false, note: "resumed" });
    expect(r.schedule?.info?.nextRunTimes.length).toBe(10);
    expect(fields(await failure(client().pauseSchedule({ scheduleId: "pause-1", note: "x".repeat(2000) })))).toEqual(["note"]);
    expect((await failure(client().resumeSchedule({ scheduleId: "nope" }))).code).toBe(Code.NotFound);
  });

  it("deletes, honouring etag and allow_missing", async () => {
    const { schedule } = await client().createSchedule({ scheduleId: "del-1", schedule: yearly() });
    const stale = await failure(client().deleteSchedule({ scheduleId: "del-1", etag: '"v999"' }));
    expect(stale.code).toBe(Code.Aborted);
    await client().deleteSchedule({ scheduleId: "del-1", etag: schedule!.etag });
    expect((await failure(client().getSchedule({ scheduleId: "del-1" }))).code).toBe(Code.NotFound);
    expect((await failure(client().deleteSchedule({ scheduleId: "del-1" }))).code).toBe(Code.NotFound);
    await client().deleteSchedule({ scheduleId: "del-1", allowMissing: true });
  });
});

describe("ScheduleService: trigger, backfill, matching times, watch", () => {
  it("triggers a run as the owner; the execution links back to the schedule", async () => {
    await client().createSchedule({ scheduleId: "trig-1", schedule: yearly({ state: { paused: true } }) });
    const t = await client().triggerSchedule({ scheduleId: "trig-1", requestId: "t-1" });
    expect(t.outcome).toBe(TriggerOutcome.STARTED);
    expect(t.run?.kind).toBe(ScheduleRunKind.TRIGGER);
    const again = await client().triggerSchedule({ scheduleId: "trig-1", requestId: "t-1" });
    expect(again.run?.executionId).toBe(t.run?.executionId);
    const e = await executions().getExecution({ executionId: t.run!.executionId });
    expect(e.execution?.scheduleId).toBe("trig-1");
    expect(e.execution?.nominalTime).toEqual(t.run?.nominalTime);
    expect(e.execution?.principal?.subject).toBe("alice");
    expect(e.execution?.requestId).toBe(""); // the run's own (its slot's fence) is not the caller's: not shown
    const listed = await executions().listExecutions({ scheduleId: "trig-1" });
    expect(listed.executions.map((x) => x.executionId)).toEqual([t.run!.executionId]);
    expect((await failure(client().triggerSchedule({ scheduleId: "nope" }))).code).toBe(Code.NotFound);
    expect(fields(await failure(client().triggerSchedule({ scheduleId: "trig-1", overlapPolicy: 9 as OverlapPolicy })))).toEqual(["overlap_policy"]);
  });

  it("backfills a past window; refuses future, inverted and oversized windows", async () => {
    await client().createSchedule({ scheduleId: "bf-1", schedule: yearly({ spec: { cronExpressions: ["0 0 * * *"] } }) });
    const start = Date.UTC(2026, 0, 1);
    const b = await client().backfillSchedule({ scheduleId: "bf-1", startTime: timestampFromMs(start), endTime: timestampFromMs(start + 3 * 86_400_000) });
    expect(b.nominalTimes.map((t) => timestampDate(t).getTime())).toEqual([start, start + 86_400_000, start + 2 * 86_400_000]);
    for (let i = 0; i < 50; i++) {
      const listed = await executions().listExecutions({ scheduleId: "bf-1" });
      if (listed.executions.length === 3) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const listed = await executions().listExecutions({ scheduleId: "bf-1" });
    expect(listed.executions.map((x) => timestampDate(x.nominalTime!).getTime()).sort()).toEqual([start, start + 86_400_000, start + 2 * 86_400_000]);
    const future = await failure(client().backfillSchedule({ scheduleId: "bf-1", startTime: timestampFromMs(start), endTime: timestampFromMs(Date.now() + 86_400_000) }));
    expect(fields(future)).toEqual(["end_time"]);
    const inverted = await failure(client().backfillSchedule({ scheduleId: "bf-1", startTime: timestampFromMs(start), endTime: timestampFromMs(start - 1) }));
    expect(fields(inverted)).toEqual(["end_time"]);
    const big = await failure(client().backfillSchedule({ scheduleId: "bf-1", startTime: timestampFromMs(0), endTime: timestampFromMs(start) }));
    expect(big.code).toBe(Code.InvalidArgument);
    expect(reason(big)?.reason).toBe("BACKFILL_TOO_LARGE");
    expect(fields(await failure(client().backfillSchedule({ scheduleId: "bf-1" })))).toEqual(["start_time", "end_time"]);
  });

  it("lists matching times of a spec (DST applied) or a schedule", async () => {
    // New York springs forward on 2026-03-08: 02:30 does not exist and fires at 03:30 EDT (07:30Z).
    const m = await client().listScheduleMatchingTimes({
      source: { case: "spec", value: { cronExpressions: ["30 2 * * *"], timeZone: "America/New_York" } },
      startTime: timestampFromMs(Date.UTC(2026, 2, 7)),
      maxTimes: 3,
    });
    expect(m.matchingTimes.map((t) => timestampDate(t).toISOString())).toEqual(["2026-03-07T07:30:00.000Z", "2026-03-08T07:30:00.000Z", "2026-03-09T06:30:00.000Z"]);
    expect(m.truncated).toBe(true);
    await client().createSchedule({ scheduleId: "mt-1", schedule: yearly() });
    const s = await client().listScheduleMatchingTimes({
      source: { case: "scheduleId", value: "mt-1" },
      startTime: timestampFromMs(Date.UTC(2026, 0, 1)),
      endTime: timestampFromMs(Date.UTC(2029, 0, 1)),
    });
    expect(s.matchingTimes.map((t) => timestampDate(t).getUTCFullYear())).toEqual([2026, 2027, 2028]);
    expect(s.truncated).toBe(false);
    const bad = await failure(client().listScheduleMatchingTimes({ source: { case: "spec", value: { cronExpressions: ["bad"] } } }));
    expect(fields(bad)).toEqual(["spec.cron_expressions[0]"]);
    expect(fields(await failure(client().listScheduleMatchingTimes({})))).toEqual(["source"]);
    expect(fields(await failure(client().listScheduleMatchingTimes({ source: { case: "scheduleId", value: "mt-1" }, maxTimes: -1 })))).toEqual(["max_times"]);
    expect((await failure(client().listScheduleMatchingTimes({ source: { case: "scheduleId", value: "nope" } }))).code).toBe(Code.NotFound);
  });

  it("watches a schedule: snapshot, fired, run ended; the stream ends OK on delete", async () => {
    await client().createSchedule({ scheduleId: "watch-1", schedule: yearly() });
    const seen: string[] = [];
    const done = (async () => {
      for await (const r of client().watchSchedule({ scheduleId: "watch-1" })) seen.push(r.event!.kind.case ?? "");
    })();
    while (seen.length === 0) await new Promise((r) => setTimeout(r, 20));
    await client().triggerSchedule({ scheduleId: "watch-1" });
    for (let i = 0; i < 100 && !seen.includes("runEnded"); i++) await new Promise((r) => setTimeout(r, 20));
    await client().deleteSchedule({ scheduleId: "watch-1" });
    await done;
    expect(seen).toEqual(["snapshot", "fired", "runEnded"]);
    const e = await failure(
      (async () => {
        for await (const _ of client().watchSchedule({ scheduleId: "nope" })) void _;
      })(),
    );
    expect(e.code).toBe(Code.NotFound);
  });
});
