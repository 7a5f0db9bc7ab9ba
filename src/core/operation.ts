/**
 * Operations: named, typed units of work. Each declares its input schema, the permission it
 * needs, its retry defaults, which of its failures are retryable, an optional token estimate,
 * and the Effect that runs it.
 */
import { Context, Data, Effect, Layer, ParseResult, Schema } from "effect";
import { InvalidInput, OperationNotFound, type FieldViolation } from "./errors.js";
import type { ErrorDetail, JsonObject, JsonValue, Principal, RetryPolicyInput, TokenUsage } from "./model.js";

/** What a running attempt can see and report. */
export interface ExecutionContext {
  readonly executionId: string;
  /** 1 for the first attempt. */
  readonly attempt: number;
  readonly principal: Principal;
  readonly labels: Readonly<Record<string, string>>;
  /** Writes a log line tagged with the execution and attempt. */
  readonly log: (message: string, fields?: Record<string, unknown>) => Effect.Effect<void>;
  /** Emits a PROGRESS event to everyone following the execution. */
  readonly progress: (message: string, data?: JsonObject) => Effect.Effect<void>;
  /** Reports tokens used so far by this attempt (replaces the previous report). */
  readonly reportUsage: (usage: TokenUsage) => Effect.Effect<void>;
}

/**
 * The error convention for operations: a tagged error whose `_tag` becomes ErrorDetail.type.
 * Operations may fail with their own Data.TaggedError classes; `classify` maps them.
 */
export class OperationError extends Data.TaggedError("OperationError")<{
  readonly type: string;
  readonly message: string;
  readonly retryable: boolean;
  /** A delay the remote side asked for (e.g. HTTP Retry-After), honoured as a minimum. */
  readonly retryAfterMs?: number;
  readonly details?: JsonObject;
}> {}

/** How the core sees one failure of an attempt. */
export interface ClassifiedError {
  readonly detail: ErrorDetail;
  readonly retryAfterMs?: number;
}

export interface Operation<I = any, E = any> {
  readonly name: string;
  readonly description: string;
  /** Decodes the request's JSON input; failures become INVALID_ARGUMENT with field paths. */
  readonly input: Schema.Schema<I, any>;
  /** Permission the principal needs; default `execute:<name>`. */
  readonly permission?: string;
  /** Retry defaults of this operation, over the server's. */
  readonly retry?: RetryPolicyInput;
  /** Maps a failure to its ErrorDetail and retryability. */
  readonly classify: (error: E) => ClassifiedError;
  /** Tokens this input is expected to use (reserved by policy before the run). */
  readonly estimateTokens?: (input: I) => number;
  /** The model this input will use, when the operation calls one. */
  readonly model?: (input: I) => string | undefined;
  /** Input fields whose values never reach logs or the audit log. */
  readonly sensitiveFields?: ReadonlyArray<string>;
  readonly run: (input: I, ctx: ExecutionContext) => Effect.Effect<JsonValue, E>;
}

/** Builds an operation with type inference for its input and error. */
export const defineOperation = <I, E>(op: Operation<I, E>): Operation<I, E> => op;

/** classify for operations that fail with OperationError. */
export const classifyOperationError = (e: OperationError): ClassifiedError => ({
  detail: {
    type: e.type,
    message: e.message,
    retryable: e.retryable,
    ...(e.details === undefined ? {} : { details: e.details }),
  },
  ...(e.retryAfterMs === undefined ? {} : { retryAfterMs: e.retryAfterMs }),
});

export const permissionOf = (op: Operation): string => op.permission ?? `execute:${op.name}`;

/** The operations this server can run. */
export class OperationRegistry extends Context.Tag("orchestrator/OperationRegistry")<
  OperationRegistry,
  {
    readonly get: (name: string) => Effect.Effect<Operation, OperationNotFound>;
    readonly names: () => ReadonlyArray<string>;
  }
>() {
  static make(operations: Iterable<Operation>) {
    const byName = new Map<string, Operation>();
    for (const op of operations) {
      if (byName.has(op.name)) throw new Error(`operation "${op.name}" is registered twice`);
      byName.set(op.name, op);
    }
    return OperationRegistry.of({
      get: (name) => {
        const op = byName.get(name);
        return op === undefined ? Effect.fail(new OperationNotFound({ operation: name })) : Effect.succeed(op);
      },
      names: () => [...byName.keys()].sort(),
    });
  }

  static layer(operations: Iterable<Operation>) {
    return Layer.sync(OperationRegistry, () => OperationRegistry.make(operations));
  }
}

/** Decodes JSON input with the operation's schema; errors name the field path under `input`. */
export const decodeInput = <I>(op: Operation<I>, input: JsonObject): Effect.Effect<I, InvalidInput> =>
  Schema.decodeUnknown(op.input, { errors: "all", onExcessProperty: "error" })(input).pipe(
    Effect.mapError((e) => new InvalidInput({ violations: violationsOf(e, "input") })),
  );

function violationsOf(error: ParseResult.ParseError, prefix: string): FieldViolation[] {
  return ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => ({
    field: [prefix, ...issue.path.map(String)].join("."),
    description: issue.message,
  }));
}
