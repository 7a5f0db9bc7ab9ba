/**
 * `orchestrator schedules create|list|get|update|pause|resume|trigger|delete|preview`.
 */
import { toJson, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Args, Command, Options } from "@effect/cli";
import * as Option from "effect/Option";
import {
  BackfillScheduleResponseSchema,
  ListScheduleMatchingTimesResponseSchema,
  ScheduleEventSchema,
  ScheduleRunKind,
  ListSchedulesResponseSchema,
  OverlapPolicy,
  ScheduleSchema,
  TriggerOutcome,
  TriggerScheduleResponseSchema,
  type Schedule,
  type ScheduleRun,
  type ScheduleSpecSchema,
  type ScheduleActionSchema,
  type SchedulePolicySchema,
  type ScheduleStateSchema,
} from "../../gen/orchestrator/v1/schedule_service_pb.js";
import { opt, withConnection } from "./command.js";
import { connectionOptions, type Connection } from "./connection.js";
import { readInput } from "./exec.js";
import { principalText, stateName } from "./executions.js";
import {
  durationMs,
  enumLabel,
  humanDuration,
  iso,
  jsonText,
  parseDuration,
  parseEnum,
  parseLabels,
  parseTime,
  styleFor,
  table,
  UsageError,
  type Io,
  type Style,
} from "./output.js";

const scheduleId = Args.text({ name: "SCHEDULE_ID" });
const overlapChoices = "skip, buffer-one, buffer-all, cancel-other, allow-all";

/** The definition flags shared by create and update; on update each one given replaces that field. */
const definitionOptions = {
  cron: Options.text("cron").pipe(Options.withDescription("Cron expression, 5 or 6 fields or @daily… (repeatable: fires on any)."), Options.repeated),
  timeZone: Options.text("time-zone").pipe(Options.withDescription("IANA zone the cron is read in, e.g. Europe/Paris (default UTC)."), Options.optional),
  operation: Options.text("operation").pipe(Options.withDescription("Operation each fire runs."), Options.optional),
  input: Options.text("input").pipe(Options.withAlias("i"), Options.withDescription("Input of every run: JSON object, @file or -."), Options.optional),
  label: Options.text("label").pipe(Options.withDescription("key=value label on every run (repeatable)."), Options.repeated),
  overlap: Options.text("overlap").pipe(Options.withDescription(`When a slot comes due while a run is active: ${overlapChoices} (default skip).`), Options.optional),
  catchupWindow: Options.text("catchup-window").pipe(Options.withDescription("Slots missed by at most this long (downtime) still run, e.g. 10m (default 5m)."), Options.optional),
  jitter: Options.text("jitter").pipe(Options.withDescription("Random delay added to each fire, up to this, e.g. 30s."), Options.optional),
  startTime: Options.text("start-time").pipe(Options.withDescription("No slot before this RFC 3339 time."), Options.optional),
  endTime: Options.text("end-time").pipe(Options.withDescription("No slot after this RFC 3339 time."), Options.optional),
  timeout: Options.text("timeout").pipe(Options.withDescription("Timeout of each run, e.g. 5m."), Options.optional),
  maxAttempts: Options.integer("max-attempts").pipe(Options.withDescription("Maximum attempts of each run (1 = no retry)."), Options.optional),
  remainingRuns: Options.integer("remaining-runs").pipe(Options.withDescription("Cron fires left before the schedule stops firing."), Options.optional),
  requestId: Options.text("request-id").pipe(Options.withDescription("Idempotency key."), Options.optional),
};

type DefinitionArgs = {
  readonly cron: ReadonlyArray<string>;
  readonly timeZone: Option.Option<string>;
  readonly operation: Option.Option<string>;
  readonly input: Option.Option<string>;
  readonly label: ReadonlyArray<string>;
  readonly overlap: Option.Option<string>;
  readonly catchupWindow: Option.Option<string>;
  readonly jitter: Option.Option<string>;
  readonly startTime: Option.Option<string>;
  readonly endTime: Option.Option<string>;
  readonly timeout: Option.Option<string>;
  readonly maxAttempts: Option.Option<number>;
  readonly remainingRuns: Option.Option<number>;
};

/** The schedule the flags describe, and the update_mask paths they set. */
function definition(a: DefinitionArgs, pauseOnFailure: boolean | undefined) {
  const spec: MessageInitShape<typeof ScheduleSpecSchema> = {};
  const action: MessageInitShape<typeof ScheduleActionSchema> = {};
  const policy: MessageInitShape<typeof SchedulePolicySchema> = {};
  const state: MessageInitShape<typeof ScheduleStateSchema> = {};
  const paths: string[] = [];
  if (a.cron.length > 0) (spec.cronExpressions = [...a.cron]), paths.push("spec.cron_expressions");
  if (Option.isSome(a.timeZone)) (spec.timeZone = a.timeZone.value), paths.push("spec.time_zone");
  if (Option.isSome(a.jitter)) (spec.jitter = parseDuration("--jitter", a.jitter.value)), paths.push("spec.jitter");
  if (Option.isSome(a.startTime)) (spec.startTime = parseTime("--start-time", a.startTime.value)), paths.push("spec.start_time");
  if (Option.isSome(a.endTime)) (spec.endTime = parseTime("--end-time", a.endTime.value)), paths.push("spec.end_time");
  if (Option.isSome(a.operation)) (action.operation = a.operation.value), paths.push("action.operation");
  if (Option.isSome(a.input)) (action.input = readInput(a.input.value)), paths.push("action.input");
  if (a.label.length > 0) (action.labels = parseLabels("--label", a.label)), paths.push("action.labels");
  if (Option.isSome(a.timeout)) (action.timeout = parseDuration("--timeout", a.timeout.value)), paths.push("action.timeout");
  if (Option.isSome(a.maxAttempts)) (action.retryPolicy = { maximumAttempts: a.maxAttempts.value }), paths.push("action.retry_policy");
  if (Option.isSome(a.overlap)) {
    policy.overlapPolicy = parseEnum("--overlap", OverlapPolicy, "OVERLAP_POLICY_", a.overlap.value) as OverlapPolicy;
    paths.push("policy.overlap_policy");
  }
  if (Option.isSome(a.catchupWindow)) (policy.catchupWindow = parseDuration("--catchup-window", a.catchupWindow.value)), paths.push("policy.catchup_window");
  if (pauseOnFailure !== undefined) (policy.pauseOnFailure = pauseOnFailure), paths.push("policy.pause_on_failure");
  if (Option.isSome(a.remainingRuns)) (state.remainingRuns = BigInt(a.remainingRuns.value)), paths.push("state.remaining_runs");
  return { spec, action, policy, state, paths };
}

// Printing --------------------------------------------------------------------------------------

/** `2026-03-29 03:30:00 +02:00` in a zone. */
export function inZone(date: Date, timeZone: string): string {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-US", {
      timeZone,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      hourCycle: "h23",
      timeZoneName: "longOffset",
    })
      .formatToParts(date)
      .map((p) => [p.type, p.value]),
  );
  const offset = (parts["timeZoneName"] ?? "GMT").replace(/^GMT$/, "GMT+00:00").replace(/^GMT/, "");
  return `${parts["year"]}-${parts["month"]}-${parts["day"]} ${parts["hour"]}:${parts["minute"]}:${parts["second"]} ${offset}`;
}

export const localZone = (): string => Intl.DateTimeFormat().resolvedOptions().timeZone;

const zoneOf = (s: Schedule) => (s.spec?.timeZone === undefined || s.spec.timeZone === "" ? "UTC" : s.spec.timeZone);

export function describeSchedule(s: Schedule, style: Style): string {
  const zone = zoneOf(s);
  const rows: Array<[string, string]> = [
    ["Schedule", s.scheduleId],
    ["State", s.state?.paused === true ? `paused${s.state.note === "" ? "" : ` (${s.state.note})`}` : `active${s.state?.note ? ` (${s.state.note})` : ""}`],
    ["Cron", `${(s.spec?.cronExpressions ?? []).join(" | ")} in ${zone}`],
  ];
  if (s.spec?.startTime !== undefined) rows.push(["Starts", iso(s.spec.startTime)]);
  if (s.spec?.endTime !== undefined) rows.push(["Ends", iso(s.spec.endTime)]);
  if (s.spec?.jitter !== undefined) rows.push(["Jitter", humanDuration(durationMs(s.spec.jitter))]);
  rows.push(["Operation", s.action?.operation ?? ""], ["Input", JSON.stringify(s.action?.input ?? {})]);
  if (s.action !== undefined && Object.keys(s.action.labels).length > 0) {
    rows.push(["Labels", Object.entries(s.action.labels).map(([k, v]) => `${k}=${v}`).join(", ")]);
  }
  rows.push([
    "Policy",
    `overlap ${enumLabel(OverlapPolicy[s.policy?.overlapPolicy ?? 0], "").toLowerCase().replace(/_/g, "-")}` +
      (s.policy?.catchupWindow === undefined ? "" : `, catch-up ${humanDuration(durationMs(s.policy.catchupWindow))}`) +
      (s.policy?.pauseOnFailure === true ? ", pause on failure" : ""),
  ]);
  if (s.state?.remainingRuns !== undefined) rows.push(["Remaining runs", String(s.state.remainingRuns)]);
  rows.push(["Owner", principalText(s.owner)], ["Created", iso(s.createTime)], ["Updated", iso(s.updateTime)], ["Etag", s.etag]);
  const info = s.info;
  if (info !== undefined) {
    rows.push(["Runs", `${info.runCount} (missed ${info.missedCount}, skipped for overlap ${info.overlapSkippedCount})`]);
    if (info.runningExecutionIds.length > 0) rows.push(["Running", info.runningExecutionIds.join(", ")]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  let out = rows.map(([k, v]) => `${style.bold(k.padEnd(width))}  ${v}`).join("\n") + "\n";
  if (info !== undefined && info.nextRunTimes.length > 0) {
    out += `${style.bold("Next runs")}\n` + info.nextRunTimes.map((t) => `  ${inZone(timestampDate(t), zone)}  (${iso(t)})\n`).join("");
  }
  if (info !== undefined && info.recentRuns.length > 0) {
    out += `${style.bold("Recent runs")}\n`;
    for (const r of info.recentRuns) {
      out += `  ${iso(r.nominalTime)}  ${enumLabel(stateName(r.state), "")}  ${r.executionId}${r.error === undefined ? "" : `  ${r.error.type}: ${r.error.message}`}\n`;
    }
  }
  return out;
}

const printSchedule = (conn: Connection, s: Schedule | undefined, io: Io) => {
  if (s === undefined) return;
  io.out(conn.output === "json" ? jsonText(toJson(ScheduleSchema, s), false) : describeSchedule(s, styleFor(process.stdout)));
};

// Commands ---------------------------------------------------------------------------------------

const create = Command.make(
  "create",
  {
    ...connectionOptions,
    ...definitionOptions,
    scheduleId: scheduleId.pipe(Args.withDescription("Id: lowercase letters, digits and -, starting with a letter (default: generated)."), Args.optional),
    pauseOnFailure: Options.boolean("pause-on-failure").pipe(Options.withDescription("Pause the schedule when a run fails or times out.")),
    paused: Options.boolean("paused").pipe(Options.withDescription("Create it paused.")),
    note: Options.text("note").pipe(Options.withDescription("Note stored with the paused state."), Options.optional),
  },
  (a) =>
    withConnection(a, async (conn, io) => {
      if (a.cron.length === 0) throw new UsageError("--cron is required (e.g. --cron '*/5 * * * *')");
      if (Option.isNone(a.operation)) throw new UsageError("--operation is required");
      const d = definition(a, a.pauseOnFailure ? true : undefined);
      const { schedule } = await conn.schedules.createSchedule({
        scheduleId: opt(a.scheduleId) ?? "",
        requestId: opt(a.requestId) ?? "",
        schedule: {
          spec: d.spec,
          action: d.action,
          policy: d.policy,
          state: { ...d.state, paused: a.paused, note: opt(a.note) ?? "" },
        },
      });
      if (conn.output === "text" && schedule !== undefined) io.out(`Created schedule ${schedule.scheduleId}.\n`);
      printSchedule(conn, schedule, io);
    }),
).pipe(Command.withDescription("Create a schedule that runs an operation on cron times (as you: you must be allowed to run it)."));

const list = Command.make(
  "list",
  {
    ...connectionOptions,
    operation: Options.text("operation").pipe(Options.withDescription("Only schedules running this operation."), Options.optional),
    paused: Options.choice("paused", ["true", "false"]).pipe(Options.withDescription("Only paused (true) or only active (false) schedules."), Options.optional),
    label: Options.text("label").pipe(Options.withDescription("Only schedules with this key=value action label (repeatable)."), Options.repeated),
    pageSize: Options.integer("page-size").pipe(Options.optional),
    pageToken: Options.text("page-token").pipe(Options.optional),
    all: Options.boolean("all").pipe(Options.withDescription("Follow every page.")),
  },
  (a) =>
    withConnection(a, async (conn, io) => {
      const request = {
        operation: opt(a.operation) ?? "",
        labels: parseLabels("--label", a.label),
        pageSize: opt(a.pageSize) ?? 0,
        pageToken: opt(a.pageToken) ?? "",
        ...(Option.isSome(a.paused) ? { paused: a.paused.value === "true" } : {}),
      };
      const schedules: Schedule[] = [];
      let next = "";
      for (;;) {
        const page = await conn.schedules.listSchedules(request);
        schedules.push(...page.schedules);
        next = page.nextPageToken;
        if (!a.all || next === "") break;
        request.pageToken = next;
      }
      if (conn.output === "json") {
        io.out(jsonText(toJson(ListSchedulesResponseSchema, { $typeName: "orchestrator.v1.ListSchedulesResponse", schedules, nextPageToken: next }), false));
        return;
      }
      if (schedules.length === 0) io.out("No schedules.\n");
      else {
        io.out(
          table(
            ["SCHEDULE", "OPERATION", "CRON", "ZONE", "STATE", "NEXT RUN", "RUNS"],
            schedules.map((s) => [
              s.scheduleId,
              s.action?.operation ?? "",
              (s.spec?.cronExpressions ?? []).join(" | "),
              zoneOf(s),
              s.state?.paused === true ? "paused" : "active",
              s.info?.nextRunTimes[0] === undefined ? "-" : iso(s.info.nextRunTimes[0]),
              String(s.info?.runCount ?? 0n),
            ]),
          ),
        );
      }
      if (next !== "") io.out(`More: --page-token ${next} (or --all)\n`);
    }),
).pipe(Command.withDescription("List schedules, by id."));

const get = Command.make("get", { ...connectionOptions, scheduleId }, (a) =>
  withConnection(a, async (conn, io) => printSchedule(conn, (await conn.schedules.getSchedule({ scheduleId: a.scheduleId })).schedule, io)),
).pipe(Command.withDescription("Show a schedule: definition, state, next and recent runs."));

const update = Command.make(
  "update",
  {
    ...connectionOptions,
    ...definitionOptions,
    scheduleId,
    pauseOnFailure: Options.choice("pause-on-failure", ["true", "false"]).pipe(Options.withDescription("Pause the schedule when a run fails."), Options.optional),
    etag: Options.text("etag").pipe(Options.withDescription("Apply only if the schedule still has this etag."), Options.optional),
  },
  (a) =>
    withConnection(a, async (conn, io) => {
      const d = definition(a, Option.isSome(a.pauseOnFailure) ? a.pauseOnFailure.value === "true" : undefined);
      if (d.paths.length === 0) throw new UsageError("nothing to change: give at least one of --cron, --time-zone, --operation, --input, --label, --overlap, …");
      const { schedule } = await conn.schedules.updateSchedule({
        schedule: { scheduleId: a.scheduleId, spec: d.spec, action: d.action, policy: d.policy, state: d.state },
        updateMask: { paths: d.paths },
        etag: opt(a.etag) ?? "",
        requestId: opt(a.requestId) ?? "",
      });
      if (conn.output === "text") io.out(`Updated schedule ${a.scheduleId} (${d.paths.join(", ")}).\n`);
      printSchedule(conn, schedule, io);
    }),
).pipe(Command.withDescription("Change a schedule: each flag given replaces that field (e.g. --cron replaces every cron expression)."));

const note = Options.text("note").pipe(Options.withDescription("Why (stored on the schedule and in the audit log)."), Options.optional);
const requestId = Options.text("request-id").pipe(Options.withDescription("Idempotency key."), Options.optional);

const pause = Command.make("pause", { ...connectionOptions, scheduleId, note, requestId }, (a) =>
  withConnection(a, async (conn, io) => {
    const { schedule } = await conn.schedules.pauseSchedule({ scheduleId: a.scheduleId, note: opt(a.note) ?? "", requestId: opt(a.requestId) ?? "" });
    if (conn.output === "json") printSchedule(conn, schedule, io);
    else io.out(`Paused schedule ${a.scheduleId}${schedule?.state?.note ? ` (${schedule.state.note})` : ""}.\n`);
  }),
).pipe(Command.withDescription("Pause a schedule: its cron slots stop firing until resumed."));

const resume = Command.make("resume", { ...connectionOptions, scheduleId, note, requestId }, (a) =>
  withConnection(a, async (conn, io) => {
    const { schedule } = await conn.schedules.resumeSchedule({ scheduleId: a.scheduleId, note: opt(a.note) ?? "", requestId: opt(a.requestId) ?? "" });
    if (conn.output === "json") printSchedule(conn, schedule, io);
    else {
      const nextRun = schedule?.info?.nextRunTimes[0];
      io.out(`Resumed schedule ${a.scheduleId}${nextRun === undefined ? "" : `; next run ${iso(nextRun)}`}.\n`);
    }
  }),
).pipe(Command.withDescription("Resume a paused schedule from its next slot."));

const trigger = Command.make(
  "trigger",
  {
    ...connectionOptions,
    scheduleId,
    overlap: Options.text("overlap").pipe(Options.withDescription(`Overlap policy for this run only: ${overlapChoices}.`), Options.optional),
    requestId,
  },
  (a) =>
    withConnection(a, async (conn, io) => {
      const response = await conn.schedules.triggerSchedule({
        scheduleId: a.scheduleId,
        requestId: opt(a.requestId) ?? "",
        ...(Option.isSome(a.overlap) ? { overlapPolicy: parseEnum("--overlap", OverlapPolicy, "OVERLAP_POLICY_", a.overlap.value) as OverlapPolicy } : {}),
      });
      if (conn.output === "json") {
        io.out(jsonText(toJson(TriggerScheduleResponseSchema, response), false));
        return;
      }
      const outcome = (TriggerOutcome[response.outcome] ?? String(response.outcome)).toLowerCase();
      const id = response.run?.executionId ?? "";
      io.out(`Triggered schedule ${a.scheduleId}: ${outcome}${id === "" ? "" : `, execution ${id}`}.\n`);
    }),
).pipe(Command.withDescription("Run the schedule's action now, once (works when paused)."));

const remove = Command.make(
  "delete",
  {
    ...connectionOptions,
    scheduleId,
    etag: Options.text("etag").pipe(Options.withDescription("Delete only if the schedule still has this etag."), Options.optional),
    allowMissing: Options.boolean("allow-missing").pipe(Options.withDescription("Succeed when there is no such schedule.")),
    requestId,
  },
  (a) =>
    withConnection(a, async (conn, io) => {
      await conn.schedules.deleteSchedule({ scheduleId: a.scheduleId, etag: opt(a.etag) ?? "", allowMissing: a.allowMissing, requestId: opt(a.requestId) ?? "" });
      io.out(conn.output === "json" ? jsonText({ scheduleId: a.scheduleId, deleted: true }, false) : `Deleted schedule ${a.scheduleId}.\n`);
    }),
).pipe(Command.withDescription("Delete a schedule (executions it started keep running)."));

const preview = Command.make(
  "preview",
  {
    ...connectionOptions,
    scheduleId: scheduleId.pipe(Args.withDescription("An existing schedule; or give --cron (and --time-zone) to preview an unsaved spec."), Args.optional),
    cron: definitionOptions.cron,
    timeZone: definitionOptions.timeZone,
    count: Options.integer("count").pipe(Options.withAlias("n"), Options.withDescription("How many fire times (default 10)."), Options.withDefault(10)),
    startTime: Options.text("start-time").pipe(Options.withDescription("From this RFC 3339 time (default now)."), Options.optional),
    endTime: Options.text("end-time").pipe(Options.withDescription("Until this RFC 3339 time."), Options.optional),
  },
  (a) =>
    withConnection(a, async (conn, io) => {
      const id = opt(a.scheduleId);
      if ((id === undefined) === (a.cron.length === 0)) throw new UsageError("give either a SCHEDULE_ID or --cron (with --time-zone), not both");
      let zone = opt(a.timeZone) ?? "UTC";
      if (id !== undefined) {
        if (Option.isSome(a.timeZone)) throw new UsageError("--time-zone applies to --cron; a schedule has its own zone");
        const { schedule } = await conn.schedules.getSchedule({ scheduleId: id });
        zone = schedule === undefined ? "UTC" : zoneOf(schedule);
      }
      const response = await conn.schedules.listScheduleMatchingTimes({
        source: id !== undefined ? { case: "scheduleId", value: id } : { case: "spec", value: { cronExpressions: [...a.cron], timeZone: zone } },
        maxTimes: a.count,
        ...(Option.isSome(a.startTime) ? { startTime: parseTime("--start-time", a.startTime.value) } : {}),
        ...(Option.isSome(a.endTime) ? { endTime: parseTime("--end-time", a.endTime.value) } : {}),
      });
      if (conn.output === "json") {
        io.out(jsonText(toJson(ListScheduleMatchingTimesResponseSchema, response), false));
        return;
      }
      const local = localZone();
      const times: Timestamp[] = response.matchingTimes;
      if (times.length === 0) {
        io.out("No fire times in that window.\n");
        return;
      }
      io.out(
        table(
          ["#", `IN ${zone}`, `LOCAL (${local})`],
          times.map((t, i) => [String(i + 1), inZone(timestampDate(t), zone), inZone(timestampDate(t), local)]),
        ),
      );
      // Without --end-time the window is endless: "truncated" only says --count was reached.
      if (response.truncated && Option.isSome(a.endTime)) io.out(`More follow before --end-time (raise --count).\n`);
    }),
).pipe(Command.withDescription("Preview the next fire times in the schedule's zone and in local time (daylight saving included)."));

const runLine = (r: ScheduleRun | undefined): string => {
  if (r === undefined) return "";
  const parts = [`slot ${iso(r.nominalTime)}`, (ScheduleRunKind[r.kind] ?? "").toLowerCase()];
  if (r.executionId !== "") parts.push(`execution ${r.executionId}`);
  if (r.state !== 0) parts.push(stateName(r.state));
  if (r.error !== undefined) parts.push(`${r.error.type}: ${r.error.message}`);
  return parts.filter((p) => p !== "").join("  ");
};

const watch = Command.make(
  "watch",
  {
    ...connectionOptions,
    scheduleId,
    limit: Options.integer("limit").pipe(Options.withDescription("Stop after this many events (the snapshot not counted)."), Options.optional),
  },
  (a) =>
    withConnection(a, async (conn, io) => {
      const abort = new AbortController();
      const stop = () => abort.abort();
      process.once("SIGINT", stop);
      let seen = 0;
      try {
        for await (const { event } of conn.schedules.watchSchedule({ scheduleId: a.scheduleId }, { signal: abort.signal })) {
          if (event === undefined) continue;
          if (conn.output === "json") io.out(JSON.stringify(toJson(ScheduleEventSchema, event)) + "\n");
          else if (event.kind.case === "snapshot") {
            const s = event.kind.value;
            const next = s.info?.nextRunTimes[0];
            io.out(`Watching schedule ${s.scheduleId} (${s.state?.paused === true ? "paused" : "active"}${next === undefined ? "" : `; next run ${iso(next)}`}); Ctrl-C stops.\n`);
          } else if (event.kind.case !== undefined) {
            io.out(`${iso(event.time)}  ${event.kind.case.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}  ${runLine(event.kind.value)}\n`);
          }
          if (event.kind.case !== "snapshot" && Option.isSome(a.limit) && ++seen >= a.limit.value) return;
        }
        if (conn.output === "text") io.out(`Schedule ${a.scheduleId} was deleted.\n`);
      } catch (e) {
        if (!abort.signal.aborted) throw e;
      } finally {
        process.off("SIGINT", stop);
      }
    }),
).pipe(Command.withDescription("Follow a schedule: each slot fired, buffered, skipped or missed, and each run's end (until Ctrl-C, or it is deleted)."));

const backfill = Command.make(
  "backfill",
  {
    ...connectionOptions,
    scheduleId,
    startTime: Options.text("start-time").pipe(Options.withDescription("Start of the past window, RFC 3339 (inclusive).")),
    endTime: Options.text("end-time").pipe(Options.withDescription("End of the window, RFC 3339 (exclusive, not in the future); `now` works.")),
    overlap: Options.text("overlap").pipe(Options.withDescription(`Overlap policy among the runs (default buffer-all: every slot, one after another): ${overlapChoices}.`), Options.optional),
    requestId,
  },
  (a) =>
    withConnection(a, async (conn, io) => {
      const response = await conn.schedules.backfillSchedule({
        scheduleId: a.scheduleId,
        startTime: parseTime("--start-time", a.startTime),
        endTime: parseTime("--end-time", a.endTime),
        requestId: opt(a.requestId) ?? "",
        ...(Option.isSome(a.overlap) ? { overlapPolicy: parseEnum("--overlap", OverlapPolicy, "OVERLAP_POLICY_", a.overlap.value) as OverlapPolicy } : {}),
      });
      if (conn.output === "json") {
        io.out(jsonText(toJson(BackfillScheduleResponseSchema, response), false));
        return;
      }
      const n = response.nominalTimes.length;
      io.out(`Queued ${n} run${n === 1 ? "" : "s"} of schedule ${a.scheduleId}${n === 0 ? "" : ":"}\n` + response.nominalTimes.map((t) => `  ${iso(t)}\n`).join(""));
    }),
).pipe(Command.withDescription("Run the slots of a past window now (as ListScheduleMatchingTimes lists them), oldest first."));

export const scheduleCommands = Command.make("schedules").pipe(
  Command.withDescription("Manage cron schedules."),
  Command.withSubcommands([create, list, get, update, pause, resume, trigger, remove, preview, watch, backfill]),
);
