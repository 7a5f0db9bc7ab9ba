/**
 * Tracing over real sockets: the span tree of one Execute with one retry (RPC span → the core's
 * steps → the execution's run, its attempts and its retry delay, one trace), a caller's
 * traceparent continued, the trace id answered in x-trace-id and recorded on the execution,
 * error status codes for gRPC and Connect, and trace ids without any exporter.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { ExecutionService } from "../../gen/orchestrator/v1/execution_service_pb.js";
import { startTestServer, type TestServer } from "../support/server.js";

const exporter = new InMemorySpanExporter();
let server: TestServer;
let grpc: Client<typeof ExecutionService>;

beforeAll(async () => {
  // A rate limit, so that the rate-limit step runs (and has its span).
  server = await startTestServer({ args: ["--operation-rate-limit", "1000/1m"], spanProcessors: [new SimpleSpanProcessor(exporter)] });
  grpc = createClient(ExecutionService, createGrpcTransport({ baseUrl: server.baseUrl }));
});
afterAll(async () => {
  await server?.shutdown();
});

const fast = { initialInterval: durationFromMs(10), jitter: 0, maximumAttempts: 3 };

/** Waits until the exporter holds a span that matches (spans end asynchronously to the RPC). */
async function waitForSpan(match: (s: ReadableSpan) => boolean, what: string): Promise<ReadableSpan> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const found = exporter.getFinishedSpans().find(match);
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`no span ${what}; have: ${exporter.getFinishedSpans().map((s) => s.name).join(", ")}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const inTrace = (traceId: string) => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
const named = (spans: ReadonlyArray<ReadableSpan>, name: string) => spans.filter((s) => s.name === name);
const one = (spans: ReadonlyArray<ReadableSpan>, name: string): ReadableSpan => {
  const found = named(spans, name);
  expect(found.map((s) => s.name)).toEqual([name]);
  return found[0]!;
};
const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;
const idOf = (s: ReadableSpan) => s.spanContext().spanId;

describe("the span tree of one Execute with one retry", () => {
  it("RPC span → start (authorize, policy, rate limit) and run (attempt 1 failed, retry delay, attempt 2), one trace", async () => {
    let header: Headers | undefined;
    const kinds: string[] = [];
    let executionId = "";
    for await (const res of grpc.execute(
      { operation: "demo.flaky", input: { failures: 1 }, retryPolicy: fast },
      { onHeader: (h) => (header = h) },
    )) {
      kinds.push(res.event?.kind.case ?? "");
      executionId ||= res.event?.executionId ?? "";
    }
    expect(kinds).toEqual(["accepted", "attemptStarted", "attemptFailed", "attemptStarted", "succeeded"]);

    const traceId = header?.get("x-trace-id") ?? "";
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    const rpc = await waitForSpan((s) => s.spanContext().traceId === traceId && s.kind === SpanKind.SERVER, "for the RPC");
    const run = await waitForSpan((s) => s.spanContext().traceId === traceId && s.name === "Orchestrator.run", "Orchestrator.run");
    expect(header?.get("traceresponse")).toBe(`00-${traceId}-${idOf(rpc)}-01`);

    // The RPC span: semantic-convention name and attributes, the status at the end, messages counted.
    expect(rpc.name).toBe("orchestrator.v1.ExecutionService/Execute");
    expect(rpc.parentSpanContext).toBeUndefined();
    expect(rpc.attributes).toMatchObject({
      "rpc.system": "grpc",
      "rpc.service": "orchestrator.v1.ExecutionService",
      "rpc.method": "Execute",
      "rpc.grpc.status_code": 0,
      "network.peer.address": "127.0.0.1",
      "orchestrator.rpc.messages_sent": 5,
    });
    expect(rpc.events.filter((e) => e.name === "rpc.message").map((e) => [e.attributes?.["rpc.message.type"], e.attributes?.["rpc.message.id"]])).toEqual([
      ["SENT", 1],
      ["SENT", 2],
      ["SENT", 3],
      ["SENT", 4],
      ["SENT", 5],
    ]);
    expect(rpc.status.code).toBe(SpanStatusCode.UNSET);
    // It ends with the stream, not when the handler returns it: after the last attempt.
    const spans = inTrace(traceId);
    const attempts = named(spans, "Orchestrator.attempt").sort((a, b) => Number(a.attributes["attempt"]) - Number(b.attributes["attempt"]));
    expect(attempts).toHaveLength(2);
    const endOf = (s: ReadableSpan) => s.endTime[0] * 1e9 + s.endTime[1];
    expect(endOf(rpc)).toBeGreaterThanOrEqual(endOf(attempts[1]!));

    // start and its steps.
    const start = one(spans, "Orchestrator.start");
    expect(parentOf(start)).toBe(idOf(rpc));
    expect(start.attributes).toMatchObject({ operation: "demo.flaky" });
    for (const step of ["Orchestrator.authorize", "Orchestrator.policy", "Orchestrator.rateLimit"]) {
      expect(parentOf(one(spans, step)), step).toBe(idOf(start));
    }
    expect(one(spans, "Orchestrator.authorize").attributes).toMatchObject({ permission: "execute:demo.flaky" });

    // The run, forked outside the RPC's fiber, still under the RPC span; its attempts and delay under it.
    expect(parentOf(run)).toBe(idOf(rpc));
    expect(run.attributes).toMatchObject({ execution_id: executionId, operation: "demo.flaky" });
    expect(attempts.map((a) => [a.attributes["attempt"], parentOf(a), a.status.code])).toEqual([
      [1, idOf(run), SpanStatusCode.ERROR],
      [2, idOf(run), SpanStatusCode.OK],
    ]);
    const delay = one(spans, "Orchestrator.retryDelay");
    expect(parentOf(delay)).toBe(idOf(run));
    expect(delay.attributes).toMatchObject({ delay_ms: 10, next_attempt: 2 });
    const startOf = (s: ReadableSpan) => s.startTime[0] * 1e9 + s.startTime[1];
    expect(startOf(delay)).toBeGreaterThanOrEqual(endOf(attempts[0]!));
    expect(startOf(attempts[1]!)).toBeGreaterThanOrEqual(endOf(delay));

    // Every span of this call (the stores' included) hangs off the RPC span, in its trace.
    const ids = new Set(spans.map(idOf));
    for (const s of spans) if (s !== rpc) expect(ids.has(parentOf(s) ?? ""), `${s.name} has its parent in the trace`).toBe(true);

    // The execution records the RPC's trace id.
    const { execution } = await grpc.getExecution({ executionId });
    expect(execution?.traceId).toBe(traceId);
  });

  it("GetExecution has its own trace, with the core's authorize step under its RPC span", async () => {
    const [first] = await collect(grpc, { operation: "demo.echo", input: { message: "x" } });
    let header: Headers | undefined;
    await grpc.getExecution({ executionId: first!.executionId }, { onHeader: (h) => (header = h) });
    const traceId = header?.get("x-trace-id") ?? "";
    const rpc = await waitForSpan((s) => s.spanContext().traceId === traceId && s.kind === SpanKind.SERVER, "for GetExecution");
    expect(rpc.name).toBe("orchestrator.v1.ExecutionService/GetExecution");
    expect(rpc.attributes).toMatchObject({ "rpc.method": "GetExecution", "rpc.grpc.status_code": 0 });
    expect(rpc.attributes["orchestrator.rpc.messages_sent"]).toBeUndefined();
    expect(parentOf(one(inTrace(traceId), "Orchestrator.authorize"))).toBe(idOf(rpc));
  });
});

describe("W3C trace context", () => {
  const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
  const callerSpan = "00f067aa0ba902b7";
  const withTraceparent = (traceparent: string, tracestate?: string): Interceptor => (next) => (req) => {
    req.header.set("traceparent", traceparent);
    if (tracestate !== undefined) req.header.set("tracestate", tracestate);
    return next(req);
  };

  it("continues the caller's traceparent and tracestate: same trace, the caller's span as parent", async () => {
    const client = createClient(
      ExecutionService,
      createGrpcTransport({ baseUrl: server.baseUrl, interceptors: [withTraceparent(`00-${callerTrace}-${callerSpan}-01`, "vendor=abc")] }),
    );
    let header: Headers | undefined;
    const events: Array<{ executionId: string; traceId: string | undefined }> = [];
    for await (const res of client.execute({ operation: "demo.echo", input: { message: "traced" } }, { onHeader: (h) => (header = h) })) {
      const e = res.event!;
      events.push({ executionId: e.executionId, traceId: e.kind.case === "accepted" ? e.kind.value.execution?.traceId : undefined });
    }
    expect(header?.get("x-trace-id")).toBe(callerTrace);
    expect(events[0]?.traceId).toBe(callerTrace);

    const rpc = await waitForSpan((s) => s.spanContext().traceId === callerTrace && s.kind === SpanKind.SERVER, "continuing the caller's trace");
    expect(rpc.parentSpanContext).toMatchObject({ traceId: callerTrace, spanId: callerSpan, isRemote: true });
    expect(rpc.spanContext().traceState?.get("vendor")).toBe("abc");
    const run = await waitForSpan((s) => s.spanContext().traceId === callerTrace && s.name === "Orchestrator.run", "Orchestrator.run");
    expect(parentOf(run)).toBe(idOf(rpc));
    const { execution } = await grpc.getExecution({ executionId: events[0]!.executionId });
    expect(execution?.traceId).toBe(callerTrace);
  });

  it("a caller that did not sample: the trace is continued, nothing is recorded", async () => {
    const unsampled = "5bf92f3577b34da6a3ce929d0e0e4736";
    const client = createClient(ExecutionService, createGrpcTransport({ baseUrl: server.baseUrl, interceptors: [withTraceparent(`00-${unsampled}-${callerSpan}-00`)] }));
    let header: Headers | undefined;
    const [accepted] = await collect(client, { operation: "demo.echo", input: { message: "quiet" } }, (h) => (header = h));
    expect(header?.get("x-trace-id")).toBe(unsampled);
    expect(header?.get("traceresponse")).toBeNull(); // it would name a span that is not recorded
    expect(accepted?.kind.case === "accepted" && accepted.kind.value.execution?.traceId).toBe(unsampled);
    await new Promise((r) => setTimeout(r, 50));
    expect(inTrace(unsampled)).toEqual([]);
  });

  it("an invalid traceparent starts a new trace", async () => {
    const client = createClient(ExecutionService, createGrpcTransport({ baseUrl: server.baseUrl, interceptors: [withTraceparent(`00-${"0".repeat(32)}-${callerSpan}-01`)] }));
    let header: Headers | undefined;
    await collect(client, { operation: "demo.echo", input: { message: "x" } }, (h) => (header = h));
    const traceId = header?.get("x-trace-id") ?? "";
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(traceId).not.toBe("0".repeat(32));
    const rpc = await waitForSpan((s) => s.spanContext().traceId === traceId && s.kind === SpanKind.SERVER, "in a new trace");
    expect(rpc.parentSpanContext).toBeUndefined();
  });
});

describe("status codes", () => {
  it("gRPC: the status code at the end, x-trace-id with the error; client errors leave the span status unset", async () => {
    const err = await collect(grpc, { operation: "no.such.operation", input: {} }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.NotFound);
    const traceId = err?.metadata.get("x-trace-id") ?? "";
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    const rpc = await waitForSpan((s) => s.spanContext().traceId === traceId && s.kind === SpanKind.SERVER, "for the failed call");
    expect(rpc.attributes).toMatchObject({ "rpc.system": "grpc", "rpc.grpc.status_code": Code.NotFound });
    expect(rpc.status.code).toBe(SpanStatusCode.UNSET);
  });

  it("Connect: rpc.system connect_rpc, rpc.connect_rpc.error_code on error, x-trace-id in the headers", async () => {
    const connect = createClient(ExecutionService, createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" }));
    const err = await connect.getExecution({ executionId: "no-such-execution" }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.NotFound);
    const traceId = err?.metadata.get("x-trace-id") ?? "";
    const rpc = await waitForSpan((s) => s.spanContext().traceId === traceId && s.kind === SpanKind.SERVER, "for the Connect call");
    expect(rpc.attributes).toMatchObject({ "rpc.system": "connect_rpc", "rpc.method": "GetExecution", "rpc.connect_rpc.error_code": "not_found" });
    expect(rpc.attributes["rpc.grpc.status_code"]).toBeUndefined();
  });

  it("a client cancelling a stream ends its span as cancelled", async () => {
    const abort = new AbortController();
    let traceId = "";
    await (async () => {
      for await (const res of grpc.execute(
        { operation: "demo.sleep", input: { durationMs: 60_000 } },
        { signal: abort.signal, onHeader: (h) => (traceId = h.get("x-trace-id") ?? "") },
      )) {
        if (res.event?.kind.case === "attemptStarted") abort.abort();
      }
    })().catch(() => undefined);
    const rpc = await waitForSpan((s) => s.spanContext().traceId === traceId && s.kind === SpanKind.SERVER, "for the cancelled stream");
    expect(rpc.attributes).toMatchObject({ "rpc.grpc.status_code": Code.Canceled });
    expect(rpc.status.code).toBe(SpanStatusCode.UNSET);
  });
});

describe("without an exporter", () => {
  it("records nothing but still answers and continues trace ids", async () => {
    const quiet = await startTestServer();
    try {
      expect(quiet.telemetry.tracing).toBe(false);
      const client = createClient(ExecutionService, createGrpcTransport({ baseUrl: quiet.baseUrl }));
      let header: Headers | undefined;
      const [accepted] = await collect(client, { operation: "demo.echo", input: { message: "x" } }, (h) => (header = h));
      const traceId = header?.get("x-trace-id") ?? "";
      expect(traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(accepted?.kind.case === "accepted" && accepted.kind.value.execution?.traceId).toBe(traceId);
      expect(inTrace(traceId)).toEqual([]);
    } finally {
      await quiet.shutdown();
    }
  });
});

async function collect(
  client: Client<typeof ExecutionService>,
  req: Parameters<Client<typeof ExecutionService>["execute"]>[0],
  onHeader?: (h: Headers) => void,
) {
  const out = [];
  for await (const res of client.execute(req, onHeader === undefined ? {} : { onHeader })) out.push(res.event!);
  return out;
}
