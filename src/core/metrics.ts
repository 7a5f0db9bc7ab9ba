/**
 * The core's metrics, as Effect Metrics: no exporter here. The server bridges them into
 * OpenTelemetry (src/telemetry/Telemetry.ts) and Prometheus scrapes them as
 * `orchestrator_executions_total`, `orchestrator_attempts_total`, … Label values are bounded:
 * operation names come from the registry, outcomes and decisions are fixed sets.
 */
import { Effect, Metric, MetricLabel } from "effect";
import type { ExecutionState } from "./model.js";

const tag = MetricLabel.make;

/**
 * A tagged counter per label set, made once: the metric registry finds a counter by hashing its
 * key, and a key made afresh on every increment is hashed afresh (a measurable cost per
 * execution). Label values are bounded (see above), so the memo is too.
 */
const taggedCounter = (counter: Metric.Metric.Counter<number>, a: string, b: string) => {
  const made = new Map<string, Metric.Metric.Counter<number>>();
  return (x: string, y: string) => {
    const key = `${x}\u0000${y}`;
    let m = made.get(key);
    if (m === undefined) made.set(key, (m = Metric.taggedWithLabels(counter, [tag(a, x), tag(b, y)])));
    return m;
  };
};

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

const executionsBy = taggedCounter(executions, "operation", "outcome");
const attemptsBy = taggedCounter(attempts, "operation", "outcome");
const rateLimitDecisionsBy = taggedCounter(rateLimitDecisions, "limit", "decision");
const policyDenialsBy = taggedCounter(policyDenials, "operation", "rule");

export const executionEnded = (operation: string, state: ExecutionState) =>
  Effect.zipRight(
    Metric.incrementBy(executionsInFlight, -1),
    Metric.increment(executionsBy(operation, state)),
  );

export const attemptEnded = (operation: string, succeeded: boolean) =>
  Metric.increment(attemptsBy(operation, succeeded ? "succeeded" : "failed"));

/** `limit`: "execution" (the core's limits) or "request" (the per-RPC limit). */
export const rateLimitDecided = (limit: "execution" | "request", decision: "allow" | "deny" | "unavailable") =>
  Metric.increment(rateLimitDecisionsBy(limit, decision));

export const policyDenied = (operation: string, rule: string) =>
  Metric.increment(policyDenialsBy(operation, rule));
