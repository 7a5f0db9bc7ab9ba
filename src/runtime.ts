/**
 * The composition root: which Layer backs each port in the server. One ManagedRuntime is built
 * from it; handlers run their effects on it, and disposing it stops every execution.
 */
import { Cause, Layer, Logger, LogLevel, ManagedRuntime, HashMap } from "effect";
import type { ServerConfig } from "./config.js";
import type { Logger as JsonLogger, LogLevel as JsonLevel } from "./log.js";
import { Orchestrator } from "./core/Orchestrator.js";
import { OrchestratorConfig } from "./core/OrchestratorConfig.js";
import { OperationRegistry } from "./core/operation.js";
import { builtinOperations } from "./operations/index.js";
import { PolicyService } from "./ports/PolicyService.js";
import { RateLimiterMemory } from "./ports/RateLimiter.js";
import { SqliteDatabase } from "./ports/sqlite/SqliteDatabase.js";
import { ExecutionStoreSqlite } from "./ports/sqlite/ExecutionStoreSqlite.js";
import { AuditLoggerSqlite } from "./ports/sqlite/AuditLoggerSqlite.js";

/** Effect's log lines go to the same JSON lines as the rest. */
export function jsonLoggerLayer(logger: JsonLogger) {
  const level = (l: LogLevel.LogLevel): JsonLevel =>
    l._tag === "Error" || l._tag === "Fatal" ? "error" : l._tag === "Warning" ? "warn" : l._tag === "Info" ? "info" : "debug";
  const minimum = { debug: LogLevel.Debug, info: LogLevel.Info, warn: LogLevel.Warning, error: LogLevel.Error }[logger.level];
  const effectLogger = Logger.make(({ logLevel, message, annotations, cause }) => {
    const parts = Array.isArray(message) ? message : [message];
    const fields: Record<string, unknown> = Object.fromEntries(HashMap.toEntries(annotations));
    if (!Cause.isEmpty(cause)) fields["cause"] = Cause.pretty(cause).split("\n")[0];
    if (parts.length > 1) fields["args"] = parts.slice(1);
    logger.log(level(logLevel), String(parts[0]), fields);
  });
  return Layer.merge(Logger.replace(Logger.defaultLogger, effectLogger), Logger.minimumLogLevel(minimum));
}

export function appLayer(config: ServerConfig, logger: JsonLogger) {
  const database = SqliteDatabase.layer(config.dataDir);
  const deps = Layer.mergeAll(
    OrchestratorConfig.layer({ operationRateLimit: config.operationRateLimit, retentionMs: config.retentionMs }),
    OperationRegistry.layer(
      builtinOperations({
        demo: config.demoOperations,
        http: { allowlist: config.httpAllowlist, allowPrivateNetworks: config.httpAllowPrivateNetworks },
      }),
    ),
    Layer.mergeAll(ExecutionStoreSqlite, AuditLoggerSqlite).pipe(Layer.provide(database)),
    PolicyService.allowAll,
    RateLimiterMemory,
  );
  return Orchestrator.Default.pipe(Layer.provide(deps), Layer.provide(jsonLoggerLayer(logger)));
}

export const makeRuntime = (config: ServerConfig, logger: JsonLogger) =>
  ManagedRuntime.make(Layer.merge(appLayer(config, logger), jsonLoggerLayer(logger)));
