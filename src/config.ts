/**
 * Server configuration from flags and environment variables. Flags win over the environment,
 * the environment over defaults. Every setting is listed in README.md ("Configuration").
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { logLevels, type LogLevel } from "./log.js";
import { loadAuthConfig, loadRoles, type AuthConfig } from "./auth-config.js";
import type { RoleTable } from "./core/permissions.js";
import { readFileSync as readLimitsFile } from "node:fs";
import type { FailureMode, RateLimit } from "./ports/RateLimiter.js";
import { LimitsFileError, noLimits, parseLimits, type Limits } from "./core/limits.js";
import { parseAllowlistEntry } from "./operations/host-policy.js";
import { telemetryConfigFromEnv, type TelemetryConfig } from "./telemetry/config.js";
import { Either } from "effect";
import { readPolicyFile } from "./policy/file.js";

export interface ServerConfig {
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  readonly logLevel: LogLevel;
  /** PEM certificate chain and key; both set means TLS (h2 and HTTP/1.1 negotiated by ALPN). */
  readonly tls: { readonly certFile: string; readonly keyFile: string } | undefined;
  /** Largest request or response message accepted, in bytes. */
  readonly maxMessageBytes: number;
  /** How long in-flight calls and streams may run on after SIGTERM/SIGINT before they are cut. */
  readonly drainTimeoutMs: number;
  /** Registers demo.echo, demo.sleep and demo.flaky. */
  readonly demoOperations: boolean;
  /** Hosts http.request may call. */
  readonly httpAllowlist: ReadonlyArray<string>;
  readonly httpAllowPrivateNetworks: boolean;
  /** Per principal and operation; undefined = none. */
  readonly operationRateLimit: RateLimit | undefined;
  /** --limits-file: request, operation, tenant, model, interval and in-flight limits (src/core/limits.ts). */
  readonly limits: Limits;
  /** Rate-limit state and token budgets in Redis (shared by several instances); undefined = in memory. */
  readonly redisUrl: string | undefined;
  /** Executions, audit log, schedules and API keys in PostgreSQL (several instances); undefined = SQLite in dataDir. */
  readonly databaseUrl: string | undefined;
  /** When Redis cannot be reached: refuse ("deny", fail closed) or admit ("allow", fail open). */
  readonly rateLimitOnError: FailureMode;
  /** How long a Redis decision may take before it counts as Redis being unreachable. */
  readonly redisTimeoutMs: number;
  /** How long ended executions are kept. */
  readonly retentionMs: number;
  /** How long audit events are kept; undefined = regardless of age. */
  readonly auditRetentionMs: number | undefined;
  /** How many of the newest audit events are kept at most; undefined = no count limit. */
  readonly auditRetentionEvents: number | undefined;
  /** Which credentials are accepted (src/auth-config.ts). */
  readonly auth: AuthConfig;
  /** role → permissions, hierarchy flattened: the built-in roles or --roles-file's. */
  readonly roles: RoleTable;
  /** Tracing (OTEL_* variables) and the metrics endpoint (src/telemetry/config.ts). */
  readonly telemetry: TelemetryConfig;
  /** --policy-file: rules, budgets, model limits (YAML or JSON), watched; undefined = allow all, no budgets. */
  readonly policyFile: string | undefined;
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

interface Setting {
  readonly flag: string;
  readonly env: string;
  readonly help: string;
  readonly default: string | undefined;
  /** A flag without a value (`--demo-operations`); the variable takes true/false. */
  readonly boolean?: true;
}

/** The single list of settings: parsing and `--help` both read it. */
export const settings = {
  host: { flag: "host", env: "ORCHESTRATOR_HOST", default: "127.0.0.1", help: "address to listen on (0.0.0.0 or :: to listen on every interface)" },
  port: { flag: "port", env: "ORCHESTRATOR_PORT", default: "50051", help: "TCP port for gRPC, gRPC-Web and Connect (0 picks a free port)" },
  dataDir: { flag: "data-dir", env: "ORCHESTRATOR_DATA_DIR", default: "./data", help: "directory of the embedded SQLite store" },
  logLevel: { flag: "log-level", env: "ORCHESTRATOR_LOG_LEVEL", default: "info", help: "debug | info | warn | error" },
  tlsCert: { flag: "tls-cert", env: "ORCHESTRATOR_TLS_CERT", default: undefined, help: "PEM certificate chain file; with --tls-key enables TLS" },
  tlsKey: { flag: "tls-key", env: "ORCHESTRATOR_TLS_KEY", default: undefined, help: "PEM private key file; with --tls-cert enables TLS" },
  maxMessageBytes: { flag: "max-message-bytes", env: "ORCHESTRATOR_MAX_MESSAGE_BYTES", default: String(4 * 1024 * 1024), help: "largest message accepted or sent, in bytes" },
  drainTimeout: { flag: "drain-timeout", env: "ORCHESTRATOR_DRAIN_TIMEOUT", default: "10s", help: "grace period for in-flight calls on shutdown (e.g. 500ms, 10s, 1m)" },
  demoOperations: { flag: "demo-operations", env: "ORCHESTRATOR_DEMO_OPERATIONS", default: "false", boolean: true, help: "register demo.echo, demo.sleep and demo.flaky" },
  httpAllowlist: { flag: "http-allowlist", env: "ORCHESTRATOR_HTTP_ALLOWLIST", default: "", help: "comma-separated hosts http.request may call: host, host:port, *.suffix, IP literals" },
  httpAllowPrivate: { flag: "http-allow-private-networks", env: "ORCHESTRATOR_HTTP_ALLOW_PRIVATE_NETWORKS", default: "false", boolean: true, help: "let allowlisted names resolve to loopback/private addresses" },
  operationRateLimit: { flag: "operation-rate-limit", env: "ORCHESTRATOR_OPERATION_RATE_LIMIT", default: "", help: "executions per principal and operation, as N/duration (e.g. 100/1m); empty = none" },
  limitsFile: { flag: "limits-file", env: "ORCHESTRATOR_LIMITS_FILE", default: undefined, help: "JSON file of rate limits: request, operation, tenant, models, minInterval, maxInFlight, overrides, shadow (see README, Limits)" },
  databaseUrl: { flag: "database-url", env: "ORCHESTRATOR_DATABASE_URL", default: undefined, help: "keep executions, schedules, the audit log and API keys in PostgreSQL (postgres://user[:password]@host:port/db), shared by several instances; unset = SQLite in --data-dir" },
  redisUrl: { flag: "redis-url", env: "ORCHESTRATOR_REDIS_URL", default: undefined, help: "keep rate-limit state and token budgets in Redis (redis://host:port[/db]), shared by several instances; unset = in memory" },
  redisTimeout: { flag: "redis-timeout", env: "ORCHESTRATOR_REDIS_TIMEOUT", default: "1s", help: "how long a Redis rate-limit or budget decision may take before Redis counts as unreachable (see --rate-limit-on-error)" },
  rateLimitOnError: { flag: "rate-limit-on-error", env: "ORCHESTRATOR_RATE_LIMIT_ON_ERROR", default: "deny", help: "when Redis cannot be reached: deny (refuse, UNAVAILABLE) or allow (rate limits: admitted, audited as degraded; token budgets: admitted unreserved)" },
  retention: { flag: "retention", env: "ORCHESTRATOR_RETENTION", default: "7d", help: "how long ended executions are kept (e.g. 12h, 30d)" },
  auditRetention: { flag: "audit-retention", env: "ORCHESTRATOR_AUDIT_RETENTION", default: "90d", help: "how long audit events are kept (e.g. 30d); 0 = regardless of age" },
  auditRetentionEvents: { flag: "audit-retention-events", env: "ORCHESTRATOR_AUDIT_RETENTION_EVENTS", default: "", help: "keep at most this many of the newest audit events; empty = no count limit" },
  auth: { flag: "auth", env: "ORCHESTRATOR_AUTH", default: undefined, help: "api-keys | jwt | jwt+api-keys | none (default: jwt+api-keys when a JWT key is set, else api-keys; none: every caller is admin, loopback only)" },
  jwtHs256SecretFile: { flag: "jwt-hs256-secret-file", env: "ORCHESTRATOR_JWT_HS256_SECRET_FILE", default: undefined, help: "file holding the shared HS256 secret (at least 32 bytes)" },
  jwtJwksFile: { flag: "jwt-jwks-file", env: "ORCHESTRATOR_JWT_JWKS_FILE", default: undefined, help: "JWKS file of RS256/ES256 public keys" },
  jwtJwksUrl: { flag: "jwt-jwks-url", env: "ORCHESTRATOR_JWT_JWKS_URL", default: undefined, help: "JWKS URL of RS256/ES256 public keys (https; fetched, cached, refreshed)" },
  jwtIssuer: { flag: "jwt-issuer", env: "ORCHESTRATOR_JWT_ISSUER", default: undefined, help: "required `iss` of JWTs (required with JWT auth)" },
  jwtAudience: { flag: "jwt-audience", env: "ORCHESTRATOR_JWT_AUDIENCE", default: undefined, help: "required `aud` of JWTs (required with JWT auth)" },
  jwtClockSkew: { flag: "jwt-clock-skew", env: "ORCHESTRATOR_JWT_CLOCK_SKEW", default: "30s", help: "tolerance for exp and nbf (at most 5m)" },
  jwtTenantClaim: { flag: "jwt-tenant-claim", env: "ORCHESTRATOR_JWT_TENANT_CLAIM", default: "tenant", help: "claim (or dotted path) holding the tenant; absent = default" },
  jwtRolesClaim: { flag: "jwt-roles-claim", env: "ORCHESTRATOR_JWT_ROLES_CLAIM", default: "roles", help: "claim (or dotted path) holding the roles (list, or space-separated string)" },
  rolesFile: { flag: "roles-file", env: "ORCHESTRATOR_ROLES_FILE", default: undefined, help: "JSON file of roles, their permissions and what they inherit (default: admin > operator > viewer)" },
  protectHealth: { flag: "protect-health", env: "ORCHESTRATOR_PROTECT_HEALTH", default: "false", boolean: true, help: "require credentials for health and reflection too" },
  policyFile: { flag: "policy-file", env: "ORCHESTRATOR_POLICY_FILE", default: undefined, help: "YAML (.yaml/.yml) or JSON (.json) policy: rules with CEL conditions, token budgets, model limits; watched and reloaded (see README, Policy)" },
  metricsPort: { flag: "metrics-port", env: "ORCHESTRATOR_METRICS_PORT", default: undefined, help: "serve Prometheus metrics at /metrics on this port of --host (e.g. 9464; 0 picks a free port); empty = off" },
} satisfies Record<string, Setting>;

export function usage(): string {
  const lines = Object.values(settings).map(
    (s: Setting) =>
      `  --${s.flag.padEnd(28)} ${s.env.padEnd(40)} ${s.help}${s.default === undefined ? "" : ` (default ${s.default})`}`,
  );
  return ["Usage: orchestrator serve [flags]", "", `  ${"flag".padEnd(30)} ${"environment variable".padEnd(40)} meaning`, ...lines].join("\n");
}

export function loadConfig(argv: ReadonlyArray<string>, env: NodeJS.ProcessEnv): ServerConfig {
  const options = Object.fromEntries(
    Object.values(settings).map((s: Setting) => [s.flag, { type: s.boolean === true ? ("boolean" as const) : ("string" as const) }]),
  );
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: [...argv], options, allowPositionals: false, strict: true }).values;
  } catch (e) {
    throw new ConfigError(e instanceof Error ? e.message : String(e));
  }
  const get = (s: Setting): string | undefined => {
    const v = values[s.flag];
    if (typeof v === "boolean") return String(v);
    return typeof v === "string" ? v : (env[s.env] ?? s.default);
  };
  const bool = (s: Setting): boolean => {
    const v = (get(s) ?? "false").toLowerCase();
    if (v === "true" || v === "1") return true;
    if (v === "false" || v === "0" || v === "") return false;
    throw new ConfigError(`${where(s)}: expected true or false, got "${v}"`);
  };
  const where = (s: Setting) => `--${s.flag} / ${s.env}`;

  const port = Number(get(settings.port));
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`${where(settings.port)}: expected a port number 0-65535, got "${get(settings.port)}"`);
  }
  const logLevel = get(settings.logLevel) as LogLevel;
  if (!logLevels.includes(logLevel)) {
    throw new ConfigError(`${where(settings.logLevel)}: expected one of ${logLevels.join(", ")}, got "${logLevel}"`);
  }
  const maxMessageBytes = Number(get(settings.maxMessageBytes));
  if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 1024) {
    throw new ConfigError(`${where(settings.maxMessageBytes)}: expected a whole number of bytes ≥ 1024`);
  }
  const drain = get(settings.drainTimeout) ?? "";
  const drainTimeoutMs = parseDurationMs(drain);
  if (drainTimeoutMs === undefined) {
    throw new ConfigError(`${where(settings.drainTimeout)}: expected a duration like 500ms, 10s or 1m, got "${drain}"`);
  }
  const certFile = get(settings.tlsCert);
  const keyFile = get(settings.tlsKey);
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new ConfigError("TLS needs both --tls-cert and --tls-key (or neither)");
  }
  const host = get(settings.host) ?? "127.0.0.1";

  const httpAllowlist = (get(settings.httpAllowlist) ?? "").split(",").map((e) => e.trim()).filter((e) => e !== "");
  for (const entry of httpAllowlist) {
    const parsed = parseAllowlistEntry(entry);
    if (typeof parsed === "string") throw new ConfigError(`${where(settings.httpAllowlist)}: "${entry}": ${parsed}`);
  }
  const limitText = get(settings.operationRateLimit) ?? "";
  let operationRateLimit: RateLimit | undefined;
  if (limitText !== "") {
    const m = /^(\d+)\/(.+)$/.exec(limitText);
    const windowMs = m === null ? undefined : parseDurationMs(m[2]!);
    if (m === null || windowMs === undefined || windowMs <= 0 || Number(m[1]) < 1) {
      throw new ConfigError(`${where(settings.operationRateLimit)}: expected N/duration like 100/1m, got "${limitText}"`);
    }
    if (Number(m[1]) > 1_000_000 || windowMs > 30 * 86_400_000 || Number(m[1]) * windowMs > 2 ** 52) {
      throw new ConfigError(`${where(settings.operationRateLimit)}: at most 1000000 per window of at most 30d, got "${limitText}"`);
    }
    operationRateLimit = { limit: Number(m[1]), windowMs };
  }
  const limitsFile = get(settings.limitsFile);
  const limits = limitsFile === undefined ? noLimits : loadLimits(limitsFile, where(settings.limitsFile));
  const databaseUrl = get(settings.databaseUrl);
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\/\S+$/.test(databaseUrl)) {
    // The value may hold a password: never echo it.
    throw new ConfigError(`${where(settings.databaseUrl)}: expected a postgres://… or postgresql://… URL`);
  }
  const redisUrl = get(settings.redisUrl);
  if (redisUrl !== undefined && !/^rediss?:\/\/[^/\s]+(\/\d+)?\/?$/.test(redisUrl)) {
    throw new ConfigError(`${where(settings.redisUrl)}: expected redis://host:port or rediss://host:port (optionally /db), got "${redisUrl}"`);
  }
  const rateLimitOnError = get(settings.rateLimitOnError) ?? "deny";
  if (rateLimitOnError !== "deny" && rateLimitOnError !== "allow") {
    throw new ConfigError(`${where(settings.rateLimitOnError)}: expected deny or allow, got "${rateLimitOnError}"`);
  }
  const redisTimeoutMs = parseDurationMs(get(settings.redisTimeout) ?? "1s");
  if (redisTimeoutMs === undefined || redisTimeoutMs <= 0) {
    throw new ConfigError(`${where(settings.redisTimeout)}: expected a duration like 500ms or 2s`);
  }
  const retentionMs = parseDurationMs(get(settings.retention) ?? "");
  if (retentionMs === undefined || retentionMs <= 0) {
    throw new ConfigError(`${where(settings.retention)}: expected a duration like 12h or 30d`);
  }
  const auditRetentionText = get(settings.auditRetention) ?? "";
  const auditRetentionMs = parseDurationMs(auditRetentionText);
  if (auditRetentionMs === undefined || auditRetentionMs < 0) {
    throw new ConfigError(`${where(settings.auditRetention)}: expected a duration like 30d or 0, got "${auditRetentionText}"`);
  }
  const auditEventsText = (get(settings.auditRetentionEvents) ?? "").trim();
  const auditRetentionEvents = auditEventsText === "" ? undefined : Number(auditEventsText);
  if (auditRetentionEvents !== undefined && (!Number.isInteger(auditRetentionEvents) || auditRetentionEvents < 1)) {
    throw new ConfigError(`${where(settings.auditRetentionEvents)}: expected a whole number ≥ 1 or nothing, got "${auditEventsText}"`);
  }
  const auth = loadAuthConfig(
    {
      auth: get(settings.auth),
      hs256SecretFile: get(settings.jwtHs256SecretFile),
      jwksFile: get(settings.jwtJwksFile),
      jwksUrl: get(settings.jwtJwksUrl),
      issuer: get(settings.jwtIssuer),
      audience: get(settings.jwtAudience),
      clockSkew: get(settings.jwtClockSkew),
      tenantClaim: get(settings.jwtTenantClaim),
      rolesClaim: get(settings.jwtRolesClaim),
      protectHealth: bool(settings.protectHealth),
    },
    (key) =>
      where(
        {
          auth: settings.auth,
          hs256SecretFile: settings.jwtHs256SecretFile,
          jwksFile: settings.jwtJwksFile,
          jwksUrl: settings.jwtJwksUrl,
          issuer: settings.jwtIssuer,
          audience: settings.jwtAudience,
          clockSkew: settings.jwtClockSkew,
          tenantClaim: settings.jwtTenantClaim,
          rolesClaim: settings.jwtRolesClaim,
          protectHealth: settings.protectHealth,
        }[key],
      ),
    host,
  );
  const metricsPortText = get(settings.metricsPort) ?? "";
  const metricsPort = metricsPortText === "" ? undefined : Number(metricsPortText);
  if (metricsPort !== undefined && (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535)) {
    throw new ConfigError(`${where(settings.metricsPort)}: expected a port number 0-65535 or nothing, got "${metricsPortText}"`);
  }
  const telemetry = telemetryConfigFromEnv(env, metricsPort);
  if ("problem" in telemetry) throw new ConfigError(telemetry.problem);
  const policyFile = get(settings.policyFile);
  if (policyFile !== undefined) {
    // Checked here so that a bad policy stops the server before anything starts; the server
    // loads it again (and watches it) when it starts.
    const policy = readPolicyFile(resolve(policyFile));
    if (Either.isLeft(policy)) throw new ConfigError(`${where(settings.policyFile)}: ${policy.left.message}`);
  }
  return {
    host,
    port,
    dataDir: resolve(get(settings.dataDir) ?? "./data"),
    logLevel,
    tls: certFile !== undefined && keyFile !== undefined ? { certFile, keyFile } : undefined,
    maxMessageBytes,
    drainTimeoutMs,
    demoOperations: bool(settings.demoOperations),
    httpAllowlist,
    httpAllowPrivateNetworks: bool(settings.httpAllowPrivate),
    operationRateLimit,
    limits,
    redisUrl,
    databaseUrl,
    rateLimitOnError,
    redisTimeoutMs,
    retentionMs,
    auditRetentionMs: auditRetentionMs === 0 ? undefined : auditRetentionMs,
    auditRetentionEvents,
    auth,
    roles: loadRoles(get(settings.rolesFile), where(settings.rolesFile)),
    telemetry: telemetry.config,
    policyFile: policyFile === undefined ? undefined : resolve(policyFile),
  };
}

/** The limits file (format in src/core/limits.ts and README.md, "Limits"). */
export function loadLimits(file: string, setting = "--limits-file"): Limits {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readLimitsFile(file, "utf8"));
  } catch (e) {
    throw new ConfigError(`${setting}: cannot read ${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
  try {
    return parseLimits(parsed, parseDurationMs);
  } catch (e) {
    if (e instanceof LimitsFileError) throw new ConfigError(`${setting}: ${file}: ${e.message}`);
    throw e;
  }
}

const unitMs: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "250ms", "10s", "2m", "12h", "30d" or a bare number of seconds. */
export function parseDurationMs(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (m === null) return undefined;
  return Math.round(Number(m[1]) * unitMs[m[2] ?? "s"]!);
}
