import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSecureContext } from "node:tls";
import { describe, expect, it } from "@effect/vitest";
import { Deferred, Effect, Either, Exit, Fiber, ParseResult, Schema, TestClock } from "effect";
import { classifyOperationError } from "../../src/core/operation.js";
import { httpRequestOperation, type HttpRequestConfig, type Resolver } from "../../src/operations/http-request.js";
import { recordingContext, runOperation } from "./context.js";
import { freePort, testServer } from "./http-server.js";

const call = (config: HttpRequestConfig, input: unknown) => runOperation(httpRequestOperation(config), input, recordingContext().ctx);

/** Answers every name from a fixed table, counting calls, so tests need no real DNS. */
const fakeResolver = (table: Record<string, ReadonlyArray<string>>) => {
  const calls: string[] = [];
  const resolve: Resolver = (hostname) =>
    Effect.sync(() => {
      calls.push(hostname);
      return (table[hostname] ?? []).map((address) => ({ address, family: address.includes(":") ? (6 as const) : (4 as const) }));
    });
  return { resolve, calls };
};

describe("http.request against a loopback server (allowlisted as 127.0.0.1:PORT)", () => {
  it.scopedLive("GET returns status, lowercased headers, body and duration", () =>
    Effect.gen(function* () {
      const server = yield* testServer((_req, res) => {
        res.writeHead(200, { "Content-Type": "text/plain", "X-Custom": "yes" });
        res.end("hello");
      });
      const { ctx, logs } = recordingContext();
      const op = httpRequestOperation({ allowlist: [`127.0.0.1:${server.port}`] });
      const result = yield* runOperation(op, { url: `http://127.0.0.1:${server.port}/path?q=1` }, ctx);
      expect(result).toMatchObject({ status: 200, body: "hello", truncated: false, headers: { "content-type": "text/plain", "x-custom": "yes" } });
      expect((result as { durationMs: number }).durationMs).toBeGreaterThanOrEqual(0);
      expect(server.seen).toMatchObject([{ method: "GET", url: "/path?q=1", body: "" }]);
      expect(logs[0]).toMatchObject({ message: "http.request answered", fields: { status: 200, method: "GET" } });
    }),
  );

  it.scopedLive("POST sends the body and headers; json sets content-type", () =>
    Effect.gen(function* () {
      const server = yield* testServer((_req, res) => res.writeHead(201).end("created"));
      const config = { allowlist: [`127.0.0.1:${server.port}`] };
      const url = `http://127.0.0.1:${server.port}/items`;
      const result = yield* call(config, { method: "POST", url, headers: { "Content-Type": "text/plain", "X-Trace": "t1" }, body: "héllo" });
      expect(result).toMatchObject({ status: 201, body: "created" });
      yield* call(config, { method: "PUT", url, json: { a: [1, null] } });
      expect(server.seen).toMatchObject([
        { method: "POST", body: "héllo", headers: { "content-type": "text/plain", "x-trace": "t1", "content-length": "6", host: `127.0.0.1:${server.port}` } },
        { method: "PUT", body: '{"a":[1,null]}', headers: { "content-type": "application/json" } },
      ]);
    }),
  );

  it.scopedLive("an unexpected status is HTTP_STATUS: 404 final, 503 retryable, 429 with Retry-After seconds", () =>
    Effect.gen(function* () {
      const server = yield* testServer((req, res) => {
        const status = Number(req.url?.slice(1));
        res.writeHead(status, status === 429 ? { "Retry-After": "7" } : {}).end(`status ${status}`);
      });
      const config = { allowlist: [`127.0.0.1:${server.port}`] };
      const failure = (status: number) => Effect.flip(call(config, { url: `http://127.0.0.1:${server.port}/${status}` })).pipe(Effect.map(classifyOperationError));

      expect(yield* failure(404)).toEqual({
        detail: { type: "HTTP_STATUS", message: `GET http://127.0.0.1:${server.port} answered 404 Not Found`, retryable: false, details: { status: 404, body: "status 404" } },
      });
      expect(yield* failure(503)).toMatchObject({ detail: { type: "HTTP_STATUS", retryable: true, details: { status: 503 } } });
      expect((yield* failure(503)).retryAfterMs).toBeUndefined();
      expect(yield* failure(429)).toMatchObject({ detail: { retryable: true, details: { status: 429 } }, retryAfterMs: 7000 });
      expect(yield* failure(408)).toMatchObject({ detail: { retryable: true } });
      // expectedStatus turns a 404 into a success.
      expect(yield* call(config, { url: `http://127.0.0.1:${server.port}/404`, expectedStatus: [404] })).toMatchObject({ status: 404 });
    }),
  );

  it.scoped("Retry-After as an HTTP-date is measured from the Effect Clock", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(Date.parse("2030-01-01T00:00:00Z"));
      const server = yield* testServer((_req, res) => res.writeHead(503, { "Retry-After": "Tue, 01 Jan 2030 00:00:30 GMT" }).end());
      const error = yield* Effect.flip(call({ allowlist: [`127.0.0.1:${server.port}`] }, { url: `http://127.0.0.1:${server.port}/` }));
      expect(error.retryAfterMs).toBe(30_000);
    }),
  );

  it.scopedLive("redirects are not followed", () =>
    Effect.gen(function* () {
      const server = yield* testServer((_req, res) => res.writeHead(302, { Location: "http://169.254.169.254/" }).end());
      const error = yield* Effect.flip(call({ allowlist: [`127.0.0.1:${server.port}`] }, { url: `http://127.0.0.1:${server.port}/` }));
      expect(error).toMatchObject({ type: "HTTP_STATUS", retryable: false, details: { status: 302, location: "http://169.254.169.254/" } });
      expect(server.seen).toHaveLength(1);
    }),
  );

  it.live("connection refused is CONNECTION, retryable", () =>
    Effect.gen(function* () {
      const port = yield* freePort;
      const error = yield* Effect.flip(call({ allowlist: [`127.0.0.1:${port}`] }, { url: `http://127.0.0.1:${port}/` }));
      expect(error).toMatchObject({ type: "CONNECTION", retryable: true, details: { code: "ECONNREFUSED" } });
    }),
  );

  it.scopedLive("a slow server is TIMEOUT, retryable; the input's timeoutMs is capped by maxTimeoutMs", () =>
    Effect.gen(function* () {
      const server = yield* testServer(() => {});
      const error = yield* Effect.flip(
        call({ allowlist: [`127.0.0.1:${server.port}`], maxTimeoutMs: 200 }, { url: `http://127.0.0.1:${server.port}/`, timeoutMs: 60_000 }),
      );
      expect(error).toMatchObject({ type: "TIMEOUT", retryable: true, details: { timeoutMs: 200 } });
    }),
  );

  it.scopedLive("interrupting the fiber aborts the in-flight request: the server sees the socket close", () =>
    Effect.gen(function* () {
      const arrived = yield* Deferred.make<void>();
      const closed = yield* Deferred.make<void>();
      const server = yield* testServer((req) => {
        req.socket.on("close", () => Deferred.unsafeDone(closed, Exit.void));
        Deferred.unsafeDone(arrived, Exit.void);
      });
      const fiber = yield* Effect.fork(call({ allowlist: [`127.0.0.1:${server.port}`] }, { url: `http://127.0.0.1:${server.port}/` }));
      yield* Deferred.await(arrived);
      const exit = yield* Fiber.interrupt(fiber);
      expect(Exit.isInterrupted(exit)).toBe(true);
      yield* Deferred.await(closed).pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("socket stayed open") }));
    }),
  );

  it.scopedLive("a body over maxResponseBytes is cut on a character boundary, or fails with truncate: false", () =>
    Effect.gen(function* () {
      const server = yield* testServer((_req, res) => res.writeHead(200).end("é".repeat(60_000)));
      const config = { allowlist: [`127.0.0.1:${server.port}`], maxResponseBytes: 1001 };
      const url = `http://127.0.0.1:${server.port}/`;
      const result = (yield* call(config, { url })) as { body: string; truncated: boolean };
      expect(result.truncated).toBe(true);
      expect(result.body).toBe("é".repeat(500));
      const error = yield* Effect.flip(call(config, { url, truncate: false }));
      expect(error).toMatchObject({ type: "RESPONSE_TOO_LARGE", retryable: false });
    }),
  );

  it.scopedLive("HEAD returns headers and an empty body", () =>
    Effect.gen(function* () {
      const server = yield* testServer((_req, res) => res.writeHead(200, { "Content-Length": "5" }).end());
      const result = yield* call({ allowlist: [`127.0.0.1:${server.port}`] }, { method: "HEAD", url: `http://127.0.0.1:${server.port}/` });
      expect(result).toMatchObject({ status: 200, body: "", headers: { "content-length": "5" } });
    }),
  );
});

describe("http.request allowlist and address checks", () => {
  it.effect("nothing is allowed by default; a host must match name and port", () =>
    Effect.gen(function* () {
      const empty = yield* Effect.flip(call({ allowlist: [] }, { url: "http://127.0.0.1:8080/" }));
      expect(empty).toMatchObject({ type: "HOST_NOT_ALLOWED", retryable: false, details: { host: "127.0.0.1", port: 8080 } });
      const wrongPort = yield* Effect.flip(call({ allowlist: ["127.0.0.1:8081", "api.example.com"] }, { url: "http://127.0.0.1:8080/" }));
      expect(wrongPort.type).toBe("HOST_NOT_ALLOWED");
      // https defaults to 443, so an entry for :80 does not cover it.
      const scheme = yield* Effect.flip(call({ allowlist: ["api.example.com:80"] }, { url: "https://api.example.com/" }));
      expect(scheme.type).toBe("HOST_NOT_ALLOWED");
    }),
  );

  it.live("a name allowlisted but resolving to loopback is ADDRESS_NOT_ALLOWED (real DNS: localhost)", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(call({ allowlist: ["localhost"] }, { url: "http://localhost:1/" }));
      expect(error).toMatchObject({ type: "ADDRESS_NOT_ALLOWED", retryable: false, details: { host: "localhost", reason: "loopback" } });
    }),
  );

  it.effect("cloud metadata and other internal addresses are refused, whatever the name or spelling", () =>
    Effect.gen(function* () {
      const { resolve } = fakeResolver({
        "metadata.example.com": ["169.254.169.254"],
        "mapped.example.com": ["::ffff:169.254.169.254"],
        "mixed.example.com": ["93.184.215.14", "10.0.0.7"],
        "ula.example.com": ["fd00::1"],
      });
      const config = { allowlist: ["*.example.com"], resolve };
      const refused = (host: string) => Effect.flip(call(config, { url: `http://${host}/` }));
      expect(yield* refused("metadata.example.com")).toMatchObject({
        type: "ADDRESS_NOT_ALLOWED",
        details: { address: "169.254.169.254", reason: "link-local (cloud metadata)" },
      });
      expect(yield* refused("mapped.example.com")).toMatchObject({ type: "ADDRESS_NOT_ALLOWED", details: { reason: "link-local (cloud metadata)" } });
      // One bad address among several is enough: Node could connect to any of them.
      expect(yield* refused("mixed.example.com")).toMatchObject({ type: "ADDRESS_NOT_ALLOWED", details: { address: "10.0.0.7", reason: "private" } });
      expect(yield* refused("ula.example.com")).toMatchObject({ type: "ADDRESS_NOT_ALLOWED" });
      // The literal is not on the allowlist, in any spelling the URL parser accepts.
      expect((yield* Effect.flip(call(config, { url: "http://169.254.169.254/latest/meta-data/" }))).type).toBe("HOST_NOT_ALLOWED");
      expect((yield* Effect.flip(call(config, { url: "http://0xa9fea9fe/" }))).type).toBe("HOST_NOT_ALLOWED");
    }),
  );

  it.scopedLive("an explicit IP entry matches every spelling of that address and is trusted", () =>
    Effect.gen(function* () {
      const server = yield* testServer((_req, res) => res.writeHead(204).end());
      const config = { allowlist: [`127.0.0.1:${server.port}`] };
      expect(yield* call(config, { url: `http://2130706433:${server.port}/` })).toMatchObject({ status: 204 });
      expect(yield* call(config, { url: `http://0x7f.1:${server.port}/` })).toMatchObject({ status: 204 });
    }),
  );

  it.scopedLive("wildcards match names strictly below the suffix; the connection is pinned to the checked address", () =>
    Effect.gen(function* () {
      const server = yield* testServer((_req, res) => res.writeHead(200).end("pinned"));
      // *.example.test does not exist in DNS: reaching the server proves Node used the pre-checked address.
      const dns = fakeResolver({ "api.example.test": ["127.0.0.1"], "a.b.example.test": ["127.0.0.1"] });
      const config = { allowlist: [`*.example.test:${server.port}`], allowPrivateNetworks: true, resolve: dns.resolve };
      const at = (host: string) => call(config, { url: `http://${host}:${server.port}/` });

      expect(yield* at("api.example.test")).toMatchObject({ status: 200, body: "pinned" });
      expect(yield* at("A.B.Example.Test.")).toMatchObject({ status: 200 });
      expect(dns.calls).toEqual(["api.example.test", "a.b.example.test"]);
      expect(server.seen.map((r) => r.headers.host)).toEqual([`api.example.test:${server.port}`, `a.b.example.test.:${server.port}`]);
      for (const host of ["example.test", "evilexample.test", "api.example.test.evil.com"]) {
        expect((yield* Effect.flip(at(host))).type).toBe("HOST_NOT_ALLOWED");
      }
    }),
  );

  it.effect("a name with no addresses is a CONNECTION error", () =>
    Effect.gen(function* () {
      const { resolve } = fakeResolver({});
      const error = yield* Effect.flip(call({ allowlist: ["gone.example.com"], resolve }, { url: "http://gone.example.com/" }));
      expect(error).toMatchObject({ type: "CONNECTION", details: { code: "ENODATA" } });
    }),
  );
});

describe("http.request over TLS", () => {
  /** A self-signed certificate: the system trust store rejects it, which is the point. */
  const selfSigned = Effect.acquireRelease(
    Effect.sync(() => {
      const dir = mkdtempSync(join(tmpdir(), "orchestrator-http-op-"));
      execFileSync("openssl", [
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"), "-days", "1",
        "-subj", "/CN=secure.example.test", "-addext", "subjectAltName=DNS:secure.example.test",
      ], { stdio: "ignore" });
      return { dir, key: readFileSync(join(dir, "key.pem")), cert: readFileSync(join(dir, "cert.pem")) };
    }),
    ({ dir }) => Effect.sync(() => rmSync(dir, { recursive: true, force: true })),
  );

  it.scopedLive("SNI is the original name although the socket goes to the pinned address; a bad certificate is TLS, not retryable", () =>
    Effect.gen(function* () {
      const { key, cert } = yield* selfSigned;
      const sni: string[] = [];
      const server = https.createServer({
        key,
        cert,
        SNICallback: (name, done) => {
          sni.push(name);
          done(null, createSecureContext({ key, cert }));
        },
      });
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
        () => Effect.async<void>((resume) => void server.close(() => resume(Effect.void))),
      );
      const { port } = server.address() as AddressInfo;
      const dns = fakeResolver({ "secure.example.test": ["127.0.0.1"] });
      const error = yield* Effect.flip(
        call({ allowlist: ["secure.example.test"], allowPrivateNetworks: true, resolve: dns.resolve }, { url: `https://secure.example.test:${port}/` }),
      );
      expect(error).toMatchObject({ type: "TLS", retryable: false, details: { host: "secure.example.test" } });
      expect(sni).toEqual(["secure.example.test"]);
    }),
  );
});

describe("http.request input schema", () => {
  const op = httpRequestOperation({ allowlist: [] });
  const paths = (input: unknown) =>
    Schema.decodeUnknownEither(op.input, { errors: "all", onExcessProperty: "error" })(input).pipe(
      Either.match({ onLeft: (e) => ParseResult.ArrayFormatter.formatErrorSync(e).map((i) => i.path.join(".")), onRight: () => [] }),
    );

  it("defaults method to GET and truncate to true", () => {
    expect(Schema.decodeUnknownSync(op.input)({ url: "https://example.com/" })).toEqual({ method: "GET", url: "https://example.com/", truncate: true });
  });

  it.each([
    [{ url: "not a url" }, ["url"]],
    [{ url: "ftp://example.com/" }, ["url"]],
    [{ url: "file:///etc/passwd" }, ["url"]],
    [{ url: "http://user:pw@example.com/" }, ["url"]],
    [{ url: "http://example.com/", method: "TRACE" }, ["method"]],
    [{ url: "http://example.com/", method: "get" }, ["method"]],
    [{ url: "http://example.com/", headers: { Host: "internal" } }, ["headers.Host"]],
    [{ url: "http://example.com/", headers: { "X-A": "a\r\nInjected: 1" } }, ["headers.X-A"]],
    [{ url: "http://example.com/", body: "a", json: {} }, ["json"]],
    [{ url: "http://example.com/", expectedStatus: [] }, ["expectedStatus"]],
    [{ url: "http://example.com/", expectedStatus: [700] }, ["expectedStatus.0"]],
    [{ url: "http://example.com/", timeoutMs: 0 }, ["timeoutMs"]],
  ])("rejects %j at %j", (input, expected) => {
    expect(paths(input)).toEqual(expected);
  });
});
