/**
 * `http.request`: calls one HTTP(S) endpoint and returns its status, headers and body.
 *
 * The server runs this on behalf of callers, so it must not become a way into the server's own
 * network (SSRF). Three steps, in order, on every request:
 *   1. the URL's host must match the configured allowlist (empty by default: nothing allowed);
 *   2. the name is resolved once and every address checked (loopback, private, link-local and
 *      cloud metadata, unspecified, multicast are refused unless the operator opted in);
 *   3. the socket connects only to those checked addresses: a custom `lookup` hands them to Node,
 *      so a second DNS answer (rebinding) cannot send the connection elsewhere. The Host header
 *      and TLS SNI stay the original name.
 * Redirects are not followed: a 3xx is returned (or fails as HTTP_STATUS) with its Location,
 * because following it would need the same checks and the caller can simply call again.
 * Connections are not pooled, so each request is checked and pinned on its own.
 */
import * as dns from "node:dns";
import * as http from "node:http";
import * as https from "node:https";
import type { LookupFunction } from "node:net";
import { Clock, Duration, Effect, Schema } from "effect";
import type { JsonObject } from "../core/model.js";
import { classifyOperationError, defineOperation, OperationError, type ExecutionContext } from "../core/operation.js";
import { addressRisk, matchAllowlist, parseAllowlist, targetOf, type AllowlistEntry, type Target } from "./host-policy.js";
import { JsonValueSchema } from "./json-schema.js";

export interface ResolvedAddress {
  readonly address: string;
  readonly family: 4 | 6;
}

/** Resolves a host name to every address it has. Failures are CONNECTION errors. */
export type Resolver = (hostname: string) => Effect.Effect<ReadonlyArray<ResolvedAddress>, OperationError>;

export interface HttpRequestConfig {
  /** `host`, `host:port`, `*.suffix` (any name below suffix), IP literals (`1.2.3.4`, `[::1]:8080`). Empty = nothing allowed. */
  readonly allowlist: ReadonlyArray<string>;
  /** Lets names resolve to loopback/private/link-local addresses. Default false. */
  readonly allowPrivateNetworks?: boolean;
  /** Response bodies beyond this are cut (or fail, with `truncate: false`). Default 1 MiB. */
  readonly maxResponseBytes?: number;
  /** When the input has no timeoutMs. Default 30 s. */
  readonly defaultTimeoutMs?: number;
  /** Upper bound for the input's timeoutMs. Default 5 min. */
  readonly maxTimeoutMs?: number;
  /** Name resolution; the system resolver (dns.lookup, all addresses) by default. Tests substitute it. */
  readonly resolve?: Resolver;
}

export const httpRequestDefaults = {
  allowPrivateNetworks: false,
  maxResponseBytes: 1024 * 1024,
  defaultTimeoutMs: 30_000,
  maxTimeoutMs: 300_000,
} as const;

/** A clipped body for error details: enough to diagnose, small enough for logs and the audit. */
const errorBodyChars = 1024;

const methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] as const;
// One message for the whole union: otherwise every literal reports its own mismatch.
const Method = Schema.Literal(...methods).annotations({ message: () => ({ message: `must be one of ${methods.join(", ")}`, override: true }) });

const HttpUrl = Schema.String.pipe(
  Schema.maxLength(8192),
  Schema.filter((s) => urlProblem(s), { identifier: "HttpUrl", description: "an absolute http:// or https:// URL" }),
);

function urlProblem(s: string): string | undefined {
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    return "must be an absolute URL";
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return "must use http or https";
  // Credentials in the URL would be stored with the input and logged; headers can be marked sensitive.
  if (url.username !== "" || url.password !== "") return "must not contain credentials; send them in a header";
  return undefined;
}

/** Headers the transport owns: letting callers set them would allow request smuggling or a spoofed virtual host. */
const reservedHeaders = new Set([
  "host",
  "connection",
  "content-length",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "keep-alive",
  "expect",
  "proxy-connection",
]);

const HeaderName = Schema.String.pipe(
  Schema.pattern(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, { message: () => "must be an HTTP header name" }),
  Schema.filter((name) => (reservedHeaders.has(name.toLowerCase()) ? `"${name}" is set by the server` : undefined)),
);

const HeaderValue = Schema.String.pipe(
  Schema.pattern(/^[\t\x20-\x7e\x80-\xff]*$/, { message: () => "must not contain control characters" }),
);

const StatusCode = Schema.Int.pipe(Schema.between(100, 599));

export const HttpRequestInput = Schema.Struct({
  method: Schema.optionalWith(Method, { exact: true, default: () => "GET" as const }),
  url: HttpUrl,
  headers: Schema.optionalWith(Schema.Record({ key: HeaderName, value: HeaderValue }), { exact: true }),
  /** Sent as is (UTF-8). */
  body: Schema.optionalWith(Schema.String, { exact: true }),
  /** Sent as JSON with content-type application/json unless the headers set one. Excludes body. */
  json: Schema.optionalWith(JsonValueSchema, { exact: true }),
  /** Status codes that count as success; unset = any 2xx. */
  expectedStatus: Schema.optionalWith(Schema.Array(StatusCode).pipe(Schema.minItems(1)), { exact: true }),
  /** Whole request (resolve, connect, response body); capped by the server's maxTimeoutMs. */
  timeoutMs: Schema.optionalWith(Schema.Int.pipe(Schema.positive()), { exact: true }),
  /** true (default): cut a body over the server's limit and say so; false: fail RESPONSE_TOO_LARGE. */
  truncate: Schema.optionalWith(Schema.Boolean, { exact: true, default: () => true }),
}).pipe(
  Schema.filter((i) =>
    i.body !== undefined && i.json !== undefined ? { path: ["json"], message: "set body or json, not both" } : undefined,
  ),
);
export type HttpRequestInput = typeof HttpRequestInput.Type;

export type HttpResponseResult = {
  readonly status: number;
  /** Lowercased names; repeated headers joined with ", ". */
  readonly headers: Readonly<Record<string, string>>;
  /** Decoded as UTF-8. */
  readonly body: string;
  /** The body was cut at maxResponseBytes (on a character boundary). */
  readonly truncated: boolean;
  readonly durationMs: number;
};

export const httpRequestOperation = (config: HttpRequestConfig) => {
  // Parsed once, so a bad entry fails at startup rather than on the first request.
  const allowlist = parseAllowlist(config.allowlist);
  const settings = {
    allowPrivateNetworks: config.allowPrivateNetworks ?? httpRequestDefaults.allowPrivateNetworks,
    maxResponseBytes: config.maxResponseBytes ?? httpRequestDefaults.maxResponseBytes,
    defaultTimeoutMs: config.defaultTimeoutMs ?? httpRequestDefaults.defaultTimeoutMs,
    maxTimeoutMs: config.maxTimeoutMs ?? httpRequestDefaults.maxTimeoutMs,
    resolve: config.resolve ?? systemResolver,
    allowlist,
  };
  return defineOperation({
    name: "http.request",
    description:
      "Calls an HTTP(S) endpoint on the server's host allowlist and returns {status, headers, body, truncated, durationMs}. " +
      "Names resolving to private, loopback or link-local addresses are refused unless allowed by configuration; redirects are not followed. " +
      "Retryable on 5xx, 408, 429 (honouring Retry-After), connection errors and timeouts.",
    input: HttpRequestInput,
    classify: classifyOperationError,
    // Authorization and API keys travel in headers.
    sensitiveFields: ["headers"],
    run: (input, ctx) => runHttpRequest(settings, input, ctx),
  });
};

interface Settings {
  readonly allowlist: ReadonlyArray<AllowlistEntry>;
  readonly allowPrivateNetworks: boolean;
  readonly maxResponseBytes: number;
  readonly defaultTimeoutMs: number;
  readonly maxTimeoutMs: number;
  readonly resolve: Resolver;
}

const runHttpRequest = Effect.fn("http.request")(function* (
  settings: Settings,
  input: HttpRequestInput,
  ctx: ExecutionContext,
) {
  const url = new URL(input.url);
  const target = targetOf(url);
  const entry = matchAllowlist(settings.allowlist, target);
  if (entry === undefined) {
    return yield* new OperationError({
      type: "HOST_NOT_ALLOWED",
      message: `${target.hostname}:${target.port} is not on the http.request allowlist`,
      retryable: false,
      details: { host: target.hostname, port: target.port },
    });
  }
  const timeoutMs = Math.min(input.timeoutMs ?? settings.defaultTimeoutMs, settings.maxTimeoutMs);
  const started = yield* Clock.currentTimeMillis;
  const raw = yield* Effect.gen(function* () {
    const addresses = yield* checkedAddresses(settings, target, entry);
    return yield* send(url, input, addresses, settings.maxResponseBytes);
  }).pipe(
    Effect.timeoutFail({
      duration: Duration.millis(timeoutMs),
      onTimeout: () =>
        new OperationError({
          type: "TIMEOUT",
          message: `${input.method} ${url.origin} did not complete within ${timeoutMs} ms`,
          retryable: true,
          details: { timeoutMs },
        }),
    }),
  );
  const finished = yield* Clock.currentTimeMillis;
  const durationMs = finished - started;
  const body = (raw.truncated ? utf8Prefix(raw.body) : raw.body).toString("utf8");
  yield* ctx.log("http.request answered", { method: input.method, origin: url.origin, status: raw.status, durationMs });

  const expected = input.expectedStatus === undefined ? raw.status >= 200 && raw.status <= 299 : input.expectedStatus.includes(raw.status);
  if (!expected) {
    const retryable = raw.status >= 500 || raw.status === 429 || raw.status === 408;
    const retryAfterMs = retryable ? parseRetryAfter(raw.headers["retry-after"], finished) : undefined;
    const location = raw.headers["location"];
    const details: JsonObject = {
      status: raw.status,
      body: body.length > errorBodyChars ? body.slice(0, errorBodyChars) : body,
      ...(location === undefined ? {} : { location }),
    };
    return yield* new OperationError({
      type: "HTTP_STATUS",
      message: `${input.method} ${url.origin} answered ${raw.status} ${raw.statusText}`.trimEnd(),
      retryable,
      details,
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    });
  }
  if (raw.truncated && !input.truncate) {
    return yield* new OperationError({
      type: "RESPONSE_TOO_LARGE",
      message: `the response body of ${input.method} ${url.origin} exceeds ${settings.maxResponseBytes} bytes`,
      retryable: false,
      details: { status: raw.status, maxResponseBytes: settings.maxResponseBytes },
    });
  }
  const result: HttpResponseResult = { status: raw.status, headers: raw.headers, body, truncated: raw.truncated, durationMs };
  return result;
});

/** Resolves the target and checks every address; an explicitly allowlisted IP is trusted as is. */
const checkedAddresses = (settings: Settings, target: Target, entry: AllowlistEntry) =>
  Effect.gen(function* () {
    const addresses: ReadonlyArray<ResolvedAddress> = target.isIp
      ? [{ address: target.hostname, family: target.hostname.includes(":") ? 6 : 4 }]
      : yield* settings.resolve(target.hostname);
    if (addresses.length === 0) {
      return yield* new OperationError({
        type: "CONNECTION",
        message: `${target.hostname} has no addresses`,
        retryable: true,
        details: { host: target.hostname, code: "ENODATA" },
      });
    }
    if (!settings.allowPrivateNetworks && entry.kind !== "ip") {
      // Every address, not just the first: Node may try any of them (happy eyeballs).
      for (const { address } of addresses) {
        const risk = addressRisk(address);
        if (risk !== undefined) {
          return yield* new OperationError({
            type: "ADDRESS_NOT_ALLOWED",
            message: `${target.hostname} resolves to ${address} (${risk}), which http.request may not call`,
            retryable: false,
            details: { host: target.hostname, address, reason: risk },
          });
        }
      }
    }
    return addresses;
  });

/** dns.lookup with all addresses (what Node itself would connect to, /etc/hosts included). */
export const systemResolver: Resolver = (hostname) =>
  Effect.async<ReadonlyArray<ResolvedAddress>, OperationError>((resume) => {
    dns.lookup(hostname, { all: true }, (error, addresses) => {
      if (error !== null) resume(Effect.fail(networkError(error, hostname)));
      else resume(Effect.succeed(addresses.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }))));
    });
  });

interface RawResponse {
  readonly status: number;
  readonly statusText: string;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
  readonly truncated: boolean;
}

/**
 * One request over node:http(s), connecting only to `pinned`. Interrupting the fiber (caller
 * cancelled, timeout) aborts it through the AbortSignal, which destroys the socket.
 */
const send = (url: URL, input: HttpRequestInput, pinned: ReadonlyArray<ResolvedAddress>, maxBytes: number) =>
  Effect.async<RawResponse, OperationError>((resume, signal) => {
    let settled = false;
    const settle = (effect: Effect.Effect<RawResponse, OperationError>) => {
      if (settled) return;
      settled = true;
      resume(effect);
    };

    // Node calls this instead of DNS. It answers only with addresses already checked, in the
    // shape asked for (`all` is set when Node races IPv4/IPv6 connections).
    const lookup: LookupFunction = (hostname, options, callback) => {
      const family = options.family === 4 || options.family === 6 ? options.family : undefined;
      const usable = family === undefined ? pinned : pinned.filter((a) => a.family === family);
      const first = usable[0];
      if (first === undefined) {
        callback(Object.assign(new Error(`no checked address for ${hostname}`), { code: "ENOTFOUND" }), "", 0);
      } else if (options.all === true) {
        callback(null, usable.map((a) => ({ address: a.address, family: a.family })));
      } else {
        callback(null, first.address, first.family);
      }
    };

    const headers: Record<string, string> = { ...input.headers };
    let payload: string | undefined = input.body;
    if (input.json !== undefined) {
      payload = JSON.stringify(input.json);
      if (!Object.keys(headers).some((h) => h.toLowerCase() === "content-type")) headers["content-type"] = "application/json";
    }
    if (payload !== undefined) headers["content-length"] = String(Buffer.byteLength(payload));

    const hostname = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
    let response: http.IncomingMessage | undefined;
    let request: http.ClientRequest;
    try {
      request = (url.protocol === "https:" ? https : http).request({
        protocol: url.protocol,
        hostname,
        port: url.port === "" ? undefined : Number(url.port),
        path: `${url.pathname}${url.search}`,
        method: input.method,
        headers,
        lookup,
        // No pooling: a pooled socket is keyed by name, not by the address we checked.
        agent: false,
        signal,
      });
    } catch (error) {
      settle(Effect.fail(networkError(error, hostname)));
      return;
    }

    request.on("error", (error) => settle(Effect.fail(networkError(error, hostname))));
    request.on("response", (res) => {
      response = res;
      const chunks: Buffer[] = [];
      let size = 0;
      const done = (truncated: boolean) =>
        settle(
          Effect.succeed({
            status: res.statusCode ?? 0,
            statusText: res.statusMessage ?? "",
            headers: flattenHeaders(res.headers),
            body: Buffer.concat(chunks),
            truncated,
          }),
        );
      res.on("data", (chunk: Buffer) => {
        if (settled) return;
        if (size + chunk.length > maxBytes) {
          chunks.push(chunk.subarray(0, maxBytes - size));
          done(true);
          // Nothing more is wanted; stop the download instead of draining it.
          res.destroy();
          return;
        }
        chunks.push(chunk);
        size += chunk.length;
      });
      res.on("end", () => done(false));
      res.on("error", (error) => settle(Effect.fail(networkError(error, hostname))));
      res.on("close", () => {
        if (!res.complete) settle(Effect.fail(networkError(Object.assign(new Error("connection closed mid-response"), { code: "ECONNRESET" }), hostname)));
      });
    });
    request.end(payload);

    return Effect.sync(() => {
      settled = true;
      response?.destroy();
      request.destroy();
    });
  });

function flattenHeaders(headers: http.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) out[name.toLowerCase()] = Array.isArray(value) ? value.join(", ") : value;
  }
  return out;
}

/** TLS verification failures do not heal by retrying; everything else on the wire might. */
const tlsCodes = /^(CERT_|ERR_TLS_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|HOSTNAME_MISMATCH|ERR_SSL_)/;

function networkError(error: unknown, host: string): OperationError {
  const code = typeof error === "object" && error !== null && "code" in error && typeof error.code === "string" ? error.code : "UNKNOWN";
  const message = error instanceof Error ? error.message : String(error);
  if (tlsCodes.test(code)) {
    return new OperationError({ type: "TLS", message: `TLS with ${host} failed: ${message}`, retryable: false, details: { host, code } });
  }
  if (code.startsWith("HPE_")) {
    return new OperationError({ type: "PROTOCOL", message: `${host} sent an invalid HTTP response: ${message}`, retryable: false, details: { host, code } });
  }
  return new OperationError({ type: "CONNECTION", message: `connection to ${host} failed: ${message}`, retryable: true, details: { host, code } });
}

/**
 * Retry-After as milliseconds from `nowMs` (Effect Clock time): delta-seconds or an HTTP-date.
 * A date in the past means "now" (0); anything unparseable is ignored.
 */
export const parseRetryAfter = (value: string | undefined, nowMs: number): number | undefined => {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) {
    const seconds = Number(text);
    return Number.isSafeInteger(seconds * 1000) ? seconds * 1000 : undefined;
  }
  // Every HTTP-date form starts with a day name; Date.parse alone would take "-5" as a year.
  if (!/^[A-Za-z]{3,9},? /.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
};

/** Cuts an incomplete UTF-8 sequence off the end so truncation never yields a broken character. */
export function utf8Prefix(buf: Buffer): Buffer {
  let i = buf.length - 1;
  let continuation = 0;
  while (i >= 0 && ((buf[i] ?? 0) & 0xc0) === 0x80 && continuation < 3) {
    i--;
    continuation++;
  }
  if (i < 0) return buf;
  const lead = buf[i] ?? 0;
  const needed = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return buf.length - i >= needed ? buf : buf.subarray(0, i);
}
