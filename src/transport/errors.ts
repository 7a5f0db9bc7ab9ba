/**
 * The one place that builds ConnectErrors. Every error a caller sees carries
 * google.rpc.ErrorInfo (reason, domain, metadata); invalid input also carries
 * google.rpc.BadRequest field violations, and limits carry google.rpc.RetryInfo.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
} from "../../gen/google/rpc/error_details_pb.js";

/** google.rpc.ErrorInfo.domain of every error this server produces. */
export const errorDomain = "orchestrator.v1";

export interface FieldViolation {
  /** Path of the offending field in the request, e.g. "retry_policy.backoff_coefficient". */
  readonly field: string;
  readonly description: string;
}

export interface ErrorSpec {
  readonly code: Code;
  readonly message: string;
  /** UPPER_SNAKE, stable: clients branch on it. */
  readonly reason: string;
  /** Every dynamic part of the message appears here too. */
  readonly metadata?: Record<string, string>;
  readonly violations?: ReadonlyArray<FieldViolation>;
  readonly retryDelayMs?: number;
}

export function rpcError(spec: ErrorSpec): ConnectError {
  const metadata = Object.fromEntries(Object.entries(spec.metadata ?? {}).map(([k, v]) => [k, clip(v)]));
  const details: ConstructorParameters<typeof ConnectError>[3] = [
    { desc: ErrorInfoSchema, value: { reason: spec.reason, domain: errorDomain, metadata } },
  ];
  if (spec.violations !== undefined && spec.violations.length > 0) {
    details.push({ desc: BadRequestSchema, value: create(BadRequestSchema, { fieldViolations: [...spec.violations] }) });
  }
  if (spec.retryDelayMs !== undefined) {
    details.push({ desc: RetryInfoSchema, value: { retryDelay: durationFromMs(spec.retryDelayMs) } });
  }
  return new ConnectError(clip(spec.message), spec.code, undefined, details);
}

/**
 * Messages and metadata often quote the caller's input. Quoted input is clipped so that an
 * error always fits in an HTTP/2 header frame (grpc-message travels as a trailer).
 */
const maxQuoted = 512;
export function clip(text: string): string {
  return text.length <= maxQuoted ? text : `${text.slice(0, maxQuoted)}… (${text.length} chars)`;
}

/** A path that names no service method this server has. */
export function unknownMethod(path: string): ConnectError {
  return rpcError({
    code: Code.Unimplemented,
    message: `unknown method ${path}`,
    reason: "METHOD_NOT_FOUND",
    metadata: { method: path },
  });
}

/**
 * Request bytes that are not a valid protobuf message of the method's input type. connect-es
 * reports these as INTERNAL ("parse binary: …"); they are the caller's fault, so INVALID_ARGUMENT.
 */
export function malformedMessage(method: string, cause: string): ConnectError {
  const field = /field ([\w.]+)/.exec(cause)?.[1];
  return rpcError({
    code: Code.InvalidArgument,
    message: `the request is not a valid protobuf message for ${method}: ${cause}`,
    reason: "MALFORMED_REQUEST",
    metadata: { method, cause },
    violations: [{ field: field ?? "", description: cause }],
  });
}

/** A failure inside the server; the details stay in the server log. */
export function internalError(): ConnectError {
  return rpcError({ code: Code.Internal, message: "internal error", reason: "INTERNAL" });
}
