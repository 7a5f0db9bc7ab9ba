/**
 * Authentication and authorization on a real socket, with real tokens and keys: the whole
 * refusal matrix (no token, malformed, expired, not yet valid, wrong signature, issuer or
 * audience, alg none, HS/RS confusion, unknown and revoked API keys), JWKS from a file and from
 * a URL, escalation attempts, spoofed identities in headers and in the body, open and protected
 * health. Every refusal must be UNAUTHENTICATED or PERMISSION_DENIED without leaking why, and
 * must be in the audit log.
 */
import { execFile } from "node:child_process";
import { createServer, type Server } from "node:http";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Effect } from "effect";
import { create, toBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { Code, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Serving } from "../../gen/health/v1/health_pb.js";
import { PrincipalSchema } from "../../gen/orchestrator/v1/common_pb.js";
import { ExecuteRequestSchema, ExecutionService, type ExecutionEvent } from "../../gen/orchestrator/v1/execution_service_pb.js";
import { AuditLogger, type AuditEvent } from "../../src/ports/AuditLogger.js";
import { collect, failure } from "../support/rpc.js";
import { bearer, createKey, withHeaders } from "../support/auth.js";
import { audience, claims, hsSecret, issuer, jwksOf, makeSigner, signHs, signRs, unsigned, writeKeyFiles } from "../support/jwt.js";
import { repoRoot, startTestServer, type TestServer } from "../support/server.js";

const run = promisify(execFile);

const rsa = await makeSigner("RS256", "rsa-1");
const ec = await makeSigner("ES256", "ec-1");
const files = writeKeyFiles(jwksOf(rsa, ec));
/** Operators may run demo.* only; everything else (http.request here) is admin-only. */
const rolesFile = join(files.dir, "roles.json");
writeFileSync(
  rolesFile,
  JSON.stringify({
    roles: {
      admin: { inherits: ["operator"], permissions: ["*"] },
      operator: { inherits: ["viewer"], permissions: ["execute:demo.*", "executions:*"] },
      viewer: { permissions: ["executions:read", "audit:read"] },
    },
  }),
);

let server: TestServer;
const keys = { admin: "", operator: "", viewer: "", otherTenant: "" };

beforeAll(async () => {
  server = await startTestServer({
    args: [
      "--auth", "jwt+api-keys",
      "--jwt-hs256-secret-file", files.secretFile,
      "--jwt-jwks-file", files.jwksFile,
      "--jwt-issuer", issuer,
      "--jwt-audience", audience,
      "--roles-file", rolesFile,
    ],
  });
  keys.admin = await createKey(server, { subject: "alice", tenant: "acme", roles: ["admin"] });
  keys.operator = await createKey(server, { subject: "oscar", tenant: "acme", roles: ["operator"] });
  keys.viewer = await createKey(server, { subject: "vera", tenant: "acme", roles: ["viewer"] });
  keys.otherTenant = await createKey(server, { subject: "olga", tenant: "globex", roles: ["admin"] });
});
afterAll(() => server.shutdown());

const clientOf = (interceptors: Interceptor[], baseUrl = server.baseUrl): Client<typeof ExecutionService> =>
  createClient(ExecutionService, createGrpcTransport({ baseUrl, interceptors }));
const as = (token: string, baseUrl?: string) => clientOf([bearer(token)], baseUrl);

const audit = (s: TestServer = server): Promise<ReadonlyArray<AuditEvent>> =>
  s.runtime.runPromise(Effect.flatMap(AuditLogger, (a) => a.read(0, 100_000)));
const lastSequence = async (s: TestServer = server) => (await audit(s)).at(-1)?.sequence ?? 0;
const auditAfter = async (sequence: number, s: TestServer = server) => (await audit(s)).filter((e) => e.sequence > sequence);

/**
 * The call is refused UNAUTHENTICATED with the public message only, and exactly one AUTH_DENIED
 * (no principal, the real reason) is audited for it.
 */
async function unauthenticated(call: () => Promise<unknown>, publicMessage: RegExp, auditReason: RegExp, s: TestServer = server) {
  const before = await lastSequence(s);
  const err = await failure(call());
  expect(err.code).toBe(Code.Unauthenticated);
  expect(err.findDetails(ErrorInfoSchema)[0]).toMatchObject({ reason: "UNAUTHENTICATED", domain: "orchestrator.v1" });
  expect(err.rawMessage).toMatch(publicMessage);
  expect(err.rawMessage).not.toMatch(auditReason);
  const events = await auditAfter(before, s);
  expect(events.map((e) => e.type)).toEqual(["AUTH_DENIED"]);
  expect(events[0]).toMatchObject({ decision: "DENY", details: { method: "/orchestrator.v1.ExecutionService/ListExecutions" } });
  expect(events[0]!.principal).toBeUndefined();
  expect(events[0]!.reason).toMatch(auditReason);
  return events[0]!;
}

const list = (client: Client<typeof ExecutionService>) => () => client.listExecutions({});
const hs = (over: Parameters<typeof claims>[0] = {}) => signHs(hsSecret, claims(over));
const nowS = () => Math.floor(Date.now() / 1000);

describe("no way in without a valid credential", () => {
  it("no credentials at all", async () => {
    const e = await unauthenticated(list(clientOf([])), /no credentials: send `authorization: Bearer <token>`/, /no authorization header/);
    expect(e.details).toMatchObject({ credential: "none", error: "MISSING", peer: "127.0.0.1" });
  });

  it("malformed headers: another scheme, two tokens, a token that is neither a key nor a JWT, a JWT that does not decode", async () => {
    for (const [value, reason] of [
      ["Basic YWxpY2U6c2VjcmV0", /scheme "Basic"/],
      ["Bearer one two", /several tokens/],
      ["Bearer some-opaque-token", /neither an API key nor a JWT/],
      ["Bearer xxx.yyy.zzz", /JWT header does not decode/],
    ] as const) {
      await unauthenticated(list(clientOf([withHeaders({ authorization: value })])), /malformed credentials/, reason);
    }
  });

  it("an expired JWT (beyond the 30 s skew)", async () => {
    const token = await hs({ iat: nowS() - 7200, exp: nowS() - 120 });
    await unauthenticated(list(as(token)), /^the token has expired$/, /^expired: "exp" claim timestamp check failed/);
  });

  it("a JWT not valid yet", async () => {
    const token = await signRs(rsa, claims({ nbf: nowS() + 600 }));
    await unauthenticated(list(as(token)), /^the token is not valid yet$/, /^not yet valid: "nbf" claim timestamp check failed/);
  });

  it("a wrong signature (HS256 with another secret; RS256 by a key not in the JWKS under a known kid)", async () => {
    await unauthenticated(list(as(await signHs("not-the-configured-secret-but-long-enough!!", claims()))), /^invalid credentials$/, /signature verification failed/);
    const impostor = await makeSigner("RS256", rsa.kid);
    await unauthenticated(list(as(await signRs(impostor, claims()))), /^invalid credentials$/, /signature verification failed/);
  });

  it("a wrong issuer, a wrong audience", async () => {
    await unauthenticated(list(as(await hs({ iss: "https://evil.example/" }))), /invalid credentials/, /claim iss/);
    await unauthenticated(list(as(await signRs(ec, claims({ aud: "some-other-api" })))), /invalid credentials/, /claim aud/);
  });

  it("alg: none", async () => {
    await unauthenticated(list(as(unsigned(claims({ roles: ["admin"] })))), /invalid credentials/, /alg "none" is not accepted/);
  });

  it("HS/RS confusion: HS256 signed with the RSA public key (PEM and JWK forms) as the HMAC secret", async () => {
    await unauthenticated(list(as(await signHs(rsa.publicPem, claims({ roles: ["admin"] })))), /invalid credentials/, /signature/);
    await unauthenticated(list(as(await signHs(JSON.stringify(rsa.publicJwk), claims({ roles: ["admin"] })))), /invalid credentials/, /signature/);
  });

  it("an unknown API key and a wrong secret get the same answer (no hint that the id exists)", async () => {
    const id = keys.admin.split("_")[1]!;
    const unknownId = await unauthenticated(list(as(`ork_aaaaaaaaaaaa_${"A".repeat(43)}`)), /^invalid credentials$/, /unknown API key id aaaaaaaaaaaa/);
    const wrongSecret = await unauthenticated(list(as(`ork_${id}_${"A".repeat(43)}`)), /^invalid credentials$/, new RegExp(`wrong secret for API key ${id}`));
    expect(wrongSecret.details).toMatchObject({ credential: "api_key", credential_id: id });
    expect(unknownId.details).toMatchObject({ credential: "api_key" });
  });

  it("over the Connect protocol too: HTTP 401 with www-authenticate, the same body", async () => {
    const res = await fetch(`${server.baseUrl}/orchestrator.v1.ExecutionService/ListExecutions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer ork_aaaaaaaaaaaa_" + "B".repeat(43) },
      body: "{}",
    });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect(await res.json()).toMatchObject({ code: "unauthenticated", message: "invalid credentials" });
  });

  it("the audit never holds a presented secret or token", async () => {
    const events = JSON.stringify(await audit());
    for (const key of Object.values(keys)) expect(events).not.toContain(key.split("_")[2]);
    expect(events).not.toContain("A".repeat(43));
  });
});

describe("valid credentials", () => {
  it("HS256, RS256 and ES256 JWTs (JWKS file) and API keys each authenticate as their own principal", async () => {
    const cases: Array<[string, object]> = [
      [await hs({ sub: "hs-user", tenant: "acme", roles: ["operator"] }), { subject: "hs-user", tenant: "acme", roles: ["operator"] }],
      [await signRs(rsa, claims({ sub: "rs-user", tenant: "globex", roles: ["operator"] })), { subject: "rs-user", tenant: "globex", roles: ["operator"] }],
      [await signRs(ec, claims({ sub: "es-user", tenant: undefined, roles: ["operator"] })), { subject: "es-user", tenant: "default", roles: ["operator"] }],
      [keys.operator, { subject: "oscar", tenant: "acme", roles: ["operator"] }],
    ];
    for (const [token, principal] of cases) {
      const events = await collect(as(token), { operation: "demo.echo", input: { message: "hi" } });
      expect(events.at(-1)?.kind.case).toBe("succeeded");
      const accepted = events[0]!.kind;
      expect(accepted.case === "accepted" && accepted.value.execution?.principal).toMatchObject(principal);
    }
  });

  it("a JWT within the clock skew of its exp is still accepted", async () => {
    const token = await hs({ iat: nowS() - 3600, exp: nowS() - 5 });
    await expect(as(token).listExecutions({})).resolves.toBeDefined();
  });
});

describe("authorization: no escalation", () => {
  it("a viewer executing: PERMISSION_DENIED naming the permission, audited with the principal", async () => {
    const before = await lastSequence();
    const err = await failure(collect(as(keys.viewer), { operation: "demo.echo", input: { message: "x" } }));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(err.findDetails(ErrorInfoSchema)[0]).toMatchObject({ reason: "PERMISSION_DENIED", metadata: { permission: "execute:demo.echo" } });
    const denied = (await auditAfter(before)).filter((e) => e.type === "AUTH_DENIED");
    expect(denied).toHaveLength(1);
    expect(denied[0]).toMatchObject({ principal: { subject: "vera", roles: ["viewer"] }, decision: "DENY", details: { permission: "execute:demo.echo" } });
  });

  it("an operator doing an admin-only thing (http.request is not in execute:demo.*): PERMISSION_DENIED; the admin passes authorization", async () => {
    const err = await failure(collect(as(keys.operator), { operation: "http.request", input: { url: "http://example.test/" } }));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(err.findDetails(ErrorInfoSchema)[0]?.metadata["permission"]).toBe("execute:http.request");
    // The admin is allowed to try; the host allowlist (empty) stops it later, as a failed attempt.
    const events = await collect(as(keys.admin), { operation: "http.request", input: { url: "http://example.test/" } });
    expect(events.at(-1)?.kind.case).toBe("failed");
  });

  it("a viewer cancelling someone else's execution: PERMISSION_DENIED (executions:cancel)", async () => {
    const started = await collect(as(keys.operator), { operation: "demo.sleep", input: { durationMs: 60_000 }, detach: true });
    const id = started[0]!.executionId;
    const err = await failure(as(keys.viewer).cancelExecution({ executionId: id }));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(err.findDetails(ErrorInfoSchema)[0]?.metadata["permission"]).toBe("executions:cancel");
    await as(keys.operator).cancelExecution({ executionId: id });
  });

  it("roles come from the signed token only: a viewer's JWT with roles in headers stays a viewer", async () => {
    const token = await hs({ sub: "vic", roles: ["viewer"] });
    const client = clientOf([bearer(token), withHeaders({ "x-roles": "admin", "x-orchestrator-roles": "admin", roles: "admin" })]);
    const err = await failure(collect(client, { operation: "demo.echo", input: { message: "x" } }));
    expect(err.code).toBe(Code.PermissionDenied);
  });
});

describe("spoofing another user", () => {
  const spoofHeaders = {
    "x-user-id": "alice",
    "x-user": "alice",
    "x-subject": "alice",
    "x-principal": JSON.stringify({ subject: "alice", tenant: "globex", roles: ["admin"] }),
    "x-tenant": "globex",
    "x-tenant-id": "globex",
    "x-forwarded-user": "alice",
    "x-remote-user": "alice",
    "x-auth-request-user": "alice",
  };

  it("another user's id in headers changes nothing: the execution is the key holder's", async () => {
    const events = await collect(clientOf([bearer(keys.operator), withHeaders(spoofHeaders)]), { operation: "demo.echo", input: { message: "me" } });
    const accepted = events[0]!.kind;
    expect(accepted.case === "accepted" && accepted.value.execution?.principal).toMatchObject({ subject: "oscar", tenant: "acme", roles: ["operator"] });
  });

  it("headers alone are no credential", async () => {
    await unauthenticated(list(clientOf([withHeaders(spoofHeaders)])), /no credentials/, /no authorization header/);
  });

  it("another user's identity in the request body (labels, input, an extra protobuf field holding a Principal) changes nothing", async () => {
    const req = create(ExecuteRequestSchema, {
      operation: "demo.echo",
      input: { message: "body", principal: { subject: "alice", tenant: "globex", roles: ["admin"] }, subject: "alice" },
      labels: { subject: "alice", tenant: "globex", user: "alice" },
    });
    const principal = toBinary(PrincipalSchema, create(PrincipalSchema, { subject: "alice", tenant: "globex", roles: ["admin"] }));
    // Field numbers no ExecuteRequest uses, carrying a well-formed Principal message.
    req.$unknown = [9, 99, 1000].map((no) => ({ no, wireType: WireType.LengthDelimited, data: lengthDelimited(principal) }));
    const out: ExecutionEvent[] = [];
    for await (const r of as(keys.operator).execute(req)) out.push(r.event!);
    const accepted = out[0]!.kind;
    if (accepted.case !== "accepted") throw new Error(accepted.case);
    expect(accepted.value.execution?.principal).toMatchObject({ subject: "oscar", tenant: "acme", roles: ["operator"] });
    expect(out.at(-1)?.kind.case).toBe("succeeded");
  });

  it("a Connect JSON body with principal and tenant fields is not honoured: the caller still sees only its own tenant", async () => {
    await collect(as(keys.otherTenant), { operation: "demo.echo", input: { message: "globex's" } });
    const res = await fetch(`${server.baseUrl}/orchestrator.v1.ExecutionService/ListExecutions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${keys.viewer}`, "x-tenant": "globex" },
      body: JSON.stringify({ pageSize: 1000, principal: { subject: "olga", tenant: "globex", roles: ["admin"] }, tenant: "globex" }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { executions?: Array<{ principal: { tenant: string } }> };
    expect(body.executions?.length).toBeGreaterThan(0);
    expect(body.executions!.every((e) => e.principal.tenant === "acme")).toBe(true);
  });

  it("naming another tenant's user in a filter shows nothing of that tenant", async () => {
    await collect(as(keys.otherTenant), { operation: "demo.echo", input: { message: "globex only" } });
    const page = await as(keys.admin).listExecutions({ principalSubject: "olga" });
    expect(page.executions).toEqual([]);
  });
});

describe("health and reflection", () => {
  it("stay open without credentials by default", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: server.baseUrl }));
    expect((await health.check({ service: "" })).status).toBe(Serving.SERVING);
  });

  it("need credentials with --protect-health", async () => {
    const s = await startTestServer({ args: ["--auth", "api-keys", "--protect-health"] });
    try {
      const key = await createKey(s, { subject: "probe", roles: ["viewer"] });
      const open = createClient(Health, createGrpcTransport({ baseUrl: s.baseUrl }));
      expect((await failure(open.check({ service: "" }))).code).toBe(Code.Unauthenticated);
      const authed = createClient(Health, createGrpcTransport({ baseUrl: s.baseUrl, interceptors: [bearer(key)] }));
      expect((await authed.check({ service: "" })).status).toBe(Serving.SERVING);
      const denied = (await audit(s)).filter((e) => e.type === "AUTH_DENIED");
      expect(denied.at(-1)?.details).toMatchObject({ method: "/grpc.health.v1.Health/Check" });
    } finally {
      await s.shutdown();
    }
  });
});

describe("JWKS from a URL", () => {
  let idp: Server;
  let fetches = 0;
  let s: TestServer;
  beforeAll(async () => {
    idp = createServer((req, res) => {
      fetches++;
      res.writeHead(req.url === "/.well-known/jwks.json" ? 200 : 404, { "content-type": "application/json" });
      res.end(JSON.stringify(jwksOf(rsa, ec)));
    });
    await new Promise<void>((r) => idp.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(idp.address() as { port: number }).port}/.well-known/jwks.json`;
    s = await startTestServer({ args: ["--jwt-jwks-url", url, "--jwt-issuer", issuer, "--jwt-audience", audience] });
  });
  afterAll(async () => {
    await s?.shutdown();
    idp?.close();
  });

  it("RS256 and ES256 tokens verify against keys fetched once and cached", async () => {
    expect(fetches).toBe(1); // at start
    for (const signer of [rsa, ec, rsa]) {
      await expect(as(await signRs(signer, claims()), s.baseUrl).listExecutions({})).resolves.toBeDefined();
    }
    expect(fetches).toBe(1);
  });

  it("no shared secret here: an HS256 token (even one signed with the public key) is refused", async () => {
    await unauthenticated(list(as(await signHs(rsa.publicPem, claims()), s.baseUrl)), /invalid credentials/, /HS256 but no shared secret/, s);
  });

  it("API keys still work next to JWTs (jwt+api-keys is the default with a JWT key)", async () => {
    const key = await createKey(s, { subject: "svc", roles: ["viewer"] });
    await expect(as(key, s.baseUrl).listExecutions({})).resolves.toBeDefined();
  });
});

describe("API key revoked while the server runs", () => {
  it("keys created and revoked by `orchestrator keys` in another process: refused from the next request, audited", async () => {
    const cli = (...args: string[]) => run(process.execPath, ["--import", "tsx", "src/main.ts", "keys", ...args, "--data-dir", server.dataDir], { cwd: repoRoot });
    const created = JSON.parse((await cli("create", "--subject", "cron-job", "--tenant", "acme", "--roles", "operator", "--json")).stdout) as { id: string; key: string };
    const client = as(created.key);
    await expect(client.listExecutions({})).resolves.toBeDefined();

    const listed = (await cli("list")).stdout;
    expect(listed).toContain(created.id);
    expect(listed).not.toContain(created.key.split("_")[2]);

    expect((await cli("revoke", created.id)).stdout).toMatch(new RegExp(`Revoked API key ${created.id}`));
    const e = await unauthenticated(list(client), /^invalid credentials$/, new RegExp(`API key ${created.id} was revoked`));
    expect(e.details).toMatchObject({ credential_id: created.id });
    const trail = (await audit()).filter((a) => a.type.startsWith("CREDENTIALS_") && a.details?.["credential_id"] === created.id);
    expect(trail.map((a) => a.type)).toEqual(["CREDENTIALS_CREATED", "CREDENTIALS_REVOKED"]);
  });
});

/** A length-delimited payload: its varint length, then the bytes. */
function lengthDelimited(bytes: Uint8Array): Uint8Array {
  const len: number[] = [];
  let n = bytes.length;
  while (n > 0x7f) {
    len.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  len.push(n);
  return new Uint8Array([...len, ...bytes]);
}
