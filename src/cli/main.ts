/**
 * `orchestrator`: the command line. `serve` runs the server (src/main.ts, same flags as
 * `npm start`); `keys` manages API keys on a data dir (src/cli/keys.ts); every other command is a
 * client of a running server over the generated Connect clients (src/cli/connection.ts).
 *
 * Parsing and help come from @effect/cli; the commands themselves are plain async functions
 * that return an exit code (ExitCode in output.ts), and RPC errors are printed with their code
 * and google.rpc details (rpc-error.ts).
 */
import { Args, Command, Options, ValidationError } from "@effect/cli";
// Deep imports: the barrels of effect and @effect/platform-node load far more than the CLI uses.
import * as NodeContext from "@effect/platform-node/NodeContext";
import * as Effect from "effect/Effect";
import * as Option from "effect/Option";
import { connectionOptions } from "./connection.js";
import { exec } from "./exec.js";
import { cancelExecution, getExecution, listExecutions } from "./executions.js";
import { ExitCode, parseDuration, parseLabels, processIo, styleFor, type Io } from "./output.js";
import { exitCodes, opt, withConnection } from "./command.js";
import { scheduleCommands } from "./schedules.js";
import { auditCommands } from "./audit.js";
import { policyCommands } from "./policy.js";

export const version = "0.1.0";

// exec -----------------------------------------------------------------------------------------

const execCommand = Command.make(
  "exec",
  {
    ...connectionOptions,
    operation: Args.text({ name: "OPERATION" }).pipe(Args.withDescription("Operation to run, e.g. demo.echo or http.request.")),
    input: Options.text("input").pipe(
      Options.withAlias("i"),
      Options.withDescription("The operation's input: a JSON object, @file (a JSON file) or - (standard input). Default {}."),
      Options.optional,
    ),
    detach: Options.boolean("detach").pipe(Options.withDescription("Return once accepted; the execution runs on (follow it with executions get).")),
    requestId: Options.text("request-id").pipe(Options.withDescription("Idempotency key: repeating it follows the same execution instead of starting another."), Options.optional),
    label: Options.text("label").pipe(Options.withDescription("key=value label on the execution (repeatable)."), Options.repeated),
    timeout: Options.text("timeout").pipe(Options.withDescription("Limit on the whole execution, e.g. 30s, 5m (default: the operation's, else 1h)."), Options.optional),
    attemptTimeout: Options.text("attempt-timeout").pipe(Options.withDescription("Limit on each attempt, e.g. 10s."), Options.optional),
    maxAttempts: Options.integer("max-attempts").pipe(Options.withDescription("Maximum attempts, the first included (1 = no retry; 0 = unlimited)."), Options.optional),
    retryInitialInterval: Options.text("retry-initial-interval").pipe(Options.withDescription("Delay before the first retry, e.g. 500ms (then ×2 each time)."), Options.optional),
  },
  (a) =>
    withConnection(a, (conn, io) =>
      exec(
        conn,
        {
          operation: a.operation,
          input: opt(a.input),
          detach: a.detach,
          requestId: opt(a.requestId),
          labels: parseLabels("--label", a.label),
          timeout: Option.isSome(a.timeout) ? parseDuration("--timeout", a.timeout.value) : undefined,
          attemptTimeout: Option.isSome(a.attemptTimeout) ? parseDuration("--attempt-timeout", a.attemptTimeout.value) : undefined,
          maxAttempts: opt(a.maxAttempts),
          retryInitialInterval: Option.isSome(a.retryInitialInterval) ? parseDuration("--retry-initial-interval", a.retryInitialInterval.value) : undefined,
        },
        {
          io,
          style: styleFor(process.stdout),
          tty: process.stdout.isTTY === true,
          onInterrupt: (handler) => {
            process.on("SIGINT", handler);
            return () => void process.off("SIGINT", handler);
          },
        },
      ),
    ),
).pipe(
  Command.withDescription(
    "Run an operation and follow it: live progress on a terminal (attempts, retry countdown, result), plain lines when piped. " +
      "Ctrl-C cancels the execution. Exit code: 0 succeeded, 1 failed/timed out/interrupted, 2 usage, 3 RPC error, 4 server unreachable, 5 cancelled by someone else, 130 cancelled by Ctrl-C.",
  ),
);

// executions -----------------------------------------------------------------------------------

const executionId = Args.text({ name: "EXECUTION_ID" });

const executionsList = Command.make(
  "list",
  {
    ...connectionOptions,
    operation: Options.text("operation").pipe(Options.withDescription("Only this operation."), Options.optional),
    state: Options.text("state").pipe(Options.withDescription("Only these states (repeatable): pending, running, backing-off, succeeded, failed, cancelled, timed-out, interrupted."), Options.repeated),
    schedule: Options.text("schedule").pipe(Options.withDescription("Only executions started by this schedule."), Options.optional),
    principal: Options.text("principal").pipe(Options.withDescription("Only executions started by this subject."), Options.optional),
    label: Options.text("label").pipe(Options.withDescription("Only executions with this key=value label (repeatable)."), Options.repeated),
    pageSize: Options.integer("page-size").pipe(Options.withDescription("Executions per page (default 50, at most 1000)."), Options.optional),
    pageToken: Options.text("page-token").pipe(Options.withDescription("Continue from a previous page."), Options.optional),
    all: Options.boolean("all").pipe(Options.withDescription("Follow every page.")),
    order: Options.choice("order", ["desc", "asc"]).pipe(Options.withDescription("By creation time: desc (newest first, default) or asc."), Options.withDefault("desc" as const)),
  },
  (a) =>
    withConnection(a, (conn, io) =>
      listExecutions(
        conn,
        {
          operation: opt(a.operation),
          states: a.state,
          scheduleId: opt(a.schedule),
          principal: opt(a.principal),
          labels: parseLabels("--label", a.label),
          pageSize: opt(a.pageSize),
          pageToken: opt(a.pageToken),
          all: a.all,
          order: a.order,
        },
        io,
      ),
    ),
).pipe(Command.withDescription("List executions you may read, newest first."));

const executionsGet = Command.make("get", { ...connectionOptions, executionId }, (a) =>
  withConnection(a, (conn, io) => getExecution(conn, a.executionId, io, styleFor(process.stdout))),
).pipe(Command.withDescription("Show one execution: state, attempts, result or error."));

const executionsCancel = Command.make(
  "cancel",
  {
    ...connectionOptions,
    executionId,
    reason: Options.text("reason").pipe(Options.withDescription("Why; recorded on the execution and in the audit log."), Options.optional),
    requestId: Options.text("request-id").pipe(Options.withDescription("Idempotency key."), Options.optional),
  },
  (a) => withConnection(a, (conn, io) => cancelExecution(conn, { executionId: a.executionId, reason: opt(a.reason), requestId: opt(a.requestId) }, io)),
).pipe(Command.withDescription("Cancel a running execution."));

const executionsCommand = Command.make("executions").pipe(
  Command.withDescription("Inspect and cancel executions."),
  Command.withSubcommands([executionsList, executionsGet, executionsCancel]),
);

// keys (local: on a data dir, no server needed) ------------------------------------------------

const dataDir = Options.text("data-dir").pipe(Options.withDescription("The server's data dir. Default $ORCHESTRATOR_DATA_DIR, then ./data."), Options.optional);
const databaseUrl = Options.text("database-url").pipe(
  Options.withDescription("For servers on PostgreSQL: their database (postgres://…). Default $ORCHESTRATOR_DATABASE_URL."),
  Options.optional,
);
const keysOutput = {
  output: connectionOptions.output,
  json: Options.boolean("json").pipe(Options.withDescription("Same as --output json.")),
};
/** Runs src/cli/keys.ts with the flags it has always taken. */
const keys = (args: ReadonlyArray<string | undefined | false>, io: Io = processIo) =>
  Effect.promise(async () => {
    // Loaded on demand: the SQLite and PostgreSQL drivers are not needed by the other commands.
    const { keysCommand } = await import("./keys.js");
    exitCodes.last = await keysCommand(args.filter((x): x is string => typeof x === "string"), process.env, io);
  });
/** --key-only: the JSON that `create --json` prints, reduced to the key. */
const keyOnlyIo: Io = {
  out: (text) => processIo.out(`${(JSON.parse(text) as { key: string }).key}\n`),
  err: processIo.err,
};
const flag = (name: string, value: Option.Option<string>) => (Option.isSome(value) ? [`--${name}`, value.value] : []);

const keysCreate = Command.make(
  "create",
  {
    ...keysOutput,
    dataDir,
    databaseUrl,
    subject: Options.text("subject").pipe(Options.withDescription("Who the key is for (its principal subject).")),
    roles: Options.text("roles").pipe(Options.withDescription("Comma-separated roles, e.g. operator or viewer.")),
    tenant: Options.text("tenant").pipe(Options.withDescription("Tenant (default: default)."), Options.optional),
    description: Options.text("description").pipe(Options.optional),
    rolesFile: Options.text("roles-file").pipe(Options.withDescription("Check the roles against this roles file instead of the built-in ones."), Options.optional),
    keyOnly: Options.boolean("key-only").pipe(
      Options.withDescription("Print only the key, for scripts: export ORCHESTRATOR_TOKEN=$(orchestrator keys create … --key-only)."),
    ),
  },
  (a) =>
    keys([
      "create",
      "--subject", a.subject,
      "--roles", a.roles,
      ...flag("tenant", a.tenant),
      ...flag("description", a.description),
      ...flag("roles-file", a.rolesFile),
      ...flag("data-dir", a.dataDir),
      ...flag("database-url", a.databaseUrl),
      (a.json || a.output === "json" || a.keyOnly) && "--json",
    ], a.keyOnly ? keyOnlyIo : processIo),
).pipe(Command.withDescription("Create an API key; it is printed once (only its hash is stored)."));

const keysList = Command.make("list", { ...keysOutput, dataDir, databaseUrl }, (a) =>
  keys(["list", ...flag("data-dir", a.dataDir), ...flag("database-url", a.databaseUrl), (a.json || a.output === "json") && "--json"]),
).pipe(Command.withDescription("List API keys (never their secrets)."));

const keysRevoke = Command.make("revoke", { ...keysOutput, dataDir, databaseUrl, keyId: Args.text({ name: "KEY_ID" }) }, (a) =>
  keys(["revoke", a.keyId, ...flag("data-dir", a.dataDir), ...flag("database-url", a.databaseUrl), (a.json || a.output === "json") && "--json"]),
).pipe(Command.withDescription("Revoke an API key: refused from its next request on."));

const keysGroup = Command.make("keys").pipe(
  Command.withDescription("Manage API keys on the server's data dir (on the server's machine; the server may be running)."),
  Command.withSubcommands([keysCreate, keysList, keysRevoke]),
);

// serve (listed for --help; dispatched before parsing so every server flag passes through) -----

const serveCommand = Command.make("serve").pipe(
  Command.withDescription("Run the server (the same as npm start; `orchestrator serve --help` lists its flags)."),
);

const root = Command.make("orchestrator").pipe(
  Command.withDescription("Orchestrator: run operations, manage schedules, follow the audit log; or run the server."),
  Command.withSubcommands([serveCommand, execCommand, executionsCommand, scheduleCommands, auditCommands, policyCommands, keysGroup]),
);

const cli = Command.run(root, { name: "orchestrator", version });

/** Runs the CLI; resolves to the exit code (never for `serve`, which keeps the process up). */
export async function main(argv: ReadonlyArray<string>): Promise<number | "serving"> {
  if (argv[0] === "serve") {
    const { serve } = await import("../main.js");
    await serve(argv.slice(1));
    return "serving";
  }
  exitCodes.last = ExitCode.ok;
  await Effect.runPromise(
    cli(["node", "orchestrator", ...argv]).pipe(
      Effect.catchIf(ValidationError.isValidationError, (e) =>
        Effect.sync(() => {
          // @effect/cli has printed the problem; --help and --version are not errors.
          exitCodes.last = ValidationError.isHelpRequested(e) ? ExitCode.ok : ExitCode.usage;
        }),
      ),
      Effect.provide(NodeContext.layer),
    ),
  );
  return exitCodes.last;
}
