/** The operations the server ships with. */
import type { Operation } from "../core/operation.js";
import { demoOperations } from "./demo.js";
import { httpRequestOperation, type HttpRequestConfig } from "./http-request.js";

export interface BuiltinOperationsConfig {
  /** Registers demo.echo, demo.sleep and demo.flaky; off in production. */
  readonly demo: boolean;
  readonly http: HttpRequestConfig;
}

/** Throws on an invalid allowlist entry, so a misconfigured server fails at startup. */
export const builtinOperations = (config: BuiltinOperationsConfig): Operation[] => [
  httpRequestOperation(config.http),
  ...(config.demo ? demoOperations : []),
];

export { demoEcho, demoFlaky, demoOperations, demoSleep } from "./demo.js";
export { httpRequestDefaults, httpRequestOperation, systemResolver } from "./http-request.js";
export type { HttpRequestConfig, ResolvedAddress, Resolver } from "./http-request.js";
export { parseAllowlist, parseAllowlistEntry } from "./host-policy.js";
export type { AllowlistEntry } from "./host-policy.js";
