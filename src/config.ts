/**
 * Server configuration from flags and environment variables. Flags win over the environment,
 * the environment over defaults. Every setting is listed in README.md ("Configuration").
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { logLevels, type LogLevel } from "./log.js";

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
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

interface Setting {
  readonly flag: string;
  readonly env: string;
  readonly help: string;
  readonly default: string | undefined;
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
} satisfies Record<string, Setting>;

export function usage(): string {
  const lines = Object.values(settings).map(
    (s: Setting) =>
      `  --${s.flag.padEnd(18)} ${s.env.padEnd(32)} ${s.help}${s.default === undefined ? "" : ` (default ${s.default})`}`,
  );
  return ["Usage: orchestrator serve [flags]", "", "  flag                 environment variable             meaning", ...lines].join("\n");
}

export function loadConfig(argv: ReadonlyArray<string>, env: NodeJS.ProcessEnv): ServerConfig {
  const options = Object.fromEntries(
    Object.values(settings).map((s: Setting) => [s.flag, { type: "string" as const }]),
  );
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: [...argv], options, allowPositionals: false, strict: true }).values;
  } catch (e) {
    throw new ConfigError(e instanceof Error ? e.message : String(e));
  }
  const get = (s: Setting): string | undefined => {
    const v = values[s.flag];
    return typeof v === "string" ? v : (env[s.env] ?? s.default);
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
  return {
    host,
    port,
    dataDir: resolve(get(settings.dataDir) ?? "./data"),
    logLevel,
    tls: certFile !== undefined && keyFile !== undefined ? { certFile, keyFile } : undefined,
    maxMessageBytes,
    drainTimeoutMs,
  };
}

/** "250ms", "10s", "2m" or a bare number of seconds. */
export function parseDurationMs(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (m === null) return undefined;
  const n = Number(m[1]);
  const unit = m[2] ?? "s";
  return Math.round(unit === "ms" ? n : unit === "s" ? n * 1000 : n * 60_000);
}
