/**
 * `orchestrator keys create|list|revoke`: local administration of API keys, working directly on
 * a data dir's database (whoever can write the data dir is trusted already). Safe while the
 * server runs on the same data dir: SQLite in WAL mode, and the server reads keys per request,
 * so a revoked key is refused from its next request on.
 *
 * Exit codes: 0 done, 1 failed (e.g. no such key), 2 usage error.
 */
import { existsSync } from "node:fs";
import { userInfo } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Cause, Effect, Exit, Layer, Logger, LogLevel } from "effect";
import { ApiKeyNotFound, createApiKey, listApiKeys, revokeApiKey } from "../core/api-keys.js";
import { InvalidInput } from "../core/errors.js";
import type { Principal } from "../core/model.js";
import { builtinRoles } from "../core/permissions.js";
import { loadRoles } from "../auth-config.js";
import { ConfigError } from "../config.js";
import type { ApiKeyRecord, ApiKeyStore } from "../ports/ApiKeyStore.js";
import type { AuditLogger } from "../ports/AuditLogger.js";
import { ApiKeyStoreSqlite } from "../ports/sqlite/ApiKeyStoreSqlite.js";
import { AuditLoggerSqlite } from "../ports/sqlite/AuditLoggerSqlite.js";
import { SqliteDatabase } from "../ports/sqlite/SqliteDatabase.js";
import { ApiKeyStoreSql } from "../ports/sql/ApiKeyStoreSql.js";
import { PgDatabase } from "../ports/postgres/PgDatabase.js";
import { AuditLoggerPostgres } from "../ports/postgres/AuditLoggerPostgres.js";

export const keysUsage = `Usage:
  orchestrator keys create --subject S --roles r1,r2 [--tenant T] [--description X] [--data-dir D] [--json]
  orchestrator keys list [--data-dir D] [--json]
  orchestrator keys revoke ID [--data-dir D] [--json]

  --data-dir defaults to $ORCHESTRATOR_DATA_DIR, then ./data (as for the server).
  --database-url URL (or $ORCHESTRATOR_DATABASE_URL): the keys of servers run on PostgreSQL.
  create prints the key once: only its hash is stored. --roles-file F checks the roles against F
  instead of the built-in admin, operator, viewer.
`;

export interface Io {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

const processIo: Io = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) };

/** Runs one `keys` command; resolves to the exit code. */
export async function keysCommand(argv: ReadonlyArray<string>, env: NodeJS.ProcessEnv = process.env, io: Io = processIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        "data-dir": { type: "string" },
        subject: { type: "string" },
        tenant: { type: "string" },
        roles: { type: "string" },
        description: { type: "string" },
        "roles-file": { type: "string" },
        "database-url": { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    io.err(`orchestrator keys: ${e instanceof Error ? e.message : String(e)}\n\n${keysUsage}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help === true || command === undefined) {
    (values.help === true ? io.out : io.err)(keysUsage);
    return values.help === true ? 0 : 2;
  }
  const usage = (message: string) => {
    io.err(`orchestrator keys ${command}: ${message}\n\n${keysUsage}`);
    return 2;
  };
  const dataDir = resolve(values["data-dir"] ?? env["ORCHESTRATOR_DATA_DIR"] ?? "./data");
  // Servers on PostgreSQL (--database-url) keep their keys there, not in the data dir.
  const databaseUrl = values["database-url"] ?? (env["ORCHESTRATOR_DATABASE_URL"] || undefined);
  const actor: Principal = { subject: `cli:${safeUser()}`, tenant: "default", roles: [] };

  let program: Effect.Effect<number, unknown, ApiKeyStore | AuditLogger>;
  switch (command) {
    case "create": {
      if (rest.length > 0) return usage(`unexpected argument "${rest[0]}"`);
      if (values.subject === undefined) return usage("--subject is required");
      if (values.roles === undefined) return usage("--roles is required (comma-separated, e.g. operator or viewer,reports)");
      const roles = values.roles.split(",").map((r) => r.trim()).filter((r) => r !== "");
      let known: Readonly<Record<string, unknown>> = builtinRoles;
      try {
        known = loadRoles(values["roles-file"], "--roles-file");
      } catch (e) {
        if (e instanceof ConfigError) return usage(e.message);
        throw e;
      }
      for (const r of roles) {
        if (!Object.hasOwn(known, r)) io.err(`note: role "${r}" is not defined ${values["roles-file"] === undefined ? "among the built-in roles (admin, operator, viewer)" : `in ${values["roles-file"]}`}; it grants nothing unless the server's roles define it\n`);
      }
      program = Effect.map(
        createApiKey({ subject: values.subject, tenant: values.tenant, roles, description: values.description }, actor),
        ({ key, record }) => {
          if (values.json === true) io.out(JSON.stringify({ ...summary(record), key }) + "\n");
          else {
            io.out(
              `Created API key ${record.id} for ${record.subject} (tenant ${record.tenant}; roles ${record.roles.join(", ")}).\n` +
                `It is shown only this once; only its hash is stored:\n\n${key}\n\n` +
                `Use it as:  authorization: Bearer ${key}\n`,
            );
          }
          return 0;
        },
      );
      break;
    }
    case "list": {
      if (rest.length > 0) return usage(`unexpected argument "${rest[0]}"`);
      if (databaseUrl === undefined && !hasDatabase(dataDir)) return missing(io, dataDir);
      program = Effect.map(listApiKeys(), (keys) => {
        if (values.json === true) io.out(JSON.stringify(keys.map(summary)) + "\n");
        else io.out(table(keys));
        return 0;
      });
      break;
    }
    case "revoke": {
      if (rest.length !== 1) return usage("expected exactly one key id");
      if (databaseUrl === undefined && !hasDatabase(dataDir)) return missing(io, dataDir);
      const id = rest[0]!;
      program = Effect.map(revokeApiKey(id, actor), (result) => {
        if (values.json === true) io.out(JSON.stringify({ id, revoked: true, already_revoked: result._tag !== "Revoked" }) + "\n");
        else io.out(result._tag === "Revoked" ? `Revoked API key ${id} (${result.record.subject}).\n` : `API key ${id} was already revoked.\n`);
        return 0;
      });
      break;
    }
    default:
      return usage(`unknown command "${command}" (create, list or revoke)`);
  }

  const layer =
    databaseUrl === undefined
      ? Layer.mergeAll(ApiKeyStoreSqlite, AuditLoggerSqlite).pipe(Layer.provide(SqliteDatabase.layer(dataDir)))
      : Layer.mergeAll(ApiKeyStoreSql, AuditLoggerPostgres).pipe(Layer.provide(PgDatabase.layer(databaseUrl, { maxConnections: 2, applicationName: "orchestrator-keys" })));
  const quiet = Layer.merge(
    Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => io.err(`${Array.isArray(message) ? message.join(" ") : String(message)}\n`))),
    Logger.minimumLogLevel(LogLevel.Warning),
  );
  const exit = await Effect.runPromiseExit(program.pipe(Effect.provide(layer), Effect.provide(quiet)));
  if (Exit.isSuccess(exit)) return exit.value;
  const failure = Cause.squash(exit.cause);
  if (failure instanceof ApiKeyNotFound) {
    io.err(`orchestrator keys: ${failure.message}\n`);
    return 1;
  }
  if (failure instanceof InvalidInput) return usage(failure.message);
  io.err(`orchestrator keys: ${failure instanceof Error ? failure.message : String(failure)}\n`);
  return 1;
}

const hasDatabase = (dataDir: string) => existsSync(join(dataDir, SqliteDatabase.databaseFileName));

function missing(io: Io, dataDir: string): number {
  io.err(`orchestrator keys: no database in ${dataDir} (wrong --data-dir?)\n`);
  return 1;
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return "unknown";
  }
}

const iso = (t: number | undefined) => (t === undefined ? "" : new Date(t).toISOString());

/** A key as listed: everything but the hash. */
function summary(r: ApiKeyRecord) {
  return {
    id: r.id,
    subject: r.subject,
    tenant: r.tenant,
    roles: r.roles,
    description: r.description,
    created: iso(r.createTime),
    revoked: iso(r.revokeTime),
    last_used: iso(r.lastUsedTime),
  };
}

function table(keys: ReadonlyArray<ApiKeyRecord>): string {
  if (keys.length === 0) return "No API keys.\n";
  const rows = [
    ["ID", "SUBJECT", "TENANT", "ROLES", "CREATED", "REVOKED", "LAST USED", "DESCRIPTION"],
    ...keys.map((k) => {
      const s = summary(k);
      return [s.id, s.subject, s.tenant, s.roles.join(","), s.created, s.revoked || "-", s.last_used || "-", s.description];
    }),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n") + "\n";
}
