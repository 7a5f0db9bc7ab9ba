/**
 * Roles and the permissions they grant. Permissions are `area:action` strings and may name an
 * operation (`execute:reports.daily`); a grant may end in `*` to cover a prefix (`execute:*`,
 * `execute:reports.*`, or `*` for everything).
 *
 * Roles form a hierarchy: a role that `inherits` another gets all of its permissions (and those
 * of its ancestors). The hierarchy is flattened once, at start, into the plain
 * `role → permissions` table the core checks against; cycles and unknown parents are refused
 * there, with the role named.
 */
import type { Principal } from "./model.js";

export interface RoleDefinition {
  readonly description?: string;
  /** Roles whose permissions this role also gets. */
  readonly inherits?: ReadonlyArray<string>;
  readonly permissions?: ReadonlyArray<string>;
}

export type RoleDefinitions = Readonly<Record<string, RoleDefinition>>;

/** role → every permission it grants, inherited ones included. */
export type RoleTable = Readonly<Record<string, ReadonlyArray<string>>>;

/** admin ⊃ operator ⊃ viewer. The same shape a roles file takes (README, "Roles"). */
export const defaultRoleDefinitions: RoleDefinitions = {
  admin: { description: "everything", inherits: ["operator"], permissions: ["*"] },
  operator: { description: "runs operations, manages executions and schedules", inherits: ["viewer"], permissions: ["execute:*", "executions:*", "schedules:*"] },
  viewer: { description: "reads executions, schedules, the audit log and the policy", permissions: ["executions:read", "schedules:read", "audit:read", "policy:read"] },
};

export class RoleDefinitionError extends Error {
  override readonly name = "RoleDefinitionError";
}

const roleName = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/;
/** `*`, or `area:action` where the last character may be a `*` (a prefix grant). */
const permissionPattern = /^(\*|[a-z][a-z0-9_-]*:(\*|[A-Za-z0-9_.:/-]+\*?))$/;

/** Why a permission string is not valid, or undefined. */
export function invalidPermission(p: string): string | undefined {
  if (permissionPattern.test(p)) return undefined;
  return p.includes("*") && !p.endsWith("*")
    ? "`*` may only end a permission (a prefix grant such as execute:reports.*)"
    : "expected `*` or area:action, e.g. execute:reports.*, schedules:write, audit:read";
}

/**
 * Flattens a hierarchy: each role's own permissions plus those of every role it inherits,
 * transitively, without duplicates. Throws RoleDefinitionError on a cycle, an unknown parent,
 * a bad role name or a bad permission.
 */
export function flattenRoles(defs: RoleDefinitions): RoleTable {
  // No prototype: a role named "constructor" must not find Object's.
  const out: Record<string, ReadonlyArray<string>> = Object.create(null) as Record<string, ReadonlyArray<string>>;
  for (const [name, def] of Object.entries(defs)) {
    if (!roleName.test(name)) throw new RoleDefinitionError(`role "${name}": names are 1-64 of [A-Za-z0-9_.:-], starting with a letter`);
    for (const parent of def.inherits ?? []) {
      if (!Object.hasOwn(defs, parent)) throw new RoleDefinitionError(`role "${name}" inherits unknown role "${parent}"`);
    }
    for (const p of def.permissions ?? []) {
      const why = invalidPermission(p);
      if (why !== undefined) throw new RoleDefinitionError(`role "${name}": permission "${p}": ${why}`);
    }
  }
  const resolve = (name: string, path: ReadonlyArray<string>): ReadonlyArray<string> => {
    const done = out[name];
    if (done !== undefined) return done;
    if (path.includes(name)) {
      throw new RoleDefinitionError(`roles inherit in a cycle: ${[...path.slice(path.indexOf(name)), name].join(" → ")}`);
    }
    const def = defs[name]!;
    const perms = new Set(def.permissions ?? []);
    for (const parent of def.inherits ?? []) for (const p of resolve(parent, [...path, name])) perms.add(p);
    const flat = [...perms];
    out[name] = flat;
    return flat;
  };
  for (const name of Object.keys(defs)) resolve(name, []);
  return { ...out };
}

export const builtinRoles: RoleTable = flattenRoles(defaultRoleDefinitions);

export function grants(pattern: string, permission: string): boolean {
  return pattern.endsWith("*") ? permission.startsWith(pattern.slice(0, -1)) : pattern === permission;
}

export function hasPermission(principal: Principal, permission: string, roles: RoleTable = builtinRoles): boolean {
  return principal.roles.some((r) => Object.hasOwn(roles, r) && roles[r]!.some((p) => grants(p, permission)));
}

/**
 * A roles file's content: `{"roles": {"<name>": {"inherits": [...], "permissions": [...],
 * "description": "..."}}}`. Unknown fields are refused (a misspelt `inherit` must not silently
 * grant less, or more). Returns the flattened table.
 */
export function parseRolesFile(content: unknown): RoleTable {
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
  const stringList = (v: unknown): v is ReadonlyArray<string> => Array.isArray(v) && v.every((x) => typeof x === "string");
  if (!isObject(content) || !isObject(content["roles"])) throw new RoleDefinitionError(`expected {"roles": {"<role>": {"inherits": [...], "permissions": [...]}}}`);
  const extra = Object.keys(content).filter((k) => k !== "roles");
  if (extra.length > 0) throw new RoleDefinitionError(`unknown field "${extra[0]}" (only "roles")`);
  const defs: Record<string, RoleDefinition> = {};
  for (const [name, def] of Object.entries(content["roles"])) {
    if (!isObject(def)) throw new RoleDefinitionError(`role "${name}": expected an object with "inherits" and/or "permissions"`);
    const unknown = Object.keys(def).filter((k) => k !== "inherits" && k !== "permissions" && k !== "description");
    if (unknown.length > 0) throw new RoleDefinitionError(`role "${name}": unknown field "${unknown[0]}" (expected inherits, permissions, description)`);
    if (def["inherits"] !== undefined && !stringList(def["inherits"])) throw new RoleDefinitionError(`role "${name}": "inherits" must be a list of role names`);
    if (def["permissions"] !== undefined && !stringList(def["permissions"])) throw new RoleDefinitionError(`role "${name}": "permissions" must be a list of strings`);
    if (def["description"] !== undefined && typeof def["description"] !== "string") throw new RoleDefinitionError(`role "${name}": "description" must be a string`);
    Object.defineProperty(defs, name, { value: def as RoleDefinition, enumerable: true, writable: true, configurable: true });
  }
  return flattenRoles(defs);
}
