/**
 * Telemetry settings from the standard OpenTelemetry environment variables (the SDK's own
 * names, so an existing deployment's settings apply unchanged), plus the metrics port from the
 * server's flags. Read from the environment handed to loadConfig, not from process.env, so that
 * tests and embedders decide what applies.
 */
import type { SpanProcessor } from "@opentelemetry/sdk-trace-base";

export type TracesExporter = "otlp" | "console";

export interface TelemetryConfig {
  /** `service.name` of every span and metric (OTEL_SERVICE_NAME, default "orchestrator"). */
  readonly serviceName: string;
  /** OTEL_RESOURCE_ATTRIBUTES, parsed. */
  readonly resourceAttributes: Readonly<Record<string, string>>;
  /** Where finished spans go; empty = nowhere, and nothing is recorded (trace ids still are). */
  readonly tracesExporters: ReadonlyArray<TracesExporter>;
  /** Full URL of the OTLP/HTTP traces endpoint, when "otlp" is among the exporters. */
  readonly otlpTracesEndpoint: string | undefined;
  /** Port of the Prometheus `/metrics` endpoint (on the server's host); undefined = none. */
  readonly metricsPort: number | undefined;
  /**
   * Span processors added to the configured exporters: for embedders and tests (an in-memory
   * exporter). Any processor turns span recording on. Never from the environment.
   */
  readonly spanProcessors?: ReadonlyArray<SpanProcessor>;
}

export const defaultServiceName = "orchestrator";
const defaultOtlpBase = "http://localhost:4318";

/** Reads the OTEL_* variables; a setting that cannot be honoured is a problem, not a guess. */
export function telemetryConfigFromEnv(
  env: NodeJS.ProcessEnv,
  metricsPort: number | undefined,
): { readonly config: TelemetryConfig } | { readonly problem: string } {
  const get = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v === undefined || v === "" ? undefined : v;
  };

  const resourceAttributes: Record<string, string> = {};
  const rawAttributes = get("OTEL_RESOURCE_ATTRIBUTES");
  if (rawAttributes !== undefined) {
    for (const pair of rawAttributes.split(",")) {
      if (pair.trim() === "") continue;
      const eq = pair.indexOf("=");
      const key = eq < 0 ? "" : pair.slice(0, eq).trim();
      let value: string | undefined;
      try {
        value = eq < 0 ? undefined : decodeURIComponent(pair.slice(eq + 1).trim());
      } catch {
        value = undefined;
      }
      if (key === "" || value === undefined) {
        return { problem: `OTEL_RESOURCE_ATTRIBUTES: expected key=value pairs separated by commas (values percent-encoded), got "${pair}"` };
      }
      resourceAttributes[key] = value;
    }
  }
  // OTEL_SERVICE_NAME wins over a service.name among the resource attributes (the SDK's rule).
  const serviceName = get("OTEL_SERVICE_NAME") ?? resourceAttributes["service.name"] ?? defaultServiceName;

  const tracesEndpoint = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  const baseEndpoint = get("OTEL_EXPORTER_OTLP_ENDPOINT");
  const rawExporters = get("OTEL_TRACES_EXPORTER");
  let tracesExporters: TracesExporter[] = [];
  if (rawExporters !== undefined) {
    for (const name of rawExporters.split(",").map((s) => s.trim().toLowerCase()).filter((s) => s !== "")) {
      if (name === "none") continue;
      if (name !== "otlp" && name !== "console") {
        return { problem: `OTEL_TRACES_EXPORTER: expected otlp, console or none, got "${name}"` };
      }
      if (!tracesExporters.includes(name)) tracesExporters.push(name);
    }
  } else if (tracesEndpoint !== undefined || baseEndpoint !== undefined) {
    // An endpoint alone means OTLP (the SDK's default exporter); with nothing set, tracing is off.
    tracesExporters = ["otlp"];
  }
  if (get("OTEL_SDK_DISABLED")?.toLowerCase() === "true") tracesExporters = [];

  let otlpTracesEndpoint: string | undefined;
  if (tracesExporters.includes("otlp")) {
    const protocol = get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") ?? get("OTEL_EXPORTER_OTLP_PROTOCOL");
    if (protocol === "grpc") {
      const which = get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") === undefined ? "OTEL_EXPORTER_OTLP_PROTOCOL" : "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
      return { problem: `${which}: traces are exported with OTLP over HTTP (port 4318 on a collector), not gRPC; unset it or set http/json` };
    }
    // The signal-specific endpoint is used as is; the base one gets the signal's path appended.
    otlpTracesEndpoint = tracesEndpoint ?? `${(baseEndpoint ?? defaultOtlpBase).replace(/\/+$/, "")}/v1/traces`;
    try {
      const url = new URL(otlpTracesEndpoint);
      if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error("not http(s)");
    } catch {
      const which = tracesEndpoint === undefined ? "OTEL_EXPORTER_OTLP_ENDPOINT" : "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
      return { problem: `${which}: expected an http(s) URL, got "${tracesEndpoint ?? baseEndpoint}"` };
    }
  }

  return { config: { serviceName, resourceAttributes, tracesExporters, otlpTracesEndpoint, metricsPort } };
}
