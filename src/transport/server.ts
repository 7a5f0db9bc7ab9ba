/**
 * One port for every protocol: gRPC (HTTP/2), gRPC-Web and Connect (HTTP/1.1 or HTTP/2).
 *
 * Cleartext: a plain TCP listener reads the first bytes of each connection; the HTTP/2 client
 * preface goes to an HTTP/2 server, anything else to an HTTP/1.1 server (a cleartext
 * http2.createServer cannot answer HTTP/1.1 itself). TLS: one secure HTTP/2 server with
 * allowHTTP1, and ALPN chooses.
 *
 * Shutdown drains: health turns NOT_SERVING, the listener closes, HTTP/2 sessions get GOAWAY,
 * in-flight calls run on until they finish or the drain timeout passes, then everything left
 * is cut.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { setMaxListeners } from "node:events";
import { readFile } from "node:fs/promises";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import type { Logger } from "../log.js";
import { createRpcHandler, type FinishedRpc } from "./rpc-handler.js";
import type { HealthStatuses } from "./health.js";

export interface ServerOptions {
  readonly host: string;
  readonly port: number;
  readonly tls: { readonly certFile: string; readonly keyFile: string } | undefined;
  readonly maxMessageBytes: number;
  readonly drainTimeoutMs: number;
  readonly logger: Logger;
  readonly health: HealthStatuses;
  readonly routes: (router: ConnectRouter) => void;
  /** Outermost first. */
  readonly interceptors?: ReadonlyArray<Interceptor>;
  /** Called once per finished RPC, whatever its protocol and however it ended (metrics). */
  readonly onRpcFinished?: (rpc: FinishedRpc) => void;
}

export interface RunningServer {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  readonly host: string;
  /** Number of RPCs currently running. */
  inFlight(): number;
  /** Drain and close; resolves when every connection is gone. Safe to call twice. */
  shutdown(): Promise<void>;
}

const h2Preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
/** A connection that sends nothing for this long before its first byte is dropped. */
const firstByteTimeoutMs = 10_000;

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { logger, health } = options;
  const cutoff = new AbortController();
  // connect-es adds one abort listener per in-flight call to the shutdown signal.
  setMaxListeners(0, cutoff.signal);
  let inFlight = 0;
  let idle: (() => void) | undefined;
  const handler = createRpcHandler({
    routes: options.routes,
    logger,
    maxMessageBytes: options.maxMessageBytes,
    shutdownSignal: cutoff.signal,
    interceptors: [...(options.interceptors ?? [])],
    onStart: () => void inFlight++,
    onFinish: (rpc) => {
      options.onRpcFinished?.(rpc);
      inFlight--;
      if (inFlight === 0) idle?.();
    },
  });

  const sessions = new Set<http2.ServerHttp2Session>();
  const sockets = new Set<net.Socket>();
  let draining = false;

  const trackSession = (server: http2.Http2Server | http2.Http2SecureServer) => {
    server.on("session", (session: http2.ServerHttp2Session) => {
      sessions.add(session);
      session.on("close", () => sessions.delete(session));
      session.on("error", (err) => logger.warn("http2 session error", { error: err, peer: session.socket?.remoteAddress }));
      if (draining) session.close();
    });
    server.on("sessionError", (err) => logger.warn("http2 session error", { error: err }));
  };

  let h1: http.Server | undefined;
  let listener: net.Server;
  if (options.tls !== undefined) {
    const [cert, key] = await Promise.all([readFile(options.tls.certFile), readFile(options.tls.keyFile)]);
    const secure = http2.createSecureServer({ cert, key, allowHTTP1: true }, handler);
    trackSession(secure);
    secure.on("tlsClientError", (err, socket) => logger.warn("tls handshake failed", { error: err, peer: socket.remoteAddress }));
    listener = secure;
  } else {
    const h2 = http2.createServer({}, handler);
    trackSession(h2);
    h1 = http.createServer(handler);
    h1.on("clientError", (err: NodeJS.ErrnoException, socket: net.Socket) => {
      logger.warn("malformed http/1.1 request", { error: err.code ?? err.message, peer: socket.remoteAddress });
      if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      socket.destroy();
    });
    const plain = h1;
    listener = net.createServer((socket) => dispatch(socket, h2, plain));
  }
  listener.on("connection", (socket: net.Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });

  function dispatch(socket: net.Socket, h2: http2.Http2Server, plain: http.Server): void {
    let seen = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), firstByteTimeoutMs);
    const onError = (err: Error) => logger.debug("connection error before the first request", { error: err });
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) seen = Buffer.concat([seen, chunk]);
      if (seen.length === 0) return;
      const n = Math.min(seen.length, h2Preface.length);
      const isH2 = seen.subarray(0, n).equals(h2Preface.subarray(0, n));
      if (isH2 && seen.length < h2Preface.length) return; // wait for the rest of the preface
      clearTimeout(timer);
      socket.off("readable", onReadable);
      socket.off("error", onError);
      socket.unshift(seen);
      if (isH2) {
        // Node feeds the unshifted bytes to the session itself; resume() here kills it (GOAWAY 2).
        h2.emit("connection", socket);
      } else {
        plain.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("error", onError);
    socket.on("readable", onReadable);
    socket.on("close", () => clearTimeout(timer));
  }

  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(options.port, options.host, () => {
      listener.off("error", reject);
      resolve();
    });
  });
  const address = listener.address() as net.AddressInfo;

  /** After the last call ended (or was cut): how long sessions may take to flush and close. */
  const sessionCloseGraceMs = 1_000;
  let shutdownPromise: Promise<void> | undefined;
  const shutdown = (): Promise<void> =>
    (shutdownPromise ??= (async () => {
      draining = true;
      health.drain();
      const started = performance.now();
      logger.info("draining", { in_flight: inFlight, drain_timeout_ms: options.drainTimeoutMs });
      const closed = new Promise<void>((resolve) => listener.close(() => resolve()));
      for (const s of sessions) s.close(); // GOAWAY: running streams finish, new ones are refused
      h1?.closeIdleConnections();
      if (inFlight > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          new Promise<void>((resolve) => (idle = resolve)),
          new Promise<void>((resolve) => (timer = setTimeout(resolve, options.drainTimeoutMs))),
        ]);
        clearTimeout(timer);
      }
      const cut = inFlight;
      if (cut > 0) {
        logger.warn("drain timeout: cutting in-flight calls", { in_flight: cut });
        cutoff.abort();
      }
      // A call that has just ended may still have its trailers (its status) in the session's
      // buffers: sessions that got GOAWAY close by themselves once written, so wait for that,
      // briefly, before destroying what is left.
      await Promise.race([
        Promise.all([...sessions].map((s) => (s.destroyed ? undefined : new Promise<void>((resolve) => s.once("close", () => resolve()))))),
        new Promise<void>((resolve) => setTimeout(resolve, sessionCloseGraceMs).unref()),
      ]);
      for (const s of sessions) s.destroy();
      h1?.closeAllConnections();
      for (const s of sockets) s.destroy();
      await closed;
      logger.info("stopped", { duration_ms: Math.round(performance.now() - started), cut });
    })());

  return { port: address.port, host: options.host, inFlight: () => inFlight, shutdown };
}
