/**
 * The policy file: YAML and JSON, the documented shape, and refusals that say where — YAML and
 * JSON syntax, schema (unknown fields, wrong values), and CEL conditions (file position of the
 * condition plus the position inside it); a bad file at start stops the server.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "@effect/vitest";
import { Effect, Either, Exit, Layer } from "effect";
import { ConfigError, loadConfig } from "../../src/config.js";
import { parsePolicy, type PolicyInvalid } from "../../src/policy/file.js";
import { evaluateRules } from "../../src/policy/rules/compile.js";
import { PolicyEngine } from "../../src/policy/PolicyEngine.js";
import { alice, policyCoreLayer, tempDir } from "../support/policy.js";

const yaml = (text: string) => parsePolicy(text, { source: "policy.yaml", format: "yaml" });
const refusal = (r: ReturnType<typeof yaml>): PolicyInvalid => {
  if (Either.isRight(r)) throw new Error("expected the policy to be refused");
  return r.left;
};

const example = `# the shape documented in src/policy/config.ts
rules:
  - name: deny-prod-viewers
    effect: deny
    priority: 100
    operations: ["reports.*"]
    roles: [viewer]
    condition: 'request.labels.env == "prod"'
  - name: analysts
    effect: allow
    roles: [analyst]
default: deny
budgets:
  - scope: principal
    match: "*"
    window: 1d
    tokens: 100000
models:
  gpt-4o: { rpm: 500, tpm: 30000 }
tenants:
  acme:
    rules:
      - name: acme-echo
        effect: allow
        operations: [demo.echo]
    budgets:
      - { scope: tenant, match: acme, window: 30d, tokens: 5000000 }
    models: { gpt-4o: { rpm: 100 } }
    principals:
      alice: { models: { gpt-4o: { tpm: 5000 } } }
`;

describe("policy file", () => {
  it.effect("YAML: the documented shape, with defaults filled in", () =>
    Effect.sync(() => {
      const p = Either.getOrThrow(yaml(example));
      expect(p.document).toEqual({
        rules: [
          { name: "deny-prod-viewers", effect: "deny", priority: 100, operations: ["reports.*"], roles: ["viewer"], condition: 'request.labels.env == "prod"' },
          { name: "analysts", effect: "allow", priority: 0, roles: ["analyst"] },
        ],
        default: "deny",
        budgets: [{ scope: "principal", match: "*", windowMs: 86_400_000, tokens: 100000 }],
        models: { "gpt-4o": { rpm: 500, tpm: 30000 } },
        tenants: {
          acme: {
            rules: [{ name: "acme-echo", effect: "allow", priority: 0, operations: ["demo.echo"] }],
            budgets: [{ scope: "tenant", match: "acme", windowMs: 30 * 86_400_000, tokens: 5000000 }],
            models: { "gpt-4o": { rpm: 100 } },
            principals: { alice: { models: { "gpt-4o": { tpm: 5000 } } } },
          },
        },
      });
      expect(p.rules.ruleCount).toBe(3);
      expect(evaluateRules(p.rules, { principal: alice, operation: "demo.echo", labels: {} }, 0)).toEqual({ effect: "allow", rule: "analysts" });
      expect(yaml("{}").pipe(Either.map((x) => x.document))).toEqual(Either.right({ rules: [], default: "allow", budgets: [], models: {}, tenants: {} }));
    }),
  );

  it.effect("JSON: the same document", () =>
    Effect.sync(() => {
      const json = JSON.stringify({ rules: [{ name: "r", effect: "deny", operations: ["admin.*"] }], default: "allow" }, null, 2);
      const p = Either.getOrThrow(parsePolicy(json, { source: "policy.json", format: "json" }));
      expect(p.document.rules).toEqual([{ name: "r", effect: "deny", priority: 0, operations: ["admin.*"] }]);
      const bad = refusal(parsePolicy('{\n  "rules": [\n    {"name": "r",}\n  ]\n}', { source: "policy.json", format: "json" }));
      expect(bad.problems[0]).toMatchObject({ line: 3 });
      expect(bad.message).toMatch(/^policy\.json:3:\d+: not valid JSON/);
    }),
  );

  it.effect("a condition's error: the file position of the condition and the position inside it", () =>
    Effect.sync(() => {
      const e = refusal(yaml(example.replace(`'request.labels.env == "prod"'`, `'request.labels.env == "prod" &&'`)));
      expect(e.problems).toEqual([
        {
          path: "rules[0].condition",
          rule: "deny-prod-viewers",
          line: 8,
          column: 16,
          expression: { line: 1, column: 30, offset: 29 },
          message: "found & but expecting end of input",
        },
      ]);
      expect(e.message).toBe('policy.yaml:8:16: rules[0].condition (rule "deny-prod-viewers"): at 1:30 of the condition: found & but expecting end of input');
    }),
  );

  it.effect("type and name errors in conditions are found at load, not when a request comes", () =>
    Effect.sync(() => {
      const cases: ReadonlyArray<[string, string]> = [
        [`principal.team == "x"`, "principal has no field 'team' (its fields: subject, tenant, roles)"],
        [`user.name == "x"`, "undeclared reference to 'user' (the variables are principal, request and now)"],
        [`request.labels.get("env") == "x"`, "unknown function 'get'"],
        [`request.model == 4`, "cannot compare string with int using =="],
        [`request.estimated_tokens * 1.5 > 10.0`, "no * for int and double (convert one side with int() or double())"],
        [`size(principal.roles)`, "a condition must be a bool, not int"],
        [`principal.roles.exists(r, r + 1 == 2)`, "no + for string and int"],
        [`request.operation.startsWith(1)`, "startsWith needs a string argument, got int"],
      ];
      for (const [condition, message] of cases) {
        const e = refusal(yaml(`rules:\n  - name: r\n    effect: deny\n    condition: '${condition}'\n`));
        expect(e.problems.map((p) => p.message)).toEqual([message]);
        expect(e.problems[0]!.line).toBe(4);
      }
      // And what is fine stays fine.
      for (const condition of [
        `has(request.labels.env) && request.labels.env in ["prod", "staging"]`,
        `principal.roles.all(r, r != "intern") || principal.subject.matches("^svc-")`,
        `request.estimated_tokens > 1000 && double(request.estimated_tokens) * 1.5 > 2000.0`,
        `now.getDayOfWeek("Europe/Paris") < 5 && now - timestamp("2024-01-01T00:00:00Z") > duration("1h")`,
        `size(request.labels) <= 3 && request.labels.filter(k, k.startsWith("x")).size() == 0`,
      ]) {
        expect(Either.isRight(yaml(`rules:\n  - name: r\n    effect: deny\n    condition: '${condition}'\n`))).toBe(true);
      }
    }),
  );

  it.effect("schema problems, every one with its place", () =>
    Effect.sync(() => {
      const e = refusal(
        yaml(`rules:
  - name: r
    effect: alow
    priority: 1.5
    operation: [x]
budgets:
  - { scope: principal, match: "*", window: 1x, tokens: -5 }
defaults: deny
`),
      );
      expect(e.problems.map((p) => [p.path, p.line, p.message])).toEqual([
        ["rules[0].effect", 3, "expected allow or deny"],
        ["rules[0].priority", 4, "expected a whole number"],
        ["rules[0].operation", 5, `is unexpected, expected: "name" | "effect" | "priority" | "operations" | "roles" | "tenants" | "condition"`],
        ["budgets[0].window", 7, `expected a duration like 1m, 1h, 1d or 30d, got "1x"`],
        ["budgets[0].tokens", 7, "must be positive"],
        ["defaults", 8, `is unexpected, expected: "rules" | "default" | "budgets" | "models" | "tenants"`],
      ]);
      expect(e.problems[0]!.rule).toBe("r");
    }),
  );

  it.effect("YAML syntax errors and empty files are refused", () =>
    Effect.sync(() => {
      const e = refusal(yaml("rules:\n  - name: a\n    effect: allow\n  - name: b\n  effect: deny\n"));
      expect(e.problems[0]).toMatchObject({ line: 5, column: 1 });
      expect(e.problems[0]!.message).toMatch(/^not valid YAML: /);
      expect(refusal(yaml("rules: []\nrules: []\n")).problems[0]!.message).toMatch(/Map keys must be unique/);
      expect(refusal(yaml("")).problems[0]!.message).toBe("the file is empty (an empty policy is written {})");
      expect(refusal(yaml("- a\n- b\n")).problems[0]!.message).toBe("expected a mapping with rules, default, budgets, models, tenants");
    }),
  );

  it.effect("a bad file at start: the configuration is refused with the position, and so is the Layer", () =>
    Effect.gen(function* () {
      const dir = tempDir();
      const file = join(dir, "policy.yaml");
      writeFileSync(file, "rules:\n  - name: r\n    effect: deny\n    condition: 'principal.roles.exists(r, r == \"x\") &&'\n");
      let error: unknown;
      try {
        loadConfig(["--policy-file", file, "--data-dir", dir], {});
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toBe(
        `--policy-file / ORCHESTRATOR_POLICY_FILE: ${file}:4:16: rules[0].condition (rule "r"): at 1:37 of the condition: found & but expecting end of input`,
      );
      expect(() => loadConfig(["--policy-file", join(dir, "policy.toml")], {})).toThrow(/a policy file ends in \.yaml, \.yml or \.json/);

      const exit = yield* Layer.build(policyCoreLayer({ file })).pipe(Effect.scoped, Effect.exit);
      expect(Exit.isFailure(exit)).toBe(true);
      if (Exit.isFailure(exit)) expect(String(exit.cause)).toContain("at 1:37 of the condition");

      writeFileSync(file, "rules:\n  - name: r\n    effect: deny\n");
      expect(loadConfig(["--policy-file", file], {}).policyFile).toBe(file);
      const version = yield* Effect.flatMap(PolicyEngine, (e) => e.current).pipe(Effect.provide(policyCoreLayer({ file, watch: false })));
      expect(version).toMatchObject({ version: 1, source: file });
    }),
  );
});
