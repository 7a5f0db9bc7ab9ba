/**
 * ExecutionService over gRPC on a real socket: the event stream, retries, failures,
 * cancellation (CancelExecution, client cancel, deadline), idempotency, validation, auth,
 * exact limits under concurrency, and restart recovery with the server process really restarted.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toJson } from "@bufbuild/protobuf";
import { ValueSchema, durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  ExecutionService,
  ExecutionState,
  type ExecuteRequest,
  type ExecutionEvent,
} from "../../gen/orchestrator/v1/execution_service_pb.js";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { collect, failure } from "../support/rpc.js";
import { spawnServer, startTestServer, type TestServer } from "../support/server.js";
import { createKey } from "../support/auth.js";

/** Real API keys, created in the server's store before the tests run. */
const tokens = { admin: "", viewer: "", other: "" };

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ args: ["--auth", "api-keys", "--operation-rate-limit", "10/1h"] });
  tokens.admin = await createKey(server, { subject: "alice", tenant: "acme", roles: ["admin"] });
  tokens.viewer = await createKey(server, { subject: "vera", tenant: "acme", roles: ["viewer"] });
  tokens.other = await createKey(server, { subject: "olga", tenant: "globex", roles: ["admin"] });
});
afterAll(() => server.shutdown());

const clientFor = (token: string | undefined, baseUrl = server.baseUrl): Client<typeof ExecutionService> =>
  createClient(
    ExecutionService,
    createGrpcTransport({
      baseUrl,
      interceptors: token === undefined ? [] : [(next) => (req) => {
        req.header.set("authorization", `Bearer ${token}`);
        return next(req);
      }],
    }),
  );

const admin = () => clientFor(tokens.admin);

const kinds = (events: ExecutionEvent[]) => events.map((e) => e.kind.case);
const fast = { initialInterval: durationFromMs(10), jitter: 0 };
/** Distinct operations per test keep the per-principal rate limit (10/h) out of the way. */
let seq = 0;
const echo = () => ({ operation: "demo.echo", input: { message: `m${seq++}` } });

describe("Execute", () => {
  it("streams accepted, attempt started, succeeded with the result; GetExecution reads it back", async () => {
    const events = await collect(admin(), { operation: "demo.echo", input: { message: "hello" }, labels: { env: "test" } });
    expect(kinds(events)).toEqual(["accepted", "attemptStarted", "succeeded"]);
    const id = events[0]!.executionId;
    expect(events.every((e) => e.executionId === id)).toBe(true);
    const ok = events[2]!.kind;
    if (ok.case !== "succeeded") throw new Error(ok.case);
    expect(toJson(ValueSchema, ok.value.result!)).toEqual({ echo: { message: "hello" } });
    expect(ok.value.tokenUsage?.totalTokens).toBe(4n);

    const { execution } = await admin().getExecution({ executionId: id });
    expect(execution).toMatchObject({ executionId: id, operation: "demo.echo", state: ExecutionState.SUCCEEDED, labels: { env: "test" } });
    expect(execution?.principal).toMatchObject({ subject: "alice", tenant: "acme", roles: ["admin"] });
    expect(execution?.attempts).toHaveLength(1);
    expect(execution?.traceId).toMatch(/^[0-9a-f]{32}$/);
  });

  it("continues the caller's W3C traceparent as the execution's trace id", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const client = createClient(ExecutionService, createGrpcTransport({
      baseUrl: server.baseUrl,
      interceptors: [(next) => (req) => {
        req.header.set("authorization", `Bearer ${tokens.admin}`);
        req.header.set("traceparent", `00-${traceId}-00f067aa0ba902b7-01`);
        return next(req);
      }],
    }));
    const events = await collect(client, echo());
    const accepted = events[0]!.kind;
    expect(accepted.case === "accepted" && accepted.value.execution?.traceId).toBe(traceId);
  });

  it("retries a retryable failure and reports the delay, then succeeds", async () => {
    const events = await collect(admin(), { operation: "demo.flaky", input: { failures: 2 }, retryPolicy: { ...fast, backoffCoefficient: 2 } });
    expect(kinds(events)).toEqual(["accepted", "attemptStarted", "attemptFailed", "attemptStarted", "attemptFailed", "attemptStarted", "succeeded"]);
    const delays = events.flatMap((e) => (e.kind.case === "attemptFailed" ? [e.kind.value] : []));
    expect(delays.map((d) => [d.attempt, d.willRetry, Number(d.retryDelay?.nanos) / 1e6])).toEqual([
      [1, true, 10],
      [2, true, 20],
    ]);
    expect(delays[0]?.error).toMatchObject({ type: "UNAVAILABLE", retryable: true });
  });

  it("jittered delays travel as whole milliseconds (Timestamps and Durations stay encodable)", async () => {
    const events = await collect(admin(), { operation: "demo.flaky", input: { failures: 2 }, retryPolicy: { initialInterval: durationFromMs(7), jitter: 0.9 } });
    expect(kinds(events).at(-1)).toBe("succeeded");
    for (const e of events) {
      if (e.kind.case !== "attemptFailed") continue;
      expect(e.kind.value.retryDelay!.nanos % 1_000_000).toBe(0);
      expect(e.kind.value.nextAttemptTime!.nanos % 1_000_000).toBe(0);
    }
  });

  it("ends FAILED at once on a non-retryable failure, with the operation's error type", async () => {
    const events = await collect(admin(), { operation: "demo.flaky", input: { failures: 3, errorType: "INVALID" }, retryPolicy: fast });
    expect(kinds(events)).toEqual(["accepted", "attemptStarted", "attemptFailed", "failed"]);
    const end = events.at(-1)!.kind;
    if (end.case !== "failed") throw new Error(end.case);
    expect(end.value).toMatchObject({ attempts: 1, error: { type: "INVALID", retryable: false } });
  });

  it("ends FAILED when retries are exhausted", async () => {
    const events = await collect(admin(), { operation: "demo.flaky", input: { failures: 9 }, retryPolicy: { ...fast, maximumAttempts: 3 } });
    expect(kinds(events).filter((k) => k === "attemptStarted")).toHaveLength(3);
    const end = events.at(-1)!.kind;
    expect(end.case).toBe("failed");
    if (end.case === "failed") expect(end.value.attempts).toBe(3);
  });

  it("detach returns right after accepted and the execution goes on in the server", async () => {
    const events = await collect(admin(), { operation: "demo.sleep", input: { durationMs: 50 }, detach: true });
    expect(kinds(events)).toEqual(["accepted"]);
    const id = events[0]!.executionId;
    let state = (await admin().getExecution({ executionId: id })).execution?.state;
    for (let i = 0; i < 200 && state !== ExecutionState.SUCCEEDED; i++) {
      // Wait for the server by asking it (no timing assertion): at most 200 round trips.
      state = (await admin().getExecution({ executionId: id })).execution?.state;
      await new Promise((r) => setImmediate(r));
    }
    expect(state).toBe(ExecutionState.SUCCEEDED);
  });
});

describe("cancellation and deadlines", () => {
  it("CancelExecution interrupts the running attempt: the stream ends cancelled", async () => {
    const client = admin();
    const it = client.execute({ operation: "demo.sleep", input: { durationMs: 600_000 } })[Symbol.asyncIterator]();
    const accepted = (await it.next()).value!.event!;
    expect((await it.next()).value?.event?.kind.case).toBe("attemptStarted");
    const { execution } = await client.cancelExecution({ executionId: accepted.executionId, reason: "stop it" });
    expect(execution).toMatchObject({ state: ExecutionState.CANCELLED });
    const rest: string[] = [];
    for (let r = await it.next(); r.done !== true; r = await it.next()) rest.push(r.value.event!.kind.case ?? "");
    expect(rest.at(-1)).toBe("cancelled");
    expect(execution?.error).toMatchObject({ type: "CANCELLED", message: "stop it" });
    // A second cancel succeeds and changes nothing.
    const again = await client.cancelExecution({ executionId: accepted.executionId, reason: "again" });
    expect(again.execution).toEqual(execution);
  });

  it("CancelExecution during a backoff sleep ends it with one attempt", async () => {
    const client = admin();
    const it = client.execute({ operation: "demo.flaky", input: { failures: 5 }, retryPolicy: { initialInterval: durationFromMs(600_000), jitter: 0 } })[Symbol.asyncIterator]();
    const id = (await it.next()).value!.event!.executionId;
    await it.next(); // attemptStarted
    const failed = (await it.next()).value!.event!.kind;
    expect(failed.case).toBe("attemptFailed");
    expect((await client.getExecution({ executionId: id })).execution?.state).toBe(ExecutionState.BACKING_OFF);
    // Bad input first: nothing is cancelled by it.
    const longReason = await failure(client.cancelExecution({ executionId: id, reason: "x".repeat(1025) }));
    expect(longReason.code).toBe(Code.InvalidArgument);
    expect(longReason.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toEqual(["reason"]);
    const badKey = await failure(client.cancelExecution({ executionId: id, requestId: "not\tprintable" }));
    expect(badKey.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toEqual(["request_id"]);
    expect((await client.getExecution({ executionId: id })).execution?.state).toBe(ExecutionState.BACKING_OFF);
    const { execution } = await client.cancelExecution({ executionId: id, requestId: "cancel-1" });
    expect(execution?.state).toBe(ExecutionState.CANCELLED);
    expect(execution?.attempts).toHaveLength(1);
    // No reason given: the contract's default.
    expect(execution?.error).toMatchObject({ type: "CANCELLED", message: "cancelled by request" });
    // A network retry of the same call returns the same outcome.
    expect((await client.cancelExecution({ executionId: id, requestId: "cancel-1" })).execution).toEqual(execution);
  });

  it("a client cancel of the Execute call cancels the execution", async () => {
    const client = admin();
    const abort = new AbortController();
    const it = client.execute({ operation: "demo.sleep", input: { durationMs: 600_000 } }, { signal: abort.signal })[Symbol.asyncIterator]();
    const id = (await it.next()).value!.event!.executionId;
    await it.next(); // attemptStarted
    abort.abort();
    // Events already in flight may still arrive; then the stream fails as cancelled.
    const ended = await (async () => {
      for (let i = 0; i < 10; i++) {
        try {
          if ((await it.next()).done === true) return "done";
        } catch (e) {
          return ConnectError.from(e).code;
        }
      }
      return "still streaming";
    })();
    expect(ended).toBe(Code.Canceled);
    let execution = (await client.getExecution({ executionId: id })).execution;
    for (let i = 0; i < 200 && execution?.state !== ExecutionState.CANCELLED; i++) {
      await new Promise((r) => setImmediate(r));
      execution = (await client.getExecution({ executionId: id })).execution;
    }
    expect(execution).toMatchObject({ state: ExecutionState.CANCELLED });
  });

  it("an RPC deadline ends the call DEADLINE_EXCEEDED and cancels the execution", async () => {
    const client = admin();
    const ids: string[] = [];
    const err = await failure(
      (async () => {
        for await (const r of client.execute({ operation: "demo.sleep", input: { durationMs: 600_000 } }, { timeoutMs: 300 })) ids.push(r.event!.executionId);
      })(),
    );
    expect(err.code).toBe(Code.DeadlineExceeded);
    let execution = (await client.getExecution({ executionId: ids[0]! })).execution;
    for (let i = 0; i < 200 && execution?.state !== ExecutionState.CANCELLED; i++) {
      await new Promise((r) => setImmediate(r));
      execution = (await client.getExecution({ executionId: ids[0]! })).execution;
    }
    expect(execution?.state).toBe(ExecutionState.CANCELLED);
  });

  it("the execution's own timeout ends it timed out", async () => {
    const events = await collect(admin(), { operation: "demo.sleep", input: { durationMs: 600_000 }, timeout: durationFromMs(100) });
    expect(kinds(events).at(-1)).toBe("timedOut");
  });
});

describe("idempotency", () => {
  it("the same request_id attaches to the existing execution instead of running twice", async () => {
    const req = { operation: "demo.echo", input: { message: "once" }, requestId: "req-42" };
    const first = await collect(admin(), req);
    const second = await collect(admin(), req);
    expect(second[0]!.executionId).toBe(first[0]!.executionId);
    expect(kinds(second)).toEqual(["accepted", "succeeded"]);
    const acc = second[0]!.kind;
    expect(acc.case === "accepted" && acc.value.deduplicated).toBe(true);
    const reused = await failure(collect(admin(), { ...req, input: { message: "different" } }));
    expect(reused.code).toBe(Code.AlreadyExists);
    expect(reused.findDetails(ErrorInfoSchema)[0]?.reason).toBe("REQUEST_ID_REUSED");
  });
});

describe("refusals", () => {
  it("invalid input: INVALID_ARGUMENT with BadRequest naming the field", async () => {
    const err = await failure(collect(admin(), { operation: "demo.echo", input: { message: 5 } }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toEqual(["input.message"]);
    const policy = await failure(collect(admin(), { operation: "demo.echo", input: { message: "x" }, retryPolicy: { backoffCoefficient: 0.5, jitter: 3 } }));
    expect(policy.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field).sort()).toEqual(["retry_policy.backoff_coefficient", "retry_policy.jitter"]);
    const duration = await failure(collect(admin(), { operation: "demo.echo", input: { message: "x" }, timeout: { seconds: 1n, nanos: -5 } }));
    expect(duration.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toEqual(["timeout"]);
    const empty = await failure(collect(admin(), { operation: "" }));
    expect(empty.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe("operation");
    const reserved = await failure(collect(admin(), { operation: "demo.echo", input: { message: "x" }, requestId: "sch:nightly:cron:1000" }));
    expect(reserved.code).toBe(Code.InvalidArgument);
    expect(reserved.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toEqual(["request_id"]);
  });

  it("unknown operation: NOT_FOUND naming nothing else", async () => {
    const err = await failure(collect(admin(), { operation: "no.such.operation" }));
    expect(err.code).toBe(Code.NotFound);
    expect(err.findDetails(ErrorInfoSchema)[0]).toMatchObject({ reason: "OPERATION_NOT_FOUND", metadata: { operation: "no.such.operation" } });
    expect(err.rawMessage).not.toContain("demo.");
  });

  it("no or bad credentials: UNAUTHENTICATED; a viewer: PERMISSION_DENIED naming the permission", async () => {
    expect((await failure(collect(clientFor(undefined), echo()))).code).toBe(Code.Unauthenticated);
    expect((await failure(collect(clientFor("not-a-real-token-at-all"), echo()))).code).toBe(Code.Unauthenticated);
    const denied = await failure(collect(clientFor(tokens.viewer), echo()));
    expect(denied.code).toBe(Code.PermissionDenied);
    expect(denied.findDetails(ErrorInfoSchema)[0]).toMatchObject({ reason: "PERMISSION_DENIED", metadata: { permission: "execute:demo.echo" } });
  });

  it("another tenant's execution is NOT_FOUND", async () => {
    const events = await collect(admin(), echo());
    const err = await failure(clientFor(tokens.other).getExecution({ executionId: events[0]!.executionId }));
    expect(err.code).toBe(Code.NotFound);
  });

  it("ListExecutions pages with opaque tokens bound to the filter", async () => {
    const client = admin();
    const all = [];
    let pageToken = "";
    do {
      const page = await client.listExecutions({ pageSize: 3, pageToken, operation: "demo.echo" });
      all.push(...page.executions);
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(all.length).toBeGreaterThanOrEqual(3);
    expect(new Set(all.map((e) => e.executionId)).size).toBe(all.length);
    expect(all.every((e) => e.operation === "demo.echo" && e.principal?.tenant === "acme")).toBe(true);
    const first = await client.listExecutions({ pageSize: 1 });
    const misuse = await failure(client.listExecutions({ pageSize: 1, pageToken: first.nextPageToken, operation: "demo.sleep" }));
    expect(misuse.code).toBe(Code.InvalidArgument);
    expect(misuse.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe("page_token");
    expect((await failure(client.listExecutions({ pageSize: -1 }))).code).toBe(Code.InvalidArgument);
  });
});

describe("rate limit", () => {
  it("200 parallel Executes for one principal against 10 per window: exactly 10 admitted, the rest RESOURCE_EXHAUSTED with RetryInfo", async () => {
    // A principal of its own, so earlier tests' executions do not count.
    const s = await startTestServer({ args: ["--auth", "api-keys", "--operation-rate-limit", "10/1h"] });
    try {
      const client = clientFor(await createKey(s, { subject: "burst", roles: ["operator"] }), s.baseUrl);
      const results = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => collect(client, { operation: "demo.echo", input: { message: `b${i}` } })));
      const ok = results.filter((r) => r.status === "fulfilled");
      const refused = results.flatMap((r) => (r.status === "rejected" ? [ConnectError.from(r.reason)] : []));
      expect(ok).toHaveLength(10);
      expect(refused).toHaveLength(190);
      expect(refused.every((e) => e.code === Code.ResourceExhausted)).toBe(true);
      const e = refused[0]!;
      expect(e.findDetails(ErrorInfoSchema)[0]?.reason).toBe("RATE_LIMITED");
      expect(Number(e.findDetails(RetryInfoSchema)[0]?.retryDelay?.seconds)).toBeGreaterThan(0);
      expect(e.metadata.get("ratelimit-limit")).toBe("10");
      expect(e.metadata.get("ratelimit-remaining")).toBe("0");
    } finally {
      await s.shutdown();
    }
  });
});

describe("http.request", () => {
  it("calls an allowlisted loopback server; a host off the allowlist fails without a retry", async () => {
    const { createServer } = await import("node:http");
    const upstream = createServer((req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(`hello ${req.method}`);
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const port = (upstream.address() as { port: number }).port;
    const s = await startTestServer({ args: ["--http-allowlist", `127.0.0.1:${port}`] });
    try {
      const client = clientFor(undefined, s.baseUrl);
      const ok = await collect(client, { operation: "http.request", input: { url: `http://127.0.0.1:${port}/x` } });
      const end = ok.at(-1)!.kind;
      if (end.case !== "succeeded") throw new Error(`expected succeeded, got ${end.case}`);
      expect(toJson(ValueSchema, end.value.result!)).toMatchObject({ status: 200, body: "hello GET" });

      const refused = await collect(client, { operation: "http.request", input: { url: "http://169.254.169.254/latest/meta-data" } });
      expect(kinds(refused)).toEqual(["accepted", "attemptStarted", "attemptFailed", "failed"]);
      const failed = refused.at(-1)!.kind;
      if (failed.case === "failed") expect(failed.value.error).toMatchObject({ type: "HOST_NOT_ALLOWED", retryable: false });
    } finally {
      await s.shutdown();
      upstream.close();
    }
  });
});

describe("restart", () => {
  it("after a crash and restart, GetExecution answers and the running execution is INTERRUPTED", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "orchestrator-restart-"));
    const first = await spawnServer(["--demo-operations", "--data-dir", dataDir]);
    const c1 = clientFor(undefined, first.baseUrl);
    const done = await collect(c1, { operation: "demo.echo", input: { message: "before" } });
    const it = c1.execute({ operation: "demo.sleep", input: { durationMs: 600_000 } })[Symbol.asyncIterator]();
    const runningId = (await it.next()).value!.event!.executionId;
    expect((await it.next()).value?.event?.kind.case).toBe("attemptStarted");
    first.child.kill("SIGKILL");
    await first.exited;
    await it.next().catch(() => undefined);

    const second = await spawnServer(["--demo-operations", "--data-dir", dataDir]);
    try {
      const c2 = clientFor(undefined, second.baseUrl);
      expect((await c2.getExecution({ executionId: done[0]!.executionId })).execution?.state).toBe(ExecutionState.SUCCEEDED);
      const { execution } = await c2.getExecution({ executionId: runningId });
      expect(execution?.state).toBe(ExecutionState.INTERRUPTED);
      expect(execution?.error).toMatchObject({ type: "INTERRUPTED" });
      expect(execution?.endTime).toBeDefined();
      expect(second.logs.some((l) => String(l["msg"]).includes("interrupted by the restart"))).toBe(true);
    } finally {
      await second.stop();
    }
  });

  it("a graceful stop ends running executions INTERRUPTED, not left RUNNING", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "orchestrator-restart-"));
    const first = await spawnServer(["--demo-operations", "--data-dir", dataDir, "--drain-timeout", "200ms"]);
    const c1 = clientFor(undefined, first.baseUrl);
    const events = await collect(c1, { operation: "demo.sleep", input: { durationMs: 600_000 }, detach: true });
    expect(await first.stop()).toEqual({ code: 0, signal: null });
    const second = await spawnServer(["--demo-operations", "--data-dir", dataDir]);
    try {
      const { execution } = await clientFor(undefined, second.baseUrl).getExecution({ executionId: events[0]!.executionId });
      expect(execution?.state).toBe(ExecutionState.INTERRUPTED);
      expect(execution?.error?.message).toContain("shut down");
    } finally {
      await second.stop();
    }
  });
});

export type { ExecuteRequest };
