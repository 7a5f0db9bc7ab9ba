/**
 * TLS on the same port: ALPN picks HTTP/2 (gRPC, Connect) or HTTP/1.1 (Connect, gRPC-Web).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/health/v1/health_pb.js";
import { spawnServer, type ServerProcess } from "../support/server.js";

let server: ServerProcess;
let ca: Buffer;
let baseUrl: string;

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), "orchestrator-tls-"));
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ], { stdio: "ignore" });
  ca = readFileSync(cert);
  server = await spawnServer(["--tls-cert", cert, "--tls-key", key]);
  baseUrl = `https://localhost:${server.port}`;
});
afterAll(() => server.stop());

describe("TLS", () => {
  it("logs an https address", () => {
    expect(server.logs.find((l) => l["msg"] === "listening")).toMatchObject({ tls: true });
  });

  it.each([
    ["gRPC over h2", () => createGrpcTransport({ baseUrl, nodeOptions: { ca } })],
    ["Connect over h2", () => createConnectTransport({ baseUrl, httpVersion: "2", nodeOptions: { ca } })],
    ["Connect over HTTP/1.1", () => createConnectTransport({ baseUrl, httpVersion: "1.1", nodeOptions: { ca } })],
    ["gRPC-Web over HTTP/1.1", () => createGrpcWebTransport({ baseUrl, httpVersion: "1.1", nodeOptions: { ca } })],
  ])("%s", async (_name, transport) => {
    const health = createClient(Health, transport());
    expect((await health.check({ service: "" })).status).toBe(Status.SERVING);
  });

  it("refuses a client that does not trust the certificate", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl }));
    await expect(health.check({})).rejects.toThrow();
  });
});
