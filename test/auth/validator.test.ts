/**
 * The AuthValidator Layers without a server: JWTs (HS256, RS256/ES256 from a JWKS file or URL)
 * and API keys, every refusal typed, with what the caller is told kept apart from what the
 * audit gets. Token times are checked against the Effect Clock (TestClock here).
 */
import { createServer, type Server } from "node:http";
import { describe, expect, it } from "@effect/vitest";
import { Context, Effect, Layer, TestClock } from "effect";
import { createApiKey, revokeApiKey } from "../../src/core/api-keys.js";
import { ApiKeyStoreMemory } from "../../src/ports/memory/ApiKeyStoreMemory.js";
import { AuditLoggerMemory } from "../../src/ports/memory/AuditLoggerMemory.js";
import { AuthValidator, localPrincipal, Unauthenticated, type AuthSettings } from "../../src/ports/AuthValidator.js";
import type { JwtSettings } from "../../src/ports/auth/jwt.js";
import { audience, claims, hsSecret, issuer, jwksOf, makeSigner, signHs, signRs, unsigned } from "../support/jwt.js";

const rsa = await makeSigner("RS256", "rsa-1");
const ec = await makeSigner("ES256", "ec-1");
const stranger = await makeSigner("RS256", "rsa-1"); // same kid, different key

const now = 1_750_000_000_000;
const nowS = now / 1000;

const jwt = (over: Partial<JwtSettings> = {}): JwtSettings => ({
  hs256Secret: new TextEncoder().encode(hsSecret),
  jwks: { _tag: "File", path: "jwks.json", jwks: jwksOf(rsa, ec) },
  issuer,
  audience,
  clockSkewSeconds: 30,
  tenantClaim: "tenant",
  rolesClaim: "roles",
  ...over,
});

const layer = (settings: AuthSettings) =>
  Layer.mergeAll(AuthValidator.layer(settings), AuditLoggerMemory).pipe(Layer.provideMerge(ApiKeyStoreMemory));

const both = layer({ apiKeys: true, jwt: jwt() });

const headers = (authorization?: string) => new Headers(authorization === undefined ? {} : { authorization });

const authenticate = (authorization?: string) =>
  Effect.gen(function* () {
    yield* TestClock.setTime(now);
    const v = yield* AuthValidator;
    return yield* v.authenticate(headers(authorization));
  });

/** The refusal, asserted to be an Unauthenticated of this kind; its public message is checked too. */
const refused = (authorization: string | undefined, kind: Unauthenticated["kind"]) =>
  Effect.gen(function* () {
    const e = yield* Effect.flip(authenticate(authorization));
    if (!(e instanceof Unauthenticated)) throw new Error(`expected Unauthenticated, got ${e._tag}: ${e.detail}`);
    expect(e.kind).toBe(kind);
    return e;
  });

describe("JWT", () => {
  it.effect("HS256 with the shared secret: claims become the principal", () =>
    Effect.gen(function* () {
      const token = yield* Effect.promise(() => signHs(hsSecret, claims({ roles: ["viewer", "operator", "viewer"] }, nowS)));
      expect(yield* authenticate(`Bearer ${token}`)).toEqual({ subject: "bob", tenant: "acme", roles: ["operator", "viewer"] });
    }).pipe(Effect.provide(both)),
  );

  it.effect("RS256 and ES256 against the JWKS", () =>
    Effect.gen(function* () {
      const rs = yield* Effect.promise(() => signRs(rsa, claims({ sub: "rs" }, nowS)));
      const es = yield* Effect.promise(() => signRs(ec, claims({ sub: "es" }, nowS)));
      expect((yield* authenticate(`Bearer ${rs}`)).subject).toBe("rs");
      expect((yield* authenticate(`bearer   ${es}`)).subject).toBe("es");
    }).pipe(Effect.provide(both)),
  );

  it.effect("no tenant claim: tenant default; no roles claim: no roles", () =>
    Effect.gen(function* () {
      const { tenant: _t, roles: _r, ...bare } = claims({}, nowS);
      const token = yield* Effect.promise(() => signHs(hsSecret, bare));
      expect(yield* authenticate(`Bearer ${token}`)).toEqual({ subject: "bob", tenant: "default", roles: [] });
    }).pipe(Effect.provide(both)),
  );

  it.effect("configurable claims: a dotted path, a namespaced name, roles as a space-separated string", () =>
    Effect.gen(function* () {
      const token = yield* Effect.promise(() =>
        signRs(rsa, { ...claims({}, nowS), tenant: "ignored", "https://example.test/org": "globex", realm_access: { roles: "viewer operator" } }),
      );
      expect(yield* authenticate(`Bearer ${token}`)).toEqual({ subject: "bob", tenant: "globex", roles: ["operator", "viewer"] });
    }).pipe(Effect.provide(layer({ apiKeys: false, jwt: jwt({ tenantClaim: "https://example.test/org", rolesClaim: "realm_access.roles" }) }))),
  );

  it.effect("expired: refused beyond the clock skew, accepted within it", () =>
    Effect.gen(function* () {
      const token = yield* Effect.promise(() => signHs(hsSecret, claims({ exp: nowS - 20 }, nowS - 100)));
      expect((yield* authenticate(`Bearer ${token}`)).subject).toBe("bob"); // 20 s late, 30 s skew
      const old = yield* Effect.promise(() => signHs(hsSecret, claims({ exp: nowS - 31 }, nowS - 100)));
      const e = yield* refused(`Bearer ${old}`, "EXPIRED");
      expect(e.message).toBe("the token has expired");
    }).pipe(Effect.provide(both)),
  );

  it.effect("expiry follows the Clock: the same token is refused once time passes", () =>
    Effect.gen(function* () {
      const token = yield* Effect.promise(() => signRs(rsa, claims({ exp: nowS + 60 }, nowS)));
      const v = yield* AuthValidator;
      yield* TestClock.setTime(now);
      expect((yield* v.authenticate(headers(`Bearer ${token}`))).subject).toBe("bob");
      yield* TestClock.adjust("91 seconds");
      const e = yield* Effect.flip(v.authenticate(headers(`Bearer ${token}`)));
      expect(e._tag === "Unauthenticated" && e.kind).toBe("EXPIRED");
    }).pipe(Effect.provide(both)),
  );

  it.effect("not yet valid (nbf): refused beyond the skew, accepted within it", () =>
    Effect.gen(function* () {
      const soon = yield* Effect.promise(() => signHs(hsSecret, claims({ nbf: nowS + 20 }, nowS)));
      expect((yield* authenticate(`Bearer ${soon}`)).subject).toBe("bob");
      const later = yield* Effect.promise(() => signHs(hsSecret, claims({ nbf: nowS + 120 }, nowS)));
      const e = yield* refused(`Bearer ${later}`, "NOT_YET_VALID");
      expect(e.message).toBe("the token is not valid yet");
    }).pipe(Effect.provide(both)),
  );

  it.effect("wrong signature, wrong issuer, wrong audience, no exp, no sub: INVALID, the detail only for the audit", () =>
    Effect.gen(function* () {
      const cases: Array<[Promise<string>, RegExp]> = [
        [signHs("another-secret-of-more-than-32-bytes-abcdef", claims({}, nowS)), /signature/],
        [signRs(stranger, claims({}, nowS)), /signature/],
        [signHs(hsSecret, claims({ iss: "https://evil.example/" }, nowS)), /claim iss/],
        [signRs(rsa, claims({ aud: "another-service" }, nowS)), /claim aud/],
        [signHs(hsSecret, claims({ exp: undefined }, nowS)), /claim exp/],
        [signHs(hsSecret, claims({ sub: undefined }, nowS)), /claim sub/],
        [signHs(hsSecret, claims({ roles: "x".repeat(129) as unknown as string[] }, nowS)), /roles/],
        [signHs(hsSecret, claims({ tenant: 42 as unknown as string }, nowS)), /tenant/],
      ];
      for (const [token, detail] of cases) {
        const e = yield* refused(`Bearer ${yield* Effect.promise(() => token)}`, "INVALID");
        expect(e.detail).toMatch(detail);
        expect(e.message).toBe("invalid credentials");
      }
    }).pipe(Effect.provide(both)),
  );

  it.effect("alg: none is refused", () =>
    Effect.gen(function* () {
      const e = yield* refused(`Bearer ${unsigned(claims({}, nowS))}`, "INVALID");
      expect(e.detail).toMatch(/alg "none" is not accepted/);
    }).pipe(Effect.provide(both)),
  );

  it.effect("HS/RS confusion: an HS256 token signed with the RSA public key as its secret is refused, with or without a shared secret configured", () =>
    Effect.gen(function* () {
      const forged = yield* Effect.promise(() => signHs(rsa.publicPem, claims({ sub: "mallory", roles: ["admin"] }, nowS)));
      const withSecret = yield* refused(`Bearer ${forged}`, "INVALID").pipe(Effect.provide(both));
      expect(withSecret.detail).toMatch(/signature/);
      const jwksOnly = yield* refused(`Bearer ${forged}`, "INVALID").pipe(Effect.provide(layer({ apiKeys: false, jwt: jwt({ hs256Secret: undefined }) })));
      expect(jwksOnly.detail).toMatch(/HS256 but no shared secret/);
      // And the other way round: an RS256 token where only a secret is configured.
      const rs = yield* Effect.promise(() => signRs(rsa, claims({}, nowS)));
      const secretOnly = yield* refused(`Bearer ${rs}`, "INVALID").pipe(Effect.provide(layer({ apiKeys: false, jwt: jwt({ jwks: undefined }) })));
      expect(secretOnly.detail).toMatch(/RS256 but no JWKS/);
    }),
  );

  it.effect("other algorithms (HS512, PS256, a kid that is not in the JWKS) are refused", () =>
    Effect.gen(function* () {
      const hs512 = `${Buffer.from(JSON.stringify({ alg: "HS512" })).toString("base64url")}.${Buffer.from(JSON.stringify(claims({}, nowS))).toString("base64url")}.c2ln`;
      expect((yield* refused(`Bearer ${hs512}`, "INVALID")).detail).toMatch(/HS512/);
      const unknownKid = yield* Effect.promise(() => signRs(rsa, claims({}, nowS), { kid: "rsa-9" }));
      expect((yield* refused(`Bearer ${unknownKid}`, "INVALID")).detail).toMatch(/ERR_JWKS_NO_MATCHING_KEY/);
    }).pipe(Effect.provide(both)),
  );
});

describe("the authorization header", () => {
  it.effect("none: MISSING; another scheme, several tokens, junk: MALFORMED; the caller is told how to fix it", () =>
    Effect.gen(function* () {
      expect((yield* refused(undefined, "MISSING")).message).toMatch(/send `authorization: Bearer <token>`/);
      yield* refused("", "MISSING");
      for (const h of ["Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer a b", "Bearer <script>", "Token abc", "not-even-a-scheme", "Bearer abc", "Bearer aaa.bbb.ccc", `Bearer ${"a".repeat(20_000)}`]) {
        const e = yield* refused(h, "MALFORMED");
        expect(e.message).toMatch(/malformed credentials/);
      }
    }).pipe(Effect.provide(both)),
  );
});

describe("API keys", () => {
  it.effect("a created key authenticates as its principal; unknown id, wrong secret and revoked all say only 'invalid credentials'", () =>
    Effect.gen(function* () {
      const { key, record } = yield* createApiKey({ subject: "svc-reports", tenant: "acme", roles: ["operator"] });
      expect(key).toMatch(/^ork_[a-z0-9]{12}_[A-Za-z0-9]{43}$/);
      expect(record.hash).not.toContain(key.slice(-43));
      expect(yield* authenticate(`Bearer ${key}`)).toEqual({ subject: "svc-reports", tenant: "acme", roles: ["operator"] });

      const wrongSecret = key.slice(0, -1) + (key.endsWith("A") ? "B" : "A");
      const unknownId = `ork_zzzzzzzzzzzz_${key.slice(-43)}`;
      const a = yield* refused(`Bearer ${wrongSecret}`, "INVALID");
      const b = yield* refused(`Bearer ${unknownId}`, "INVALID");
      yield* revokeApiKey(record.id);
      const c = yield* refused(`Bearer ${key}`, "INVALID");
      expect([a.message, b.message, c.message]).toEqual(["invalid credentials", "invalid credentials", "invalid credentials"]);
      expect([a.detail, b.detail, c.detail]).toEqual([
        expect.stringMatching(/wrong secret/),
        expect.stringMatching(/unknown API key id zzzzzzzzzzzz/),
        expect.stringMatching(/revoked/),
      ]);
      expect(c.credentialId).toBe(record.id);
      expect((yield* refused(`Bearer ork_short`, "MALFORMED")).credential).toBe("api_key");
    }).pipe(Effect.provide(both)),
  );

  it.effect("with --auth jwt an API key is refused, and with --auth api-keys a JWT is", () =>
    Effect.gen(function* () {
      const { key } = yield* createApiKey({ subject: "s", roles: ["viewer"] });
      yield* refused(`Bearer ${key}`, "INVALID").pipe(Effect.provide(AuthValidator.layer({ apiKeys: false, jwt: jwt() })));
      const token = yield* Effect.promise(() => signHs(hsSecret, claims({}, nowS)));
      yield* refused(`Bearer ${token}`, "INVALID").pipe(Effect.provide(AuthValidator.layer({ apiKeys: true, jwt: undefined })));
    }).pipe(Effect.provide(Layer.merge(ApiKeyStoreMemory, AuditLoggerMemory))),
  );
});

describe("--auth none", () => {
  it.effect("every caller is the local admin, whatever it sends", () =>
    Effect.gen(function* () {
      expect(yield* authenticate(undefined)).toEqual(localPrincipal);
      expect(yield* authenticate("Bearer forged")).toEqual(localPrincipal);
    }).pipe(Effect.provide(AuthValidator.none)),
  );
});

describe("JWKS from a URL", () => {
  /** A loopback JWKS endpoint whose key set the test can change, counting fetches. */
  const jwksServer = (initial: unknown) =>
    Effect.acquireRelease(
      Effect.promise(async () => {
        const state = { jwks: initial, fetches: 0 };
        const server: Server = createServer((_req, res) => {
          state.fetches++;
          res.writeHead(200, { "content-type": "application/json" });
          res.end(JSON.stringify(state.jwks));
        });
        await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
        return { state, server, url: new URL(`http://127.0.0.1:${(server.address() as { port: number }).port}/jwks.json`) };
      }),
      ({ server }) => Effect.promise(() => new Promise<void>((r) => server.close(() => r()))),
    );

  it.scoped("fetched at start and cached; a new kid (a rotated key) triggers a refetch", () =>
    Effect.gen(function* () {
      const idp = yield* jwksServer(jwksOf(rsa));
      const rotated = yield* Effect.promise(() => makeSigner("RS256", "rsa-2"));
      const v = yield* Layer.build(layer({ apiKeys: false, jwt: jwt({ hs256Secret: undefined, jwks: { _tag: "Url", url: idp.url, cooldownMs: 0 } }) })).pipe(
        Effect.map((ctx) => Context.get(ctx, AuthValidator)),
      );
      expect(idp.state.fetches).toBe(1);
      yield* TestClock.setTime(now);
      const first = yield* Effect.promise(() => signRs(rsa, claims({ sub: "one" }, nowS)));
      expect((yield* v.authenticate(headers(`Bearer ${first}`))).subject).toBe("one");
      expect((yield* v.authenticate(headers(`Bearer ${first}`))).subject).toBe("one");
      expect(idp.state.fetches).toBe(1);

      idp.state.jwks = jwksOf(rsa, rotated);
      const second = yield* Effect.promise(() => signRs(rotated, claims({ sub: "two" }, nowS)));
      expect((yield* v.authenticate(headers(`Bearer ${second}`))).subject).toBe("two");
      expect(idp.state.fetches).toBe(2);
    }),
  );

  it.scoped("an identity provider that does not answer: AuthUnavailable (retry later), not 'invalid'", () =>
    Effect.gen(function* () {
      const idp = yield* jwksServer(jwksOf(rsa));
      yield* Effect.promise(() => new Promise<void>((r) => idp.server.close(() => r())));
      const token = yield* Effect.promise(() => signRs(rsa, claims({}, nowS)));
      const e = yield* Effect.flip(authenticate(`Bearer ${token}`)).pipe(
        Effect.provide(layer({ apiKeys: false, jwt: jwt({ hs256Secret: undefined, jwks: { _tag: "Url", url: idp.url, cooldownMs: 0, timeoutMs: 1000 } }) })),
      );
      expect(e._tag).toBe("AuthUnavailable");
      expect(e.message).toMatch(/retry later/);
    }),
  );
});
