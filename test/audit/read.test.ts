/**
 * Who reads what, and how: filters (Subscribe and ListAuditEvents alike), tenant scoping and
 * the audit permissions, paging in both orders, and redaction of secrets on the way in.
 */
import { describe, expect, it } from "@effect/vitest";
import { Chunk, Effect, Stream } from "effect";
import { AuditLog } from "../../src/core/audit/AuditLog.js";
import { redactInput, redacted } from "../../src/core/audit/redact.js";
import type { Principal } from "../../src/core/model.js";
import { AuditLogger, type AuditEntry, type AuditFilter } from "../../src/ports/AuditLogger.js";
import { admin, operator, otherTenant, viewer } from "../support/core.js";
import { auditImpls, auditLayer, collectThrough, sequences } from "./support.js";

const bob: Principal = { subject: "bob", tenant: "globex", roles: ["viewer"] };
const nobody: Principal = { subject: "nobody", tenant: "acme", roles: [] };

/** A mixed log: two tenants, several types, operations, executions and schedules, and events with no principal. */
const fixture: ReadonlyArray<AuditEntry> = [
  { type: "EXECUTION_ACCEPTED", principal: operator, operation: "demo.echo", executionId: "e1" }, // 1
  { type: "EXECUTION_SUCCEEDED", principal: operator, operation: "demo.echo", executionId: "e1" }, // 2
  { type: "EXECUTION_ACCEPTED", principal: bob, operation: "demo.echo", executionId: "e2" }, // 3
  { type: "AUTH_DENIED", decision: "DENY", reason: "UNAUTHENTICATED", details: { method: "/x", peer: "10.0.0.1" } }, // 4
  { type: "SCHEDULE_FIRED", principal: operator, operation: "report", executionId: "e3", scheduleId: "nightly" }, // 5
  { type: "RATE_LIMIT_CHECKED", principal: viewer, operation: "report", decision: "DENY", reason: "RATE_LIMITED" }, // 6
  { type: "POLICY_UPDATED", decision: "ALLOW", details: { policy_version: 2 } }, // 7
  { type: "SCHEDULE_FIRED", principal: bob, operation: "report", executionId: "e4", scheduleId: "hourly" }, // 8
];

const writeFixture = Effect.flatMap(AuditLogger, (audit) => Effect.forEach(fixture, (e) => audit.log(e), { discard: true }).pipe(Effect.zipRight(audit.flush)));

const listAll = (principal: Principal, filter: AuditFilter, order: "ASCENDING" | "DESCENDING" = "ASCENDING") =>
  Effect.flatMap(AuditLog, (log) => Effect.map(log.list(principal, { filter, order, pageSize: 1000 }), (p) => sequences(p.events)));

/** The stored events a subscription from the start delivers, up to the fixture's end (8), via a sentinel. */
const subscribeAll = (principal: Principal, filter: AuditFilter) =>
  Effect.gen(function* () {
    const log = yield* AuditLog;
    // Only matching events are delivered, so read with a short timeout-free bound: take what the
    // list says will come.
    const expected = yield* listAll(principal, filter);
    if (expected.length === 0) return [];
    return sequences(yield* collectThrough(log.subscribe(principal, filter, { _tag: "Earliest" }), expected[expected.length - 1]!));
  });

for (const impl of auditImpls) {
  describe(`reading the audit log (${impl.name})`, () => {
    const cases: ReadonlyArray<[string, AuditFilter, ReadonlyArray<number>]> = [
      ["no filter (admin: every tenant, and events with no principal)", {}, [1, 2, 3, 4, 5, 6, 7, 8]],
      ["types", { types: ["EXECUTION_ACCEPTED", "SCHEDULE_FIRED"] }, [1, 3, 5, 8]],
      ["principal", { principalSubject: "oscar" }, [1, 2, 5]],
      ["tenant", { tenant: "globex" }, [3, 8]],
      ["operation", { operation: "report" }, [5, 6, 8]],
      ["execution", { executionId: "e1" }, [1, 2]],
      ["schedule", { scheduleId: "nightly" }, [5]],
      ["combined (AND)", { operation: "report", tenant: "acme", types: ["SCHEDULE_FIRED"] }, [5]],
      ["nothing matches", { executionId: "missing" }, []],
    ];
    for (const [name, filter, expected] of cases) {
      it.scoped(`filter: ${name}; List and Subscribe agree`, () =>
        Effect.gen(function* () {
          yield* writeFixture;
          expect(yield* listAll(admin, filter)).toStrictEqual(expected);
          expect(yield* listAll(admin, filter, "DESCENDING")).toStrictEqual([...expected].reverse());
          expect(yield* subscribeAll(admin, filter)).toStrictEqual(expected);
        }).pipe(Effect.provide(auditLayer(impl.logger))),
      );
    }

    it.scoped("tenant scoping: audit:read sees its own tenant only; another tenant needs audit:read-all-tenants", () =>
      Effect.gen(function* () {
        yield* writeFixture;
        const log = yield* AuditLog;
        // viewer and operator (acme): acme's events only, never those without a principal.
        expect(yield* listAll(viewer, {})).toStrictEqual([1, 2, 5, 6]);
        expect(yield* listAll(operator, { operation: "report" })).toStrictEqual([5, 6]);
        expect(yield* subscribeAll(viewer, {})).toStrictEqual([1, 2, 5, 6]);
        // bob (globex viewer): globex only.
        expect(yield* listAll(bob, {})).toStrictEqual([3, 8]);
        // Naming their own tenant is fine; another is refused, naming the permission.
        expect(yield* listAll(viewer, { tenant: "acme" })).toStrictEqual([1, 2, 5, 6]);
        // An admin of another tenant has every permission ("*"), so reads every tenant.
        expect(yield* listAll(otherTenant, { tenant: "acme" })).toStrictEqual([1, 2, 5, 6]);
        const denied = yield* Effect.flip(log.list(viewer, { filter: { tenant: "globex" } }));
        expect(denied).toMatchObject({ _tag: "PermissionDenied", permission: "audit:read-all-tenants" });
        const deniedStream = yield* Effect.flip(Stream.runCollect(log.subscribe(viewer, { tenant: "globex" }, { _tag: "Now" })));
        expect(deniedStream).toMatchObject({ _tag: "PermissionDenied", permission: "audit:read-all-tenants" });
        // The refusals are audited under the caller's principal, so its tenant sees them (once
        // committed: a refusal does not wait for its audit event's commit).
        yield* (yield* AuditLogger).flush;
        expect(yield* listAll(viewer, { types: ["AUTH_DENIED"] })).toStrictEqual([9, 10]);
        // No audit:read at all: refused, and the refusal is itself audited.
        expect(yield* Effect.flip(log.list(nobody, { filter: {} }))).toMatchObject({ _tag: "PermissionDenied", permission: "audit:read" });
        expect(yield* Effect.flip(Stream.runCollect(log.subscribe(nobody, {}, { _tag: "Now" })))).toMatchObject({ _tag: "PermissionDenied" });
        const refusals = (yield* (yield* AuditLogger).read(8, 100)).filter((e) => e.type === "AUTH_DENIED");
        expect(refusals.map((e) => [e.principal?.subject, e.details?.["permission"]])).toStrictEqual([
          ["vera", "audit:read-all-tenants"],
          ["vera", "audit:read-all-tenants"],
          ["nobody", "audit:read"],
          ["nobody", "audit:read"],
        ]);
      }).pipe(Effect.provide(auditLayer(impl.logger))),
    );

    it.scoped("paging: page_size, tokens in both orders, tokens bound to the filter and order", () =>
      Effect.gen(function* () {
        const audit = yield* AuditLogger;
        const log = yield* AuditLog;
        for (let i = 0; i < 25; i++) yield* audit.log({ type: "EXECUTION_ACCEPTED", principal: operator, executionId: `e${i}` });
        yield* audit.flush;
        const walk = (order: "ASCENDING" | "DESCENDING", pageSize: number) =>
          Effect.gen(function* () {
            const seen: number[][] = [];
            let token = "";
            do {
              const page = yield* log.list(viewer, { filter: {}, order, pageSize, pageToken: token });
              seen.push(sequences(page.events));
              token = page.nextPageToken;
            } while (token !== "");
            return seen;
          });
        const asc = yield* walk("ASCENDING", 10);
        expect(asc.map((p) => p.length)).toStrictEqual([10, 10, 5]);
        expect(asc.flat()).toStrictEqual(Array.from({ length: 25 }, (_, i) => i + 1));
        const desc = yield* walk("DESCENDING", 10);
        expect(desc.flat()).toStrictEqual(Array.from({ length: 25 }, (_, i) => 25 - i));
        // Exactly one page: no token.
        expect((yield* log.list(viewer, { filter: {}, pageSize: 25 })).nextPageToken).toBe("");
        // Default page size 50.
        expect((yield* log.list(viewer, { filter: {} })).events).toHaveLength(25);
        const first = yield* log.list(viewer, { filter: {}, pageSize: 10 });
        const otherFilter = yield* Effect.flip(log.list(viewer, { filter: { operation: "x" }, pageSize: 10, pageToken: first.nextPageToken }));
        expect(otherFilter).toMatchObject({ _tag: "InvalidInput", violations: [{ field: "page_token" }] });
        const otherOrder = yield* Effect.flip(log.list(viewer, { filter: {}, order: "DESCENDING", pageSize: 10, pageToken: first.nextPageToken }));
        expect(otherOrder).toMatchObject({ _tag: "InvalidInput", violations: [{ field: "page_token" }] });
        // Another tenant's caller cannot reuse it either (its filter is scoped to its tenant).
        expect(yield* Effect.flip(log.list(bob, { filter: {}, pageSize: 10, pageToken: first.nextPageToken }))).toMatchObject({ _tag: "InvalidInput" });
        expect(yield* Effect.flip(log.list(viewer, { filter: {}, pageToken: "garbage" }))).toMatchObject({ _tag: "InvalidInput", violations: [{ field: "page_token" }] });
        expect(yield* Effect.flip(log.list(viewer, { filter: {}, pageSize: -1 }))).toMatchObject({ _tag: "InvalidInput", violations: [{ field: "page_size" }] });
      }).pipe(Effect.provide(auditLayer(impl.logger))),
    );

    it.scoped("redaction: credential-named keys and credential-shaped values never reach the log", () =>
      Effect.gen(function* () {
        const audit = yield* AuditLogger;
        const key = `ork_abcdefghij12_${"A".repeat(43)}`;
        const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl";
        yield* audit.log({
          type: "EXECUTION_ATTEMPT_FAILED",
          principal: operator,
          reason: `upstream said: invalid key ${key}`,
          details: {
            attempt: 1,
            password: "hunter2",
            nested: { Authorization: "Bearer abcdefghijklmnop", api_key: "k", list: [{ client_secret: "s" }, `token=${jwt}`] },
            error: `call failed with header Authorization: Bearer abcdefghijklmnop and ${key}`,
            token_usage: { input: 3 },
            credential_id: "abcdefghij12",
          },
        });
        const [e] = yield* audit.read(0, 10);
        const text = JSON.stringify(e);
        for (const secret of ["hunter2", "abcdefghijklmnop", "A".repeat(43), jwt, '"k"', '"s"']) expect(text).not.toContain(secret);
        expect(e!.details).toStrictEqual({
          attempt: 1,
          password: redacted,
          nested: { Authorization: redacted, api_key: redacted, list: [{ client_secret: redacted }, `token=${redacted}`] },
          error: `call failed with header Authorization: Bearer ${redacted} and ork_abcdefghij12_${redacted}`,
          // Not secrets: kept.
          token_usage: { input: 3 },
          credential_id: "abcdefghij12",
        });
        expect(e!.reason).toBe(`upstream said: invalid key ork_abcdefghij12_${redacted}`);
      }).pipe(Effect.provide(auditLayer(impl.logger))),
    );
  });
}

describe("redactInput", () => {
  it("replaces the operation's sensitive fields by path, through arrays, leaving the rest", () => {
    const input = { url: "https://x", headers: { Authorization: "Bearer zzz" }, auth: { user: "u", pass: "p" }, items: [{ pin: 1 }, { pin: 2, keep: true }] };
    expect(redactInput(input, ["headers", "auth.pass", "items.pin", "absent.field"])).toStrictEqual({
      url: "https://x",
      headers: redacted,
      auth: { user: "u", pass: redacted },
      items: [{ pin: redacted }, { pin: redacted, keep: true }],
    });
    expect(redactInput(input, undefined)).toBe(input);
  });
});

describe("Subscribe chunks", () => {
  it.scoped("events come in sequence order even when delivered in chunks", () =>
    Effect.gen(function* () {
      const audit = yield* AuditLogger;
      const log = yield* AuditLog;
      for (let i = 0; i < 100; i++) yield* audit.log({ type: "AUTH_SUCCEEDED", principal: operator });
      yield* audit.flush;
      const items = yield* Stream.runCollect(log.subscribe(viewer, {}, { _tag: "Earliest" }).pipe(Stream.take(100)));
      expect(Chunk.toReadonlyArray(items).map((i) => (i._tag === "Event" ? i.event.sequence : -1))).toStrictEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    }).pipe(Effect.provide(auditLayer(auditImpls[1]!.logger, { replayPageSize: 9 }))),
  );
});
