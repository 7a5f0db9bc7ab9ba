/**
 * An RPC error as the CLI shows it: the canonical code, the message, and the google.rpc details
 * the server attached (ErrorInfo reason/metadata, BadRequest field violations, RetryInfo,
 * QuotaFailure, PreconditionFailure) — never a stack trace.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  PreconditionFailureSchema,
  QuotaFailureSchema,
  RetryInfoSchema,
} from "../../gen/google/rpc/error_details_pb.js";
import { durationMs, ExitCode, humanDuration, type Style } from "./output.js";

export interface DescribedError {
  /** Canonical gRPC code name, UPPER_SNAKE: NOT_FOUND, INVALID_ARGUMENT … */
  readonly code: string;
  readonly message: string;
  readonly reason?: string;
  readonly domain?: string;
  readonly metadata?: Record<string, string>;
  readonly fieldViolations?: ReadonlyArray<{ readonly field: string; readonly description: string }>;
  readonly retryAfterMs?: number;
  readonly quotaViolations?: ReadonlyArray<{ readonly subject: string; readonly description: string }>;
  readonly preconditionViolations?: ReadonlyArray<{ readonly type: string; readonly subject: string; readonly description: string }>;
}

/** OUT_OF_RANGE from Code.OutOfRange. */
export const codeName = (code: Code): string => Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();

/** Node's errors when the server cannot be reached at all (before any gRPC status). */
const networkErrorCodes = new Set(["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ETIMEDOUT", "EPIPE", "ERR_HTTP2_STREAM_CANCEL"]);

export function describeError(e: unknown): DescribedError {
  const err = ConnectError.from(e);
  const out: {
    code: string;
    message: string;
    reason?: string;
    domain?: string;
    metadata?: Record<string, string>;
    fieldViolations?: Array<{ field: string; description: string }>;
    retryAfterMs?: number;
    quotaViolations?: Array<{ subject: string; description: string }>;
    preconditionViolations?: Array<{ type: string; subject: string; description: string }>;
  } = { code: codeName(err.code), message: err.rawMessage };
  const info = err.findDetails(ErrorInfoSchema)[0];
  if (info !== undefined) {
    out.reason = info.reason;
    out.domain = info.domain;
    if (Object.keys(info.metadata).length > 0) out.metadata = { ...info.metadata };
  }
  const violations = err.findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations);
  if (violations.length > 0) out.fieldViolations = violations.map((v) => ({ field: v.field, description: v.description }));
  const retry = err.findDetails(RetryInfoSchema)[0];
  if (retry !== undefined) out.retryAfterMs = durationMs(retry.retryDelay);
  const quota = err.findDetails(QuotaFailureSchema).flatMap((q) => q.violations);
  if (quota.length > 0) out.quotaViolations = quota.map((v) => ({ subject: v.subject, description: v.description }));
  const pre = err.findDetails(PreconditionFailureSchema).flatMap((p) => p.violations);
  if (pre.length > 0) out.preconditionViolations = pre.map((v) => ({ type: v.type, subject: v.subject, description: v.description }));
  return out;
}

/** Whether the failure means "could not talk to the server" rather than "the server said no". */
export function isUnreachable(e: unknown): boolean {
  const err = ConnectError.from(e);
  if (err.code === Code.Unavailable) return true;
  const cause = (e instanceof ConnectError ? e.cause : e) as { code?: unknown } | undefined;
  return typeof cause?.code === "string" && (networkErrorCodes.has(cause.code) || cause.code.startsWith("ERR_SSL") || cause.code.startsWith("ERR_TLS") || cause.code.includes("CERT"));
}

export const exitCodeOf = (e: unknown): number => (isUnreachable(e) ? ExitCode.unavailable : ExitCode.rpcError);

/** The error for people: a headline, then one indented line per detail. */
export function formatError(d: DescribedError, style: Style): string {
  const lines = [`${style.red(style.bold("error"))}: ${d.code}: ${d.message}`];
  if (d.reason !== undefined) lines.push(`  reason: ${d.reason}${d.domain === undefined || d.domain === "" ? "" : ` (${d.domain})`}`);
  for (const [k, v] of Object.entries(d.metadata ?? {})) lines.push(`  ${k}: ${v}`);
  for (const v of d.fieldViolations ?? []) lines.push(`  field ${v.field}: ${v.description}`);
  for (const v of d.quotaViolations ?? []) lines.push(`  quota ${v.subject}: ${v.description}`);
  for (const v of d.preconditionViolations ?? []) lines.push(`  precondition ${v.type} ${v.subject}: ${v.description}`);
  if (d.retryAfterMs !== undefined) lines.push(`  retry after: ${humanDuration(d.retryAfterMs)}`);
  return lines.join("\n") + "\n";
}
