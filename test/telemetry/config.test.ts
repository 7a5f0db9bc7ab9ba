/**
 * Telemetry settings: the standard OTEL_* variables (off unless set), --metrics-port, and
 * settings that cannot be honoured stopping the server with a message naming them.
 */
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import { telemetryConfigFromEnv } from "../../src/telemetry/config.js";

const read = (env: NodeJS.ProcessEnv) => {
  const r = telemetryConfigFromEnv(env, undefined);
  if ("problem" in r) throw new Error(r.problem);
  return r.config;
};
const problem = (env: NodeJS.ProcessEnv) => {
  const r = telemetryConfigFromEnv(env, undefined);
  return "problem" in r ? r.problem : undefined;
};

describe("OTEL_* variables", () => {
  it("nothing set: no exporter, service name orchestrator", () => {
    expect(read({})).toEqual({ serviceName: "orchestrator", resourceAttributes: {}, tracesExporters: [], otlpTracesEndpoint: undefined, metricsPort: undefined });
  });

  it("an OTLP endpoint alone turns OTLP export on; the signal path is appended to the base endpoint only", () => {
    expect(read({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" })).toMatchObject({
      tracesExporters: ["otlp"],
      otlpTracesEndpoint: "http://collector:4318/v1/traces",
    });
    expect(read({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://a:4318", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://b/custom" })).toMatchObject({
      tracesExporters: ["otlp"],
      otlpTracesEndpoint: "https://b/custom",
    });
  });

  it("OTEL_TRACES_EXPORTER: otlp (default endpoint), console, several, none", () => {
    expect(read({ OTEL_TRACES_EXPORTER: "otlp" })).toMatchObject({ tracesExporters: ["otlp"], otlpTracesEndpoint: "http://localhost:4318/v1/traces" });
    expect(read({ OTEL_TRACES_EXPORTER: "console" })).toMatchObject({ tracesExporters: ["console"], otlpTracesEndpoint: undefined });
    expect(read({ OTEL_TRACES_EXPORTER: "otlp, console" }).tracesExporters).toEqual(["otlp", "console"]);
    expect(read({ OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" }).tracesExporters).toEqual([]);
    expect(read({ OTEL_SDK_DISABLED: "true", OTEL_TRACES_EXPORTER: "otlp" }).tracesExporters).toEqual([]);
  });

  it("service name and resource attributes, OTEL_SERVICE_NAME winning over service.name", () => {
    expect(read({ OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=prod, team=a%20b,service.name=from-attrs" })).toMatchObject({
      serviceName: "from-attrs",
      resourceAttributes: { "deployment.environment": "prod", team: "a b", "service.name": "from-attrs" },
    });
    expect(read({ OTEL_SERVICE_NAME: "orch-eu", OTEL_RESOURCE_ATTRIBUTES: "service.name=from-attrs" }).serviceName).toBe("orch-eu");
  });

  it("refuses what it cannot honour, naming the variable", () => {
    expect(problem({ OTEL_TRACES_EXPORTER: "jaeger" })).toMatch(/^OTEL_TRACES_EXPORTER: .*"jaeger"/);
    expect(problem({ OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" })).toMatch(/^OTEL_EXPORTER_OTLP_PROTOCOL: .*HTTP/);
    expect(problem({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "collector:4318" })).toMatch(/^OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: /);
    expect(problem({ OTEL_RESOURCE_ATTRIBUTES: "novalue" })).toMatch(/^OTEL_RESOURCE_ATTRIBUTES: /);
    expect(problem({ OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" })).toBeUndefined();
  });
});

describe("server configuration", () => {
  it("--metrics-port / ORCHESTRATOR_METRICS_PORT: off by default, flag over variable", () => {
    expect(loadConfig([], {}).telemetry.metricsPort).toBeUndefined();
    expect(loadConfig([], { ORCHESTRATOR_METRICS_PORT: "9464" }).telemetry.metricsPort).toBe(9464);
    expect(loadConfig(["--metrics-port", "0"], { ORCHESTRATOR_METRICS_PORT: "9464" }).telemetry.metricsPort).toBe(0);
    expect(() => loadConfig(["--metrics-port", "http"], {})).toThrow(ConfigError);
    expect(() => loadConfig(["--metrics-port", "70000"], {})).toThrow(/--metrics-port \/ ORCHESTRATOR_METRICS_PORT/);
  });

  it("reads the OTEL_* variables of the environment it is given", () => {
    expect(loadConfig([], { OTEL_SERVICE_NAME: "x", OTEL_TRACES_EXPORTER: "console" }).telemetry).toMatchObject({ serviceName: "x", tracesExporters: ["console"] });
    expect(() => loadConfig([], { OTEL_TRACES_EXPORTER: "zipkin" })).toThrow(ConfigError);
  });
});
