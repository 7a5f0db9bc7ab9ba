/**
 * Test Layers for policy: the real Orchestrator over in-memory ports with the real policy Layer
 * (PolicyEngine + PolicyServiceLive) and the in-memory token ledger, plus operations with the
 * names, models and token estimates that rules and conditions look at.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Effect, Either, Layer, Logger, Schema } from "effect";
import { Orchestrator } from "../../src/core/Orchestrator.js";
import { OrchestratorConfig } from "../../src/core/OrchestratorConfig.js";
import { classifyOperationError, defineOperation, OperationRegistry, type Operation } from "../../src/core/operation.js";
import type { Principal } from "../../src/core/model.js";
import { builtinRoles } from "../../src/core/permissions.js";
import { demoOperations } from "../../src/operations/demo.js";
import { RateLimiterMemory } from "../../src/ports/RateLimiter.js";
import { ExecutionStoreMemory } from "../../src/ports/memory/ExecutionStoreMemory.js";
import { AuditLoggerMemory } from "../../src/ports/memory/AuditLoggerMemory.js";
import { TokenLedgerMemory } from "../../src/ports/memory/TokenLedgerMemory.js";
import { AuditLogger, type AuditEvent } from "../../src/ports/AuditLogger.js";
import type { TokenLedger } from "../../src/ports/TokenLedger.js";
import { emptyPolicy, type PolicyDocument, type RuleConfig } from "../../src/policy/config.js";
import { PolicyEngine, type PolicyEngineOptions } from "../../src/policy/PolicyEngine.js";
import { policyLayer } from "../../src/policy/PolicyServiceLive.js";
import { compilePolicy } from "../../src/policy/file.js";

/** A role that may execute anything and nothing else: rules, not permissions, decide for it. */
export const roles = { ...builtinRoles, analyst: ["execute:*"], intern: ["execute:*"] };

export const alice: Principal = { subject: "alice", tenant: "acme", roles: ["analyst"] };
export const bob: Principal = { subject: "bob", tenant: "acme", roles: ["intern"] };
export const gina: Principal = { subject: "gina", tenant: "globex", roles: ["analyst"] };

/** An operation that succeeds with its own name. */
export const named = (name: string): Operation =>
  defineOperation({
    name,
    description: `test operation ${name}`,
    input: Schema.Struct({}),
    classify: classifyOperationError,
    run: () => Effect.succeed({ ran: name }),
  });

/** `llm.chat`: names a model and estimates its tokens, as a model-calling operation does. */
export const chatOperation: Operation = defineOperation({
  name: "llm.chat",
  description: "pretends to call a model",
  input: Schema.Struct({ model: Schema.String, tokens: Schema.Number }),
  classify: classifyOperationError,
  model: (input) => input.model,
  estimateTokens: (input) => input.tokens,
  run: (input) => Effect.succeed({ model: input.model }),
});

export const testOperations: ReadonlyArray<Operation> = [
  ...demoOperations,
  named("reports.daily"),
  named("reports.weekly"),
  named("admin.wipe"),
  chatOperation,
];

/** A document with these global rules (and optional extras). */
export const doc = (rules: ReadonlyArray<RuleConfig>, extra: Partial<PolicyDocument> = {}): PolicyDocument => ({ ...emptyPolicy, rules, ...extra });

/**
 * The Orchestrator with the real policy Layer (a file, or the empty policy until `apply`).
 * Exposes the ports and the PolicyEngine for assertions.
 */
export const policyCoreLayer = (
  options: PolicyEngineOptions & { readonly ledger?: Layer.Layer<TokenLedger>; readonly logger?: Layer.Layer<never> } = {},
) => {
  const base = Layer.mergeAll(
    OrchestratorConfig.layer({ retryDefaults: { ...OrchestratorConfig.defaults().retryDefaults, jitter: 0 }, roles }),
    OperationRegistry.layer(testOperations),
    ExecutionStoreMemory,
    AuditLoggerMemory,
    RateLimiterMemory,
    options.ledger ?? TokenLedgerMemory,
  );
  const policy = policyLayer(options).pipe(Layer.provideMerge(base));
  // Quiet unless a test listens.
  return Orchestrator.Default.pipe(Layer.provideMerge(policy), Layer.provide(options.logger ?? Logger.replace(Logger.defaultLogger, Logger.none)));
};

/** Applies a document as the next policy version. */
export const apply = (d: PolicyDocument) => Effect.flatMap(PolicyEngine, (e) => e.apply(d));

/** Audit events of a type. */
export const auditOf = (type: AuditEvent["type"]) =>
  Effect.map(
    Effect.flatMap(AuditLogger, (a) => a.read(0, 100_000)),
    (events) => events.filter((e) => e.type === type),
  );

export const tempDir = () => mkdtempSync(join(tmpdir(), "orchestrator-policy-"));

/** The compiled form of a document (throws on a problem: for fixtures). */
export const compiled = (d: PolicyDocument) => Either.getOrThrow(compilePolicy(d));
