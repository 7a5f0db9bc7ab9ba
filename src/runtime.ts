/**
 * The composition root: which Layer backs each port in the server. One ManagedRuntime is built
 * from it; handlers run their effects on it, and disposing it stops every execution.
 */
import { Cause, Layer, Logger, LogLevel, ManagedRuntime, HashMap } from "effect";
import type { ServerConfig } from "./config.js";
import type { Logger as JsonLogger, LogLevel as JsonLevel } from "./log.js";
import { Orchestrator } from "./core/Orchestrator.js";
import { Scheduler, SchedulerConfig } from "./core/schedule/Scheduler.js";
import { ScheduleStoreSqlite } from "./ports/sqlite/ScheduleStoreSqlite.js";
import { ScheduleStorePostgres } from "./ports/postgres/ScheduleStorePostgres.js";
import { AuditLog } from "./core/audit/AuditLog.js";
import { AuditConfig } from "./core/audit/AuditConfig.js";
import { OrchestratorConfig } from "./core/OrchestratorConfig.js";
import { OperationRegistry } from "./core/operation.js";
import { builtinOperations } from "./operations/index.js";
import { policyLayer } from "./policy/PolicyServiceLive.js";
import { PolicyReader } from "./policy/PolicyReader.js";
import { RateLimiterMemory } from "./ports/RateLimiter.js";
import { RateLimiterRedis } from "./ports/redis/RateLimiterRedis.js";
import { TokenLedgerMemory } from "./ports/memory/TokenLedgerMemory.js";
import { TokenLedgerRedis } from "./ports/redis/TokenLedgerRedis.js";
import { SqliteDatabase } from "./ports/sqlite/SqliteDatabase.js";
import { ExecutionStoreSqlite } from "./ports/sqlite/ExecutionStoreSqlite.js";
import { AuditLoggerSqlite } from "./ports/sqlite/AuditLoggerSqlite.js";
import { ApiKeyStoreSqlite } from "./ports/sqlite/ApiKeyStoreSqlite.js";
import { PgDatabase } from "./ports/postgres/PgDatabase.js";
import { PgInstanceLayer } from "./ports/postgres/PgInstance.js";
import { InstanceBusPostgres } from "./ports/postgres/InstanceBusPostgres.js";
import { ExecutionStorePostgres } from "./ports/postgres/ExecutionStorePostgres.js";
import { AuditLoggerPostgres } from "./ports/postgres/AuditLoggerPostgres.js";
import { ApiKeyStoreSql } from "./ports/sql/ApiKeyStoreSql.js";
import { AuthValidator } from "./ports/AuthValidator.js";
import type { AuthConfig } from "./auth-config.js";
import { Telemetry } from "./telemetry/Telemetry.js";

/**
 * Effect's log lines go to the same JSON lines as the rest. One Layer per logger: a second
 * instance in the same runtime would add a second Effect logger, and every line would be written
 * twice (Layer memoization is by reference).
 */
export function jsonLoggerLayer(logger: JsonLogger) {
  let layer = jsonLoggerLayers.get(logger);
  if (layer === undefined) jsonLoggerLayers.set(logger, (layer = makeJsonLoggerLayer(logger)));
  return layer;
}
const jsonLoggerLayers = new WeakMap<JsonLogger, Layer.Layer<never>>();

function makeJsonLoggerLayer(logger: JsonLogger): Layer.Layer<never> {
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

/**
 * Where executions, the audit log, schedules and API keys live: SQLite in the data dir (one
 * process), or PostgreSQL (--database-url) shared by several instances.
 */
export function storesLayer(config: Pick<ServerConfig, "dataDir" | "databaseUrl">) {
  if (config.databaseUrl === undefined) {
    return Layer.mergeAll(ExecutionStoreSqlite, AuditLoggerSqlite, ApiKeyStoreSqlite, ScheduleStoreSqlite).pipe(Layer.provide(SqliteDatabase.layer(config.dataDir)));
  }
  const database = PgDatabase.layer(config.databaseUrl);
  // The instances tell each other of schedule fires and CANCEL_OTHER requests (NOTIFY/LISTEN).
  return Layer.mergeAll(ExecutionStorePostgres, AuditLoggerPostgres, ApiKeyStoreSql, ScheduleStorePostgres, InstanceBusPostgres).pipe(
    Layer.provide(PgInstanceLayer.layer()),
    Layer.provideMerge(database),
  );
}

export function appLayer(config: ServerConfig, logger: JsonLogger) {
  // Token budgets and model limits: in the same store as the rate limits (memory, or Redis).
  const tokenLedger =
    config.redisUrl === undefined ? TokenLedgerMemory : TokenLedgerRedis.layer({ url: config.redisUrl, onError: config.rateLimitOnError, commandTimeoutMs: config.redisTimeoutMs });
  const deps = Layer.mergeAll(
    OrchestratorConfig.layer({ operationRateLimit: config.operationRateLimit, limits: config.limits, retentionMs: config.retentionMs, roles: config.roles }),
    OperationRegistry.layer(
      builtinOperations({
        demo: config.demoOperations,
        http: { allowlist: config.httpAllowlist, allowPrivateNetworks: config.httpAllowPrivateNetworks },
      }),
    ),
    storesLayer(config),
    // Rate-limit state: this process's memory, or Redis when several instances share limits.
    config.redisUrl === undefined ? RateLimiterMemory : RateLimiterRedis.layer({ url: config.redisUrl, onError: config.rateLimitOnError, commandTimeoutMs: config.redisTimeoutMs }),
    tokenLedger,
  );
  // Policy: the rules of --policy-file (none: allow all, no budgets), watched and reloaded; budgets
  // through the ledger. A bad policy file fails the Layer: the server does not start.
  const policy = PolicyReader.Default.pipe(Layer.provideMerge(policyLayer({ file: config.policyFile })), Layer.provideMerge(deps));
  // The ports stay visible on the runtime: the auth interceptor, first-run key and tests use them.
  // The audit log's readers (Subscribe, List) and its retention.
  const auditLog = AuditLog.Default.pipe(
    Layer.provide(AuditConfig.layer({ retentionMaxAgeMs: config.auditRetentionMs, retentionMaxEvents: config.auditRetentionEvents, roles: config.roles })),
  );
  return Layer.mergeAll(Orchestrator.Default, schedulerLayer(), auditLog, authValidatorLayer(config.auth)).pipe(
    Layer.provideMerge(policy),
    Layer.provide(jsonLoggerLayer(logger)),
  );
}

/**
 * The scheduler's engine over storesLayer's ScheduleStore (SQLite, or PostgreSQL shared by several
 * instances). A slot claimed by an instance that died is taken over after a 10 s lease.
 */
export const schedulerLayer = () => Scheduler.Default.pipe(Layer.provide(Orchestrator.Default), Layer.provide(SchedulerConfig.layer({ leaseMs: 10_000 })));

/** `--auth`: which credentials the AuthValidator accepts. */
export const authValidatorLayer = (auth: AuthConfig) =>
  auth.mode === "none" ? AuthValidator.none : AuthValidator.layer({ apiKeys: auth.mode !== "jwt", jwt: auth.jwt });

export const makeRuntime = (config: ServerConfig, logger: JsonLogger) =>
  ManagedRuntime.make(Layer.mergeAll(appLayer(config, logger), jsonLoggerLayer(logger), telemetryLayer(config, logger)));

/** Tracing and metrics (off unless configured); with tracing on, the Effect tracer of the whole runtime. */
export const telemetryLayer = (config: ServerConfig, logger: JsonLogger) =>
  Telemetry.layer(config.telemetry, { host: config.host, logger });

/** The server's runtime: the Orchestrator and the ports it and the interceptors use. */
export type AppRuntime = ReturnType<typeof makeRuntime>;
