/**
 * The real `orchestrator` binary against real server processes: keys, exec, executions, the
 * connection flags (token, address, TLS, protocol), errors with their details, exit codes.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnServer, type ServerProcess } from "../support/server.js";
import { cli, cliPiped } from "./run.js";

const keyPattern = /ork_[a-z0-9]{12}_[A-Za-z0-9]{43}/;

let server: ServerProcess;
let token: string;
let viewerToken: string;
const env = (extra: NodeJS.ProcessEnv = {}) => ({ ORCHESTRATOR_ADDRESS: server.address, ORCHESTRATOR_TOKEN: token, ...extra });

beforeAll(async () => {
  server = await spawnServer(["--demo-operations", "--auth", "api-keys"]);
  const created = await cli(["keys", "create", "--data-dir", server.dataDir, "--subject", "ci", "--roles", "operator"]);
  expect(created.code, created.stderr).toBe(0);
  token = keyPattern.exec(created.stdout)![0];
  const viewer = await cli(["keys", "create", "--data-dir", server.dataDir, "--subject", "watcher", "--roles", "viewer", "--output", "json"]);
  viewerToken = (JSON.parse(viewer.stdout) as { key: string }).key;
});
afterAll(async () => {
  await server?.stop();
});

describe("orchestrator keys", () => {
  it("create shows the secret once; list (text and json) never does; revoke refuses the key from then on", async () => {
    const made = await cli(["keys", "create", "--data-dir", server.dataDir, "--subject", "temp", "--roles", "viewer", "--tenant", "acme", "-o", "json"]);
    expect(made.code, made.stderr).toBe(0);
    const { id, key, subject, tenant, roles } = JSON.parse(made.stdout) as { id: string; key: string; subject: string; tenant: string; roles: string[] };
    expect({ subject, tenant, roles }).toEqual({ subject: "temp", tenant: "acme", roles: ["viewer"] });
    expect(key).toMatch(keyPattern);

    const listed = await cli(["keys", "list", "--data-dir", server.dataDir]);
    expect(listed.stdout).toMatch(new RegExp(`^${id}\\s+temp\\s+acme\\s+viewer`, "m"));
    expect(listed.stdout).not.toContain(key.split("_")[2]);
    const json = JSON.parse((await cli(["keys", "list", "--data-dir", server.dataDir, "--json"])).stdout) as Array<{ id: string }>;
    expect(json.map((k) => k.id)).toContain(id);

    expect(await cli(["executions", "list"], { env: env({ ORCHESTRATOR_TOKEN: key }) })).toMatchObject({ code: 0 });
    expect(await cli(["keys", "revoke", id, "--data-dir", server.dataDir])).toMatchObject({ code: 0, stdout: `Revoked API key ${id} (temp).\n` });
    expect(await cli(["keys", "revoke", id, "--data-dir", server.dataDir, "-o", "json"])).toMatchObject({ code: 0, stdout: `{"id":"${id}","revoked":true,"already_revoked":true}\n` });
    const refused = await cli(["executions", "list"], { env: env({ ORCHESTRATOR_TOKEN: key }) });
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/^error: UNAUTHENTICATED: invalid credentials\n {2}reason: UNAUTHENTICATED \(orchestrator\.v1\)/);
  });

  it("usage mistakes exit 2", async () => {
    expect((await cli(["keys", "create", "--data-dir", server.dataDir, "--roles", "viewer"])).code).toBe(2);
    expect((await cli(["keys", "revoke", "--data-dir", server.dataDir])).code).toBe(2);
    expect(await cli(["keys", "revoke", "nosuchkey123", "--data-dir", server.dataDir])).toMatchObject({ code: 1, stderr: expect.stringMatching(/no API key with id/) });
  });
});

describe("orchestrator exec", () => {
  it("runs an operation with the token from ORCHESTRATOR_TOKEN and prints the result (exit 0)", async () => {
    const r = await cli(["exec", "demo.echo", "--input", '{"message":"hi"}', "--label", "team=ci"], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Execution [0-9a-f-]{36} accepted: demo\.echo\n/);
    expect(r.stdout).toMatch(/✔ Succeeded after 1 attempt in /);
    expect(r.stdout).toContain('Result:\n{\n  "echo": {\n    "message": "hi"\n  }\n}\n');
  });

  it("--token and --address flags win over the environment; @file and - read the input", async () => {
    const dir = mkdtempSync(join(tmpdir(), "orchestrator-cli-"));
    const file = join(dir, "input.json");
    writeFileSync(file, '{"message":"from a file"}');
    const r = await cli(["exec", "demo.echo", "--input", `@${file}`, "--token", token, "--address", server.baseUrl], {
      env: { ORCHESTRATOR_ADDRESS: "127.0.0.1:1", ORCHESTRATOR_TOKEN: "ork_wrong" },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('"message": "from a file"');
    const stdin = await cli(["exec", "demo.echo", "--input", "-", "-o", "json"], { env: env(), stdin: '{"message":"from stdin"}' });
    expect(stdin.code, stdin.stderr).toBe(0);
    const events = stdin.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.map((e) => Object.keys(e).find((k) => k !== "executionId" && k !== "time"))).toEqual(["accepted", "attemptStarted", "succeeded"]);
    expect(events.at(-1)).toMatchObject({ succeeded: { result: { echo: { message: "from stdin" } }, attempts: 1 } });
  });

  it("a failed execution exits 1 and says why", async () => {
    const r = await cli(["exec", "demo.flaky", "--input", '{"failures":3,"errorType":"INVALID"}'], { env: env() });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/Attempt 1 failed: INVALID: demo\.flaky failed attempt 1 of 3 planned failures .* \(not retryable\)/);
    expect(r.stdout).toMatch(/✘ Failed after 1 attempt: INVALID: /);
  });

  it("errors print the code, message, reason, metadata and field violations, never a stack (exit 3)", async () => {
    const invalid = await cli(["exec", "demo.echo", "--input", '{"messag":"hi"}'], { env: env() });
    expect(invalid.code).toBe(3);
    expect(invalid.stderr).toBe(
      "error: INVALID_ARGUMENT: input.message: is missing\n  reason: INVALID_ARGUMENT (orchestrator.v1)\n  field input.message: is missing\n",
    );
    const unknown = await cli(["exec", "no.such.op", "-o", "json"], { env: env() });
    expect(unknown.code).toBe(3);
    expect(JSON.parse(unknown.stderr)).toEqual({
      error: { code: "NOT_FOUND", message: expect.stringContaining("no.such.op"), reason: "OPERATION_NOT_FOUND", domain: "orchestrator.v1", metadata: { operation: "no.such.op" } },
    });
    const denied = await cli(["exec", "demo.echo", "--input", '{"message":"x"}'], { env: env({ ORCHESTRATOR_TOKEN: viewerToken }) });
    expect(denied.code).toBe(3);
    expect(denied.stderr).toMatch(/^error: PERMISSION_DENIED: .*\n {2}reason: PERMISSION_DENIED \(orchestrator\.v1\)\n(.*\n)* {2}permission: execute:demo\.echo\n/);
    expect(denied.stderr).not.toMatch(/\bat .*\.(ts|js):\d+/);
  });

  it("usage mistakes exit 2 and send nothing", async () => {
    for (const args of [["exec"], ["exec", "demo.echo", "--input", "{not json"], ["exec", "demo.echo", "--input", "[1]"], ["exec", "demo.echo", "--label", "novalue"], ["exec", "demo.echo", "--timeout", "soon"], ["exec", "demo.echo", "--input", "@/no/such/file"]]) {
      const r = await cli(args, { env: env() });
      expect(r.code, `${args.join(" ")}\n${r.stdout}${r.stderr}`).toBe(2);
    }
    expect((await cli(["exec", "demo.echo", "--address", "not an address"], { env: env() })).code).toBe(2);
  });

  it("an unreachable server exits 4", async () => {
    const r = await cli(["exec", "demo.echo", "--input", '{"message":"x"}', "--address", "127.0.0.1:1"], { env: env() });
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/^error: UNAVAILABLE: /);
  });

  it("--detach returns once accepted; executions get/list/cancel follow it; --request-id deduplicates", async () => {
    const detached = await cli(["exec", "demo.sleep", "--input", '{"durationMs":60000}', "--detach", "--request-id", "cli-detach-1", "-o", "json"], { env: env() });
    expect(detached.code, detached.stderr).toBe(0);
    const lines = detached.stdout.trim().split("\n");
    expect(lines).toHaveLength(1);
    const id = (JSON.parse(lines[0]!) as { executionId: string }).executionId;

    const again = await cli(["exec", "demo.sleep", "--input", '{"durationMs":60000}', "--detach", "--request-id", "cli-detach-1"], { env: env() });
    expect(again.stdout).toContain(`Execution ${id} accepted: demo.sleep (deduplicated: following the existing execution)`);
    expect(again.stdout).toContain(`Detached; follow it with: orchestrator executions get ${id}`);

    const got = await cli(["executions", "get", id], { env: env() });
    expect(got.code, got.stderr).toBe(0);
    expect(got.stdout).toMatch(new RegExp(`^Execution\\s+${id}\\nOperation\\s+demo\\.sleep\\nState\\s+(RUNNING|PENDING)\\nPrincipal\\s+ci \\(tenant default; roles operator\\)`));
    expect(got.stdout).toMatch(/Request id\s+cli-detach-1/);

    const running = await cli(["executions", "list", "--state", "running", "--state", "pending", "--operation", "demo.sleep"], { env: env() });
    expect(running.stdout).toMatch(/^EXECUTION\s+OPERATION\s+STATE\s+ATTEMPTS\s+CREATED\s+DURATION\s+SCHEDULE\n/);
    expect(running.stdout).toContain(id);
    const json = JSON.parse((await cli(["executions", "list", "-o", "json", "--page-size", "1", "--all"], { env: env() })).stdout) as { executions: Array<{ executionId: string }> };
    expect(json.executions.map((e) => e.executionId)).toContain(id);
    expect(json.executions.length).toBeGreaterThan(1); // followed the pages of one

    const cancelled = await cli(["executions", "cancel", id, "--reason", "not needed"], { env: env() });
    expect(cancelled).toMatchObject({ code: 0, stdout: `Execution ${id}: CANCELLED\n` });
    const after = JSON.parse((await cli(["executions", "get", id, "-o", "json"], { env: env() })).stdout) as Record<string, unknown>;
    expect(after).toMatchObject({ executionId: id, state: "EXECUTION_STATE_CANCELLED" });

    const missing = await cli(["executions", "get", "no-such-execution"], { env: env() });
    expect(missing).toMatchObject({ code: 3, stderr: 'error: NOT_FOUND: no execution "no-such-execution"\n  reason: EXECUTION_NOT_FOUND (orchestrator.v1)\n  execution_id: no-such-execution\n' });
    expect((await cli(["executions", "list", "--state", "sleepy"], { env: env() })).code).toBe(2);
  });

  it("speaks the Connect protocol too (--protocol connect)", async () => {
    const r = await cli(["exec", "demo.echo", "--input", '{"message":"over connect"}', "--protocol", "connect"], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('"message": "over connect"');
  });
});

describe("rate limits", () => {
  let limited: ServerProcess;
  beforeAll(async () => {
    limited = await spawnServer(["--demo-operations", "--operation-rate-limit", "1/1h"]);
  });
  afterAll(async () => {
    await limited?.stop();
  });

  it("RESOURCE_EXHAUSTED prints the limit's metadata and when to retry", async () => {
    const e = { ORCHESTRATOR_ADDRESS: limited.address };
    expect((await cli(["exec", "demo.echo", "--input", '{"message":"1"}'], { env: e })).code).toBe(0);
    const r = await cli(["exec", "demo.echo", "--input", '{"message":"2"}'], { env: e });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^error: RESOURCE_EXHAUSTED: .*\n {2}reason: RATE_LIMITED \(orchestrator\.v1\)\n/);
    expect(r.stderr).toMatch(/\n {2}retry after: (\d+m\d\ds|1h00m)\n$/); // RetryInfo: up to an hour
  });
});

describe("TLS", () => {
  let tls: ServerProcess;
  let cert: string;
  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), "orchestrator-cli-tls-"));
    cert = join(dir, "cert.pem");
    const key = join(dir, "key.pem");
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
      "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ], { stdio: "ignore" });
    tls = await spawnServer(["--demo-operations", "--tls-cert", cert, "--tls-key", key]);
  });
  afterAll(async () => {
    await tls?.stop();
  });

  it("--tls-ca-file trusts the server's CA; --tls-insecure-skip-verify skips the check; neither fails to connect (exit 4)", async () => {
    const echo = ["exec", "demo.echo", "--input", '{"message":"tls"}'];
    const withCa = await cli([...echo, "--address", `localhost:${tls.port}`, "--tls-ca-file", cert]);
    expect(withCa.code, withCa.stderr).toBe(0);
    const skip = await cli([...echo, "--address", `https://127.0.0.1:${tls.port}`, "--tls-insecure-skip-verify"]);
    expect(skip.code, skip.stderr).toBe(0);
    const untrusted = await cli([...echo, "--address", `https://localhost:${tls.port}`]);
    expect(untrusted.code).toBe(4);
    expect(untrusted.stderr).toMatch(/^error: [A-Z_]+: self-signed certificate/);
  });
});

describe("orchestrator serve, --help, --version", () => {
  it("serve runs the server with the server's flags; SIGTERM drains and exits 0", async () => {
    const dir = mkdtempSync(join(tmpdir(), "orchestrator-cli-serve-"));
    const logged = cliPiped(["serve", "--port", "0", "--data-dir", dir, "--auth", "none", "--demo-operations"]);
    await logged.waitFor(/"msg":"listening"/);
    const port = /"port":(\d+)/.exec(logged.output())![1];
    const r = await cli(["exec", "demo.echo", "--input", '{"message":"served"}', "--address", `127.0.0.1:${port}`]);
    expect(r.code, r.stderr).toBe(0);
    logged.child.kill("SIGTERM");
    expect(await logged.exited).toBe(0);
    expect(logged.output()).toMatch(/"msg":"shutting down"/);
  });

  it("serve --help prints the server's settings; --help lists the commands; --version", async () => {
    const serveHelp = await cli(["serve", "--help"]);
    expect(serveHelp.code).toBe(0);
    expect(serveHelp.stdout).toMatch(/^Usage: orchestrator serve \[flags\]/);
    expect(serveHelp.stdout).toContain("ORCHESTRATOR_DATABASE_URL");
    const help = await cli(["--help"]);
    expect(help.code).toBe(0);
    for (const c of ["serve", "exec", "executions list", "schedules preview", "audit tail", "keys create"]) expect(help.stdout).toContain(`- ${c}`);
    const version = await cli(["--version"]);
    expect([version.code, version.stdout.trim()]).toEqual([0, "0.1.0"]);
    expect((await cli(["frobnicate"])).code).toBe(2);
  });
});
