/**
 * Roles and the permissions they grant. Permissions are `area:action` strings and may name an
 * operation (`execute:reports.daily`); a grant may end in `*` to cover a prefix.
 *
 * Built-in for now; the interceptors issue (#4) makes the table configurable, with a hierarchy.
 */
import type { Principal } from "./model.js";

export const builtinRoles: Readonly<Record<string, ReadonlyArray<string>>> = {
  admin: ["*"],
  operator: ["execute:*", "executions:*", "schedules:*", "audit:read"],
  viewer: ["executions:read", "schedules:read", "audit:read"],
};

export function grants(pattern: string, permission: string): boolean {
  return pattern.endsWith("*") ? permission.startsWith(pattern.slice(0, -1)) : pattern === permission;
}

export function hasPermission(
  principal: Principal,
  permission: string,
  roles: Readonly<Record<string, ReadonlyArray<string>>> = builtinRoles,
): boolean {
  return principal.roles.some((r) => (roles[r] ?? []).some((p) => grants(p, permission)));
}
