/**
 * Rate limits over gRPC on real sockets: the request interceptor (after authentication, with
 * real API keys: unauthenticated callers count for nobody; RESOURCE_EXHAUSTED with RetryInfo and
 * ratelimit-* metadata; the same fields on admitted responses; health open), the in-flight cap,
 * shadow mode, four server processes sharing one Redis (exactly the limit in total), and Redis
 * unreachable (fail closed: UNAVAILABLE; fail open), each audited.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Effect } from "effect";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import { ExecutionService, type ExecutionEvent } from "../../gen/orchestrator/v1/execution_service_pb.js";
import { Health } from "../../gen/health/v1/health_pb.js";
import { ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { createApiKey } from "../../src/core/api-keys.js";
import type { JsonObject } from "@bufbuild/protobuf";
import { AuditLogger, type AuditEvent } from "../../src/ports/AuditLogger.js";
import { failure } from "../support/rpc.js";
import { spawnServer, startTestServer, type ServerProcess, type TestServer } from "../support/server.js";
import { startRedisServer, type RedisServer } from "../support/redis.js";

const dir = mkdtempSync(join(tmpdir(), "orchestrator-limits-"));
let fileSeq = 0;
const limitsFile = (json: unknown): string => {
  const file = join(dir, `limits-${fileSeq++}.json`);
  writeFileSync(file, JSON.stringify(json));
  return file;
};

const client = (baseUrl: string, key?: string): Client<typeof ExecutionService> =>
  createClient(
    ExecutionService,
    createGrpcTransport({
      baseUrl,
      interceptors: key === undefined ? [] : [(next) => (req) => {
        req.header.set("authorization", `Bearer ${key}`);
        return next(req);
      }],
    }),
  );

async function collect(c: Client<typeof ExecutionService>, operation: string, input: JsonObject): Promise<ExecutionEvent[]> {
  const out: ExecutionEvent[] = [];
  for await (const r of c.execute({ operation, input })) out.push(r.event!);
  return out;
}

const audits = (s: TestServer) =>
  s.runtime.runPromise(Effect.flatMap(AuditLogger, (a) => a.read(0, 100_000))).then((es): AuditEvent[] => es.filter((e) => e.type === "RATE_LIMIT_CHECKED"));

const reasonOf = (e: ConnectError) => e.findDetails(ErrorInfoSchema)[0];

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

describe("the request limit (interceptor)", () => {
  let s: TestServer;
  let adminKey: string;
  let bobKey: string;
  beforeAll(async () => {
    s = await startTestServer({ args: ["--auth", "api-keys", "--limits-file", limitsFile({ request: { limit: 3, window: "1h" } })] });
    adminKey = /Bearer ([^\s']+)/.exec(s.stderr.join(""))![1]!;
    bobKey = (await s.runtime.runPromise(createApiKey({ subject: "bob", tenant: "acme", roles: ["operator"] }))).key;
  });
  afterAll(() => s.shutdown());

  it("counts only authenticated callers, per principal; over it: RESOURCE_EXHAUSTED with RetryInfo and ratelimit-*; admitted calls carry ratelimit-* too", async () => {
    // Unauthenticated and spoofed callers are refused before anything is counted.
    for (let i = 0; i < 10; i++) {
      expect((await failure(client(s.baseUrl).listExecutions({}))).code).toBe(Code.Unauthenticated);
      expect((await failure(client(s.baseUrl, `${adminKey.slice(0, -4)}AAAA`).listExecutions({}))).code).toBe(Code.Unauthenticated);
    }
    const admin = client(s.baseUrl, adminKey);
    const remaining: Array<string | null> = [];
    for (let i = 0; i < 3; i++) {
      await admin.listExecutions({}, { onHeader: (h) => void remaining.push(`${h.get("ratelimit-limit")}/${h.get("ratelimit-remaining")}/${h.get("ratelimit-reset")}`) });
    }
    expect(remaining).toEqual(["3/2/1200", "3/1/2400", "3/0/3600"]);

    const e = await failure(admin.listExecutions({}));
    expect(e.code).toBe(Code.ResourceExhausted);
    expect(reasonOf(e)).toMatchObject({ reason: "RATE_LIMITED", metadata: { scope: "request", key: "admin", limit: "3" } });
    // A few ms of real time have passed since the third call.
    const delay = e.findDetails(RetryInfoSchema)[0]!.retryDelay!;
    expect(Number(delay.seconds) + delay.nanos / 1e9).toBeGreaterThan(1199);
    expect(Number(delay.seconds) + delay.nanos / 1e9).toBeLessThanOrEqual(1200);
    expect(Object.fromEntries(["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "retry-after"].map((h) => [h, e.metadata.get(h)]))).toEqual({
      "ratelimit-limit": "3",
      "ratelimit-remaining": "0",
      "ratelimit-reset": "3600",
      "retry-after": "1200",
    });
    // Every RPC counts, streaming ones too.
    expect((await failure(collect(admin, "demo.echo", { message: "x" }))).code).toBe(Code.ResourceExhausted);

    // Another principal's quota is untouched; open services are not limited.
    const bob: string[] = [];
    await client(s.baseUrl, bobKey).listExecutions({}, { onHeader: (h) => void bob.push(h.get("ratelimit-remaining") ?? "") });
    // Streaming responses carry them as well (in the response headers, before the first event).
    for await (const _ of client(s.baseUrl, bobKey).execute({ operation: "demo.echo", input: { message: "hi" } }, { onHeader: (h) => void bob.push(h.get("ratelimit-remaining") ?? "") }));
    expect(bob).toEqual(["2", "1"]);
    const health = createClient(Health, createGrpcTransport({ baseUrl: s.baseUrl }));
    for (let i = 0; i < 10; i++) await health.check({ service: "" });

    const denied = (await audits(s)).filter((a) => a.decision === "DENY");
    expect(denied).toHaveLength(2);
    expect(denied[0]).toMatchObject({
      principal: { subject: "admin" },
      details: { method: "/orchestrator.v1.ExecutionService/ListExecutions", checks: [{ scope: "request", allowed: false, limit: 3 }] },
    });
  });

  it("the Connect protocol gets HTTP 429 with the same header fields", async () => {
    const res = await fetch(`${s.baseUrl}/orchestrator.v1.ExecutionService/ListExecutions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${adminKey}` },
      body: "{}",
    });
    expect(res.status).toBe(429);
    expect(res.headers.get("ratelimit-limit")).toBe("3");
    expect(res.headers.get("ratelimit-remaining")).toBe("0");
    expect(((await res.json()) as { code: string }).code).toBe("resource_exhausted");
  });
});

describe("execution limits over gRPC", () => {
  it("max in flight 2: a third concurrent Execute is refused, and admitted once one has ended", async () => {
    const s = await startTestServer({ args: ["--limits-file", limitsFile({ maxInFlight: 2 })] });
    try {
      const c = client(s.baseUrl);
      const start = async () => {
        const it = c.execute({ operation: "demo.sleep", input: { durationMs: 600_000 } })[Symbol.asyncIterator]();
        const id = (await it.next()).value!.event!.executionId;
        expect((await it.next()).value?.event?.kind.case).toBe("attemptStarted");
        return { id, it };
      };
      const a = await start();
      const b = await start();
      const e = await failure(start());
      expect(e.code).toBe(Code.ResourceExhausted);
      expect(reasonOf(e)).toMatchObject({ reason: "RATE_LIMITED", metadata: { scope: "in_flight", limit: "2" } });
      expect(e.metadata.get("ratelimit-limit")).toBe("2");
      expect(e.findDetails(RetryInfoSchema)).toHaveLength(1);

      await c.cancelExecution({ executionId: a.id, reason: "make room" });
      for (let r = await a.it.next(); r.done !== true; r = await a.it.next());
      const d = await start();
      expect((await failure(start())).code).toBe(Code.ResourceExhausted);
      for (const x of [b, d]) await c.cancelExecution({ executionId: x.id });
    } finally {
      await s.shutdown();
    }
  });

  it("shadow mode admits everything, and logs and audits what would have been refused", async () => {
    const s = await startTestServer({
      args: ["--limits-file", limitsFile({ request: { limit: 1, window: "1h" }, operation: { limit: 1, window: "1h" }, shadow: true })],
    });
    try {
      const c = client(s.baseUrl);
      for (let i = 0; i < 3; i++) expect((await collect(c, "demo.echo", { message: `m${i}` })).at(-1)?.kind.case).toBe("succeeded");
      const events = await audits(s);
      expect(events.every((e) => e.decision === "ALLOW")).toBe(true);
      const wouldRefuse = events.filter((e) => e.reason?.startsWith("shadow mode, would have refused") === true);
      // Calls 2 and 3, each by the request limit (interceptor) and the operation limit (core).
      expect(wouldRefuse.map((e) => (e.details?.["method"] === undefined ? "core" : "rpc")).sort()).toEqual(["core", "core", "rpc", "rpc"]);
      expect(wouldRefuse.every((e) => e.details?.["shadow"] === true)).toBe(true);
      expect(s.logs.filter((l) => l["level"] === "warn" && String(l["msg"]).startsWith("rate limit: shadow mode, would have refused"))).toHaveLength(4);
    } finally {
      await s.shutdown();
    }
  });
});

describe("limits in Redis", () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(() => redis?.stop());

  it("four server processes sharing one Redis: 200 concurrent Executes on one key admit exactly 10 in total; other keys untouched", async () => {
    const servers: ServerProcess[] = await Promise.all(
      // A generous Redis timeout: on a loaded 2-core runner a 1 s decision can time out, and a
      // timed-out decision is (rightly) refused as UNAVAILABLE, which is not what this test is about.
      [0, 1, 2, 3].map(() => spawnServer(["--demo-operations", "--redis-url", redis.url, "--redis-timeout", "15s", "--operation-rate-limit", "10/1h"])),
    );
    try {
      const clients = servers.map((p) => client(p.baseUrl));
      const results = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => collect(clients[i % 4]!, "demo.echo", { message: `m${i}` })));
      const ok = results.filter((r) => r.status === "fulfilled");
      const refused = results.flatMap((r) => (r.status === "rejected" ? [ConnectError.from(r.reason)] : []));
      expect(ok).toHaveLength(10);
      expect(refused).toHaveLength(190);
      expect(refused.every((e) => e.code === Code.ResourceExhausted && e.metadata.get("ratelimit-limit") === "10")).toBe(true);
      // Every process refused some: they really share the state.
      const perServer = [0, 1, 2, 3].map((k) => results.filter((r, i) => i % 4 === k && r.status === "rejected").length);
      expect(perServer.every((n) => n > 0)).toBe(true);

      // The same principal's other operation has its own key.
      expect((await collect(clients[0]!, "demo.sleep", { durationMs: 0 })).at(-1)?.kind.case).toBe("succeeded");
      const admin = new Redis(redis.url);
      try {
        expect((await admin.keys("orchestrator:rl:*")).sort()).toEqual(["orchestrator:rl:op:default:local:demo.echo", "orchestrator:rl:op:default:local:demo.sleep"]);
      } finally {
        admin.disconnect();
      }
    } finally {
      await Promise.all(servers.map((p) => p.stop()));
    }
  });

  it("Redis unreachable: fail closed refuses with UNAVAILABLE (not RESOURCE_EXHAUSTED) and audits it", async () => {
    const dead = `redis://127.0.0.1:${await freePort()}`;
    const s = await startTestServer({ args: ["--redis-url", dead, "--limits-file", limitsFile({ request: { limit: 100, window: "1s" }, operation: { limit: 10, window: "1m" } })] });
    try {
      const e = await failure(client(s.baseUrl).listExecutions({}));
      expect(e.code).toBe(Code.Unavailable);
      expect(reasonOf(e)?.reason).toBe("RATE_LIMITER_UNAVAILABLE");
      expect(e.rawMessage).toBe("the rate limiter is unavailable; retry later");
      expect(e.findDetails(RetryInfoSchema)).toHaveLength(1);
      const [event] = await audits(s);
      expect(event).toMatchObject({ decision: "DENY", details: { method: "/orchestrator.v1.ExecutionService/ListExecutions", degraded: { on_error: "deny" } } });
      expect(s.logs.some((l) => l["level"] === "warn" && l["msg"] === "rate limit: limiter unavailable, refused (fail closed)")).toBe(true);
      expect(s.logs.some((l) => String(l["msg"]).startsWith("redis rate limiter: cannot reach Redis at start"))).toBe(true);
    } finally {
      await s.shutdown();
    }
  });

  it("Redis unreachable with --rate-limit-on-error allow: admitted, and audited as degraded", async () => {
    const dead = `redis://127.0.0.1:${await freePort()}`;
    const s = await startTestServer({ args: ["--redis-url", dead, "--rate-limit-on-error", "allow", "--operation-rate-limit", "1/1h"] });
    try {
      const c = client(s.baseUrl);
      for (let i = 0; i < 3; i++) expect((await collect(c, "demo.echo", { message: "x" })).at(-1)?.kind.case).toBe("succeeded");
      const events = await audits(s);
      expect(events).toHaveLength(3);
      expect(events.every((e) => e.decision === "ALLOW" && (e.details?.["degraded"] as { on_error?: string })?.on_error === "allow")).toBe(true);
    } finally {
      await s.shutdown();
    }
  });
});
