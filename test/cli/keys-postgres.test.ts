/**
 * `orchestrator keys` for servers on PostgreSQL (--database-url / ORCHESTRATOR_DATABASE_URL):
 * the keys live in the shared database, not in a data dir. Real PostgreSQL (test/support).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPostgres, type PostgresServer } from "../support/postgres.js";
import { spawnServer, type ServerProcess } from "../support/server.js";
import { cli } from "./run.js";

let pg: PostgresServer;
let url: string;
let server: ServerProcess;

beforeAll(async () => {
  pg = await startPostgres();
  url = await pg.createDatabase();
}, 120_000);
afterAll(async () => {
  await server?.stop();
  await pg?.stop();
});

describe("orchestrator keys --database-url", () => {
  it("creates a key in PostgreSQL that a server on that database accepts; lists and revokes it there", async () => {
    // Before the server's first start, like provisioning: the database is migrated by whoever comes first.
    const admin = (await cli(["keys", "create", "--database-url", url, "--subject", "root", "--roles", "admin", "--key-only"])).stdout.trim();
    const made = await cli(["keys", "create", "--database-url", url, "--subject", "ops", "--roles", "operator", "--key-only"]);
    expect(made.code, made.stderr).toBe(0);
    const key = made.stdout.trim();
    expect(key).toMatch(/^ork_[a-z0-9]{12}_[A-Za-z0-9]{43}$/);
    const id = key.split("_")[1]!;

    server = await spawnServer(["--auth", "api-keys", "--database-url", url]);
    const env = { ORCHESTRATOR_ADDRESS: server.address, ORCHESTRATOR_TOKEN: key };
    expect(await cli(["executions", "list"], { env })).toMatchObject({ code: 0, stdout: "No executions.\n" });

    const listed = await cli(["keys", "list", "-o", "json"], { env: { ORCHESTRATOR_DATABASE_URL: url } });
    expect(JSON.parse(listed.stdout)).toContainEqual(expect.objectContaining({ id, subject: "ops", roles: ["operator"], revoked: "" }));
    expect(await cli(["keys", "revoke", id], { env: { ORCHESTRATOR_DATABASE_URL: url } })).toMatchObject({ code: 0, stdout: `Revoked API key ${id} (ops).\n` });
    expect((await cli(["executions", "list"], { env })).code).toBe(3);

    // Both were audited in the shared log, with the key's id and never its secret.
    const audit = await cli(["audit", "list", "--type", "credentials-created", "--type", "credentials-revoked", "-o", "json"], { env: { ORCHESTRATOR_ADDRESS: server.address, ORCHESTRATOR_TOKEN: admin } });
    expect(audit.code, audit.stderr).toBe(0);
    const events = (JSON.parse(audit.stdout) as { events: Array<{ type: string; details: Record<string, unknown> }> }).events.filter((e) => e.details["credential_id"] === id);
    expect(events.map((e) => e.type)).toEqual(["AUDIT_EVENT_TYPE_CREDENTIALS_CREATED", "AUDIT_EVENT_TYPE_CREDENTIALS_REVOKED"]);
    expect(audit.stdout).not.toContain(key.split("_")[2]);
  });
});
