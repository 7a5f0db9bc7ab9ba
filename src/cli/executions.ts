/**
 * `orchestrator executions list|get|cancel`.
 */
import { toJson } from "@bufbuild/protobuf";
import { timestampDate, ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  ExecutionOrder,
  ExecutionSchema,
  ExecutionState,
  ListExecutionsResponseSchema,
  type Execution,
  type ListExecutionsResponse,
} from "../../gen/orchestrator/v1/execution_service_pb.js";
import type { Principal } from "../../gen/orchestrator/v1/common_pb.js";
import { create } from "@bufbuild/protobuf";
import type { Connection } from "./connection.js";
import { durationMs, enumLabel, humanDuration, iso, jsonText, parseEnum, table, type Io, type Style } from "./output.js";

export const stateName = (s: ExecutionState): string => ExecutionState[s] ?? String(s);

export const principalText = (p: Principal | undefined): string =>
  p === undefined ? "" : `${p.subject} (tenant ${p.tenant === "" ? "default" : p.tenant}; roles ${p.roles.join(", ") || "none"})`;

function elapsed(e: Execution): string {
  if (e.createTime === undefined) return "";
  const end = e.endTime === undefined ? new Date() : timestampDate(e.endTime);
  return humanDuration(end.getTime() - timestampDate(e.createTime).getTime());
}

export interface ListArgs {
  readonly operation: string | undefined;
  readonly states: ReadonlyArray<string>;
  readonly scheduleId: string | undefined;
  readonly principal: string | undefined;
  readonly labels: Record<string, string>;
  readonly pageSize: number | undefined;
  readonly pageToken: string | undefined;
  readonly all: boolean;
  readonly order: "desc" | "asc";
}

export async function listExecutions(conn: Connection, args: ListArgs, io: Io): Promise<void> {
  const states = args.states.map((s) => parseEnum("--state", ExecutionState, "EXECUTION_STATE_", s) as ExecutionState);
  const request = {
    operation: args.operation ?? "",
    states,
    scheduleId: args.scheduleId ?? "",
    principalSubject: args.principal ?? "",
    labels: args.labels,
    pageSize: args.pageSize ?? 0,
    pageToken: args.pageToken ?? "",
    order: args.order === "asc" ? ExecutionOrder.CREATE_TIME_ASCENDING : ExecutionOrder.CREATE_TIME_DESCENDING,
  };
  const merged: ListExecutionsResponse = create(ListExecutionsResponseSchema);
  for (;;) {
    const page = await conn.executions.listExecutions(request);
    merged.executions.push(...page.executions);
    merged.nextPageToken = page.nextPageToken;
    if (!args.all || page.nextPageToken === "") break;
    request.pageToken = page.nextPageToken;
  }
  if (conn.output === "json") {
    io.out(jsonText(toJson(ListExecutionsResponseSchema, merged), false));
    return;
  }
  if (merged.executions.length === 0) io.out("No executions.\n");
  else {
    io.out(
      table(
        ["EXECUTION", "OPERATION", "STATE", "ATTEMPTS", "CREATED", "DURATION", "SCHEDULE"],
        merged.executions.map((e) => [
          e.executionId,
          e.operation,
          stateName(e.state),
          String(e.attempts.length),
          iso(e.createTime),
          elapsed(e),
          e.scheduleId,
        ]),
      ),
    );
  }
  if (merged.nextPageToken !== "") io.out(`More: --page-token ${merged.nextPageToken} (or --all)\n`);
}

export function describeExecution(e: Execution, style: Style): string {
  const rows: Array<[string, string]> = [
    ["Execution", e.executionId],
    ["Operation", e.operation],
    ["State", stateName(e.state)],
    ["Principal", principalText(e.principal)],
    ["Created", iso(e.createTime)],
  ];
  if (e.startTime !== undefined) rows.push(["Started", iso(e.startTime)]);
  if (e.endTime !== undefined) rows.push(["Ended", `${iso(e.endTime)} (${elapsed(e)})`]);
  if (e.nextAttemptTime !== undefined) rows.push(["Next attempt", iso(e.nextAttemptTime)]);
  if (e.requestId !== "") rows.push(["Request id", e.requestId]);
  if (e.scheduleId !== "") rows.push(["Schedule", `${e.scheduleId} (slot ${iso(e.nominalTime)})`]);
  if (Object.keys(e.labels).length > 0) rows.push(["Labels", Object.entries(e.labels).map(([k, v]) => `${k}=${v}`).join(", ")]);
  if (e.traceId !== "") rows.push(["Trace", e.traceId]);
  rows.push(["Input", JSON.stringify(e.input ?? {})]);
  if (e.tokenUsage !== undefined && e.tokenUsage.totalTokens > 0n) {
    rows.push(["Tokens", `${e.tokenUsage.totalTokens} (in ${e.tokenUsage.inputTokens}, out ${e.tokenUsage.outputTokens})`]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  let out = rows.map(([k, v]) => `${style.bold(k.padEnd(width))}  ${v}`).join("\n") + "\n";
  if (e.attempts.length > 0) {
    out += `${style.bold("Attempts")}\n`;
    for (const a of e.attempts) {
      const last = a.number === e.attempts.length;
      const outcome =
        a.error !== undefined
          ? `failed: ${a.error.type}: ${a.error.message}`
          : a.endTime === undefined
            ? "running"
            : last && e.state === ExecutionState.SUCCEEDED
              ? "succeeded"
              : `ended (${stateName(e.state)})`;
      const retry = a.retryDelay === undefined ? "" : `; retry after ${humanDuration(durationMs(a.retryDelay))}`;
      out += `  ${a.number}  ${iso(a.startTime)}  ${outcome}${retry}\n`;
    }
  }
  if (e.result !== undefined) out += `${style.bold("Result")}\n${jsonText(toJson(ValueSchema, e.result), true)}`;
  if (e.error !== undefined) {
    const details = e.error.details !== undefined && Object.keys(e.error.details).length > 0 ? ` ${JSON.stringify(e.error.details)}` : "";
    out += `${style.bold("Error")}  ${e.error.type}: ${e.error.message}${details}\n`;
  }
  return out;
}

export async function getExecution(conn: Connection, executionId: string, io: Io, style: Style): Promise<void> {
  const { execution } = await conn.executions.getExecution({ executionId });
  if (execution === undefined) return;
  io.out(conn.output === "json" ? jsonText(toJson(ExecutionSchema, execution), false) : describeExecution(execution, style));
}

export async function cancelExecution(
  conn: Connection,
  args: { executionId: string; reason: string | undefined; requestId: string | undefined },
  io: Io,
): Promise<void> {
  const { execution } = await conn.executions.cancelExecution({ executionId: args.executionId, reason: args.reason ?? "", requestId: args.requestId ?? "" });
  if (conn.output === "json") {
    io.out(jsonText(execution === undefined ? {} : toJson(ExecutionSchema, execution), false));
    return;
  }
  io.out(`Execution ${args.executionId}: ${execution === undefined ? "cancel requested" : enumLabel(stateName(execution.state), "")}\n`);
}
