/**
 * Settings of the core: defaults and bounds for executions, limits, retention.
 */
import { Context, Layer } from "effect";
import type { RateLimit } from "../ports/RateLimiter.js";
import { noLimits, type Limits } from "./limits.js";
import type { RetryPolicy } from "./model.js";
import { builtinRoles } from "./permissions.js";
import { serverRetryDefaults } from "./retry.js";

export interface OrchestratorSettings {
  readonly retryDefaults: RetryPolicy;
  /** Whole-execution timeout when a request sets none. */
  readonly defaultTimeoutMs: number;
  /** Largest timeout a request may ask for. */
  readonly maxTimeoutMs: number;
  /** Per principal and operation; undefined = no limit. Shorthand for limits.operation, and wins over it. */
  readonly operationRateLimit: RateLimit | undefined;
  /** Every execution limit: operation, min interval, tenant, model, in flight (src/core/limits.ts). */
  readonly limits: Limits;
  /** How long ended executions are kept. */
  readonly retentionMs: number;
  readonly pruneIntervalMs: number;
  /** Largest operation input, as JSON bytes. */
  readonly maxInputBytes: number;
  readonly roles: Readonly<Record<string, ReadonlyArray<string>>>;
}

export const defaultSettings: OrchestratorSettings = {
  retryDefaults: serverRetryDefaults,
  defaultTimeoutMs: 3_600_000,
  maxTimeoutMs: 24 * 3_600_000,
  operationRateLimit: undefined,
  limits: noLimits,
  retentionMs: 7 * 24 * 3_600_000,
  pruneIntervalMs: 3_600_000,
  maxInputBytes: 1024 * 1024,
  roles: builtinRoles,
};

export class OrchestratorConfig extends Context.Tag("orchestrator/OrchestratorConfig")<
  OrchestratorConfig,
  OrchestratorSettings
>() {
  static defaults(): OrchestratorSettings {
    return defaultSettings;
  }

  static layer(overrides: Partial<OrchestratorSettings> = {}) {
    return Layer.succeed(OrchestratorConfig, { ...defaultSettings, ...overrides });
  }
}
