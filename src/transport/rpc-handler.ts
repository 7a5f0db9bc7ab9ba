/**
 * The Node request handler for every RPC on the port: it routes to connect-es's protocol
 * handlers (gRPC, gRPC-Web, Connect), answers unknown methods in the caller's own protocol,
 * turns connect-es's INTERNAL "parse binary" errors into INVALID_ARGUMENT, and writes one log
 * line per RPC with the final status code, whatever the protocol and however the call ended.
 *
 * It stands in for connectNodeAdapter, which offers no hook for the last two: the request
 * message is parsed before any interceptor runs, and the status of a gRPC call is only known
 * once its trailers are written.
 */
import type * as http from "node:http";
import type * as http2 from "node:http2";
import {
  Code,
  ConnectError,
  createConnectRouter,
  createContextKey,
  createContextValues,
  type ConnectRouter,
  type ConnectRouterOptions,
} from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { findTrailerError, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerParse, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import {
  codeFromHttpStatus,
  codeToHttpStatus,
  codeToString,
  endStreamFlag,
  endStreamFromJson,
  endStreamToJson,
  errorFromJsonBytes,
  errorToJsonBytes,
} from "@connectrpc/connect/protocol-connect";
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import type { Logger } from "../log.js";
import { internalError, malformedMessage, unknownMethod } from "./errors.js";

export type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

export type Protocol = "grpc" | "grpc_web" | "connect";

export interface RpcOutcome {
  readonly code: Code | undefined;
  readonly message: string | undefined;
}

export interface RpcHandlerOptions {
  readonly routes: (router: ConnectRouter) => void;
  readonly logger: Logger;
  readonly maxMessageBytes: number;
  readonly shutdownSignal: AbortSignal;
  readonly interceptors?: ConnectRouterOptions["interceptors"];
  /** Called once per finished RPC, after its log line (the server counts in-flight calls with it). */
  readonly onStart?: () => void;
  readonly onFinish?: (rpc: FinishedRpc) => void;
}

/** One finished RPC as the caller saw it (for the rpc.server.duration histogram). */
export interface FinishedRpc {
  readonly protocol: Protocol;
  /** Undefined for a path that names no method. */
  readonly service: string | undefined;
  readonly method: string | undefined;
  /** Undefined = OK. */
  readonly code: Code | undefined;
  readonly durationMs: number;
}

/** The caller's address (the TCP peer), in every call's context values. */
export const peerKey = createContextKey<string | undefined>(undefined, { description: "peer address" });

export function protocolOf(contentType: string | undefined): Protocol {
  if (contentType?.startsWith("application/grpc-web") === true) return "grpc_web";
  if (contentType?.startsWith("application/grpc") === true) return "grpc";
  return "connect";
}

export function createRpcHandler(options: RpcHandlerOptions): (req: NodeRequest, res: NodeResponse) => void {
  const router = createConnectRouter({
    interceptors: options.interceptors ?? [],
    readMaxBytes: options.maxMessageBytes,
    writeMaxBytes: options.maxMessageBytes,
    shutdownSignal: options.shutdownSignal,
    acceptCompression: [compressionGzip, compressionBrotli],
  });
  options.routes(router);
  const paths = new Map<string, UniversalHandler>();
  for (const h of router.handlers) paths.set(h.requestPath, h);
  const { logger } = options;

  return function handleRpc(req, res) {
    const started = performance.now();
    const path = req.url?.split("?", 2)[0] ?? "";
    const protocol = protocolOf(req.headers["content-type"]);
    options.onStart?.();
    let logged = false;
    const finish = (outcome: RpcOutcome) => {
      if (logged) return;
      logged = true;
      const durationMs = performance.now() - started;
      const code = outcome.code === undefined ? "ok" : codeToString(outcome.code);
      const serverFault = outcome.code === Code.Internal || outcome.code === Code.Unknown || outcome.code === Code.DataLoss;
      logger.log(serverFault ? "error" : "info", "rpc", {
        method: path,
        protocol,
        http: req.httpVersion,
        code,
        duration_ms: Math.round(durationMs * 1000) / 1000,
        peer: req.socket?.remoteAddress,
        ...(outcome.message === undefined ? {} : { error: outcome.message }),
      });
      options.onFinish?.({ protocol, service: uHandler?.service.typeName, method: uHandler?.method.name, code: outcome.code, durationMs });
    };

    const uHandler = paths.get(path);
    if (uHandler === undefined) {
      const err = unknownMethod(path);
      writeError(res, protocol, err);
      finish({ code: err.code, message: err.rawMessage });
      return;
    }
    const uReq = universalRequestFromNodeRequest(req, res, undefined, createContextValues().set(peerKey, req.socket?.remoteAddress));
    uHandler(uReq)
      .then((uRes) => universalResponseToNodeResponse(observe(logger, protocol, uHandler, uRes, finish), res))
      .catch((reason: unknown) => {
        const err = ConnectError.from(reason);
        // The caller went away or the stream was reset: nothing left to answer.
        finish({ code: err.code === Code.Aborted ? Code.Canceled : err.code, message: err.rawMessage });
      });
  };
}

/** Answer an error without a handler (unknown method), in the caller's protocol. */
function writeError(res: NodeResponse, protocol: Protocol, err: ConnectError): void {
  if (protocol === "connect") {
    const body = errorToJsonBytes(err, {});
    res.writeHead(codeToHttpStatus(err.code), { "content-type": "application/json", "content-length": body.byteLength });
    res.end(body);
    return;
  }
  // gRPC and gRPC-Web allow a "trailers-only" response: the status in the headers, no body.
  const headers = setTrailerStatus(new Headers({ "content-type": `application/${protocol === "grpc" ? "grpc" : "grpc-web+proto"}` }), err);
  reencodeGrpcMessage(headers);
  res.writeHead(200, Object.fromEntries(headers));
  res.end();
}

/**
 * Wraps a response so that its final status is seen (and a parse error re-coded) as it is
 * written. Nothing is buffered: frames pass through one by one.
 */
function observe(
  logger: Logger,
  protocol: Protocol,
  handler: UniversalHandler,
  uRes: UniversalServerResponse,
  done: (o: RpcOutcome) => void,
): UniversalServerResponse {
  const method = `/${handler.service.typeName}/${handler.method.name}`;
  const recode = (err: ConnectError | undefined): ConnectError | undefined => {
    if (err === undefined || err.code !== Code.Internal) return undefined;
    if (err.rawMessage.startsWith("parse binary: ")) return malformedMessage(method, err.rawMessage.slice("parse binary: ".length));
    // connect-es's own internal failures (e.g. a response that cannot be encoded) name internals:
    // log them, tell the caller only that the server failed.
    if (/^(serialize|parse) (binary|json)/.test(err.rawMessage)) {
      logger.error("rpc failed inside the protocol layer", { method, error: err.rawMessage });
      return internalError();
    }
    return undefined;
  };
  const outcomeOf = (err: ConnectError | undefined): RpcOutcome =>
    err === undefined ? { code: undefined, message: undefined } : { code: err.code, message: err.rawMessage };

  const body = uRes.body;
  if (uRes.status !== 200 && protocol !== "connect") {
    // gRPC(-Web) only answer non-200 for HTTP-level refusals (415 wrong content type, 405 …).
    done({ code: codeFromHttpStatus(uRes.status), message: `HTTP ${uRes.status}` });
    return uRes;
  }
  if (body === undefined || !(Symbol.asyncIterator in body)) {
    done({ code: uRes.status === 200 ? undefined : codeFromHttpStatus(uRes.status), message: undefined });
    return uRes;
  }

  if (protocol === "grpc") {
    return {
      ...uRes,
      body: (async function* () {
        yield* body;
        const trailer = uRes.trailer;
        if (trailer === undefined) return done(outcomeOf(undefined));
        const err = findTrailerError(trailer);
        const replacement = recode(err);
        if (replacement !== undefined) {
          for (const k of ["grpc-status", "grpc-message", "grpc-status-details-bin"]) trailer.delete(k);
          setTrailerStatus(trailer, replacement);
        }
        reencodeGrpcMessage(trailer);
        done(outcomeOf(replacement ?? err));
      })(),
    };
  }

  if (protocol === "grpc_web") {
    return {
      ...uRes,
      body: (async function* () {
        for await (const chunk of body) {
          if (chunk.byteLength >= 5 && (chunk[0]! & trailerFlag) === trailerFlag) {
            const trailer = trailerParse(chunk.subarray(5));
            const err = findTrailerError(trailer);
            const replacement = recode(err);
            done(outcomeOf(replacement ?? err));
            if (replacement !== undefined) {
              const fresh = setTrailerStatus(new Headers(), replacement);
              yield encodeEnvelope(trailerFlag, trailerSerialize(fresh));
              continue;
            }
          }
          yield chunk;
        }
        done(outcomeOf(undefined));
      })(),
    };
  }

  // Connect: unary errors are a JSON body with an HTTP status; streams end with an end-stream frame.
  const unary = !(uRes.header?.get("content-type")?.startsWith("application/connect+") ?? false);
  if (unary) {
    if (uRes.status === 200) {
      return { ...uRes, body: (async function* () { yield* body; done(outcomeOf(undefined)); })() };
    }
    const response: UniversalServerResponse = { ...uRes };
    response.body = (async function* () {
        const chunks: Uint8Array[] = [];
        for await (const c of body) chunks.push(c);
        const bytes = Buffer.concat(chunks);
        const fallback = new ConnectError(`HTTP ${uRes.status}`, codeFromHttpStatus(uRes.status));
        const err = uRes.header?.has("content-encoding") === true ? fallback : errorFromJsonBytes(bytes, undefined, fallback);
        const replacement = recode(err);
        done(outcomeOf(replacement ?? err));
        if (replacement === undefined) {
          yield bytes;
          return;
        }
        // The status line has not been written yet: it goes out with the first body chunk.
        const out = errorToJsonBytes(replacement, {});
        response.status = codeToHttpStatus(replacement.code);
        uRes.header?.set("content-length", String(out.byteLength));
        yield out;
      })();
    return response;
  }
  return {
    ...uRes,
    body: (async function* () {
      for await (const chunk of body) {
        if (chunk.byteLength >= 5 && chunk[0] === endStreamFlag) {
          const end = endStreamFromJson(chunk.subarray(5));
          const replacement = recode(end.error);
          done(outcomeOf(replacement ?? end.error));
          if (replacement !== undefined) {
            const json = new TextEncoder().encode(JSON.stringify(endStreamToJson(end.metadata, replacement, {})));
            yield encodeEnvelope(endStreamFlag, json);
            continue;
          }
        }
        yield chunk;
      }
      done(outcomeOf(undefined));
    })(),
  };
}

/**
 * connect-es percent-encodes grpc-message with encodeURIComponent, which also escapes "/", ";"
 * and "#"; @grpc/grpc-js decodes with decodeURI and shows "%2F", "%3B", "%23" to its users. The
 * gRPC spec asks only for "%" and bytes outside 0x20-0x7E to be encoded: do exactly that.
 */
export function reencodeGrpcMessage(headers: Headers): void {
  const raw = headers.get("grpc-message");
  if (raw === null) return;
  let text: string;
  try {
    text = decodeURIComponent(raw);
  } catch {
    return;
  }
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  headers.set("grpc-message", out);
}
