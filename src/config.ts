/**
 * Server configuration from flags and environment variables. Flags win over the environment,
 * the environment over defaults. Every setting is listed in README.md ("Configuration").
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { readFileSync } from "node:fs";
import { logLevels, type LogLevel } from "./log.js";
import type { Principal } from "./core/model.js";
import type { RateLimit } from "./ports/RateLimiter.js";
import { parseAllowlistEntry } from "./operations/host-policy.js";

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
  /** How long ended executions are kept. */
  readonly retentionMs: number;
  /** Bearer token → principal; undefined = no credentials configured (every caller is the local admin). */
  readonly tokens: ReadonlyMap<string, Principal> | undefined;
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
  retention: { flag: "retention", env: "ORCHESTRATOR_RETENTION", default: "7d", help: "how long ended executions are kept (e.g. 12h, 30d)" },
  tokensFile: { flag: "tokens-file", env: "ORCHESTRATOR_TOKENS_FILE", default: undefined, help: "JSON file of bearer tokens and their principals; unset = every caller is the local admin" },
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
    operationRateLimit = { limit: Number(m[1]), windowMs };
  }
  const retentionMs = parseDurationMs(get(settings.retention) ?? "");
  if (retentionMs === undefined || retentionMs <= 0) {
    throw new ConfigError(`${where(settings.retention)}: expected a duration like 12h or 30d`);
  }
  const tokensFile = get(settings.tokensFile);
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
    retentionMs,
    tokens: tokensFile === undefined ? undefined : loadTokens(tokensFile, where(settings.tokensFile)),
  };
}

/**
 * The tokens file: `{"tokens": [{"token": "…", "subject": "…", "tenant": "…", "roles": ["…"]}]}`.
 * Tokens of fewer than 16 characters are refused: they are guessable.
 */
export function loadTokens(file: string, setting = "--tokens-file"): ReadonlyMap<string, Principal> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new ConfigError(`${setting}: cannot read ${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const list = (parsed as { tokens?: unknown }).tokens;
  if (!Array.isArray(list)) throw new ConfigError(`${setting}: ${file} must hold {"tokens": [...]}`);
  const out = new Map<string, Principal>();
  list.forEach((t: unknown, i) => {
    const e = t as { token?: unknown; subject?: unknown; tenant?: unknown; roles?: unknown };
    const ok =
      typeof e.token === "string" &&
      e.token.length >= 16 &&
      typeof e.subject === "string" &&
      e.subject !== "" &&
      (e.tenant === undefined || typeof e.tenant === "string") &&
      Array.isArray(e.roles) &&
      e.roles.every((r) => typeof r === "string");
    if (!ok) throw new ConfigError(`${setting}: tokens[${i}] needs token (≥ 16 chars), subject, roles[] and optionally tenant`);
    out.set(e.token as string, { subject: e.subject as string, tenant: (e.tenant as string | undefined) ?? "default", roles: e.roles as string[] });
  });
  return out;
}

const unitMs: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "250ms", "10s", "2m", "12h", "30d" or a bare number of seconds. */
export function parseDurationMs(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (m === null) return undefined;
  return Math.round(Number(m[1]) * unitMs[m[2] ?? "s"]!);
}
