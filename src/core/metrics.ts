/**
 * The core's metrics, as Effect Metrics: no exporter here. The server bridges them into
 * OpenTelemetry (src/telemetry/Telemetry.ts) and Prometheus scrapes them as
 * `orchestrator_executions_total`, `orchestrator_attempts_total`, … Label values are bounded:
 * operation names come from the registry, outcomes and decisions are fixed sets.
 */
import { Effect, Metric, MetricLabel } from "effect";
import type { ExecutionState } from "./model.js";

const tag = MetricLabel.make;

export const executions = Metric.counter("orchestrator.executions", {
  description: "Executions that ended, by operation and outcome (the terminal state)",
  incremental: true,
});

export const attempts = Metric.counter("orchestrator.attempts", {
  description: "Attempts that ended, by operation and outcome (succeeded, failed)",
  incremental: true,
});

export const executionsInFlight = Metric.counter("orchestrator.executions.in_flight", {
  description: "Executions running in this process (including those backing off between attempts)",
});

export const rateLimitDecisions = Metric.counter("orchestrator.rate_limit.decisions", {
  description: "Rate-limit decisions, by limit (execution, request) and decision (allow, deny, unavailable); shadow-mode would-be refusals count as allow",
  incremental: true,
});

export const policyDenials = Metric.counter("orchestrator.policy.denials", {
  description: "Executions refused by policy, by operation and rule",
  incremental: true,
});

export const executionStarted = Metric.increment(executionsInFlight);

export const executionEnded = (operation: string, state: ExecutionState) =>
  Effect.zipRight(
    Metric.incrementBy(executionsInFlight, -1),
    Metric.increment(Metric.taggedWithLabels(executions, [tag("operation", operation), tag("outcome", state)])),
  );

export const attemptEnded = (operation: string, succeeded: boolean) =>
  Metric.increment(Metric.taggedWithLabels(attempts, [tag("operation", operation), tag("outcome", succeeded ? "succeeded" : "failed")]));

/** `limit`: "execution" (the core's limits) or "request" (the per-RPC limit). */
export const rateLimitDecided = (limit: "execution" | "request", decision: "allow" | "deny" | "unavailable") =>
  Metric.increment(Metric.taggedWithLabels(rateLimitDecisions, [tag("limit", limit), tag("decision", decision)]));

export const policyDenied = (operation: string, rule: string) =>
  Metric.increment(Metric.taggedWithLabels(policyDenials, [tag("operation", operation), tag("rule", rule)]));
