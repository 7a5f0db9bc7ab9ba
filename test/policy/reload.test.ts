/**
 * Live updates: the policy file is watched and reloaded atomically. A new version applies to
 * new checks while in-flight ones finish under theirs; under load (checks running while 50
 * versions are swapped) no decision mixes two versions; a bad file keeps the previous version,
 * logged and audited with the position; each version is numbered and audited.
 */
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "@effect/vitest";
import { Deferred, Duration, Effect, Either, Exit, Fiber, Layer, Logger, Schedule } from "effect";
import { Orchestrator } from "../../src/core/Orchestrator.js";
import type { Principal } from "../../src/core/model.js";
import { PolicyService, type PolicyContext } from "../../src/ports/PolicyService.js";
import { TokenLedger } from "../../src/ports/TokenLedger.js";
import { TokenLedgerMemory } from "../../src/ports/memory/TokenLedgerMemory.js";
import { PolicyEngine } from "../../src/policy/PolicyEngine.js";
import type { PolicyDocument, RuleConfig } from "../../src/policy/config.js";
import { alice, apply, auditOf, doc, policyCoreLayer, tempDir } from "../support/policy.js";

const ctx = (principal: Principal, operation: string, labels: Record<string, string> = {}): PolicyContext => ({
  principal,
  operation,
  labels,
  executionId: `x-${Math.random()}`,
});

/** A check's outcome as data: allowed or denied, by which rule, under which version. */
const decide = (c: PolicyContext) =>
  Effect.flatMap(PolicyService, (p) => p.check(c)).pipe(
    Effect.map((d) => ({ effect: "allow" as const, rule: d.rule, version: d.policyVersion })),
    Effect.catchTag("PolicyDenied", (e) => Effect.succeed({ effect: "deny" as const, rule: e.rule, version: e.policyVersion ?? -1 })),
  );

/** Polls until `done`, for at most 10 s of real time; the value that satisfied it. */
const eventually = <A, E, R>(effect: Effect.Effect<A, E, R>, done: (a: A) => boolean) =>
  effect.pipe(
    Effect.filterOrFail(done, () => "not yet" as const),
    Effect.retry({ schedule: Schedule.spaced(Duration.millis(20)), while: (e) => e === "not yet" }),
    Effect.timeoutFail({ duration: Duration.seconds(10), onTimeout: () => new Error("timed out waiting") }),
  );

const currentVersion = Effect.map(Effect.flatMap(PolicyEngine, (e) => e.current), (p) => p.version);

describe("policy file reload", () => {
  it.live("a changed file becomes the next version for new checks; a bad one keeps the old and says where", () => {
    const logs: string[] = [];
    const logger = Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ logLevel, message }) => void logs.push(`${logLevel.label} ${Array.isArray(message) ? String(message[0]) : String(message)}`)),
    );
    const dir = tempDir();
    const file = join(dir, "policy.yaml");
    writeFileSync(file, "rules:\n  - name: no-echo\n    effect: deny\n    operations: [demo.echo]\n");
    return Effect.gen(function* () {
      expect(yield* currentVersion).toBe(1);
      expect(yield* decide(ctx(alice, "demo.echo"))).toEqual({ effect: "deny", rule: "no-echo", version: 1 });

      // Rewritten in place.
      writeFileSync(file, "rules:\n  - name: echo-ok\n    effect: allow\n    operations: [demo.echo]\ndefault: deny\n");
      yield* eventually(currentVersion, (v) => v === 2);
      expect(yield* decide(ctx(alice, "demo.echo"))).toEqual({ effect: "allow", rule: "echo-ok", version: 2 });
      expect(yield* decide(ctx(alice, "reports.daily"))).toEqual({ effect: "deny", rule: "default", version: 2 });

      // A bad file: refused, audited with the position, version 2 stays in force.
      writeFileSync(file, "rules:\n  - name: echo-ok\n    effect: allow\n    condition: 'request.labels.env =='\n");
      const refused = yield* eventually(
        Effect.map(auditOf("POLICY_UPDATED"), (rows) => rows.filter((r) => r.decision === "DENY")),
        (rows) => rows.length > 0,
      );
      expect(refused[0]!.reason).toContain(`${file}:4:16: rules[0].condition (rule "echo-ok"): at 1:`);
      expect(refused[0]!.details).toMatchObject({ policy_version: 2, problems: 1 });
      expect(logs).toContainEqual(expect.stringMatching(/^WARN policy refused, version 2 stays in force: .*policy\.yaml:4:16: /));
      expect(yield* currentVersion).toBe(2);
      expect(yield* decide(ctx(alice, "demo.echo"))).toEqual({ effect: "allow", rule: "echo-ok", version: 2 });

      // Replaced by rename (what editors and config tools do): the directory watch sees it.
      writeFileSync(join(dir, "policy.yaml.tmp"), "rules:\n  - name: no-echo-again\n    effect: deny\n    operations: [demo.*]\n");
      renameSync(join(dir, "policy.yaml.tmp"), file);
      yield* eventually(currentVersion, (v) => v === 3);
      expect(yield* decide(ctx(alice, "demo.echo"))).toEqual({ effect: "deny", rule: "no-echo-again", version: 3 });

      // The same content again is no new version.
      writeFileSync(file, "rules:\n  - name: no-echo-again\n    effect: deny\n    operations: [demo.*]\n");
      const engine = yield* PolicyEngine;
      expect((yield* engine.reload)._tag).toBe("Unchanged");
      expect(yield* currentVersion).toBe(3);

      const applied = (yield* auditOf("POLICY_UPDATED")).filter((r) => r.decision === "ALLOW");
      expect(applied.map((r) => [r.details?.["policy_version"], r.details?.["source"]])).toEqual([
        [1, file],
        [2, file],
        [3, file],
      ]);
    }).pipe(Effect.provide(policyCoreLayer({ file, pollIntervalMs: 50, debounceMs: 20, logger })));
  });

  it.live("without the watcher's events, the periodic stat still finds the change", () => {
    const dir = tempDir();
    const file = join(dir, "policy.json");
    writeFileSync(file, JSON.stringify({ rules: [{ name: "a", effect: "deny" }] }));
    return Effect.gen(function* () {
      writeFileSync(file, JSON.stringify({ rules: [{ name: "b", effect: "allow" }] }));
      yield* eventually(currentVersion, (v) => v === 2);
      expect(yield* decide(ctx(alice, "demo.echo"))).toEqual({ effect: "allow", rule: "b", version: 2 });
    }).pipe(Effect.provide(policyCoreLayer({ file, pollIntervalMs: 30, debounceMs: 10 })));
  });

  it.effect("a check in flight finishes under the version it started with; the next one sees the new version", () =>
    Effect.gen(function* () {
      const entered = yield* Deferred.make<void>();
      const release = yield* Deferred.make<void>();
      // A ledger whose first reservation waits: the check is caught between its rule decision and its end.
      const ledger = Layer.effect(
        TokenLedger,
        Effect.map(Effect.provide(TokenLedger, TokenLedgerMemory), (real) =>
          TokenLedger.of({
            ...real,
            reserve: (req) =>
              Effect.gen(function* () {
                if (yield* Deferred.succeed(entered, undefined)) yield* Deferred.await(release);
                return yield* real.reserve(req);
              }),
          }),
        ),
      );
      yield* Effect.gen(function* () {
        yield* apply(doc([{ name: "v1-allow", effect: "allow", priority: 0 }]));
        const inFlight = yield* Effect.fork(decide(ctx(alice, "demo.echo")));
        yield* Deferred.await(entered);
        yield* apply(doc([{ name: "v2-deny", effect: "deny", priority: 0 }]));
        expect(yield* decide(ctx(alice, "demo.echo"))).toEqual({ effect: "deny", rule: "v2-deny", version: 2 });
        yield* Deferred.succeed(release, undefined);
        expect(yield* Fiber.join(inFlight)).toEqual({ effect: "allow", rule: "v1-allow", version: 1 });
      }).pipe(Effect.provide(policyCoreLayer({ ledger })));
    }),
  );
});

describe("policy swaps under load", () => {
  /**
   * Version k: 20 rules named v<k>-r<i>, all allow (k odd) or all deny (k even), the default the
   * other way; rule i has priority i and the condition `int(request.labels.pick) >= i`, so the
   * label `pick` says which rule decides. Every decision must be exactly version k's: the rule's
   * tag, the effect and the reported version agree.
   */
  const versionDoc = (k: number): PolicyDocument => {
    const effect = k % 2 === 1 ? "allow" : "deny";
    const rules: RuleConfig[] = Array.from({ length: 20 }, (_, i) => ({
      name: `v${k}-r${i}`,
      effect,
      priority: i,
      operations: i % 3 === 0 ? ["demo.*"] : ["*"],
      condition: `int(request.labels.pick) >= ${i} && "v${k}" == "v${k}"`,
    }));
    return doc(rules, { default: effect === "allow" ? "deny" : "allow" });
  };
  type Decision = { readonly effect: "allow" | "deny"; readonly rule: string; readonly version: number; readonly pick: number };
  const consistent = (d: Decision) => {
    const expectedEffect = d.version % 2 === 1 ? "allow" : "deny";
    return d.rule === `v${d.version}-r${d.pick}` && d.effect === expectedEffect;
  };

  it.effect("checks racing 50 swaps each see one whole version", () =>
    Effect.gen(function* () {
      yield* apply(versionDoc(1));
      const checker = (worker: number) =>
        Effect.forEach(
          Array.from({ length: 300 }, (_, n) => (worker * 7 + n) % 20),
          (pick) =>
            decide(ctx(alice, "demo.echo", { pick: String(pick) })).pipe(
              Effect.map((d): Decision => ({ ...d, pick })),
              Effect.zipLeft(Effect.yieldNow()),
            ),
        );
      const swapper = Effect.forEach(Array.from({ length: 50 }, (_, i) => i + 2), (k) => Effect.zipRight(apply(versionDoc(k)), Effect.yieldNow()));
      const [decisions] = yield* Effect.all([Effect.map(Effect.all(Array.from({ length: 16 }, (_, w) => checker(w)), { concurrency: "unbounded" }), (d) => d.flat()), swapper], {
        concurrency: "unbounded",
      });
      expect(decisions).toHaveLength(16 * 300);
      const wrong = decisions.filter((d) => !consistent(d));
      expect(wrong).toEqual([]);
      // The swaps really happened during the checks.
      expect(new Set(decisions.map((d) => d.version)).size).toBeGreaterThan(10);
      expect(yield* currentVersion).toBe(51);
    }).pipe(Effect.provide(policyCoreLayer())),
  );

  it.effect("through the Orchestrator: every POLICY_EVALUATED row names a rule of the version it reports", () =>
    Effect.gen(function* () {
      yield* apply(versionDoc(1));
      const o = yield* Orchestrator;
      const runner = (worker: number) =>
        Effect.forEach(Array.from({ length: 20 }, (_, n) => (worker + n) % 20), (pick) =>
          o.execute("demo.echo", { message: "x" }, { principal: alice, labels: { pick: String(pick) } }).pipe(Effect.exit, Effect.zipLeft(Effect.yieldNow())),
        );
      const swapper = Effect.forEach(Array.from({ length: 50 }, (_, i) => i + 2), (k) => Effect.zipRight(apply(versionDoc(k)), Effect.yieldNow()));
      const [exits] = yield* Effect.all([Effect.all(Array.from({ length: 8 }, (_, w) => runner(w)), { concurrency: "unbounded" }), swapper], { concurrency: "unbounded" });
      const rows = yield* auditOf("POLICY_EVALUATED");
      expect(rows).toHaveLength(8 * 20);
      for (const row of rows) {
        const version = row.details?.["policy_version"] as number;
        const rule = row.details?.["rule"] as string;
        expect(rule.startsWith(`v${version}-r`)).toBe(true);
        expect(row.decision).toBe(version % 2 === 1 ? "ALLOW" : "DENY");
      }
      const allowed = exits.flat().filter(Exit.isSuccess).length;
      expect(allowed).toBe(rows.filter((r) => r.decision === "ALLOW").length);
      expect(new Set(rows.map((r) => r.details?.["policy_version"])).size).toBeGreaterThan(5);
    }).pipe(Effect.provide(policyCoreLayer())),
  );

  it.effect("a refused document in the middle of swaps changes nothing", () =>
    Effect.gen(function* () {
      yield* apply(versionDoc(1));
      const engine = yield* PolicyEngine;
      const bad = yield* engine.apply(doc([...versionDoc(2).rules, { name: "bad", effect: "deny", priority: 0, condition: "request.nope" }])).pipe(Effect.either);
      expect(Either.isLeft(bad)).toBe(true);
      expect(yield* currentVersion).toBe(1);
      expect(yield* decide(ctx(alice, "demo.echo", { pick: "3" }))).toEqual({ effect: "allow", rule: "v1-r3", version: 1 });
    }).pipe(Effect.provide(policyCoreLayer())),
  );
});
