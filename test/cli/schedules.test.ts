/**
 * `orchestrator schedules …` (the real binary) against a real server process: create, list,
 * get, update (update_mask from the flags, etag), pause, resume, trigger, delete, preview
 * (ListScheduleMatchingTimes in the schedule's zone and local time, DST included), errors.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnServer, type ServerProcess } from "../support/server.js";
import { cli, cliPiped } from "./run.js";

let server: ServerProcess;
const env = (extra: NodeJS.ProcessEnv = {}) => ({ ORCHESTRATOR_ADDRESS: server.address, TZ: "UTC", ...extra });
const json = async (args: string[]) => {
  const r = await cli([...args, "-o", "json"], { env: env() });
  expect(r.code, `${args.join(" ")}\n${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
};

beforeAll(async () => {
  server = await spawnServer(["--demo-operations"]);
});
afterAll(async () => {
  await server?.stop();
});

describe("orchestrator schedules", () => {
  it("create with every definition flag, then get shows them (text and json)", async () => {
    const created = await cli(
      [
        "schedules", "create", "reports",
        "--cron", "*/5 * * * *", "--cron", "0 12 * * MON",
        "--time-zone", "America/New_York",
        "--operation", "demo.echo", "--input", '{"message":"report"}', "--label", "team=data",
        "--overlap", "buffer-one", "--catchup-window", "10m", "--pause-on-failure", "--remaining-runs", "5", "--timeout", "2m", "--max-attempts", "2",
      ],
      { env: env() },
    );
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/^Created schedule reports\.\nSchedule\s+reports\nState\s+active\nCron\s+\*\/5 \* \* \* \* \| 0 12 \* \* MON in America\/New_York\n/);
    expect(created.stdout).toMatch(/\nPolicy\s+overlap buffer-one, catch-up 10m00s, pause on failure\n/);
    expect(created.stdout).toMatch(/\nNext runs\n {2}\d{4}-\d\d-\d\d \d\d:\d[05]:00 -0[45]:00 {2}\(/);

    const got = await json(["schedules", "get", "reports"]);
    expect(got).toMatchObject({
      scheduleId: "reports",
      spec: { cronExpressions: ["*/5 * * * *", "0 12 * * MON"], timeZone: "America/New_York" },
      action: { operation: "demo.echo", input: { message: "report" }, labels: { team: "data" }, timeout: "120s", retryPolicy: { maximumAttempts: 2 } },
      policy: { overlapPolicy: "OVERLAP_POLICY_BUFFER_ONE", catchupWindow: "600s", pauseOnFailure: true },
      state: { remainingRuns: "5" },
      owner: { subject: "local" },
    });
    expect(got["etag"]).toEqual(expect.any(String));
  });

  it("create without an id gets a generated one; bad input is INVALID_ARGUMENT naming the field (exit 3); missing flags exit 2", async () => {
    const made = await json(["schedules", "create", "--cron", "@daily", "--operation", "demo.echo", "--input", '{"message":"x"}']);
    expect(made["scheduleId"]).toMatch(/^[a-z][a-z0-9-]*$/);

    const bad = await cli(["schedules", "create", "bad", "--cron", "61 * * * *", "--operation", "demo.echo", "--input", '{"message":"x"}'], { env: env() });
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(/^error: INVALID_ARGUMENT: .*\n {2}reason: INVALID_ARGUMENT \(orchestrator\.v1\)\n(.*\n)* {2}field schedule\.spec\.cron_expressions\[0\]: /);
    const zone = await cli(["schedules", "create", "bad", "--cron", "@daily", "--time-zone", "Mars/Olympus", "--operation", "demo.echo", "--input", '{"message":"x"}'], { env: env() });
    expect(zone.stderr).toMatch(/ {2}field schedule\.spec\.time_zone: /);

    expect((await cli(["schedules", "create", "x", "--operation", "demo.echo"], { env: env() })).code).toBe(2);
    expect((await cli(["schedules", "create", "x", "--cron", "@daily"], { env: env() })).code).toBe(2);
    expect((await cli(["schedules", "create", "x", "--cron", "@daily", "--operation", "demo.echo", "--overlap", "sometimes"], { env: env() })).code).toBe(2);
  });

  it("list: a table, filters, json", async () => {
    await json(["schedules", "create", "hourly", "--cron", "0 * * * *", "--operation", "demo.sleep", "--input", '{"durationMs":1}', "--paused", "--note", "not yet"]);
    const table = await cli(["schedules", "list"], { env: env() });
    expect(table.stdout).toMatch(/^SCHEDULE\s+OPERATION\s+CRON\s+ZONE\s+STATE\s+NEXT RUN\s+RUNS\n/);
    expect(table.stdout).toMatch(/\nhourly\s+demo\.sleep\s+0 \* \* \* \*\s+UTC\s+paused\s+-\s+0\n/);
    expect(table.stdout).toMatch(/\nreports\s+demo\.echo\s+\*\/5 \* \* \* \* \| 0 12 \* \* MON\s+America\/New_York\s+active\s+\S+Z\s+\d+\n/); // it may have fired already
    const paused = await json(["schedules", "list", "--paused", "true"]);
    expect((paused["schedules"] as Array<{ scheduleId: string }>).map((s) => s.scheduleId)).toEqual(["hourly"]);
    const byOperation = await json(["schedules", "list", "--operation", "demo.sleep"]);
    expect((byOperation["schedules"] as Array<{ scheduleId: string }>).map((s) => s.scheduleId)).toEqual(["hourly"]);
    const byLabel = await json(["schedules", "list", "--label", "team=data"]);
    expect((byLabel["schedules"] as Array<{ scheduleId: string }>).map((s) => s.scheduleId)).toEqual(["reports"]);
  });

  it("update sends only the flags given as the update_mask; --etag guards against lost updates", async () => {
    const before = await json(["schedules", "get", "reports"]);
    const updated = await cli(["schedules", "update", "reports", "--cron", "0 9 * * *", "--overlap", "skip", "--etag", before["etag"] as string], { env: env() });
    expect(updated.code, updated.stderr).toBe(0);
    expect(updated.stdout).toMatch(/^Updated schedule reports \(spec\.cron_expressions, policy\.overlap_policy\)\.\n/);
    const after = await json(["schedules", "get", "reports"]);
    expect(after).toMatchObject({
      spec: { cronExpressions: ["0 9 * * *"], timeZone: "America/New_York" },
      action: { input: { message: "report" }, labels: { team: "data" } },
      policy: { overlapPolicy: "OVERLAP_POLICY_SKIP", catchupWindow: "600s", pauseOnFailure: true },
    });
    expect(after["etag"]).not.toBe(before["etag"]);

    const stale = await cli(["schedules", "update", "reports", "--time-zone", "UTC", "--etag", before["etag"] as string], { env: env() });
    expect(stale.code).toBe(3);
    expect(stale.stderr).toMatch(/^error: ABORTED: .*\n {2}reason: ETAG_MISMATCH \(orchestrator\.v1\)\n/);
    const nothing = await cli(["schedules", "update", "reports"], { env: env() });
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toMatch(/nothing to change/);
    const off = await cli(["schedules", "update", "reports", "--pause-on-failure", "false", "-o", "json"], { env: env() });
    expect(JSON.parse(off.stdout)["policy"]["pauseOnFailure"] ?? false).toBe(false);
  });

  it("pause, resume, trigger (runs now, even paused); executions list --schedule finds the run", async () => {
    expect(await cli(["schedules", "pause", "reports", "--note", "maintenance"], { env: env() })).toMatchObject({ code: 0, stdout: "Paused schedule reports (maintenance).\n" });
    expect(await json(["schedules", "get", "reports"])).toMatchObject({ state: { paused: true, note: "maintenance" } });

    const triggered = await cli(["schedules", "trigger", "reports"], { env: env() });
    expect(triggered.code, triggered.stderr).toBe(0);
    const id = /^Triggered schedule reports: started, execution ([0-9a-f-]{36})\.\n$/.exec(triggered.stdout)?.[1];
    expect(id, triggered.stdout).toBeDefined();
    const runs = await json(["executions", "list", "--schedule", "reports"]);
    expect((runs["executions"] as Array<{ executionId: string }>).map((e) => e.executionId)).toContain(id);

    const resumed = await cli(["schedules", "resume", "reports", "--note", "done"], { env: env() });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/^Resumed schedule reports; next run \S+Z\.\n$/);
    expect(await json(["schedules", "get", "reports"])).toMatchObject({ state: { note: "done" } });
  });

  it("preview: the schedule's next times in its zone and in local time", async () => {
    const r = await cli(["schedules", "preview", "reports", "--count", "2"], { env: env({ TZ: "Asia/Tokyo" }) });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^#\s+IN America\/New_York\s+LOCAL \(Asia\/Tokyo\)$/);
    expect(lines.slice(1)).toHaveLength(2);
    for (const line of lines.slice(1)) expect(line).toMatch(/^\d\s+\d{4}-\d\d-\d\d 09:00:00 -0[45]:00\s+\d{4}-\d\d-\d\d (22|23):00:00 \+09:00$/);
    const asJson = await json(["schedules", "preview", "reports", "--count", "2"]);
    expect(asJson["matchingTimes"]).toHaveLength(2);
  });

  it("preview of an unsaved spec across a daylight-saving change (02:30 does not exist on 2027-03-28 in Paris)", async () => {
    const r = await cli(["schedules", "preview", "--cron", "30 2 * * *", "--time-zone", "Europe/Paris", "--start-time", "2027-03-27T00:00:00Z", "--count", "3"], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(
      [
        "#  IN Europe/Paris             LOCAL (UTC)",
        "1  2027-03-27 02:30:00 +01:00  2027-03-27 01:30:00 +00:00",
        "2  2027-03-28 03:30:00 +02:00  2027-03-28 01:30:00 +00:00",
        "3  2027-03-29 02:30:00 +02:00  2027-03-29 00:30:00 +00:00",
        "",
      ].join("\n"),
    );
    expect((await cli(["schedules", "preview"], { env: env() })).code).toBe(2);
    expect((await cli(["schedules", "preview", "reports", "--cron", "@daily"], { env: env() })).code).toBe(2);
  });

  it("watch follows the schedule (snapshot, fired, run ended); backfill queues the slots of a past window", async () => {
    const watch = cliPiped(["schedules", "watch", "reports", "--limit", "2"], env());
    await watch.waitFor(/^Watching schedule reports \(active; next run \S+Z\); Ctrl-C stops\.\n/);
    const triggered = await json(["schedules", "trigger", "reports"]);
    const id = (triggered["run"] as { executionId: string }).executionId;
    expect(await watch.exited).toBe(0);
    const lines = watch.output().trimEnd().split("\n").slice(1);
    expect(lines[0]).toMatch(new RegExp(`^\\S+Z  fired  slot \\S+Z  trigger  execution ${id}( |$)`));
    expect(lines[1]).toMatch(new RegExp(`^\\S+Z  run_ended  slot \\S+Z  trigger  execution ${id}  SUCCEEDED$`));

    // 09:00 in New York is 14:00 UTC in January: three slots in three days.
    const backfilled = await cli(["schedules", "backfill", "reports", "--start-time", "2026-01-01T00:00:00Z", "--end-time", "2026-01-04T00:00:00Z"], { env: env() });
    expect(backfilled.code, backfilled.stderr).toBe(0);
    expect(backfilled.stdout).toBe(
      "Queued 3 runs of schedule reports:\n  2026-01-01T14:00:00.000Z\n  2026-01-02T14:00:00.000Z\n  2026-01-03T14:00:00.000Z\n",
    );
    const future = await cli(["schedules", "backfill", "reports", "--start-time", "2026-01-01T00:00:00Z", "--end-time", "2999-01-01T00:00:00Z"], { env: env() });
    expect(future.code).toBe(3);
    expect(future.stderr).toMatch(/^error: INVALID_ARGUMENT: /);
  });

  it("delete; then get is NOT_FOUND with the schedule id (exit 3); --allow-missing succeeds", async () => {
    expect(await cli(["schedules", "delete", "hourly"], { env: env() })).toMatchObject({ code: 0, stdout: "Deleted schedule hourly.\n" });
    const gone = await cli(["schedules", "get", "hourly"], { env: env() });
    expect(gone.code).toBe(3);
    expect(gone.stderr).toMatch(/^error: NOT_FOUND: .*\n {2}reason: SCHEDULE_NOT_FOUND \(orchestrator\.v1\)\n {2}schedule_id: hourly\n/);
    expect((await cli(["schedules", "delete", "hourly"], { env: env() })).code).toBe(3);
    expect((await cli(["schedules", "delete", "hourly", "--allow-missing"], { env: env() })).code).toBe(0);
  });
});
