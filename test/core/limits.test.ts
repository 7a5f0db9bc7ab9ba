/**
 * Limits: the limits file (valid and invalid, through loadConfig too), overrides per role and
 * tenant, and the core's enforcement under TestClock — tenant, model, minimum interval and
 * in-flight limits, all-or-nothing decisions, shadow mode, and a limiter whose state is
 * unreachable (fail closed: RateLimiterUnavailable; fail open), each audited.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "@effect/vitest";
import { Chunk, Effect, Fiber, Layer, Ref, Schema, Stream, TestClock } from "effect";
import { ConfigError, loadConfig, parseDurationMs } from "../../src/config.js";
import { limitsFor, parseLimits, requestLimits, type Limits } from "../../src/core/limits.js";
import type { Principal } from "../../src/core/model.js";
import { classifyOperationError, defineOperation, OperationRegistry } from "../../src/core/operation.js";
import { Orchestrator } from "../../src/core/Orchestrator.js";
import { OrchestratorConfig, type OrchestratorSettings } from "../../src/core/OrchestratorConfig.js";
import { demoOperations } from "../../src/operations/demo.js";
import { AuditLogger, type AuditEvent } from "../../src/ports/AuditLogger.js";
import { AuditLoggerMemory } from "../../src/ports/memory/AuditLoggerMemory.js";
import { ExecutionStoreMemory } from "../../src/ports/memory/ExecutionStoreMemory.js";
import { PolicyService } from "../../src/ports/PolicyService.js";
import { type FailureMode, RateLimiter, RateLimiterMemory } from "../../src/ports/RateLimiter.js";
import { admin, blockOperation, makeProbe, operator, otherTenant, type Probe } from "../support/core.js";

const limits = (json: unknown): Limits => parseLimits(json, parseDurationMs);

const modelOperation = defineOperation({
  name: "test.model",
  description: "names the model it would call",
  input: Schema.Struct({ model: Schema.String }),
  classify: classifyOperationError,
  model: (input) => input.model,
  run: (input) => Effect.succeed({ model: input.model }),
});

const coreWith = (probe: Probe, settings: Partial<OrchestratorSettings>, limiter: Layer.Layer<RateLimiter> = RateLimiterMemory) =>
  Orchestrator.Default.pipe(
    Layer.provideMerge(
      Layer.mergeAll(
        OrchestratorConfig.layer({ retryDefaults: { ...OrchestratorConfig.defaults().retryDefaults, jitter: 0 }, ...settings }),
        OperationRegistry.layer([...demoOperations, blockOperation(probe), modelOperation]),
        ExecutionStoreMemory,
        AuditLoggerMemory,
        PolicyService.allowAll,
        limiter,
      ),
    ),
  );

const withLimits = <A, E>(
  json: unknown,
  body: (probe: Probe) => Effect.Effect<A, E, Orchestrator | AuditLogger | RateLimiter>,
  settings: Partial<OrchestratorSettings> = {},
  limiter?: Layer.Layer<RateLimiter>,
) =>
  Effect.gen(function* () {
    const probe = yield* makeProbe;
    return yield* body(probe).pipe(Effect.provide(coreWith(probe, { limits: limits(json), ...settings }, limiter)));
  });

const echo = (principal: Principal, message = "x", operation = "demo.echo") =>
  Effect.flatMap(Orchestrator, (o) => o.execute(operation, { message }, { principal }));
const tag = <A, E extends { readonly _tag: string }, R>(e: Effect.Effect<A, E, R>) => Effect.map(Effect.flip(e), (x) => x._tag);
const rateAudits = Effect.flatMap(AuditLogger, (a) => a.read(0, 10_000)).pipe(
  Effect.map((events): ReadonlyArray<AuditEvent> => events.filter((e) => e.type === "RATE_LIMIT_CHECKED")),
);

describe("the limits file", () => {
  it("parses the documented example", () => {
    const l = limits({
      request: { limit: 100, window: "1s" },
      operation: { limit: 10, window: "1m" },
      tenant: { limit: 1000, window: "1h" },
      models: { "gpt-4o": { limit: 500, window: "1m" } },
      minInterval: "100ms",
      maxInFlight: 10,
      overrides: { roles: { admin: { request: null, maxInFlight: 50 } }, tenants: { acme: { tenant: { limit: 5000, window: "1h" } } } },
      shadow: false,
    });
    expect(l).toMatchObject({
      request: { limit: 100, windowMs: 1000 },
      operation: { limit: 10, windowMs: 60_000 },
      tenant: { limit: 1000, windowMs: 3_600_000 },
      minIntervalMs: 100,
      maxInFlight: 10,
      shadow: false,
    });
    expect(l.models.get("gpt-4o")).toEqual({ limit: 500, windowMs: 60_000 });
    expect(l.overrides.roles.get("admin")).toEqual({ request: null, maxInFlight: 50 });
    expect(l.overrides.tenants.get("acme")).toEqual({ tenant: { limit: 5000, windowMs: 3_600_000 } });
    expect(limits({})).toMatchObject({ shadow: false, models: new Map() });
  });

  it.each([
    [[], "the file: expected an object"],
    [{ requests: { limit: 1, window: "1s" } }, "requests: unknown field"],
    [{ request: { limit: 0, window: "1s" } }, "request.limit: expected a whole number from 1 to 1000000, got 0"],
    [{ request: { limit: 1.5, window: "1s" } }, "request.limit: expected a whole number"],
    [{ request: { limit: 5 } }, "request.window: is required"],
    [{ operation: { limit: 5, window: "soon" } }, 'operation.window: expected a duration from 1ms to 30d like "100ms", "1s", "1m", got "soon"'],
    [{ operation: { limit: 5, window: "31d" } }, "operation.window: expected a duration"],
    [{ tenant: { limit: 5, window: "1s", burst: 3 } }, "tenant.burst: unknown field"],
    [{ minInterval: 100 }, "minInterval: expected a duration"],
    [{ maxInFlight: -1 }, "maxInFlight: expected a whole number"],
    [{ models: { "gpt-4o": { limit: 5, window: "0s" } } }, "models.gpt-4o.window: expected a duration"],
    [{ models: { "gpt-4o": null } }, "models.gpt-4o: expected an object"],
    [{ overrides: { roles: { admin: { tenant: { limit: 1, window: "1s" } } } } }, "overrides.roles.admin.tenant: unknown field"],
    [{ overrides: { people: {} } }, "overrides.people: unknown field"],
    [{ overrides: { tenants: { acme: { operation: { limit: "ten", window: "1s" } } } } }, "overrides.tenants.acme.operation.limit: expected a whole number"],
    [{ shadow: "yes" }, "shadow: expected true or false"],
  ])("refuses %j naming the field", (json, message) => {
    expect(() => limits(json)).toThrow(message);
  });

  it("loadConfig: --limits-file, --redis-url, --rate-limit-on-error, validated at start with the flag named", () => {
    const dir = mkdtempSync(join(tmpdir(), "orchestrator-limits-"));
    const file = (name: string, text: string) => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    const ok = loadConfig(["--limits-file", file("ok.json", JSON.stringify({ operation: { limit: 3, window: "1m" }, shadow: true })), "--redis-url", "redis://127.0.0.1:6390/2", "--rate-limit-on-error", "allow"], {});
    expect(ok).toMatchObject({ limits: { operation: { limit: 3, windowMs: 60_000 }, shadow: true }, redisUrl: "redis://127.0.0.1:6390/2", rateLimitOnError: "allow" });
    expect(loadConfig([], {})).toMatchObject({ redisUrl: undefined, rateLimitOnError: "deny", limits: { shadow: false } });
    expect(loadConfig([], { ORCHESTRATOR_RATE_LIMIT_ON_ERROR: "allow" }).rateLimitOnError).toBe("allow");

    const bad = file("bad.json", JSON.stringify({ operation: { limit: 3, window: "1 minute" } }));
    expect(() => loadConfig(["--limits-file", bad], {})).toThrow(ConfigError);
    expect(() => loadConfig(["--limits-file", bad], {})).toThrow(`--limits-file / ORCHESTRATOR_LIMITS_FILE: ${bad}: operation.window: expected a duration`);
    expect(() => loadConfig(["--limits-file", file("broken.json", "{")], {})).toThrow("--limits-file / ORCHESTRATOR_LIMITS_FILE: cannot read");
    expect(() => loadConfig(["--limits-file", join(dir, "missing.json")], {})).toThrow("cannot read");
    expect(() => loadConfig(["--redis-url", "http://localhost:6379"], {})).toThrow("--redis-url / ORCHESTRATOR_REDIS_URL: expected redis://host:port");
    expect(() => loadConfig(["--rate-limit-on-error", "maybe"], {})).toThrow("--rate-limit-on-error / ORCHESTRATOR_RATE_LIMIT_ON_ERROR: expected deny or allow");
    expect(loadConfig(["--operation-rate-limit", "10/1h"], {}).operationRateLimit).toEqual({ limit: 10, windowMs: 3_600_000 });
    expect(() => loadConfig(["--operation-rate-limit", "2000000/1s"], {})).toThrow("--operation-rate-limit");
  });
});

describe("overrides", () => {
  const l = limits({
    request: { limit: 10, window: "1s" },
    operation: { limit: 5, window: "1m" },
    tenant: { limit: 100, window: "1m" },
    maxInFlight: 2,
    minInterval: "1s",
    overrides: {
      roles: { operator: { request: { limit: 20, window: "1s" } }, admin: { request: { limit: 50, window: "1s" }, minInterval: null }, batch: { request: { limit: 1000, window: "1m" } } },
      tenants: { acme: { request: { limit: 1, window: "1s" }, tenant: { limit: 7, window: "1m" }, maxInFlight: null } },
    },
  });
  const p = (tenant: string, ...roles: string[]): Principal => ({ subject: "s", tenant, roles });

  it("base; then the tenant's entry; then the principal's roles, the most generous role winning; null lifts a limit", () => {
    expect(limitsFor(l, p("globex", "viewer"))).toEqual({
      request: { limit: 10, windowMs: 1000 },
      operation: { limit: 5, windowMs: 60_000 },
      tenant: { limit: 100, windowMs: 60_000 },
      minIntervalMs: 1000,
      maxInFlight: 2,
    });
    // The tenant's entry replaces what it sets (null: no in-flight cap for acme).
    expect(limitsFor(l, p("acme", "viewer"))).toMatchObject({ request: { limit: 1, windowMs: 1000 }, tenant: { limit: 7, windowMs: 60_000 }, maxInFlight: undefined });
    // Roles win over the tenant; among roles the most generous (50/s over 20/s and 1000/min).
    expect(limitsFor(l, p("acme", "operator", "admin", "batch")).request).toEqual({ limit: 50, windowMs: 1000 });
    expect(limitsFor(l, p("acme", "admin")).minIntervalMs).toBeUndefined();
    // The tenant limit is the tenant's alone: roles do not change it.
    expect(limitsFor(l, p("acme", "admin")).tenant).toEqual({ limit: 7, windowMs: 60_000 });
  });

  it("keys: per principal (tenant and subject), escaped so that no two principals share one", () => {
    const a = requestLimits(l, { subject: "b:c", tenant: "a", roles: [] })!.rates[0]!.key;
    const b = requestLimits(l, { subject: "c", tenant: "a:b", roles: [] })!.rates[0]!.key;
    expect(a).not.toBe(b);
    expect(requestLimits(limits({}), admin)).toBeUndefined();
  });
});

describe("execution limits in the core", () => {
  it.effect("tenant: shared by every principal of the tenant; another tenant untouched", () =>
    withLimits({ tenant: { limit: 3, window: "1m" } }, () =>
      Effect.gen(function* () {
        yield* echo(admin);
        yield* echo(operator);
        yield* echo(admin, "y", "demo.sleep").pipe(Effect.ignore); // invalid input: refused before the limit
        yield* echo(operator);
        const e = yield* Effect.flip(echo(admin));
        expect(e).toMatchObject({ _tag: "RateLimited", scope: "tenant", key: "tenant acme", limit: 3, remaining: 0, retryAfterMs: 20_000 });
        expect(yield* echo(otherTenant)).toBeDefined();
        yield* TestClock.adjust("20 seconds");
        expect(yield* echo(operator)).toBeDefined();
      }),
    ),
  );

  it.effect("model: shared by everyone using the model; other models and model-less operations untouched", () =>
    withLimits({ models: { "gpt-4o": { limit: 2, window: "1m" } } }, () =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const run = (p: Principal, model: string) => o.execute("test.model", { model }, { principal: p });
        yield* run(admin, "gpt-4o");
        yield* run(otherTenant, "gpt-4o");
        expect(yield* Effect.flip(run(operator, "gpt-4o"))).toMatchObject({ _tag: "RateLimited", scope: "model", key: "model gpt-4o" });
        expect(yield* run(operator, "small-model")).toEqual({ model: "small-model" });
        expect(yield* echo(operator)).toBeDefined();
      }),
    ),
  );

  it.effect("minimum interval: per principal and operation, refused until it has passed", () =>
    withLimits({ minInterval: "100ms" }, () =>
      Effect.gen(function* () {
        yield* echo(admin);
        const e = yield* Effect.flip(echo(admin));
        expect(e).toMatchObject({ _tag: "RateLimited", scope: "interval", retryAfterMs: 100, limit: 1 });
        // Other operations and other principals are not held back.
        expect(yield* echo(operator)).toBeDefined();
        yield* Effect.flatMap(Orchestrator, (o) => o.execute("test.model", { model: "m" }, { principal: admin }));
        yield* TestClock.adjust("99 millis");
        expect(yield* tag(echo(admin))).toBe("RateLimited");
        yield* TestClock.adjust("1 millis");
        expect(yield* echo(admin)).toBeDefined();
      }),
    ),
  );

  it.effect("max in flight: the third concurrent execution is refused; a slot frees when one ends (cancel, success, failure)", () =>
    withLimits({ maxInFlight: 2 }, (probe) =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const detached = (operation: string, input: Record<string, number>) =>
          o.executeStream({ operation, input, principal: admin }, { detach: true }).pipe(Stream.runCollect, Effect.map((c) => Chunk.unsafeHead(c).executionId));
        const a = yield* detached("test.block", {});
        yield* detached("demo.sleep", { durationMs: 1000 });
        const e = yield* Effect.flip(detached("test.block", {}));
        expect(e).toMatchObject({ _tag: "RateLimited", scope: "in_flight", limit: 2, remaining: 0, retryAfterMs: 1000 });
        expect(e.message).toBe("2 executions already in flight for alice; retry after 1s");
        // Another principal has its own slots.
        expect(yield* o.execute("demo.echo", { message: "other" }, { principal: operator })).toBeDefined();

        // Cancel frees a slot.
        yield* o.cancel(admin, a, "make room");
        const c = yield* detached("test.block", {});
        expect(yield* tag(detached("test.block", {}))).toBe("RateLimited");
        // Success frees a slot (demo.sleep ends after 1 s).
        yield* TestClock.adjust("1 second");
        const d = yield* o.executeStream({ operation: "demo.flaky", input: { failures: 5, errorType: "INVALID" }, principal: admin }).pipe(Stream.runCollect);
        expect(Chunk.toReadonlyArray(d).at(-1)?.kind._tag).toBe("Failed");
        // …and so does failure: demo.flaky above ended FAILED, its slot is free again.
        const f = yield* detached("test.block", {});
        expect(yield* tag(detached("test.block", {}))).toBe("RateLimited");
        expect(yield* Ref.get(probe.runs)).toBe(3);
        yield* o.cancel(admin, c, "done");
        yield* o.cancel(admin, f, "done");
        expect(yield* Effect.flatMap(RateLimiter, (l) => l.size)).toBe(0);
      }),
    ),
  );

  it.effect("the in-process caller holds its slot for the whole run and releases it when interrupted", () =>
    withLimits({ maxInFlight: 1 }, () =>
      Effect.gen(function* () {
        const o = yield* Orchestrator;
        const fiber = yield* o.execute("test.block", {}, { principal: admin }).pipe(Effect.fork);
        yield* TestClock.adjust("1 millis");
        expect(yield* tag(o.execute("demo.echo", { message: "x" }, { principal: admin }))).toBe("RateLimited");
        yield* Fiber.interrupt(fiber);
        expect(yield* o.execute("demo.echo", { message: "x" }, { principal: admin })).toBeDefined();
      }),
    ),
  );

  it.effect("all or nothing: refused by the operation limit, the tenant's quota is not spent", () =>
    withLimits({ operation: { limit: 1, window: "1h" }, tenant: { limit: 3, window: "1h" } }, () =>
      Effect.gen(function* () {
        yield* echo(admin);
        for (let i = 0; i < 5; i++) expect(yield* tag(echo(admin))).toBe("RateLimited");
        // Refusals spent none of the tenant's 3: two are left.
        yield* echo(operator);
        yield* Effect.flatMap(Orchestrator, (o) => o.execute("test.model", { model: "m" }, { principal: admin }));
        // A fresh operation key for operator: only the tenant limit refuses now.
        const sleep = Effect.flatMap(Orchestrator, (o) => o.execute("demo.sleep", { durationMs: 0 }, { principal: operator }));
        expect(yield* Effect.flip(sleep)).toMatchObject({ _tag: "RateLimited", scope: "tenant" });
      }),
    ),
  );

  it.effect("each decision is audited with every check; --operation-rate-limit wins over the file", () =>
    withLimits(
      { operation: { limit: 100, window: "1h" }, tenant: { limit: 10, window: "1h" } },
      () =>
        Effect.gen(function* () {
          yield* echo(admin);
          yield* Effect.flip(echo(admin));
          const [ok, denied] = yield* rateAudits;
          expect(ok).toMatchObject({
            principal: admin,
            operation: "demo.echo",
            decision: "ALLOW",
            details: {
              checks: [
                { scope: "operation", allowed: true, limit: 1, remaining: 0 },
                { scope: "tenant", allowed: true, limit: 10, remaining: 9 },
              ],
            },
          });
          expect(denied).toMatchObject({
            decision: "DENY",
            reason: "rate limit of 1 reached for alice/demo.echo; retry after 3600s",
            details: { checks: [{ scope: "operation", allowed: false, retry_after_ms: 3_600_000 }, { scope: "tenant", allowed: true }] },
          });
        }),
      { operationRateLimit: { limit: 1, windowMs: 3_600_000 } },
    ),
  );

  it.effect("shadow mode: nothing refused; what would have been is audited (and logged)", () =>
    withLimits({ operation: { limit: 1, window: "1h" }, maxInFlight: 1, shadow: true }, () =>
      Effect.gen(function* () {
        yield* echo(admin);
        yield* echo(admin);
        yield* echo(admin);
        const events = yield* rateAudits;
        expect(events.map((e) => e.decision)).toEqual(["ALLOW", "ALLOW", "ALLOW"]);
        expect(events[0]!.reason).toBeUndefined();
        expect(events[1]).toMatchObject({
          reason: "shadow mode, would have refused: rate limit of 1 reached for alice/demo.echo; retry after 3600s",
          details: { shadow: true, checks: [{ scope: "operation", allowed: false }, { scope: "in_flight", allowed: true }] },
        });
      }),
    ),
  );

  const unreachable = (onError: FailureMode) =>
    Layer.succeed(RateLimiter, {
      decide: () => Effect.succeed({ allowed: onError === "allow", checks: [], lease: undefined, degraded: { error: "connect ECONNREFUSED 127.0.0.1:6379", onError } }),
      size: Effect.succeed(0),
    });

  it.effect("limiter unreachable, fail closed: RateLimiterUnavailable, audited DENY with the degradation", () =>
    withLimits(
      { operation: { limit: 10, window: "1m" } },
      () =>
        Effect.gen(function* () {
          const e = yield* Effect.flip(echo(admin));
          expect(e).toMatchObject({ _tag: "RateLimiterUnavailable", error: "connect ECONNREFUSED 127.0.0.1:6379" });
          const [event] = yield* rateAudits;
          expect(event).toMatchObject({ decision: "DENY", details: { degraded: { on_error: "deny", error: "connect ECONNREFUSED 127.0.0.1:6379" }, checks: [] } });
        }),
      {},
      unreachable("deny"),
    ),
  );

  it.effect("limiter unreachable, fail open: admitted, audited ALLOW with the degradation", () =>
    withLimits(
      { operation: { limit: 10, window: "1m" } },
      () =>
        Effect.gen(function* () {
          expect(yield* echo(admin)).toBeDefined();
          const [event] = yield* rateAudits;
          expect(event).toMatchObject({ decision: "ALLOW", reason: "rate limiter unavailable: admitted (fail open)", details: { degraded: { on_error: "allow" } } });
        }),
      {},
      unreachable("allow"),
    ),
  );

  it.effect("no limits configured: no limiter call, no audit event", () =>
    withLimits({}, () =>
      Effect.gen(function* () {
        yield* echo(admin);
        expect(yield* rateAudits).toEqual([]);
      }),
    ),
  );
});
