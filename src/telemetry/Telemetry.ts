/**
 * OpenTelemetry for the server: one tracer provider for the RPC spans and, through
 * @effect/opentelemetry, for the core's Effect spans (so both land in one trace); one meter
 * provider for the transport's instruments and the core's Effect metrics, scraped by Prometheus.
 *
 * Off by default. Without an exporter nothing is recorded: the provider samples nothing, so an
 * RPC "span" is only its ids (the caller's trace continued, or a new one — executions still get
 * a trace id), the core keeps Effect's own light tracer, and no span processor runs.
 * Nothing is registered globally: several servers can live in one process (tests do).
 */
import * as http from "node:http";
import { Context, Data, Effect, Layer } from "effect";
import { createNoopMeter, diag, DiagLogLevel, type Meter, type Tracer } from "@opentelemetry/api";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  BasicTracerProvider,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  SimpleSpanProcessor,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { MeterProvider } from "@opentelemetry/sdk-metrics";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import * as EffectOtelMetrics from "@effect/opentelemetry/Metrics";
import * as EffectOtelResource from "@effect/opentelemetry/Resource";
import * as EffectOtelTracer from "@effect/opentelemetry/Tracer";
import type { Logger } from "../log.js";
import type { TelemetryConfig } from "./config.js";

export interface TelemetryShape {
  /** Opens the RPC spans. Samples nothing when tracing is off (the spans carry ids only). */
  readonly tracer: Tracer;
  /** Spans are recorded and exported. */
  readonly tracing: boolean;
  /** For the transport's instruments; a no-op meter when metrics are off. */
  readonly meter: Meter;
  readonly metrics: boolean;
  /** `http://host:port/metrics` once it listens. */
  readonly metricsUrl: string | undefined;
}

export class MetricsEndpointFailed extends Data.TaggedError("MetricsEndpointFailed")<{
  readonly address: string;
  readonly reason: string;
}> {
  override get message() {
    return `cannot serve metrics on ${this.address}: ${this.reason}`;
  }
}

const scope = "orchestrator";

export class Telemetry extends Context.Tag("orchestrator/Telemetry")<Telemetry, TelemetryShape>() {
  /**
   * The providers, the Effect tracer when tracing is on, and the `/metrics` endpoint when a
   * metrics port is set (on `host`). Closing the layer flushes pending spans (bounded) and
   * closes the endpoint.
   */
  static layer(config: TelemetryConfig, options: { readonly host: string; readonly logger: Logger }): Layer.Layer<Telemetry, MetricsEndpointFailed> {
    return Layer.unwrapScoped(
      Effect.gen(function* () {
        const resource = resourceFromAttributes({ ...config.resourceAttributes, "service.name": config.serviceName });
        const processors = [...(config.spanProcessors ?? []), ...exportProcessors(config)];
        const tracing = processors.length > 0;
        if (config.tracesExporters.length > 0) routeDiagnostics(options.logger);
        const tracerProvider = new BasicTracerProvider({
          resource,
          spanProcessors: processors,
          // Off: no processor and nothing sampled, so spans are ids and nothing else.
          ...(tracing ? {} : { sampler: new AlwaysOffSampler() }),
        });
        yield* Effect.addFinalizer(() => settle(() => tracerProvider.shutdown()));
        const tracer = tracerProvider.getTracer(scope);

        let meter: Meter = createNoopMeter();
        let metricsUrl: string | undefined;
        if (config.metricsPort !== undefined) {
          // Effect's metrics (the core's counters) join the SDK's own instruments in one scrape.
          const effectMetrics = yield* EffectOtelMetrics.makeProducer.pipe(Effect.provideService(EffectOtelResource.Resource, resource));
          const exporter = new PrometheusExporter({ preventServerStart: true, metricProducers: [effectMetrics] });
          const meterProvider = new MeterProvider({ resource, readers: [exporter] });
          yield* Effect.addFinalizer(() => settle(() => meterProvider.shutdown()));
          meter = meterProvider.getMeter(scope);
          const port = yield* serveMetrics(exporter, options.host, config.metricsPort);
          const host = options.host.includes(":") ? `[${options.host}]` : options.host;
          metricsUrl = `http://${host}:${port}/metrics`;
          options.logger.info("serving metrics", { address: metricsUrl });
        }
        if (tracing) {
          options.logger.info("tracing", {
            exporters: config.tracesExporters.length === 0 ? "custom" : config.tracesExporters.join(","),
            ...(config.otlpTracesEndpoint === undefined ? {} : { endpoint: config.otlpTracesEndpoint }),
            service_name: config.serviceName,
          });
        }

        const service = Layer.succeed(Telemetry, { tracer, tracing, meter, metrics: config.metricsPort !== undefined, metricsUrl });
        if (!tracing) return service;
        // Effect spans become OpenTelemetry spans of the same provider (same trace, same export).
        const effectTracer = EffectOtelTracer.layerWithoutOtelTracer.pipe(Layer.provide(Layer.succeed(EffectOtelTracer.OtelTracer, tracer)));
        return Layer.merge(service, effectTracer);
      }),
    );
  }
}

function exportProcessors(config: TelemetryConfig): SpanProcessor[] {
  return config.tracesExporters.map((name) =>
    name === "console"
      ? new SimpleSpanProcessor(new ConsoleSpanExporter())
      : // The exporter reads OTEL_EXPORTER_OTLP_(TRACES_)HEADERS/TIMEOUT/COMPRESSION itself; the
        // batch processor OTEL_BSP_*.
        new BatchSpanProcessor(new OTLPTraceExporter(config.otlpTracesEndpoint === undefined ? {} : { url: config.otlpTracesEndpoint })),
  );
}

/** Export failures are reported through OpenTelemetry's diag logger: into our log lines. */
function routeDiagnostics(logger: Logger): void {
  const line = (level: "warn" | "error") => (message: string, ...args: unknown[]) =>
    logger.log(level, `opentelemetry: ${message}`, args.length === 0 ? undefined : { args: args.map(String) });
  const quiet = () => undefined;
  diag.setLogger(
    { error: line("error"), warn: line("warn"), info: quiet, debug: quiet, verbose: quiet },
    { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true },
  );
}

/** Flush and shut down without holding shutdown hostage to an unreachable collector. */
const settle = (f: () => Promise<unknown>) =>
  Effect.tryPromise(f).pipe(Effect.timeoutOption("3 seconds"), Effect.ignore);

/** `GET /metrics` on its own port; anything else is 404. Resolves to the bound port. */
const serveMetrics = (exporter: PrometheusExporter, host: string, port: number) =>
  Effect.acquireRelease(
    Effect.async<http.Server, MetricsEndpointFailed>((resume) => {
      const server = http.createServer((req, res) => {
        const path = req.url?.split("?", 1)[0];
        if ((req.method === "GET" || req.method === "HEAD") && path === "/metrics") {
          exporter.getMetricsRequestHandler(req, res);
          return;
        }
        res.writeHead(404, { "content-type": "text/plain" }).end("not found: metrics are served at /metrics\n");
      });
      server.once("error", (e: NodeJS.ErrnoException) =>
        resume(Effect.fail(new MetricsEndpointFailed({ address: `${host}:${port}`, reason: e.code ?? e.message }))),
      );
      server.listen(port, host, () => resume(Effect.succeed(server)));
    }),
    (server) =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void));
        server.closeAllConnections();
      }),
  ).pipe(Effect.map((server) => (server.address() as { port: number }).port));
