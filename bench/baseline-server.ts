/**
 * The benchmark's baseline: a bare connect-node server (node:http2 + connectNodeAdapter, default
 * options, no logging, no interceptors) that serves the same trivial RPC as the orchestrator,
 * grpc.health.v1.Health/Check answering SERVING.
 *
 *   node --import tsx bench/baseline-server.ts [--port N] [--host H]
 *
 * Prints {"msg":"listening","port":N} on stdout once bound; exits on SIGTERM/SIGINT.
 */
import { create } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { serveBare } from "./bare-server.js";
import {
  Health,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../gen/health/v1/health_pb.js";

const serving = create(HealthCheckResponseSchema, { status: ServingStatus.SERVING });
const routes = (router: ConnectRouter): void => {
  router.service(Health, { check: () => serving });
};

serveBare(routes);
