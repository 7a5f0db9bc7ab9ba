/**
 * The whole server: core runtime + one port. Used by `main.ts` and by tests that need the real
 * thing in-process.
 */
import { mkdirSync } from "node:fs";
import type { ServerConfig } from "./config.js";
import type { Logger } from "./log.js";
import { makeRuntime } from "./runtime.js";
import { authInterceptor, localAuthenticator, staticTokenAuthenticator } from "./transport/auth-interceptor.js";
import type { HealthStatuses } from "./transport/health.js";
import { createHealth, routes } from "./transport/routes.js";
import { startServer, type RunningServer } from "./transport/server.js";
import type { OrchestratorRuntime } from "./transport/execution-service.js";

export interface App {
  readonly server: RunningServer;
  readonly health: HealthStatuses;
  readonly runtime: OrchestratorRuntime;
  /** Drains the port, then stops every execution and closes the stores. */
  readonly shutdown: () => Promise<void>;
}

export async function startApp(config: ServerConfig, logger: Logger): Promise<App> {
  mkdirSync(config.dataDir, { recursive: true });
  const runtime = makeRuntime(config, logger);
  try {
    await runtime.runtime(); // open the store, migrate, recover: fail before listening
  } catch (e) {
    await runtime.dispose().catch(() => undefined);
    throw e;
  }
  const health = createHealth();
  const authenticate = config.tokens === undefined ? localAuthenticator : staticTokenAuthenticator(config.tokens);
  if (config.tokens === undefined) {
    logger.warn("no credentials configured: every caller is the local admin; set --tokens-file before exposing the port");
  }
  let server: RunningServer;
  try {
    server = await startServer({
      host: config.host,
      port: config.port,
      tls: config.tls,
      maxMessageBytes: config.maxMessageBytes,
      drainTimeoutMs: config.drainTimeoutMs,
      logger,
      health,
      routes: routes(health, runtime),
      interceptors: [authInterceptor(authenticate)],
    });
  } catch (e) {
    await runtime.dispose().catch(() => undefined);
    throw e;
  }
  let stopping: Promise<void> | undefined;
  return {
    server,
    health,
    runtime,
    shutdown: () => (stopping ??= server.shutdown().then(() => runtime.dispose())),
  };
}
