/**
 * The real process: the first-run admin key (printed once on stderr, stored hashed, working),
 * `orchestrator keys create|list|revoke` on a data dir, and `--auth none` refused off loopback.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ExecutionService } from "../../gen/orchestrator/v1/execution_service_pb.js";
import { bearer } from "../support/auth.js";
import { repoRoot, spawnServer } from "../support/server.js";

const execFileP = promisify(execFile);

/** `node --import tsx src/main.ts <args>`: exit code, stdout, stderr. */
async function main(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, ["--import", "tsx", "src/main.ts", ...args], { cwd: repoRoot });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

const keyPattern = /ork_[a-z0-9]{12}_[A-Za-z0-9]{43}/g;
const client = (baseUrl: string, key: string) => createClient(ExecutionService, createGrpcTransport({ baseUrl, interceptors: [bearer(key)] }));

describe("first run", () => {
  it("a fresh data dir with no credentials gets an admin key, printed once on stderr (not in the JSON log), that works; the next start prints nothing", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "orchestrator-first-run-"));
    const first = await spawnServer(["--auth", "api-keys", "--data-dir", dataDir]);
    let key: string;
    try {
      const printed = first.stderr().match(keyPattern) ?? [];
      expect(new Set(printed).size).toBe(1);
      key = printed[0]!;
      expect(first.stderr()).toMatch(/shown only this once/);
      expect(JSON.stringify(first.logs)).not.toContain(key);
      const note = first.logs.find((l) => String(l["msg"]).startsWith("first run: created an admin API key"));
      expect(note?.["credential_id"]).toBe(key.split("_")[1]);

      const page = await client(first.baseUrl, key).listExecutions({});
      expect(page.executions).toEqual([]);
      const noKey = createClient(ExecutionService, createGrpcTransport({ baseUrl: first.baseUrl }));
      await expect(noKey.listExecutions({})).rejects.toSatisfy((e) => ConnectError.from(e).code === Code.Unauthenticated);
    } finally {
      await first.stop();
    }
    // Only the hash is on disk.
    const db = readFileSync(join(dataDir, "orchestrator.db")).toString("latin1") + readWal(dataDir);
    expect(db).not.toContain(key.split("_")[2]);

    const second = await spawnServer(["--auth", "api-keys", "--data-dir", dataDir]);
    try {
      expect(second.stderr()).not.toMatch(keyPattern);
      expect(second.logs.some((l) => String(l["msg"]).startsWith("first run"))).toBe(false);
      await expect(client(second.baseUrl, key).listExecutions({})).resolves.toBeDefined();
      const listed = await main("keys", "list", "--data-dir", dataDir, "--json");
      expect(JSON.parse(listed.stdout)).toMatchObject([{ id: key.split("_")[1], subject: "admin", tenant: "default", roles: ["admin"], revoked: "" }]);
      expect(listed.stdout).not.toContain(key);
    } finally {
      await second.stop();
    }
  });

  it("no first-run key when JWTs are configured, or when keys were provisioned before the first start", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "orchestrator-first-run-"));
    const made = await main("keys", "create", "--data-dir", dataDir, "--subject", "ops", "--roles", "admin");
    expect(made.code).toBe(0);
    const s = await spawnServer(["--auth", "api-keys", "--data-dir", dataDir]);
    try {
      expect(s.stderr()).not.toMatch(keyPattern);
      await expect(client(s.baseUrl, made.stdout.match(keyPattern)![0]!).listExecutions({})).resolves.toBeDefined();
    } finally {
      await s.stop();
    }
  });
});

describe("orchestrator keys", () => {
  it("create prints the key once; list shows no secret; revoke; errors have exit codes", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "orchestrator-keys-"));
    const created = await main("keys", "create", "--data-dir", dataDir, "--subject", "reports-bot", "--tenant", "acme", "--roles", "operator,viewer", "--description", "nightly reports");
    expect(created.code).toBe(0);
    const keys = created.stdout.match(keyPattern) ?? [];
    expect(keys).toHaveLength(2); // the key on its own line, and in the usage hint
    const id = keys[0]!.split("_")[1]!;
    expect(created.stdout).toContain(`Created API key ${id} for reports-bot (tenant acme; roles operator, viewer)`);

    const table = await main("keys", "list", "--data-dir", dataDir);
    expect(table.stdout).toMatch(/^ID\s+SUBJECT\s+TENANT\s+ROLES\s+CREATED\s+REVOKED/);
    expect(table.stdout).toMatch(new RegExp(`${id}\\s+reports-bot\\s+acme\\s+operator,viewer\\s+\\S+\\s+-`));
    expect(table.stdout).not.toContain(keys[0]!.split("_")[2]);

    expect(await main("keys", "revoke", id, "--data-dir", dataDir)).toMatchObject({ code: 0, stdout: `Revoked API key ${id} (reports-bot).\n` });
    expect(await main("keys", "revoke", id, "--data-dir", dataDir)).toMatchObject({ code: 0, stdout: `API key ${id} was already revoked.\n` });
    const after = JSON.parse((await main("keys", "list", "--data-dir", dataDir, "--json")).stdout) as Array<{ revoked: string }>;
    expect(after[0]?.revoked).toMatch(/^\d{4}-\d\d-\d\dT/);

    expect(await main("keys", "revoke", "nosuchkey123", "--data-dir", dataDir)).toMatchObject({ code: 1, stderr: expect.stringMatching(/no API key with id "nosuchkey123"/) });
    expect((await main("keys", "create", "--data-dir", dataDir, "--roles", "viewer")).code).toBe(2);
    expect((await main("keys", "create", "--data-dir", dataDir, "--subject", "x", "--roles", "bad role")).stderr).toMatch(/roles: "bad role"/);
    expect((await main("keys", "frobnicate", "--data-dir", dataDir)).code).toBe(2);
    expect(await main("keys", "list", "--data-dir", join(dataDir, "missing"))).toMatchObject({ code: 1, stderr: expect.stringMatching(/no database in/) });
    const unknownRole = await main("keys", "create", "--data-dir", dataDir, "--subject", "x", "--roles", "auditor");
    expect(unknownRole.stderr).toMatch(/role "auditor" is not defined among the built-in roles/);
  });
});

describe("--auth none", () => {
  it("is refused off loopback (exit 2), and warns loudly on loopback", async () => {
    const refused = await main("--auth", "none", "--host", "0.0.0.0", "--port", "0", "--data-dir", mkdtempSync(join(tmpdir(), "orchestrator-none-")));
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--auth \/ ORCHESTRATOR_AUTH: "none" makes every caller the admin/);
    const s = await spawnServer(["--auth", "none"]);
    try {
      expect(s.logs.some((l) => l["level"] === "warn" && String(l["msg"]).startsWith("AUTHENTICATION IS OFF"))).toBe(true);
    } finally {
      await s.stop();
    }
  });
});

function readWal(dataDir: string): string {
  try {
    return readFileSync(join(dataDir, "orchestrator.db-wal")).toString("latin1");
  } catch {
    return "";
  }
}
