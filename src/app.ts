/**
 * The whole server: core runtime + one port. Used by `main.ts` and by tests that need the real
 * thing in-process.
 */
import { mkdirSync } from "node:fs";
import type { ServerConfig } from "./config.js";
import type { Logger } from "./log.js";
import { makeRuntime, type AppRuntime } from "./runtime.js";
import { authInterceptor } from "./transport/auth-interceptor.js";
import { rateLimitInterceptor } from "./transport/rate-limit-interceptor.js";
import { firstRunBanner, setUpCredentials } from "./first-run.js";
import type { HealthStatuses } from "./transport/health.js";
import { createHealth, routes } from "./transport/routes.js";
import { startServer, type RunningServer } from "./transport/server.js";
import { RpcTracing, tracingInterceptor } from "./transport/tracing-interceptor.js";
import { rpcDurationRecorder } from "./transport/rpc-metrics.js";
import { Telemetry, type TelemetryShape } from "./telemetry/Telemetry.js";

export interface App {
  readonly server: RunningServer;
  readonly health: HealthStatuses;
  readonly runtime: AppRuntime;
  /** The tracer and meter in use, and where metrics are served. */
  readonly telemetry: TelemetryShape;
  /** Drains the port, then stops every execution and closes the stores. */
  readonly shutdown: () => Promise<void>;
}

export interface StartOptions {
  /** Where the first-run key is printed (default: process.stderr), never the JSON log. */
  readonly stderr?: (text: string) => void;
}

export async function startApp(config: ServerConfig, logger: Logger, options: StartOptions = {}): Promise<App> {
  mkdirSync(config.dataDir, { recursive: true });
  const runtime = makeRuntime(config, logger);
  try {
    await runtime.runtime(); // open the store, migrate, recover: fail before listening
  } catch (e) {
    await runtime.dispose().catch(() => undefined);
    throw e;
  }
  try {
    const firstRun = await runtime.runPromise(setUpCredentials(config.auth));
    if (firstRun !== undefined) (options.stderr ?? ((t) => process.stderr.write(t)))(firstRunBanner(firstRun.key, config));
  } catch (e) {
    await runtime.dispose().catch(() => undefined);
    throw e;
  }
  const health = createHealth();
  const telemetry = await runtime.runPromise(Telemetry);
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
      ...(telemetry.metrics ? { onRpcFinished: rpcDurationRecorder(telemetry.meter) } : {}),
      // Outermost first: the RPC span (around everything), authentication, then the request
      // limit (it needs the principal).
      interceptors: [tracingInterceptor(new RpcTracing(telemetry.tracer, telemetry.tracing)), authInterceptor(runtime, { protectHealth: config.auth.protectHealth }), rateLimitInterceptor(runtime, config.limits)],
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
    telemetry,
    shutdown: () => (stopping ??= server.shutdown().then(() => runtime.dispose())),
  };
}
