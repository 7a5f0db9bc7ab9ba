/**
 * `orchestrator policy show|budgets` (the real binary) against a server with a policy file.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnServer, type ServerProcess } from "../support/server.js";
import { cli } from "./run.js";

let server: ServerProcess;
const env = () => ({ ORCHESTRATOR_ADDRESS: server.address });

beforeAll(async () => {
  const file = join(mkdtempSync(join(tmpdir(), "orchestrator-cli-policy-")), "policy.yaml");
  writeFileSync(
    file,
    [
      "rules:",
      "  - name: no-sleeping",
      "    effect: deny",
      "    priority: 10",
      '    operations: ["demo.sleep"]',
      "default: allow",
      "budgets:",
      '  - { scope: principal, match: "*", window: 1d, tokens: 1000 }',
      "",
    ].join("\n"),
  );
  server = await spawnServer(["--demo-operations", "--policy-file", file]);
});
afterAll(async () => {
  await server?.stop();
});

describe("orchestrator policy", () => {
  it("show: the version, the rules that apply in order, the default", async () => {
    const r = await cli(["policy", "show"], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Policy version 1 \(applied \S+Z\); default allow\.\n/);
    expect(r.stdout).toMatch(/\nRULE\s+EFFECT\s+PRIORITY\s+OPERATIONS\s+ROLES\s+TENANTS\s+CONDITION\nno-sleeping\s+deny\s+10\s+demo\.sleep\s+\*\s+\*\n$/);
    const json = JSON.parse((await cli(["policy", "show", "--operation", "demo.echo", "-o", "json"], { env: env() })).stdout) as { rules?: unknown[] };
    expect(json.rules ?? []).toEqual([]);
  });

  it("budgets: what remains after a run; a denied run prints the rule", async () => {
    expect((await cli(["exec", "demo.echo", "--input", '{"message":"12345678"}'], { env: env() })).code).toBe(0);
    const r = await cli(["policy", "budgets"], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^BUDGET\s+LIMIT\s+REMAINING\s+RETRY AFTER\nprincipal:local:1d\s+1000\s+996\s+-\n$/);
    const denied = await cli(["exec", "demo.sleep", "--input", '{"durationMs":1}'], { env: env() });
    expect(denied.code).toBe(3);
    expect(denied.stderr).toMatch(/^error: PERMISSION_DENIED: .*\n {2}reason: POLICY_DENIED \(orchestrator\.v1\)\n(.*\n)* {2}rule: no-sleeping\n/);
  });
});
