/**
 * Credentials at start-up. On a fresh data dir with nothing configured (API keys only, none
 * stored yet) the server creates an admin API key and prints it once, to stderr as a block for
 * a human (not into the JSON log, which is shipped elsewhere); only its hash is stored, so the
 * next start has nothing to print. With `--auth none` it warns, loudly, at every start.
 */
import { Effect } from "effect";
import type { AuthConfig } from "./auth-config.js";
import type { ServerConfig } from "./config.js";
import { ensureFirstRunKey } from "./core/api-keys.js";

export const setUpCredentials = (auth: AuthConfig) =>
  Effect.gen(function* () {
    if (auth.mode === "none") {
      yield* Effect.logWarning(
        "AUTHENTICATION IS OFF (--auth none): every caller is the admin, with every permission. Use it on a loopback address for local development only.",
      );
      return undefined;
    }
    if (auth.mode !== "api-keys") {
      yield* Effect.logInfo("authentication").pipe(
        Effect.annotateLogs({ accepts: auth.mode, issuer: auth.jwt?.issuer ?? "", audience: auth.jwt?.audience ?? "" }),
      );
      return undefined;
    }
    const created = yield* ensureFirstRunKey();
    if (created !== undefined) {
      yield* Effect.logWarning("first run: created an admin API key; it is printed once on stderr and stored only as a hash").pipe(
        Effect.annotateLogs({ credential_id: created.record.id }),
      );
    }
    return created;
  });

export function firstRunBanner(key: string, config: Pick<ServerConfig, "port" | "dataDir">): string {
  const port = config.port === 0 ? "<port>" : String(config.port);
  const rule = "=".repeat(78);
  return [
    "",
    rule,
    "  Orchestrator: first start on this data directory. An admin API key was created:",
    "",
    `      ${key}`,
    "",
    "  It is shown only this once: only its hash is stored. Keep it somewhere safe.",
    "  Use it as a bearer token:",
    "",
    `      grpcurl -plaintext -H 'authorization: Bearer ${key}' \\`,
    `        -d '{}' localhost:${port} orchestrator.v1.ExecutionService/ListExecutions`,
    "",
    "  More keys (and revoking this one), on this machine:",
    `      orchestrator keys create --data-dir ${config.dataDir} --subject <who> --roles operator`,
    `      orchestrator keys list --data-dir ${config.dataDir}`,
    `      orchestrator keys revoke --data-dir ${config.dataDir} <id>`,
    "  (`orchestrator` here is `node --import tsx src/main.ts`.)",
    rule,
    "",
    "",
  ].join("\n");
}
