/**
 * How a client command runs: its body gets the connected clients and returns an exit code;
 * usage mistakes exit 2, RPC errors are printed with their code, message and details (JSON on
 * stderr with --output json) and exit 3 (4 when the server cannot be reached).
 */
import * as Effect from "effect/Effect";
import * as Option from "effect/Option";
import { connect, type Connection, type ConnectionArgs } from "./connection.js";
import { ExitCode, processIo, styleFor, UsageError, type Io } from "./output.js";
import { describeError, exitCodeOf, formatError } from "./rpc-error.js";

/** The exit code of the command that ran last (set by its handler). */
export const exitCodes = { last: ExitCode.ok as number };

export const runCommand = (output: "text" | "json", body: (io: Io) => Promise<number | void>) =>
  Effect.promise(async () => {
    const io = processIo;
    try {
      exitCodes.last = (await body(io)) ?? ExitCode.ok;
    } catch (e) {
      if (e instanceof UsageError) {
        io.err(`orchestrator: ${e.message}\n(see --help)\n`);
        exitCodes.last = ExitCode.usage;
        return;
      }
      const described = describeError(e);
      io.err(output === "json" ? JSON.stringify({ error: described }) + "\n" : formatError(described, styleFor(process.stderr)));
      exitCodes.last = exitCodeOf(e);
    }
  });

/** A client command: connects with the connection flags, then runs the body. */
export const withConnection = (a: ConnectionArgs, body: (conn: Connection, io: Io) => Promise<number | void>) =>
  runCommand(a.output, (io) => body(connect(a), io));

export const opt = <A>(o: Option.Option<A>): A | undefined => Option.getOrUndefined(o);
