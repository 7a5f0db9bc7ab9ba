/** Roles: the hierarchy flattened, globs, and every way a roles file can be wrong. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import {
  builtinRoles,
  flattenRoles,
  hasPermission,
  parseRolesFile,
  RoleDefinitionError,
  type RoleDefinitions,
} from "../../src/core/permissions.js";

const as = (...roles: string[]) => ({ subject: "s", tenant: "t", roles });

/** The example of the README and the issue. */
const example = {
  roles: {
    admin: { inherits: ["operator"], permissions: ["*"] },
    operator: { inherits: ["viewer"], permissions: ["execute:*", "executions:*", "schedules:*"] },
    viewer: { permissions: ["executions:read", "schedules:read", "audit:read", "policy:read"] },
  },
};

describe("role hierarchy", () => {
  it("built in: admin ⊃ operator ⊃ viewer, permissions inherited down", () => {
    expect([...builtinRoles["viewer"]!].sort()).toEqual(["audit:read", "executions:read", "policy:read", "schedules:read"]);
    expect(builtinRoles["operator"]).toEqual(expect.arrayContaining(["execute:*", "executions:*", "schedules:*", "audit:read"]));
    expect(builtinRoles["admin"]).toEqual(expect.arrayContaining(["*", ...builtinRoles["operator"]!]));
    expect(hasPermission(as("viewer"), "audit:read")).toBe(true);
    expect(hasPermission(as("viewer"), "execute:demo.echo")).toBe(false);
    expect(hasPermission(as("operator"), "execute:demo.echo")).toBe(true);
    expect(hasPermission(as("operator"), "audit:write")).toBe(false);
    expect(hasPermission(as("admin"), "audit:write")).toBe(true);
    expect(hasPermission(as("admin"), "keys:create")).toBe(true);
  });

  it("the README's example file gives exactly the built-in table", () => {
    const table = parseRolesFile(example);
    for (const role of ["admin", "operator", "viewer"]) expect([...table[role]!].sort()).toEqual([...builtinRoles[role]!].sort());
  });

  it("inherits transitively and through several parents, without duplicates", () => {
    const t = flattenRoles({
      a: { permissions: ["x:1"] },
      b: { inherits: ["a"], permissions: ["x:2", "x:1"] },
      c: { permissions: ["y:1"] },
      d: { inherits: ["b", "c"] },
    });
    expect([...t["d"]!].sort()).toEqual(["x:1", "x:2", "y:1"]);
    expect(t["a"]).toEqual(["x:1"]);
  });

  it("globs: a trailing * grants a prefix, nothing else", () => {
    const t = flattenRoles({ reports: { permissions: ["execute:reports.*", "schedules:write", "audit:read"] } });
    const r = as("reports");
    expect(hasPermission(r, "execute:reports.daily", t)).toBe(true);
    expect(hasPermission(r, "execute:reports.", t)).toBe(true);
    expect(hasPermission(r, "execute:reportsX", t)).toBe(false);
    expect(hasPermission(r, "execute:http.request", t)).toBe(false);
    expect(hasPermission(r, "schedules:write", t)).toBe(true);
    expect(hasPermission(r, "schedules:read", t)).toBe(false);
    expect(hasPermission(r, "audit:read", t)).toBe(true);
  });

  it("unknown roles and role names that are Object's own properties grant nothing (and do not throw)", () => {
    for (const role of ["nobody", "constructor", "__proto__", "toString", "hasOwnProperty"]) {
      expect(hasPermission(as(role), "executions:read")).toBe(false);
    }
  });

  it.each<[string, RoleDefinitions, RegExp]>([
    ["a cycle", { a: { inherits: ["b"] }, b: { inherits: ["c"] }, c: { inherits: ["a"] } }, /cycle: a → b → c → a/],
    ["a role inheriting itself", { a: { inherits: ["a"] } }, /cycle: a → a/],
    ["an unknown parent", { operator: { inherits: ["viewr"] }, viewer: {} }, /role "operator" inherits unknown role "viewr"/],
    ["a * inside a permission", { a: { permissions: ["execute:*.daily"] } }, /may only end a permission/],
    ["a permission without an area", { a: { permissions: ["read"] } }, /permission "read"/],
    ["a bad role name", { "has space": {} }, /role "has space": names are/],
  ])("refuses %s, naming it", (_what, defs, message) => {
    expect(() => flattenRoles(defs)).toThrow(RoleDefinitionError);
    expect(() => flattenRoles(defs)).toThrow(message);
  });

  it.each<[string, unknown, RegExp]>([
    ["not an object", [], /expected \{"roles"/],
    ["a misspelt field", { roles: { a: { inherit: ["b"] } } }, /role "a": unknown field "inherit"/],
    ["permissions not a list", { roles: { a: { permissions: "x:y" } } }, /"permissions" must be a list/],
    ["an extra top-level field", { roles: {}, role: {} }, /unknown field "role"/],
  ])("a roles file with %s is refused", (_what, content, message) => {
    expect(() => parseRolesFile(content)).toThrow(message);
  });
});

describe("--roles-file", () => {
  const write = (content: string) => {
    const file = join(mkdtempSync(join(tmpdir(), "orchestrator-roles-")), "roles.json");
    writeFileSync(file, content);
    return file;
  };
  const base = ["--auth", "none"];

  it("loads and flattens the file into the config's role table", () => {
    const file = write(JSON.stringify({ roles: { ...example.roles, reporter: { inherits: ["viewer"], permissions: ["execute:reports.*"] } } }));
    const { roles } = loadConfig([...base, "--roles-file", file], {});
    expect([...roles["reporter"]!].sort()).toEqual(["audit:read", "execute:reports.*", "executions:read", "policy:read", "schedules:read"]);
  });

  it("defaults to the built-in hierarchy", () => {
    expect(loadConfig(base, {}).roles).toBe(builtinRoles);
  });

  it("stops the server at start on a cycle, an unknown parent or bad JSON, naming the flag and the file", () => {
    const cyclic = write(JSON.stringify({ roles: { admin: { inherits: ["operator"] }, operator: { inherits: ["admin"] } } }));
    expect(() => loadConfig([...base, "--roles-file", cyclic], {})).toThrow(ConfigError);
    expect(() => loadConfig([...base, "--roles-file", cyclic], {})).toThrow(/--roles-file \/ ORCHESTRATOR_ROLES_FILE: .*roles\.json: roles inherit in a cycle: admin → operator → admin/);
    const orphan = write(JSON.stringify({ roles: { operator: { inherits: ["viewer"] } } }));
    expect(() => loadConfig([...base, "--roles-file", orphan], {})).toThrow(/inherits unknown role "viewer"/);
    expect(() => loadConfig([...base, "--roles-file", write("{not json")], {})).toThrow(/cannot read .* as JSON/);
    expect(() => loadConfig([...base, "--roles-file", "/no/such/file.json"], {})).toThrow(/--roles-file/);
  });
});
