/**
 * Validation of a schedule's definition, with field paths as the v1 contract names them
 * (`schedule.spec.cron_expressions[0]`, `schedule.action.input.url`, …). Pure: the Scheduler
 * adds the checks that need the registry or the store.
 */
import { Either } from "effect";
import type { FieldViolation } from "../errors.js";
import { validateRetryPolicy } from "../retry.js";
import type { ScheduleAction, SchedulePolicy, ScheduleState } from "./model.js";
import { compileSpec, type CompiledSpec, type ScheduleSpec } from "./spec.js";

const hour = 3_600_000;
const day = 24 * hour;
export const defaultCatchupWindowMs = 5 * 60_000;
const labelKey = /^[a-z][a-z0-9_.\-/]{0,62}$/;
const scheduleIdPattern = /^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
export const maxNote = 1024;
const maxRequestId = 128;

export const validateScheduleId = (id: string, field: string): FieldViolation[] =>
  scheduleIdPattern.test(id)
    ? []
    : [{ field, description: "must be 1 to 63 lowercase letters, digits and '-', starting with a letter and not ending with '-'" }];

export const validateRequestId = (id: string | undefined): FieldViolation[] =>
  id === undefined || id === ""
    ? []
    : id.length > maxRequestId || !/^[\x20-\x7e]+$/.test(id)
      ? [{ field: "request_id", description: `must be at most ${maxRequestId} printable ASCII characters` }]
      : [];

export const validateNote = (note: string, field: string): FieldViolation[] =>
  note.length > maxNote ? [{ field, description: `must be at most ${maxNote} characters` }] : [];

/** The compiled spec, or its violation renamed under `prefix` (e.g. `schedule.spec`). */
export function checkSpec(spec: ScheduleSpec, prefix: string): Either.Either<CompiledSpec, FieldViolation[]> {
  return Either.mapLeft(compileSpec(spec), (e) => [{ field: e.field.replace(/^spec/, prefix), description: e.reason }]);
}

export function validatePolicy(p: SchedulePolicy, prefix: string): FieldViolation[] {
  const v: FieldViolation[] = [];
  if (p.catchupWindowMs < 10_000 || p.catchupWindowMs > 365 * day) {
    v.push({ field: `${prefix}.catchup_window`, description: "must be between 10 seconds and 365 days" });
  }
  return v;
}

export function validateState(s: ScheduleState, prefix: string): FieldViolation[] {
  const v = validateNote(s.note, `${prefix}.note`);
  if (s.remainingRuns !== undefined && !(Number.isSafeInteger(s.remainingRuns) && s.remainingRuns >= 0)) {
    v.push({ field: `${prefix}.remaining_runs`, description: "must not be negative" });
  }
  return v;
}

/** The action's own fields (the operation's existence, permission and input schema are checked by the Scheduler). */
export function validateAction(a: ScheduleAction, prefix: string, maxTimeoutMs: number, maxInputBytes: number): FieldViolation[] {
  const v: FieldViolation[] = [...validateRetryPolicy(a.retry, `${prefix}.retry_policy`)];
  if (a.operation === "") v.push({ field: `${prefix}.operation`, description: "is required" });
  const span = (field: string, ms: number | undefined) => {
    if (ms === undefined) return;
    if (!(ms > 0)) v.push({ field: `${prefix}.${field}`, description: "must be positive" });
    else if (ms > maxTimeoutMs) v.push({ field: `${prefix}.${field}`, description: `must be at most ${maxTimeoutMs / hour}h` });
  };
  span("timeout", a.timeoutMs);
  span("attempt_timeout", a.attemptTimeoutMs);
  const labels = Object.entries(a.labels);
  if (labels.length > 64) v.push({ field: `${prefix}.labels`, description: "at most 64 labels" });
  for (const [k, value] of labels) {
    if (!labelKey.test(k)) v.push({ field: `${prefix}.labels[${JSON.stringify(k)}]`, description: "keys are 1-63 of [a-z0-9_.-/], starting with a letter" });
    if (value.length > 256) v.push({ field: `${prefix}.labels[${JSON.stringify(k)}]`, description: "values are at most 256 characters" });
  }
  if (Buffer.byteLength(JSON.stringify(a.input)) > maxInputBytes) v.push({ field: `${prefix}.input`, description: `must be at most ${maxInputBytes} bytes as JSON` });
  return v;
}
