/**
 * `npm start` / `orchestrator serve`: reads the configuration, serves until SIGTERM or SIGINT,
 * drains, and exits 0. A second signal exits at once.
 */
import { mkdirSync } from "node:fs";
import { ConfigError, loadConfig, usage } from "./config.js";
import { createLogger } from "./log.js";
import { startServer } from "./transport/server.js";
import { createHealth, routes } from "./transport/routes.js";

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
  mkdirSync(config.dataDir, { recursive: true });
  const health = createHealth();
  const server = await startServer({
    host: config.host,
    port: config.port,
    tls: config.tls,
    maxMessageBytes: config.maxMessageBytes,
    drainTimeoutMs: config.drainTimeoutMs,
    logger,
    health,
    routes: routes(health),
  });
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
    server.shutdown().then(
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

const isEntry = import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("/src/main.ts") === true;
if (isEntry) {
  const args = process.argv.slice(2);
  await serve(args[0] === "serve" ? args.slice(1) : args);
}
