/** A real HTTP server on 127.0.0.1 (port 0) for http.request tests, closed with the test's scope. */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { Effect } from "effect";

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void;

export interface TestServer {
  readonly port: number;
  readonly seen: SeenRequest[];
}

export const testServer = (handler: Handler) =>
  Effect.acquireRelease(
    Effect.async<TestServer & { readonly server: http.Server }>((resume) => {
      const seen: SeenRequest[] = [];
      const server = http.createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          const body = Buffer.concat(chunks).toString("utf8");
          seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
          handler(req, res, body);
        });
      });
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, port: (server.address() as AddressInfo).port, seen })));
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections();
        server.close(() => resume(Effect.void));
      }),
  );

/** A port nothing listens on: bound, then released. */
export const freePort = Effect.async<number>((resume) => {
  const server = http.createServer();
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo;
    server.close(() => resume(Effect.succeed(port)));
  });
});
