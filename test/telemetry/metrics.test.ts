/**
 * Metrics over real sockets: after one Execute with one retry, the Prometheus scrape at
 * /metrics holds the RPC duration histogram and the core's counters with their labels; calls
 * refused before any handler are counted under `_OTHER`; the endpoint serves nothing else.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ExecutionService } from "../../gen/orchestrator/v1/execution_service_pb.js";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer({ args: ["--metrics-port", "0", "--operation-rate-limit", "1000/1m"] });
});
afterAll(async () => {
  await server?.shutdown();
});

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The samples of a Prometheus text exposition (enough of the format for these assertions). */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (m === null) throw new Error(`unparsed line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

async function scrape(): Promise<Sample[]> {
  const res = await fetch(server.telemetry.metricsUrl!);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
  return parse(await res.text());
}

const find = (samples: ReadonlyArray<Sample>, name: string, labels: Record<string, string>) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));

const valueOf = (samples: ReadonlyArray<Sample>, name: string, labels: Record<string, string>): number | undefined => {
  const found = find(samples, name, labels);
  expect(found.length, `${name} ${JSON.stringify(labels)}: ${found.length} series`).toBeLessThanOrEqual(1);
  return found[0]?.value;
};

describe("/metrics", () => {
  it("after one Execute with one retry: RPC duration, executions, attempts, rate-limit decisions, in-flight", async () => {
    expect(server.telemetry.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const client = createClient(ExecutionService, createGrpcTransport({ baseUrl: server.baseUrl }));
    const kinds: string[] = [];
    for await (const res of client.execute({ operation: "demo.flaky", input: { failures: 1 }, retryPolicy: { initialInterval: durationFromMs(10), jitter: 0 } })) {
      kinds.push(res.event?.kind.case ?? "");
    }
    expect(kinds.at(-1)).toBe("succeeded");
    // The RPC is counted when its response has been written, just after the client saw its end.
    await new Promise((r) => setTimeout(r, 50));

    const samples = await scrape();
    const execute = { rpc_system: "grpc", rpc_service: "orchestrator.v1.ExecutionService", rpc_method: "Execute", rpc_grpc_status_code: "0" };
    expect(valueOf(samples, "rpc_server_duration_count", execute)).toBe(1);
    expect(valueOf(samples, "rpc_server_duration_sum", execute)).toBeGreaterThan(10); // includes the 10 ms retry delay
    expect(valueOf(samples, "rpc_server_duration_bucket", { ...execute, le: "+Inf" })).toBe(1);
    expect(find(samples, "rpc_server_duration_bucket", execute).map((s) => s.labels["le"])).toEqual(
      ["0", "5", "10", "25", "50", "75", "100", "250", "500", "750", "1000", "2500", "5000", "7500", "10000", "+Inf"],
    );

    expect(valueOf(samples, "orchestrator_executions_total", { operation: "demo.flaky", outcome: "SUCCEEDED" })).toBe(1);
    expect(valueOf(samples, "orchestrator_attempts_total", { operation: "demo.flaky", outcome: "failed" })).toBe(1);
    expect(valueOf(samples, "orchestrator_attempts_total", { operation: "demo.flaky", outcome: "succeeded" })).toBe(1);
    expect(valueOf(samples, "orchestrator_rate_limit_decisions_total", { limit: "execution", decision: "allow" })).toBe(1);
    expect(valueOf(samples, "orchestrator_executions_in_flight", {})).toBe(0);
    expect(valueOf(samples, "target_info", {})).toBe(1);
    expect(find(samples, "target_info", { service_name: "orchestrator" })).toHaveLength(1);
  });

  it("counts calls refused before any handler under _OTHER, with their status", async () => {
    const res = await fetch(`${server.baseUrl}/no.such.Service/Nope`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(res.status).toBe(501);
    await new Promise((r) => setTimeout(r, 20));
    const samples = await scrape();
    expect(valueOf(samples, "rpc_server_duration_count", { rpc_system: "connect_rpc", rpc_service: "_OTHER", rpc_method: "_OTHER", rpc_connect_rpc_error_code: "unimplemented" })).toBe(1);
  });

  it("serves /metrics only", async () => {
    const url = new URL(server.telemetry.metricsUrl!);
    const res = await fetch(new URL("/other", url));
    expect(res.status).toBe(404);
    await res.text();
  });
});
