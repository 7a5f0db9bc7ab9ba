/**
 * `orchestrator audit tail|list`.
 *
 * `tail` follows AuditService.Subscribe and, when the stream breaks (server restart, network,
 * SUBSCRIBER_TOO_SLOW), subscribes again with after_sequence = the last sequence seen (event or
 * heartbeat), so nothing is lost or repeated; errors that a retry cannot fix (bad filter,
 * permission, an expired sequence) end it with exit code 3.
 */
import { create, toJson, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { Command, Options } from "@effect/cli";
import * as Option from "effect/Option";
import {
  AuditEventOrder,
  AuditEventSchema,
  AuditEventType,
  Decision,
  ListAuditEventsResponseSchema,
  type AuditEvent,
  type AuditFilterSchema,
  type SubscribeRequestSchema,
} from "../../gen/orchestrator/v1/audit_service_pb.js";
import { opt, withConnection } from "./command.js";
import { connectionOptions, type Connection } from "./connection.js";
import { ExitCode, humanDuration, iso, jsonText, parseEnum, styleFor, UsageError, type Io, type Style } from "./output.js";
import { describeError } from "./rpc-error.js";

const filterOptions = {
  type: Options.text("type").pipe(
    Options.withDescription("Only events of this type (repeatable), e.g. execution-succeeded, auth-denied, schedule-fired."),
    Options.repeated,
  ),
  principal: Options.text("principal").pipe(Options.withDescription("Only events of this principal subject."), Options.optional),
  tenant: Options.text("tenant").pipe(Options.withDescription("Only events of this tenant."), Options.optional),
  operation: Options.text("operation").pipe(Options.withDescription("Only events about this operation."), Options.optional),
  execution: Options.text("execution").pipe(Options.withDescription("Only events about this execution."), Options.optional),
  schedule: Options.text("schedule").pipe(Options.withDescription("Only events about this schedule."), Options.optional),
};

type FilterArgs = {
  readonly type: ReadonlyArray<string>;
  readonly principal: Option.Option<string>;
  readonly tenant: Option.Option<string>;
  readonly operation: Option.Option<string>;
  readonly execution: Option.Option<string>;
  readonly schedule: Option.Option<string>;
};

function filterOf(a: FilterArgs): MessageInitShape<typeof AuditFilterSchema> {
  return {
    types: a.type.map((t) => parseEnum("--type", AuditEventType, "AUDIT_EVENT_TYPE_", t) as AuditEventType),
    principalSubject: opt(a.principal) ?? "",
    tenant: opt(a.tenant) ?? "",
    operation: opt(a.operation) ?? "",
    executionId: opt(a.execution) ?? "",
    scheduleId: opt(a.schedule) ?? "",
  };
}

const typeName = (t: AuditEventType) => AuditEventType[t] ?? `TYPE_${t}`;

/** One event on one line: sequence, time, type, who, decision, what, details. */
export function eventLine(e: AuditEvent, style: Style): string {
  const parts = [style.dim(String(e.sequence).padStart(6)), iso(e.time), style.bold(typeName(e.type))];
  if (e.principal !== undefined) parts.push(`${e.principal.subject}@${e.principal.tenant === "" ? "default" : e.principal.tenant}`);
  if (e.decision !== Decision.UNSPECIFIED) {
    const d = Decision[e.decision] ?? "";
    parts.push(e.decision === Decision.DENY ? style.red(d) : style.green(d));
  }
  if (e.reason !== "") parts.push(e.reason);
  if (e.operation !== "") parts.push(`operation=${e.operation}`);
  if (e.executionId !== "") parts.push(`execution=${e.executionId}`);
  if (e.scheduleId !== "") parts.push(`schedule=${e.scheduleId}`);
  if (e.details !== undefined && Object.keys(e.details).length > 0) parts.push(style.dim(JSON.stringify(e.details)));
  return parts.join("  ");
}

/** Codes a new subscription cannot fix. */
const permanent = new Set<Code>([
  Code.InvalidArgument,
  Code.NotFound,
  Code.PermissionDenied,
  Code.Unauthenticated,
  Code.Unimplemented,
  Code.OutOfRange,
  Code.FailedPrecondition,
  Code.AlreadyExists,
]);

export interface TailArgs {
  readonly filter: MessageInitShape<typeof AuditFilterSchema>;
  /** Deliver events with sequence ≥ this; undefined: from now (or fromEarliest). */
  readonly fromSequence: number | undefined;
  readonly fromEarliest: boolean;
  /** Stop after this many events. */
  readonly limit: number | undefined;
  /** Give up after this many consecutive failed reconnections (undefined: never). */
  readonly maxReconnects: number | undefined;
}

export async function tail(conn: Connection, args: TailArgs, io: Io, style: Style, signal: AbortSignal): Promise<number> {
  const json = conn.output === "json";
  let last: bigint | undefined = args.fromSequence === undefined ? undefined : BigInt(Math.max(0, args.fromSequence - 1));
  let delivered = 0;
  let failures = 0;
  for (;;) {
    const start: MessageInitShape<typeof SubscribeRequestSchema>["start"] =
      last !== undefined
        ? { case: "afterSequence", value: last }
        : args.fromEarliest
          ? { case: "fromEarliest", value: {} }
          : { case: "fromNow", value: {} };
    try {
      for await (const response of conn.audit.subscribe({ filter: args.filter, start }, { signal })) {
        failures = 0;
        const k = response.kind;
        if (k.case === "heartbeat") {
          if (last === undefined || k.value.lastSequence > last) last = k.value.lastSequence;
          continue;
        }
        if (k.case !== "event") continue;
        const e = k.value;
        if (last !== undefined && e.sequence <= last) continue; // never print one twice
        last = e.sequence;
        io.out(json ? JSON.stringify(toJson(AuditEventSchema, e)) + "\n" : eventLine(e, style) + "\n");
        delivered += 1;
        if (args.limit !== undefined && delivered >= args.limit) return ExitCode.ok;
      }
      // The stream does not end on its own; an end is a server going away: subscribe again.
      throw new ConnectError("the stream ended", Code.Unavailable);
    } catch (e) {
      if (signal.aborted) return ExitCode.ok;
      const err = ConnectError.from(e);
      if (permanent.has(err.code)) throw e;
      failures += 1;
      if (args.maxReconnects !== undefined && failures > args.maxReconnects) throw e;
      const delayMs = Math.min(10_000, 250 * 2 ** Math.min(failures - 1, 6));
      const described = describeError(e);
      const where = last === undefined ? (args.fromEarliest ? "from the earliest event" : "from now (no sequence seen yet)") : `after sequence ${last}`;
      if (json) io.err(JSON.stringify({ reconnecting: { afterSequence: last?.toString() ?? null, delayMs, error: described } }) + "\n");
      else io.err(style.yellow(`audit tail: ${described.code}: ${described.message}; resubscribing ${where} in ${humanDuration(delayMs)}\n`));
      const resumed = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(true), delayMs);
        signal.addEventListener("abort", () => (clearTimeout(timer), resolve(false)), { once: true });
      });
      if (!resumed) return ExitCode.ok;
    }
  }
}

const tailCommand = Command.make(
  "tail",
  {
    ...connectionOptions,
    ...filterOptions,
    fromSequence: Options.integer("from-sequence").pipe(Options.withDescription("Start at this sequence number (inclusive), then follow."), Options.optional),
    fromEarliest: Options.boolean("from-earliest").pipe(Options.withDescription("Start at the oldest retained event, then follow.")),
    limit: Options.integer("limit").pipe(Options.withDescription("Stop after this many events."), Options.optional),
  },
  (a) =>
    withConnection(a, async (conn, io) => {
      if (Option.isSome(a.fromSequence) && a.fromSequence.value < 1) throw new UsageError("--from-sequence: sequences start at 1");
      if (Option.isSome(a.fromSequence) && a.fromEarliest) throw new UsageError("give --from-sequence or --from-earliest, not both");
      const abort = new AbortController();
      const stop = () => abort.abort();
      process.once("SIGINT", stop);
      try {
        return await tail(
          conn,
          { filter: filterOf(a), fromSequence: opt(a.fromSequence), fromEarliest: a.fromEarliest, limit: opt(a.limit), maxReconnects: undefined },
          io,
          styleFor(process.stdout),
          abort.signal,
        );
      } finally {
        process.off("SIGINT", stop);
      }
    }),
).pipe(
  Command.withDescription(
    "Follow the audit log (from now, --from-sequence N or --from-earliest) until Ctrl-C or --limit; reconnects by itself after a disconnect, from the last sequence seen.",
  ),
);

const listCommand = Command.make(
  "list",
  {
    ...connectionOptions,
    ...filterOptions,
    pageSize: Options.integer("page-size").pipe(Options.withDescription("Events per page (default 50, at most 1000)."), Options.optional),
    pageToken: Options.text("page-token").pipe(Options.optional),
    all: Options.boolean("all").pipe(Options.withDescription("Follow every page.")),
    order: Options.choice("order", ["asc", "desc"]).pipe(Options.withDescription("By sequence: asc (oldest first, default) or desc."), Options.withDefault("asc" as const)),
  },
  (a) =>
    withConnection(a, async (conn, io) => {
      const request = {
        filter: filterOf(a),
        pageSize: opt(a.pageSize) ?? 0,
        pageToken: opt(a.pageToken) ?? "",
        order: a.order === "desc" ? AuditEventOrder.SEQUENCE_DESCENDING : AuditEventOrder.SEQUENCE_ASCENDING,
      };
      const merged = create(ListAuditEventsResponseSchema);
      for (;;) {
        const page = await conn.audit.listAuditEvents(request);
        merged.events.push(...page.events);
        merged.nextPageToken = page.nextPageToken;
        if (!a.all || page.nextPageToken === "") break;
        request.pageToken = page.nextPageToken;
      }
      if (conn.output === "json") {
        io.out(jsonText(toJson(ListAuditEventsResponseSchema, merged), false));
        return;
      }
      const style = styleFor(process.stdout);
      if (merged.events.length === 0) io.out("No audit events.\n");
      else io.out(merged.events.map((e) => eventLine(e, style)).join("\n") + "\n");
      if (merged.nextPageToken !== "") io.out(`More: --page-token ${merged.nextPageToken} (or --all)\n`);
    }),
).pipe(Command.withDescription("List stored audit events, oldest first."));

export const auditCommands = Command.make("audit").pipe(
  Command.withDescription("Read and follow the audit log."),
  Command.withSubcommands([tailCommand, listCommand]),
);
