/**
 * Bad input at every layer gets a clear answer and the server keeps serving: malformed
 * protobuf bytes, wrong content types, unknown methods, oversized messages, garbage HTTP/1.1
 * and garbage HTTP/2 frames. After each case the next caller is served normally.
 */
import * as http2 from "node:http2";
import * as net from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/health/v1/health_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { startTestServer, type TestServer } from "../support/server.js";

const maxMessageBytes = 64 * 1024;
let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ maxMessageBytes });
});
afterAll(() => server.shutdown());

afterEach(async () => {
  // The server keeps serving the next caller, on a fresh connection.
  const health = createClient(Health, createGrpcTransport({ baseUrl: server.baseUrl }));
  expect((await health.check({ service: "" })).status).toBe(Status.SERVING);
});

const envelope = (payload: Uint8Array, flags = 0): Buffer => {
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(payload.byteLength, 1);
  return Buffer.concat([head, payload]);
};

/** A field-1 string whose length prefix runs past the end: not a valid message of any type. */
const malformed = new Uint8Array([0x0a, 0x7f, 0x41, 0x42]);

interface RawResponse {
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
}

function h2request(path: string, headers: http2.OutgoingHttpHeaders, body: Uint8Array): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(server.baseUrl);
    session.on("error", reject);
    const req = session.request({ ":method": "POST", ":path": path, ...headers });
    let status = 0;
    let respHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on("response", (h) => {
      status = Number(h[":status"]);
      respHeaders = h;
    });
    req.on("trailers", (t) => (trailers = t));
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      session.close();
      resolve({ status, headers: respHeaders, trailers, body: Buffer.concat(chunks) });
    });
    req.on("error", reject);
    req.end(body);
  });
}

function grpcStatus(r: RawResponse): { code: number; message: string; details: ReturnType<typeof decodeDetails> } {
  const source = r.trailers["grpc-status"] !== undefined ? r.trailers : r.headers; // trailers-only
  const bin = source["grpc-status-details-bin"];
  return {
    code: Number(source["grpc-status"]),
    message: decodeURIComponent(String(source["grpc-message"] ?? "")),
    details: decodeDetails(typeof bin === "string" ? bin : undefined),
  };
}

function decodeDetails(bin: string | undefined) {
  if (bin === undefined) return { reason: undefined, violations: [] as string[] };
  const status = fromBinary(StatusSchema, Buffer.from(bin, "base64"));
  let reason: string | undefined;
  const violations: string[] = [];
  for (const any of status.details) {
    const info = anyUnpack(any, ErrorInfoSchema);
    if (info) reason = info.reason;
    const bad = anyUnpack(any, BadRequestSchema);
    if (bad) violations.push(...bad.fieldViolations.map((v) => v.description));
  }
  return { reason, violations };
}

/** Reads what a raw socket gets back until the server closes it (bounded by a timeout). */
function rawExchange(bytes: Buffer, timeoutMs = 5_000): Promise<{ data: Buffer; closedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(server.port, "127.0.0.1");
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ data: Buffer.concat(chunks), closedByServer: false });
    }, timeoutMs);
    socket.on("connect", () => socket.write(bytes));
    socket.on("data", (c) => chunks.push(c));
    socket.on("error", (e: NodeJS.ErrnoException) => (e.code === "ECONNRESET" ? undefined : reject(e)));
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), closedByServer: true });
    });
  });
}

describe("malformed protobuf", () => {
  it("gRPC: INVALID_ARGUMENT with ErrorInfo and BadRequest, not INTERNAL", async () => {
    const r = await h2request("/grpc.health.v1.Health/Check", { "content-type": "application/grpc", te: "trailers" }, envelope(malformed));
    const s = grpcStatus(r);
    expect(s.code).toBe(3);
    expect(s.message).toContain("not a valid protobuf message");
    expect(s.details.reason).toBe("MALFORMED_REQUEST");
    expect(s.details.violations.length).toBe(1);
  });

  it("gRPC-Web: INVALID_ARGUMENT in the trailer frame", async () => {
    const r = await h2request("/grpc.health.v1.Health/Check", { "content-type": "application/grpc-web+proto" }, envelope(malformed));
    expect(r.status).toBe(200);
    // The body ends with a trailer frame (flag 0x80) holding the status.
    const trailerAt = r.body.lastIndexOf(Buffer.from([0x80]));
    const text = r.body.subarray(trailerAt + 5).toString();
    expect(text).toMatch(/grpc-status: ?3/);
  });

  it("Connect unary: HTTP 400 invalid_argument", async () => {
    const r = await h2request("/grpc.health.v1.Health/Check", { "content-type": "application/proto" }, malformed);
    expect(r.status).toBe(400);
    const json = JSON.parse(r.body.toString()) as { code: string; message: string; details: Array<{ type: string }> };
    expect(json.code).toBe("invalid_argument");
    expect(json.details.map((d) => d.type)).toContain("google.rpc.ErrorInfo");
    expect(Number(r.headers["content-length"])).toBe(r.body.byteLength);
  });

  it("Connect server stream: invalid_argument in the end-stream frame", async () => {
    const r = await h2request("/grpc.health.v1.Health/Watch", { "content-type": "application/connect+proto" }, envelope(malformed));
    expect(r.status).toBe(200);
    expect(r.body[0]).toBe(0x02);
    const end = JSON.parse(r.body.subarray(5).toString()) as { error: { code: string } };
    expect(end.error.code).toBe("invalid_argument");
  });

  it("Connect JSON that is not JSON: invalid_argument", async () => {
    const r = await h2request("/grpc.health.v1.Health/Check", { "content-type": "application/json" }, Buffer.from("{not json"));
    expect(r.status).toBe(400);
    expect((JSON.parse(r.body.toString()) as { code: string }).code).toBe("invalid_argument");
  });

  it("is logged with its code", async () => {
    const before = server.logs.length;
    await h2request("/grpc.health.v1.Health/Check", { "content-type": "application/grpc", te: "trailers" }, envelope(malformed));
    const line = server.logs.slice(before).find((l) => l["msg"] === "rpc");
    expect(line).toMatchObject({ method: "/grpc.health.v1.Health/Check", code: "invalid_argument" });
  });
});

describe("deadlines", () => {
  it("a server stream whose grpc-timeout passes ends DEADLINE_EXCEEDED, not OK", async () => {
    // A raw client: it sends the deadline but does not enforce it, so the status is the server's.
    const r = await h2request(
      "/orchestrator.v1.AuditService/Subscribe",
      { "content-type": "application/grpc", te: "trailers", "grpc-timeout": "300m" },
      envelope(new Uint8Array()),
    );
    expect(r.status).toBe(200);
    expect(grpcStatus(r).code).toBe(4);
  });
});

describe("wrong content type", () => {
  it("HTTP/2: 415 Unsupported Media Type", async () => {
    const r = await h2request("/grpc.health.v1.Health/Check", { "content-type": "text/plain" }, Buffer.from("hello"));
    expect(r.status).toBe(415);
  });

  it("HTTP/1.1: 415 Unsupported Media Type", async () => {
    const res = await fetch(`${server.baseUrl}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/xml" },
      body: "<a/>",
    });
    expect(res.status).toBe(415);
  });
});

describe("unknown method", () => {
  it("gRPC: UNIMPLEMENTED naming the path", async () => {
    const r = await h2request("/orchestrator.v1.NoSuchService/Nope", { "content-type": "application/grpc", te: "trailers" }, envelope(new Uint8Array()));
    const s = grpcStatus(r);
    expect(s.code).toBe(12);
    expect(s.message).toContain("/orchestrator.v1.NoSuchService/Nope");
    expect(s.details.reason).toBe("METHOD_NOT_FOUND");
  });

  it("Connect: 501 unimplemented (Connect's HTTP mapping of UNIMPLEMENTED)", async () => {
    const res = await fetch(`${server.baseUrl}/grpc.health.v1.Health/Nope`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(501);
    expect(((await res.json()) as { code: string }).code).toBe("unimplemented");
  });
});

describe("oversized message", () => {
  const big = (n: number) => {
    // HealthCheckRequest.service (field 1, string) of n bytes: valid protobuf, too large.
    const head = [0x0a];
    let len = n;
    while (len > 0x7f) {
      head.push((len & 0x7f) | 0x80);
      len >>>= 7;
    }
    head.push(len);
    return Buffer.concat([Buffer.from(head), Buffer.alloc(n, 0x61)]);
  };

  it("gRPC: RESOURCE_EXHAUSTED above the configured maximum", async () => {
    const r = await h2request("/grpc.health.v1.Health/Check", { "content-type": "application/grpc", te: "trailers" }, envelope(big(maxMessageBytes + 1)));
    expect(grpcStatus(r).code).toBe(8);
  });

  it("gRPC: a message just under the maximum is accepted", async () => {
    const r = await h2request("/grpc.health.v1.Health/Check", { "content-type": "application/grpc", te: "trailers" }, envelope(big(maxMessageBytes - 16)));
    // Served: the service name is unknown to health, so NOT_FOUND, not RESOURCE_EXHAUSTED.
    expect(grpcStatus(r).code).toBe(5);
  });

  it("Connect: resource_exhausted", async () => {
    const r = await h2request("/grpc.health.v1.Health/Check", { "content-type": "application/proto" }, big(maxMessageBytes + 1));
    expect((JSON.parse(r.body.toString()) as { code: string }).code).toBe("resource_exhausted");
  });
});

describe("garbage on the wire", () => {
  it("HTTP/1.1 garbage: 400 and the connection is closed", async () => {
    const { data, closedByServer } = await rawExchange(Buffer.from("THIS IS NOT HTTP\r\n\u0000\u0001\r\n\r\n"));
    expect(data.toString()).toMatch(/^HTTP\/1\.1 400/);
    expect(closedByServer).toBe(true);
  });

  it("HTTP/2 preface then garbage frames: GOAWAY and the connection is closed", async () => {
    const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    // A frame header claiming a 16 MiB DATA frame on stream 0, then junk.
    const junk = Buffer.from([0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 1, 2, 3, 4, 5, 6, 7, 8]);
    const { data, closedByServer } = await rawExchange(Buffer.concat([preface, junk]));
    expect(closedByServer).toBe(true);
    // Somewhere in what came back is a GOAWAY frame (type 0x07).
    let sawGoaway = false;
    for (let i = 0; i + 9 <= data.length; ) {
      const len = data.readUIntBE(i, 3);
      if (data[i + 3] === 0x07) sawGoaway = true;
      i += 9 + len;
    }
    expect(sawGoaway).toBe(true);
  });

  it("a connection that sends half a preface and stops is not served as HTTP/1.1", async () => {
    const { data } = await rawExchange(Buffer.from("PRI * HTTP/2"), 500);
    expect(data.byteLength).toBe(0);
  });
});
