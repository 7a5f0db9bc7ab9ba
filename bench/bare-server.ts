/**
 * What both bare connect-node baselines share: node:http2 + connectNodeAdapter with default
 * options (no logging, no interceptors), `--port`/`--host` flags, one {"msg":"listening","port":N}
 * line on stdout once bound, and exit on SIGTERM/SIGINT.
 */
import * as http2 from "node:http2";
import type * as net from "node:net";
import { parseArgs } from "node:util";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";

export function serveBare(routes: (router: ConnectRouter) => void): void {
  const { values } = parseArgs({
    options: { port: { type: "string", default: "0" }, host: { type: "string", default: "127.0.0.1" } },
  });
  const server = http2.createServer({}, connectNodeAdapter({ routes }));
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s: http2.ServerHttp2Session) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  server.listen(Number(values.port), values.host, () => {
    const { port } = server.address() as net.AddressInfo;
    process.stdout.write(JSON.stringify({ msg: "listening", port, pid: process.pid }) + "\n");
  });
  const stop = (): void => {
    for (const s of sessions) s.destroy();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
