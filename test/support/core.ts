/**
 * Test Layers for the core: the real Orchestrator over in-memory ports, plus operations whose
 * side effects tests can observe.
 */
import { Effect, Layer, Ref, Schema } from "effect";
import { Orchestrator } from "../../src/core/Orchestrator.js";
import { OrchestratorConfig, type OrchestratorSettings } from "../../src/core/OrchestratorConfig.js";
import { classifyOperationError, defineOperation, OperationRegistry, type Operation } from "../../src/core/operation.js";
import type { Principal } from "../../src/core/model.js";
import { demoOperations } from "../../src/operations/demo.js";
import { PolicyService } from "../../src/ports/PolicyService.js";
import { RateLimiterMemory } from "../../src/ports/RateLimiter.js";
import { ExecutionStoreMemory } from "../../src/ports/memory/ExecutionStoreMemory.js";
import { AuditLoggerMemory } from "../../src/ports/memory/AuditLoggerMemory.js";

export const admin: Principal = { subject: "alice", tenant: "acme", roles: ["admin"] };
export const operator: Principal = { subject: "oscar", tenant: "acme", roles: ["operator"] };
export const viewer: Principal = { subject: "vera", tenant: "acme", roles: ["viewer"] };
export const otherTenant: Principal = { subject: "olga", tenant: "globex", roles: ["admin"] };

/** What test operations did: runs started and finalizers that ran. */
export interface Probe {
  readonly runs: Ref.Ref<number>;
  readonly finalized: Ref.Ref<ReadonlyArray<string>>;
}

export const makeProbe = Effect.all({ runs: Ref.make(0), finalized: Ref.make<ReadonlyArray<string>>([]) });

/** `test.block`: counts its runs, blocks until interrupted, records its finalizer. */
export const blockOperation = (probe: Probe): Operation =>
  defineOperation({
    name: "test.block",
    description: "blocks forever",
    input: Schema.Struct({ tag: Schema.optional(Schema.String) }),
    classify: classifyOperationError,
    run: (input, ctx) =>
      Ref.update(probe.runs, (n) => n + 1).pipe(
        Effect.zipRight(Effect.never),
        Effect.onInterrupt(() => Ref.update(probe.finalized, (f) => [...f, `${ctx.executionId}#${ctx.attempt}:${input.tag ?? ""}`])),
      ),
  });

/** `test.count`: counts its runs and succeeds. */
export const countOperation = (probe: Probe): Operation =>
  defineOperation({
    name: "test.count",
    description: "counts",
    input: Schema.Struct({ n: Schema.Number }),
    classify: classifyOperationError,
    run: (input) => Ref.updateAndGet(probe.runs, (r) => r + 1).pipe(Effect.map((runs) => ({ n: input.n, runs }))),
  });

/** A throwing operation (a defect, not a typed failure). */
export const crashOperation: Operation = defineOperation({
  name: "test.crash",
  description: "throws",
  input: Schema.Struct({}),
  classify: classifyOperationError,
  run: () => Effect.sync(() => {
    throw new Error("secret internal detail");
  }),
});

/** The Orchestrator's dependencies, in memory. */
export const coreDeps = (probe: Probe, settings: Partial<OrchestratorSettings> = {}) =>
  Layer.mergeAll(
    OrchestratorConfig.layer({ retryDefaults: { ...OrchestratorConfig.defaults().retryDefaults, jitter: 0 }, ...settings }),
    OperationRegistry.layer([...demoOperations, blockOperation(probe), countOperation(probe), crashOperation]),
    ExecutionStoreMemory,
    AuditLoggerMemory,
    PolicyService.allowAll,
    RateLimiterMemory,
  );

/** The Orchestrator and its in-memory dependencies (exposed too, for assertions). */
export const coreLayer = (probe: Probe, settings: Partial<OrchestratorSettings> = {}) => {
  const deps = coreDeps(probe, settings);
  return Layer.merge(Orchestrator.Default.pipe(Layer.provide(deps)), deps);
};
