/**
 * AuditService over a real socket (the in-process server, SQLite in a temp dir): Subscribe from
 * the start and live, resume, heartbeat-free filtering, ListAuditEvents paging, bad input with
 * BadRequest field violations, OUT_OF_RANGE start points, and tenant scoping with API keys.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AuditEventOrder, AuditEventType, AuditService, Decision } from "../../gen/orchestrator/v1/audit_service_pb.js";
import { ExecutionService } from "../../gen/orchestrator/v1/execution_service_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { SubscribeRequestSchema } from "../../gen/orchestrator/v1/audit_service_pb.js";
import { toConnectError } from "../../src/transport/error-mapping.js";
import { SubscriberTooSlow } from "../../src/core/errors.js";
import { bearer, createKey } from "../support/auth.js";
import { collect, failure } from "../support/rpc.js";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
let audit: Client<typeof AuditService>;
let executions: Client<typeof ExecutionService>;
beforeAll(async () => {
  server = await startTestServer();
  const transport = createGrpcTransport({ baseUrl: server.baseUrl });
  audit = createClient(AuditService, transport);
  executions = createClient(ExecutionService, transport);
});
afterAll(() => server?.shutdown());

/** Reads a Subscribe stream until `done` says so (then cancels it), returning the events. */
async function subscribeUntil(
  client: Client<typeof AuditService>,
  req: MessageInitShape<typeof SubscribeRequestSchema>,
  done: (events: ReadonlyArray<{ sequence: bigint; type: AuditEventType; executionId: string }>) => boolean,
) {
  const abort = new AbortController();
  const events: { sequence: bigint; type: AuditEventType; executionId: string }[] = [];
  for await (const r of client.subscribe(req, { signal: abort.signal })) {
    if (r.kind.case === "event") events.push(r.kind.value);
    if (done(events)) break;
  }
  abort.abort();
  return events;
}

describe("AuditService over gRPC", () => {
  it("Subscribe from the start replays stored events, then delivers live ones; resume continues without gap", async () => {
    const first = await collect(executions, { operation: "demo.echo", input: { message: "one" } });
    const id1 = first[0]!.executionId;
    const stored = await subscribeUntil(audit, { filter: { executionId: id1 }, start: { case: "fromEarliest", value: {} } }, (es) => es.length === 3);
    expect(stored.map((e) => e.type)).toEqual([AuditEventType.EXECUTION_ACCEPTED, AuditEventType.EXECUTION_ATTEMPT_STARTED, AuditEventType.EXECUTION_SUCCEEDED]);

    // Live: subscribe for SUCCEEDED events, then run two executions.
    const abort = new AbortController();
    const live: string[] = [];
    const reader = (async () => {
      for await (const r of audit.subscribe({ filter: { types: [AuditEventType.EXECUTION_SUCCEEDED] }, start: { case: "afterSequence", value: stored[2]!.sequence } }, { signal: abort.signal })) {
        if (r.kind.case === "event") live.push(r.kind.value.executionId);
        if (live.length === 2) break;
      }
    })();
    const a = await collect(executions, { operation: "demo.echo", input: { message: "two" } });
    const b = await collect(executions, { operation: "demo.echo", input: { message: "three" } });
    await reader;
    abort.abort();
    expect(live).toEqual([a[0]!.executionId, b[0]!.executionId]);

    // Everything, in order, no gap, from an arbitrary resume point.
    const all = await subscribeUntil(audit, { start: { case: "fromEarliest", value: {} } }, (es) => es.some((e) => e.type === AuditEventType.EXECUTION_SUCCEEDED && e.executionId === b[0]!.executionId));
    const mid = all[Math.floor(all.length / 2)]!.sequence;
    const resumed = await subscribeUntil(audit, { start: { case: "afterSequence", value: mid } }, (es) => es.length === all.filter((e) => e.sequence > mid).length);
    expect(resumed.map((e) => e.sequence)).toEqual(all.filter((e) => e.sequence > mid).map((e) => e.sequence));
    expect(all.map((e) => Number(e.sequence))).toEqual(all.map((_, i) => Number(all[0]!.sequence) + i));
  });

  it("ListAuditEvents: filters, both orders, page tokens; event fields as the contract says", async () => {
    const run = await collect(executions, { operation: "demo.echo", input: { message: "listed" } });
    const id = run[0]!.executionId;
    const page = await audit.listAuditEvents({ filter: { executionId: id } });
    expect(page.events.map((e) => e.type)).toEqual([AuditEventType.EXECUTION_ACCEPTED, AuditEventType.EXECUTION_ATTEMPT_STARTED, AuditEventType.EXECUTION_SUCCEEDED]);
    const accepted = page.events[0]!;
    expect(accepted.operation).toBe("demo.echo");
    expect(accepted.principal?.subject).toBe("local");
    expect(accepted.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(accepted.time?.seconds).toBeGreaterThan(0n);
    expect(accepted.details?.["input"]).toEqual({ message: "listed" });
    const desc = await audit.listAuditEvents({ filter: { executionId: id }, order: AuditEventOrder.SEQUENCE_DESCENDING, pageSize: 2 });
    expect(desc.events.map((e) => e.sequence)).toEqual([page.events[2]!.sequence, page.events[1]!.sequence]);
    const rest = await audit.listAuditEvents({ filter: { executionId: id }, order: AuditEventOrder.SEQUENCE_DESCENDING, pageSize: 2, pageToken: desc.nextPageToken });
    expect(rest.events.map((e) => e.sequence)).toEqual([page.events[0]!.sequence]);
    expect(rest.nextPageToken).toBe("");
    const decided = await audit.listAuditEvents({ filter: { types: [AuditEventType.AUTH_SUCCEEDED] }, pageSize: 1 });
    expect(decided.events[0]?.decision).toBe(Decision.ALLOW);
  });

  it("bad input: INVALID_ARGUMENT naming the field; start points out of range: OUT_OF_RANGE with metadata", async () => {
    const drain = async (req: MessageInitShape<typeof SubscribeRequestSchema>) => {
      for await (const _ of audit.subscribe(req)) void _;
    };
    const unspecified = await failure(drain({ filter: { types: [AuditEventType.EXECUTION_ACCEPTED, AuditEventType.UNSPECIFIED] } }));
    expect(unspecified.code).toBe(Code.InvalidArgument);
    expect(unspecified.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toEqual(["filter.types[1]"]);
    const negative = await failure(drain({ start: { case: "afterSequence", value: -1n } }));
    expect(negative.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toEqual(["after_sequence"]);
    const ahead = await failure(drain({ start: { case: "afterSequence", value: 1_000_000_000n } }));
    expect(ahead.code).toBe(Code.OutOfRange);
    const info = ahead.findDetails(ErrorInfoSchema)[0];
    expect(info?.reason).toBe("AUDIT_SEQUENCE_AHEAD");
    expect(info?.metadata["after_sequence"]).toBe("1000000000");
    expect(Number(info?.metadata["last_sequence"])).toBeGreaterThan(0);
    const listBad = await failure(audit.listAuditEvents({ filter: { types: [AuditEventType.UNSPECIFIED] } }));
    expect(listBad.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toEqual(["filter.types[0]"]);
    const token = await failure(audit.listAuditEvents({ pageToken: "nope" }));
    expect(token.code).toBe(Code.InvalidArgument);
    expect((await failure(audit.listAuditEvents({ pageSize: -3 }))).findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe("page_size");
  });

  it("SUBSCRIBER_TOO_SLOW carries the resume point in ErrorInfo metadata", () => {
    const e = toConnectError(new SubscriberTooSlow({ lastSequence: 41, bufferSize: 10_000 }));
    expect(e.code).toBe(Code.ResourceExhausted);
    expect(e.findDetails(ErrorInfoSchema)[0]).toMatchObject({ reason: "SUBSCRIBER_TOO_SLOW", metadata: { last_sequence: "41", buffer_size: "10000" } });
  });
});

describe("Subscribe and shutdown", () => {
  // The stream ends with UNAVAILABLE (reason SHUTTING_DOWN, metadata last_sequence), and the
  // server lets its sessions flush those trailers before it closes them.
  it("a draining server ends Subscribe streams itself (UNAVAILABLE with the resume point) instead of waiting for the drain timeout", async () => {
    // A drain timeout longer than the test's: if the stream held the drain open, the test would time out.
    const s = await startTestServer({ drainTimeoutMs: 120_000 });
    const transport = createGrpcTransport({ baseUrl: s.baseUrl });
    const run = await collect(createClient(ExecutionService, transport), { operation: "demo.echo", input: { message: "before" } });
    const events: bigint[] = [];
    let shutdown: Promise<void> | undefined;
    const error = await failure(
      (async () => {
        for await (const r of createClient(AuditService, transport).subscribe({ start: { case: "fromEarliest", value: {} } })) {
          if (r.kind.case === "event") {
            events.push(r.kind.value.sequence);
            if (r.kind.value.type === AuditEventType.EXECUTION_SUCCEEDED && r.kind.value.executionId === run[0]!.executionId) shutdown ??= s.shutdown();
          }
        }
      })(),
    );
    await shutdown;
    expect(error.code).toBe(Code.Unavailable);
    const info = error.findDetails(ErrorInfoSchema)[0];
    expect(info?.reason).toBe("SHUTTING_DOWN");
    expect(info?.metadata["last_sequence"]).toBe(String(events[events.length - 1]));
    // Nothing was cut at the (2-minute) drain timeout: the stream ended on its own.
    expect(s.logs.find((l) => l["msg"] === "stopped")).toMatchObject({ cut: 0 });
  });
});

describe("AuditService with API keys: permission and tenant scoping", () => {
  let keyed: TestServer;
  beforeAll(async () => {
    keyed = await startTestServer({ args: ["--auth", "api-keys"] });
  });
  afterAll(() => keyed?.shutdown());

  it("a viewer reads its tenant's events; another tenant is PERMISSION_DENIED; no audit permission is refused", async () => {
    const transport = (key: string) => createGrpcTransport({ baseUrl: keyed.baseUrl, interceptors: [bearer(key)] });
    const acmeOperator = await createKey(keyed, { subject: "op-acme", tenant: "acme", roles: ["operator"] });
    const globexOperator = await createKey(keyed, { subject: "op-globex", tenant: "globex", roles: ["operator"] });
    const acmeViewer = await createKey(keyed, { subject: "viewer-acme", tenant: "acme", roles: ["viewer"] });
    for (const key of [acmeOperator, globexOperator]) {
      await collect(createClient(ExecutionService, transport(key)), { operation: "demo.echo", input: { message: "x" } });
    }
    const viewerAudit = createClient(AuditService, transport(acmeViewer));
    const page = await viewerAudit.listAuditEvents({ pageSize: 1000 });
    expect(page.events.length).toBeGreaterThan(0);
    expect(new Set(page.events.map((e) => e.principal?.tenant))).toEqual(new Set(["acme"]));
    expect(page.events.some((e) => e.principal?.subject === "op-acme")).toBe(true);
    const other = await failure(viewerAudit.listAuditEvents({ filter: { tenant: "globex" } }));
    expect(other.code).toBe(Code.PermissionDenied);
    expect(other.findDetails(ErrorInfoSchema)[0]?.metadata["permission"]).toBe("audit:read-all-tenants");
    const streamDenied = await failure(
      (async () => {
        for await (const _ of viewerAudit.subscribe({ filter: { tenant: "globex" } })) void _;
      })(),
    );
    expect(streamDenied.code).toBe(Code.PermissionDenied);
    // The first-run admin key ("*") reads every tenant, and the failed authentications (no principal).
    const adminKey = keyed.stderr.join("").match(/ork_[a-z0-9]{12}_[A-Za-z0-9]{43}/)?.[0];
    expect(adminKey).toBeDefined();
    await failure(createClient(AuditService, transport("ork_aaaaaaaaaaaa_" + "B".repeat(43))).listAuditEvents({}));
    const all = await createClient(AuditService, transport(adminKey!)).listAuditEvents({ pageSize: 1000 });
    expect(new Set(all.events.map((e) => e.principal?.tenant))).toEqual(new Set(["acme", "globex", undefined]));
    const denied = all.events.find((e) => e.type === AuditEventType.AUTH_DENIED);
    expect(denied?.decision).toBe(Decision.DENY);
    // The secret of a key never appears in the log, not even a wrong one.
    expect(JSON.stringify(all.events.map((e) => e.details))).not.toContain("B".repeat(43));
  });
});


