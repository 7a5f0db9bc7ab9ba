/**
 * Graceful shutdown of the real server process: SIGTERM marks health NOT_SERVING, stops
 * accepting connections, lets in-flight streams go on up to the drain timeout, cuts what is
 * left, and exits 0.
 */
import * as net from "node:net";
import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/health/v1/health_pb.js";
import {
  ServerReflection,
  ServerReflectionRequestSchema,
  type ServerReflectionRequest,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { spawnServer } from "../support/server.js";

/** A request stream the test pushes into, for a bidi call held open. */
function pushable<T>() {
  const queue: T[] = [];
  let wake: (() => void) | undefined;
  let closed = false;
  return {
    push(v: T) {
      queue.push(v);
      wake?.();
    },
    close() {
      closed = true;
      wake?.();
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        if (closed) return;
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
    },
  };
}

const listRequest = (): ServerReflectionRequest =>
  create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } });

function connectRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.on("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.on("error", (e: NodeJS.ErrnoException) => resolve(e.code === "ECONNREFUSED"));
  });
}

describe("graceful shutdown", () => {
  it("drains: NOT_SERVING, no new connections, in-flight streams go on, then are cut; exit 0", async () => {
    const server = await spawnServer(["--drain-timeout", "1500ms"]);
    const transport = createGrpcTransport({ baseUrl: server.baseUrl });
    const health = createClient(Health, transport);
    const reflection = createClient(ServerReflection, transport);

    const watch = health.watch({ service: "" })[Symbol.asyncIterator]();
    expect((await watch.next()).value?.status).toBe(Status.SERVING);

    const requests = pushable<ServerReflectionRequest>();
    const responses = reflection.serverReflectionInfo(requests)[Symbol.asyncIterator]();
    requests.push(listRequest());
    expect((await responses.next()).value?.messageResponse.case).toBe("listServicesResponse");

    server.child.kill("SIGTERM");

    // Health watchers hear NOT_SERVING, then their stream ends so it does not hold the drain.
    expect((await watch.next()).value?.status).toBe(Status.NOT_SERVING);
    expect((await watch.next()).done).toBe(true);

    // The listener is closed: new connections are refused.
    expect(await connectRefused(server.port)).toBe(true);

    // The in-flight stream is still served during the drain...
    requests.push(listRequest());
    expect((await responses.next()).value?.messageResponse.case).toBe("listServicesResponse");

    // ...until the drain timeout cuts it.
    const cut = await responses.next().then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(cut).toBeInstanceOf(ConnectError);
    expect([Code.Canceled, Code.Unavailable, Code.Aborted, Code.Internal, Code.DeadlineExceeded]).toContain(cut?.code);

    expect(await server.exited).toEqual({ code: 0, signal: null });
    const msgs = server.logs.map((l) => l["msg"]);
    expect(msgs).toContain("draining");
    expect(msgs).toContain("drain timeout: cutting in-flight calls");
    expect(server.logs.find((l) => l["msg"] === "stopped")).toMatchObject({ cut: 1 });
  });

  it("with nothing in flight, stops without waiting for the drain timeout", async () => {
    const server = await spawnServer(["--drain-timeout", "60s"]);
    const health = createClient(Health, createGrpcTransport({ baseUrl: server.baseUrl }));
    expect((await health.check({})).status).toBe(Status.SERVING);
    // vitest's 60 s test timeout would fail this if the server waited out its 60 s drain.
    expect(await server.stop("SIGINT")).toEqual({ code: 0, signal: null });
    expect(server.logs.find((l) => l["msg"] === "stopped")).toMatchObject({ cut: 0 });
  });

  it("a configuration error exits 2 with the setting named", async () => {
    await expect(spawnServer(["--drain-timeout", "soon"])).rejects.toThrow(/exited with 2 .*--drain-timeout \/ ORCHESTRATOR_DRAIN_TIMEOUT/s);
  });
});
