/**
 * Policy over gRPC, on the real server started with `--policy-file`: a denied Execute is
 * PERMISSION_DENIED with ErrorInfo POLICY_DENIED naming the rule and the policy version; the
 * PolicyService RPCs read the caller's effective policy and budgets; a file changed while the
 * server runs is the next version. And `policy:read` is checked.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it as vit } from "vitest";
import { it } from "@effect/vitest";
import { Effect, Layer } from "effect";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ExecutionService } from "../../gen/orchestrator/v1/execution_service_pb.js";
import { PolicyEffect, PolicyService } from "../../gen/orchestrator/v1/policy_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { PolicyReader } from "../../src/policy/PolicyReader.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { alice, apply, bob, doc, gina, policyCoreLayer, tempDir } from "../support/policy.js";

const policyV1 = `rules:
  - name: no-echo-for-local
    effect: deny
    priority: 10
    operations: [demo.echo]
    condition: 'principal.subject == "local" && request.labels.env == "prod"'
  - name: globex-only
    effect: deny
    tenants: [globex]
default: allow
budgets:
  - { scope: principal, match: "*", window: 1d, tokens: 1000 }
`;

let server: TestServer;
let file: string;
beforeAll(async () => {
  file = join(tempDir(), "policy.yaml");
  writeFileSync(file, policyV1);
  server = await startTestServer({ args: ["--policy-file", file] });
});
afterAll(() => server.shutdown());

const transport = () => createGrpcTransport({ baseUrl: server.baseUrl });

describe("policy over gRPC", () => {
  vit("a denied Execute is PERMISSION_DENIED with ErrorInfo POLICY_DENIED, the rule and the version", async () => {
    const client = createClient(ExecutionService, transport());
    const err = await (async () => {
      for await (const _ of client.execute({ operation: "demo.echo", input: { message: "hi" }, labels: { env: "prod" } })) void _;
    })().then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.PermissionDenied);
    expect(err?.rawMessage).toBe('denied by policy rule "no-echo-for-local": the rule\'s condition is true');
    expect(err?.findDetails(ErrorInfoSchema)[0]).toMatchObject({
      reason: "POLICY_DENIED",
      domain: "orchestrator.v1",
      metadata: { rule: "no-echo-for-local", reason: "the rule's condition is true", policy_version: "1" },
    });
    // Another label: the condition is false, the default allows.
    const events = [];
    for await (const e of client.execute({ operation: "demo.echo", input: { message: "hi" }, labels: { env: "dev" } })) events.push(e.event?.kind.case);
    expect(events.at(-1)).toBe("succeeded");
  });

  vit("GetEffectivePolicy: the caller's rules in evaluation order, the version and the default", async () => {
    const client = createClient(PolicyService, transport());
    const p = await client.getEffectivePolicy({});
    expect(p.policyVersion).toBe(1n);
    expect(p.defaultEffect).toBe(PolicyEffect.ALLOW);
    // The caller (auth none: local, tenant default, admin) is not in globex: that rule is left out.
    expect(p.rules.map((r) => ({ name: r.name, effect: r.effect, priority: r.priority, operations: r.operations, condition: r.condition }))).toEqual([
      {
        name: "no-echo-for-local",
        effect: PolicyEffect.DENY,
        priority: 10,
        operations: ["demo.echo"],
        condition: 'principal.subject == "local" && request.labels.env == "prod"',
      },
    ]);
    expect((await client.getEffectivePolicy({ operation: "demo.sleep" })).rules).toEqual([]);
  });

  vit("GetBudgetStatus: the budgets the caller draws from", async () => {
    const client = createClient(PolicyService, transport());
    const b = await client.getBudgetStatus({});
    expect(b.policyVersion).toBe(1n);
    expect(b.budgets.length).toBeGreaterThan(0);
    expect(b.budgets[0]!.limit).toBe(1000n);
    expect(b.budgets[0]!.remaining).toBeLessThanOrEqual(1000n);
  });

  vit("a file changed while the server runs becomes version 2", async () => {
    writeFileSync(file, policyV1.replace("default: allow", "default: deny"));
    const client = createClient(PolicyService, transport());
    const deadline = Date.now() + 10_000;
    let p = await client.getEffectivePolicy({});
    while (p.policyVersion !== 2n && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      p = await client.getEffectivePolicy({});
    }
    expect(p.policyVersion).toBe(2n);
    expect(p.defaultEffect).toBe(PolicyEffect.DENY);
    const err = await (async () => {
      for await (const _ of createClient(ExecutionService, transport()).execute({ operation: "demo.sleep", input: { durationMs: 1 } })) void _;
    })().then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.findDetails(ErrorInfoSchema)[0]?.metadata).toMatchObject({ rule: "default", policy_version: "2" });
  });
});

describe("PolicyReader", () => {
  const layer = PolicyReader.Default.pipe(Layer.provideMerge(policyCoreLayer()));

  it.effect("needs policy:read, and filters rules by the caller's roles, tenant and the operation", () =>
    Effect.gen(function* () {
      yield* apply(
        doc(
          [
            { name: "interns-no-reports", effect: "deny", priority: 5, operations: ["reports.*"], roles: ["intern"] },
            { name: "globex-no-echo", effect: "deny", priority: 1, operations: ["demo.echo"], tenants: ["globex"] },
          ],
          { tenants: { acme: { rules: [{ name: "acme-wipe", effect: "allow", priority: 9, operations: ["admin.wipe"] }] } } },
        ),
      );
      const reader = yield* PolicyReader;
      // alice and bob are analyst / intern: execute:* only, no policy:read.
      const refused = yield* Effect.flip(reader.effective(alice));
      expect(refused).toMatchObject({ _tag: "PermissionDenied", permission: "policy:read" });

      const viewer = (p: typeof alice) => ({ ...p, roles: [...p.roles, "viewer"] });
      const names = (p: typeof alice, op?: string) => Effect.map(reader.effective(viewer(p), op), (e) => e.rules.map((r) => r.rule.name));
      expect(yield* names(alice)).toEqual(["acme-wipe"]);
      expect(yield* names(bob)).toEqual(["acme-wipe", "interns-no-reports"]);
      expect(yield* names(bob, "reports.daily")).toEqual(["interns-no-reports"]);
      expect(yield* names(gina)).toEqual(["globex-no-echo"]);
      const e = yield* reader.effective(viewer(gina));
      expect(e).toMatchObject({ version: 1, default: "allow" });
      expect(e.rules[0]).toEqual({ rule: { name: "globex-no-echo", effect: "deny", priority: 1, operations: ["demo.echo"], tenants: ["globex"] }, tenant: undefined });
    }).pipe(Effect.provide(layer)),
  );
});
