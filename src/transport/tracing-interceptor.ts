/**
 * The RPC span: one SERVER span per call, named and attributed after the OpenTelemetry RPC
 * semantic conventions (`{rpc.service}/{rpc.method}`, rpc.system, rpc.service, rpc.method, the
 * status code at the end, network.peer.address). It continues the caller's W3C `traceparent` /
 * `tracestate`, and answers the trace id in `x-trace-id` (plus a W3C `traceresponse` when the
 * span is recorded), so a caller can quote it — errors included.
 *
 * The attribute set is the one gRPC and Connect instrumentations emit today (rpc.system,
 * rpc.service, rpc.grpc.status_code); semantic-conventions 1.40 proposes successors
 * (rpc.system.name, fully qualified rpc.method, rpc.response.status_code) that are still
 * experimental.
 *
 * Transport-agnostic core (`RpcTracing.start` over service, method, headers, peer → `RpcSpan`)
 * with a thin Connect interceptor around it. With tracing off, the span only carries ids: no
 * attributes, no events, no stream wrapper.
 */
import { Code, ConnectError, createContextKey, type ContextValues, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { Effect, type Tracer as EffectTracer } from "effect";
import { makeExternalSpan } from "@effect/opentelemetry/Tracer";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  type Attributes,
  type Span,
  type SpanContext,
  type TextMapGetter,
  type Tracer,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { peerKey, protocolOf, type Protocol } from "./rpc-handler.js";

/** rpc.system: gRPC-Web is gRPC for the conventions. */
export type RpcSystem = "grpc" | "connect_rpc";

export const rpcSystemOf = (protocol: Protocol): RpcSystem => (protocol === "connect" ? "connect_rpc" : "grpc");

/** Codes that are the server's fault; the span's status is ERROR for them (gRPC server spans' rule). */
export function isServerFault(code: Code | undefined): boolean {
  switch (code) {
    case Code.Unknown:
    case Code.DeadlineExceeded:
    case Code.Unimplemented:
    case Code.Internal:
    case Code.Unavailable:
    case Code.DataLoss:
      return true;
    default:
      return false;
  }
}

/** The status attributes of one call: rpc.grpc.status_code always, rpc.connect_rpc.error_code on error. */
export function statusAttributes(system: RpcSystem, code: Code | undefined, into: Attributes): Attributes {
  if (system === "grpc") into["rpc.grpc.status_code"] = code ?? 0;
  else if (code !== undefined) into["rpc.connect_rpc.error_code"] = codeToString(code);
  return into;
}

const propagator = new W3CTraceContextPropagator();
const idsOnly = { kind: SpanKind.SERVER } as const;
const headersGetter: TextMapGetter<Headers> = {
  get: (carrier, key) => carrier.get(key) ?? undefined,
  keys: (carrier) => [...carrier.keys()],
};

export interface RpcCall {
  readonly system: RpcSystem;
  /** Fully qualified, e.g. `orchestrator.v1.ExecutionService`. */
  readonly service: string;
  readonly method: string;
  /** The request's headers, for traceparent/tracestate. */
  readonly header: Headers;
  /** The caller's IP address (network.peer.address). */
  readonly peerAddress: string | undefined;
}

/** Starts RPC spans on one tracer. */
export class RpcTracing {
  constructor(
    private readonly tracer: Tracer,
    /** False when the tracer samples nothing: skip building what would be dropped. */
    private readonly recording: boolean,
  ) {}

  start(call: RpcCall): RpcSpan {
    const parent = propagator.extract(ROOT_CONTEXT, call.header, headersGetter);
    const span = this.tracer.startSpan(
      `${call.service}/${call.method}`,
      this.recording
        ? {
            kind: SpanKind.SERVER,
            attributes: {
              "rpc.system": call.system,
              "rpc.service": call.service,
              "rpc.method": call.method,
              ...(call.peerAddress === undefined ? {} : { "network.peer.address": call.peerAddress }),
            },
          }
        : idsOnly,
      parent,
    );
    return new RpcSpan(span, call.system);
  }
}

/** One call's span. `end` is idempotent: the first outcome wins. */
export class RpcSpan {
  private sent = 0;
  private ended = false;
  readonly context: SpanContext;
  readonly recording: boolean;

  constructor(
    readonly span: Span,
    private readonly system: RpcSystem,
  ) {
    this.context = span.spanContext();
    this.recording = span.isRecording();
  }

  get traceId(): string {
    return this.context.traceId;
  }

  /**
   * `x-trace-id`, and when the span is recorded the W3C `traceresponse` (Trace Context level 2)
   * naming it: an unrecorded span's id leads nowhere, and the header is not free.
   */
  writeHeaders(header: Headers): void {
    const c = this.context;
    header.set("x-trace-id", c.traceId);
    if (this.recording) header.set("traceresponse", `00-${c.traceId}-${c.spanId}-${(c.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED ? "01" : "00"}`);
  }

  /** One response message handed to the transport (a semconv `rpc.message` event, and the count). */
  messageSent(): void {
    this.sent++;
    if (this.recording) this.span.addEvent("rpc.message", { "rpc.message.type": "SENT", "rpc.message.id": this.sent });
  }

  /** `code` undefined = OK. */
  end(code: Code | undefined, message?: string): void {
    if (this.ended) return;
    this.ended = true;
    if (this.recording) {
      const attributes = statusAttributes(this.system, code, {});
      // Events are capped by the span limits; a long stream's total is still here.
      if (this.sent > 0) attributes["orchestrator.rpc.messages_sent"] = this.sent;
      this.span.setAttributes(attributes);
      if (isServerFault(code)) this.span.setStatus({ code: SpanStatusCode.ERROR, ...(message === undefined ? {} : { message }) });
    }
    this.span.end();
  }
}

/** The span of the current call; undefined when the tracing interceptor is not installed. */
export const rpcSpanKey = createContextKey<RpcSpan | undefined>(undefined, { description: "the RPC span" });

export const rpcSpanOf = (ctx: HandlerContext): RpcSpan | undefined => ctx.values.get(rpcSpanKey);

/**
 * The RPC span as the parent of Effect spans, so that what an interceptor or a handler runs for
 * the call lands in its trace. Undefined without the tracing interceptor.
 */
export function rpcParentSpan(values: ContextValues): EffectTracer.ExternalSpan | undefined {
  const rpc = values.get(rpcSpanKey);
  return rpc === undefined ? undefined : makeExternalSpan(rpc.context);
}

/** `effect` under the call's RPC span (as is without one). */
export function inRpcSpan<A, E, R>(values: ContextValues, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> {
  const parent = rpcParentSpan(values);
  return parent === undefined ? effect : Effect.withParentSpan(effect, parent);
}

/** Outermost interceptor: everything after it (authentication, limits, the handler) is inside the span. */
export function tracingInterceptor(tracing: RpcTracing): Interceptor {
  return (next) => async (req) => {
    const rpc = tracing.start({
      system: rpcSystemOf(protocolOf(req.header.get("content-type") ?? undefined)),
      service: req.service.typeName,
      method: req.method.name,
      header: req.header,
      peerAddress: req.contextValues.get(peerKey),
    });
    req.contextValues.set(rpcSpanKey, rpc);
    let res;
    try {
      res = await next(req);
    } catch (e) {
      const err = ConnectError.from(e);
      if (e instanceof ConnectError) rpc.writeHeaders(e.metadata);
      rpc.end(err.code, err.rawMessage);
      throw e;
    }
    rpc.writeHeaders(res.header);
    if (!res.stream) {
      rpc.end(undefined);
      return res;
    }
    // A server stream's span ends with the stream, not when the handler returns it.
    if (!rpc.recording) {
      rpc.end(undefined);
      return res;
    }
    return { ...res, message: traced(rpc, res.message, req.signal) };
  };
}

async function* traced<T>(rpc: RpcSpan, messages: AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  // Left as is when the consumer stops pulling (client cancel, deadline, reset).
  let code: Code | undefined = Code.Canceled;
  let message: string | undefined;
  try {
    for await (const m of messages) {
      rpc.messageSent();
      yield m;
    }
    // A handler may end its stream quietly when the call is aborted; the caller still saw the abort.
    code = signal.aborted ? (signal.reason instanceof ConnectError ? signal.reason.code : Code.Canceled) : undefined;
  } catch (e) {
    const err = ConnectError.from(e);
    code = err.code;
    message = err.rawMessage;
    throw e;
  } finally {
    rpc.end(code, message);
  }
}
