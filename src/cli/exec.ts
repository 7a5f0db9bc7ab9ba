/**
 * `orchestrator exec OPERATION --input JSON|@file|-`: runs one operation and follows its events.
 *
 * On a terminal: a live status line (attempt running for …, retry countdown) under the event
 * lines; piped: plain lines (or, with --output json, one ExecutionEvent per line). Ctrl-C asks
 * the server to cancel the execution (CancelExecution) and waits for the `cancelled` event; a
 * second Ctrl-C drops the call, which the server also treats as a cancellation.
 * Exit codes: ExitCode in output.ts.
 */
import { readFileSync } from "node:fs";
import { toJson, type JsonObject } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { ConnectError, Code } from "@connectrpc/connect";
import {
  ExecutionEventSchema,
  type ExecutionEvent,
} from "../../gen/orchestrator/v1/execution_service_pb.js";
import type { ErrorDetail, TokenUsage } from "../../gen/orchestrator/v1/common_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ExecuteRequestSchema } from "../../gen/orchestrator/v1/execution_service_pb.js";
import type { Connection } from "./connection.js";
import { durationMs, ExitCode, humanDuration, jsonText, UsageError, type Io, type Style } from "./output.js";
import { describeError, exitCodeOf, formatError } from "./rpc-error.js";

export interface ExecArgs {
  readonly operation: string;
  readonly input: string | undefined;
  readonly detach: boolean;
  readonly requestId: string | undefined;
  readonly labels: Record<string, string>;
  readonly timeout: { seconds: bigint; nanos: number } | undefined;
  readonly attemptTimeout: { seconds: bigint; nanos: number } | undefined;
  readonly maxAttempts: number | undefined;
  readonly retryInitialInterval: { seconds: bigint; nanos: number } | undefined;
}

/** `--input`: inline JSON, `@file` (JSON file) or `-` (standard input). Must be an object. */
export function readInput(text: string | undefined, readStdin: () => string = () => readFileSync(0, "utf8")): JsonObject {
  if (text === undefined) return {};
  let source = text;
  let where = "--input";
  if (text === "-") {
    source = readStdin();
    where = "--input - (standard input)";
  } else if (text.startsWith("@")) {
    try {
      source = readFileSync(text.slice(1), "utf8");
    } catch (e) {
      throw new UsageError(`--input: cannot read ${text.slice(1)}: ${e instanceof Error ? e.message : String(e)}`);
    }
    where = `--input ${text}`;
  }
  let value: unknown;
  try {
    value = JSON.parse(source);
  } catch (e) {
    throw new UsageError(`${where}: not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UsageError(`${where}: expected a JSON object, e.g. '{"message":"hi"}'`);
  }
  return value as JsonObject;
}

export function executeRequest(args: ExecArgs, input: JsonObject): MessageInitShape<typeof ExecuteRequestSchema> {
  const retry =
    args.maxAttempts !== undefined || args.retryInitialInterval !== undefined
      ? {
          ...(args.maxAttempts === undefined ? {} : { maximumAttempts: args.maxAttempts }),
          ...(args.retryInitialInterval === undefined ? {} : { initialInterval: args.retryInitialInterval }),
        }
      : undefined;
  return {
    operation: args.operation,
    input,
    requestId: args.requestId ?? "",
    labels: args.labels,
    detach: args.detach,
    ...(retry === undefined ? {} : { retryPolicy: retry }),
    ...(args.timeout === undefined ? {} : { timeout: args.timeout }),
    ...(args.attemptTimeout === undefined ? {} : { attemptTimeout: args.attemptTimeout }),
  };
}

const spinner = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/**
 * Event lines plus, on a terminal, one status line redrawn in place below them.
 */
class Display {
  private statusText: (() => string) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private frame = 0;
  private drawn = false;

  constructor(
    private readonly io: Io,
    private readonly tty: boolean,
  ) {}

  line(text: string): void {
    this.clear();
    this.io.out(text + "\n");
    this.draw();
  }

  status(text: (() => string) | undefined): void {
    this.statusText = text;
    if (!this.tty) return;
    if (text === undefined) {
      this.clear();
      if (this.timer !== undefined) clearInterval(this.timer);
      this.timer = undefined;
      return;
    }
    this.draw();
    this.timer ??= setInterval(() => this.draw(), 100);
  }

  stop(): void {
    this.status(undefined);
  }

  private clear(): void {
    if (this.drawn) this.io.out("\r\x1b[2K");
    this.drawn = false;
  }

  private draw(): void {
    if (!this.tty || this.statusText === undefined) return;
    this.clear();
    this.frame = (this.frame + 1) % spinner.length;
    this.io.out(`${spinner[this.frame]} ${this.statusText()}`);
    this.drawn = true;
  }
}

const errorLine = (e: ErrorDetail | undefined): string =>
  e === undefined ? "unknown error" : `${e.type}: ${e.message}${e.details !== undefined && Object.keys(e.details).length > 0 ? ` ${JSON.stringify(e.details)}` : ""}`;

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

const tokensLine = (u: TokenUsage | undefined): string | undefined =>
  u === undefined || u.totalTokens === 0n
    ? undefined
    : `Tokens: ${u.totalTokens} (in ${u.inputTokens}, out ${u.outputTokens}${u.model === "" ? "" : `, model ${u.model}`})`;

export interface ExecEnvironment {
  readonly io: Io;
  readonly style: Style;
  /** stdout is a terminal: draw the live status line. */
  readonly tty: boolean;
  /** Registers the Ctrl-C handler; returns a function that removes it. */
  readonly onInterrupt: (handler: () => void) => () => void;
}

export async function exec(conn: Connection, args: ExecArgs, env: ExecEnvironment): Promise<number> {
  const input = readInput(args.input);
  const json = conn.output === "json";
  const { io, style } = env;
  const display = new Display(io, env.tty && !json);
  const abort = new AbortController();
  const started = performance.now();

  let executionId: string | undefined;
  let interrupted = 0;
  let cancelRequested = false;
  let attemptStartedAt = 0;
  let attemptNumber = 0;

  const requestCancel = () => {
    interrupted += 1;
    if (interrupted > 1 || executionId === undefined || args.detach) {
      // Second Ctrl-C, or nothing to cancel by id yet: drop the call (the server cancels an
      // attached execution whose caller went away).
      abort.abort();
      return;
    }
    if (cancelRequested) return;
    cancelRequested = true;
    if (!json) display.line(style.yellow(`Cancelling execution ${executionId} (Ctrl-C again to stop waiting)…`));
    display.status(() => "waiting for the cancellation");
    conn.executions.cancelExecution({ executionId, reason: "cancelled from the command line (Ctrl-C)" }).catch((e: unknown) => {
      // Could not cancel by id (e.g. no permission): dropping the call cancels it as well.
      if (!json) display.line(formatError(describeError(e), style).trimEnd());
      abort.abort();
    });
  };
  const removeHandler = env.onInterrupt(requestCancel);

  const waitStatus = () => `${style.dim(`attempt ${attemptNumber} running`)} ${humanDuration(performance.now() - attemptStartedAt)}`;

  const handle = (event: ExecutionEvent): number | undefined => {
    if (json) io.out(JSON.stringify(toJson(ExecutionEventSchema, event)) + "\n");
    const k = event.kind;
    switch (k.case) {
      case "accepted": {
        const ex = k.value.execution;
        executionId = event.executionId;
        if (!json) {
          display.line(
            `Execution ${style.bold(event.executionId)} accepted: ${ex?.operation ?? args.operation}` +
              (k.value.deduplicated ? " (deduplicated: following the existing execution)" : ""),
          );
          if (ex !== undefined && ex.traceId !== "") display.line(style.dim(`  trace ${ex.traceId}`));
        }
        if (args.detach) {
          if (!json) display.line(`Detached; follow it with: orchestrator executions get ${event.executionId}`);
          return ExitCode.ok;
        }
        display.status(() => style.dim("waiting for the first attempt"));
        return undefined;
      }
      case "attemptStarted":
        attemptNumber = k.value.attempt;
        attemptStartedAt = performance.now();
        if (!json) display.line(`Attempt ${k.value.attempt} started`);
        if (!cancelRequested) display.status(waitStatus);
        return undefined;
      case "attemptFailed": {
        const f = k.value;
        if (!json) {
          display.line(
            `${style.red(`Attempt ${f.attempt} failed`)}: ${errorLine(f.error)}${f.error?.retryable === false ? " (not retryable)" : ""}` +
              (f.willRetry ? `; retrying in ${humanDuration(durationMs(f.retryDelay))}` : ""),
          );
        }
        if (f.willRetry && !cancelRequested) {
          const due = performance.now() + durationMs(f.retryDelay);
          display.status(() => `${style.yellow("retrying in")} ${humanDuration(Math.max(0, due - performance.now()))} (attempt ${f.attempt + 1})`);
        }
        return undefined;
      }
      case "progress":
        if (!json) {
          const data = k.value.data !== undefined && Object.keys(k.value.data).length > 0 ? ` ${JSON.stringify(k.value.data)}` : "";
          display.line(style.dim(`Progress: ${k.value.message}${data}`));
        }
        return undefined;
      case "succeeded": {
        display.stop();
        if (!json) {
          display.line(`${style.green("✔ Succeeded")} after ${plural(k.value.attempts, "attempt")} in ${humanDuration(performance.now() - started)}`);
          const tokens = tokensLine(k.value.tokenUsage);
          if (tokens !== undefined) display.line(tokens);
          display.line("Result:");
          io.out(jsonText(k.value.result === undefined ? null : toJson(ValueSchema, k.value.result), true));
        }
        return ExitCode.ok;
      }
      case "failed":
        display.stop();
        if (!json) display.line(`${style.red("✘ Failed")} after ${plural(k.value.attempts, "attempt")}: ${errorLine(k.value.error)}`);
        return ExitCode.executionFailed;
      case "cancelled":
        display.stop();
        if (!json) display.line(`${style.yellow("✘ Cancelled")} after ${plural(k.value.attempts, "attempt")}: ${k.value.reason}`);
        return interrupted > 0 ? ExitCode.interrupted : ExitCode.executionCancelled;
      case "timedOut":
        display.stop();
        if (!json) display.line(`${style.red("✘ Timed out")} after ${plural(k.value.attempts, "attempt")}: ${errorLine(k.value.error)}`);
        return ExitCode.executionFailed;
      case "interrupted":
        display.stop();
        if (!json) display.line(`${style.red("✘ Interrupted")} after ${plural(k.value.attempts, "attempt")}: ${errorLine(k.value.error)}`);
        return ExitCode.executionFailed;
      default:
        return undefined;
    }
  };
  try {
    display.status(() => style.dim(`starting ${args.operation}`));
    for await (const response of conn.executions.execute(executeRequest(args, input), { signal: abort.signal })) {
      if (response.event === undefined) continue;
      const code = handle(response.event);
      if (code !== undefined) return code;
    }
    display.stop();
    io.err("error: the stream ended without a terminal event\n");
    return ExitCode.rpcError;
  } catch (e) {
    display.stop();
    if (abort.signal.aborted || (e instanceof ConnectError && e.code === Code.Canceled && interrupted > 0)) {
      if (!json) {
        io.err(
          executionId === undefined
            ? "Interrupted before the execution was accepted.\n"
            : `Stopped following execution ${executionId}; the server cancels it because the call was dropped.\n`,
        );
      }
      return ExitCode.interrupted;
    }
    const described = describeError(e);
    io.err(json ? JSON.stringify({ error: described }) + "\n" : formatError(described, style));
    return exitCodeOf(e);
  } finally {
    display.stop();
    removeHandler();
  }
}
