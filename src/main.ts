/**
 * `npm start` / `orchestrator serve`: reads the configuration, serves until SIGTERM or SIGINT,
 * drains, and exits 0. A second signal exits at once.
 * `orchestrator keys …`: API key administration on a data dir (src/cli/keys.ts).
 * `exec`, `executions`, `schedules`, `audit`, `policy`: the client commands of src/cli/main.ts (the
 * `orchestrator` bin, src/cli/orchestrator.js, runs the same).
 */
import { ConfigError, loadConfig, usage } from "./config.js";
import { createLogger } from "./log.js";
import { startApp } from "./app.js";
import { keysCommand } from "./cli/keys.js";

export async function serve(argv: ReadonlyArray<string>): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(usage() + "\n");
    return;
  }
  let config;
  try {
    config = loadConfig(argv, process.env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`orchestrator: ${e.message}\n\n${usage()}\n`);
    process.exitCode = 2;
    return;
  }
  const logger = createLogger(config.logLevel);
  let app;
  try {
    app = await startApp(config, logger);
  } catch (e) {
    logger.error("failed to start", { error: e instanceof Error ? e.message : String(e) });
    process.exitCode = 1;
    return;
  }
  const { server } = app;
  logger.info("listening", {
    address: `${config.tls === undefined ? "http" : "https"}://${server.host.includes(":") ? `[${server.host}]` : server.host}:${server.port}`,
    port: server.port,
    data_dir: config.dataDir,
    tls: config.tls !== undefined,
    pid: process.pid,
  });

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn("second signal: exiting without waiting", { signal });
      process.exit(1);
    }
    stopping = true;
    logger.info("shutting down", { signal });
    app.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error("shutdown failed", { error: err });
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

/** First arguments that name a client command rather than server flags. */
const clientCommands = new Set(["exec", "executions", "schedules", "audit", "policy"]);

const isEntry = import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("/src/main.ts") === true;
if (isEntry) {
  const args = process.argv.slice(2);
  if (args[0] === "keys") {
    process.exitCode = await keysCommand(args.slice(1));
  } else if (args[0] !== undefined && clientCommands.has(args[0])) {
    // The client commands of the `orchestrator` CLI (src/cli/main.ts), loaded only when asked for.
    const { main } = await import("./cli/main.js");
    const code = await main(args);
    if (code !== "serving") process.stdout.write("", () => process.exit(code));
  } else {
    await serve(args[0] === "serve" ? args.slice(1) : args);
  }
}
