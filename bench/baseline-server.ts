/**
 * The benchmark's baseline: a bare connect-node server (node:http2 + connectNodeAdapter, default
 * options, no logging, no interceptors) that serves the same trivial RPC as the orchestrator,
 * grpc.health.v1.Health/Check answering SERVING.
 *
 *   node --import tsx bench/baseline-server.ts [--port N] [--host H]
 *
 * Prints {"msg":"listening","port":N} on stdout once bound; exits on SIGTERM/SIGINT.
 */
import * as http2 from "node:http2";
import type * as net from "node:net";
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  Health,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../gen/health/v1/health_pb.js";

const { values } = parseArgs({
  options: { port: { type: "string", default: "0" }, host: { type: "string", default: "127.0.0.1" } },
});

const serving = create(HealthCheckResponseSchema, { status: ServingStatus.SERVING });
const routes = (router: ConnectRouter): void => {
  router.service(Health, { check: () => serving });
};

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
