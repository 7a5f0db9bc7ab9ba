/** Authentication settings: the derived default, and every combination refused at start. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, usage } from "../../src/config.js";
import { isLoopbackHost } from "../../src/auth-config.js";
import { audience, issuer, jwksOf, makeSigner, writeKeyFiles } from "../support/jwt.js";

const rsa = await makeSigner("RS256", "k1");
const files = writeKeyFiles(jwksOf(rsa));
const jwtArgs = ["--jwt-issuer", issuer, "--jwt-audience", audience];

describe("--auth", () => {
  it("defaults to api-keys; with a JWT key configured, to jwt+api-keys", () => {
    expect(loadConfig([], {}).auth).toEqual({ mode: "api-keys", jwt: undefined, protectHealth: false });
    const c = loadConfig(["--jwt-jwks-file", files.jwksFile, ...jwtArgs], {});
    expect(c.auth.mode).toBe("jwt+api-keys");
    expect(c.auth.jwt).toMatchObject({ issuer, audience, clockSkewSeconds: 30, tenantClaim: "tenant", rolesClaim: "roles", hs256Secret: undefined, jwks: { _tag: "File" } });
  });

  it("reads every JWT setting from flags or the environment", () => {
    const c = loadConfig(["--auth", "jwt", "--jwt-hs256-secret-file", files.secretFile, "--jwt-clock-skew", "5s", "--jwt-tenant-claim", "org", "--jwt-roles-claim", "realm_access.roles", "--protect-health"], {
      ORCHESTRATOR_JWT_ISSUER: issuer,
      ORCHESTRATOR_JWT_AUDIENCE: audience,
    });
    expect(c.auth).toMatchObject({ mode: "jwt", protectHealth: true, jwt: { clockSkewSeconds: 5, tenantClaim: "org", rolesClaim: "realm_access.roles" } });
    // The file's trailing newline is not part of the secret.
    expect(Buffer.from(c.auth.jwt!.hs256Secret!).toString()).not.toContain("\n");
    const url = loadConfig(["--jwt-jwks-url", "https://idp.example.test/.well-known/jwks.json", ...jwtArgs], {});
    expect(url.auth.jwt?.jwks).toMatchObject({ _tag: "Url" });
  });

  it("none is allowed on loopback only", () => {
    for (const host of ["127.0.0.1", "127.1.2.3", "::1", "localhost"]) expect(loadConfig(["--auth", "none", "--host", host], {}).auth.mode).toBe("none");
    for (const host of ["0.0.0.0", "::", "10.0.0.1", "example.com"]) {
      expect(() => loadConfig(["--auth", "none", "--host", host], {})).toThrow(/"none" makes every caller the admin, so it is only allowed on a loopback host/);
    }
    expect(isLoopbackHost("[::1]")).toBe(true);
    expect(isLoopbackHost("::ffff:10.0.0.1")).toBe(false);
  });

  const short = join(files.dir, "short.secret");
  writeFileSync(short, "too-short\n");
  const withPrivate = join(files.dir, "private.json");
  writeFileSync(withPrivate, JSON.stringify({ keys: [{ ...rsa.publicJwk, d: "secret" }] }));
  const symmetric = join(files.dir, "oct.json");
  writeFileSync(symmetric, JSON.stringify({ keys: [{ kty: "oct", k: "c2VjcmV0", kid: "x" }] }));

  it.each<[string, string[], RegExp]>([
    ["an unknown mode", ["--auth", "maybe"], /--auth \/ ORCHESTRATOR_AUTH: expected one of api-keys, jwt, jwt\+api-keys, none/],
    ["none with JWT settings", ["--auth", "none", "--jwt-jwks-file", files.jwksFile, ...jwtArgs], /"none" accepts no credentials/],
    ["api-keys with JWT settings", ["--auth", "api-keys", "--jwt-jwks-file", files.jwksFile, ...jwtArgs], /"api-keys" accepts no JWTs/],
    ["jwt without a key", ["--auth", "jwt", ...jwtArgs], /JWT authentication needs a key/],
    ["jwt without an issuer", ["--jwt-jwks-file", files.jwksFile, "--jwt-audience", audience], /--jwt-issuer .*required/],
    ["jwt without an audience", ["--jwt-jwks-file", files.jwksFile, "--jwt-issuer", issuer], /--jwt-audience .*required/],
    ["a short HS256 secret", ["--jwt-hs256-secret-file", short, ...jwtArgs], /at least 32 bytes \(it is 9\)/],
    ["a missing secret file", ["--jwt-hs256-secret-file", "/no/such/file", ...jwtArgs], /--jwt-hs256-secret-file .*cannot read/],
    ["a JWKS holding a private key", ["--jwt-jwks-file", withPrivate, ...jwtArgs], /private key material/],
    ["a JWKS with a symmetric key", ["--jwt-jwks-file", symmetric, ...jwtArgs], /kty "oct"; only RSA and EC/],
    ["both a JWKS file and URL", ["--jwt-jwks-file", files.jwksFile, "--jwt-jwks-url", "https://idp.test/jwks", ...jwtArgs], /give one JWKS/],
    ["a cleartext JWKS URL off loopback", ["--jwt-jwks-url", "http://idp.example.test/jwks", ...jwtArgs], /must be https/],
    ["a clock skew over 5 minutes", ["--jwt-hs256-secret-file", files.secretFile, "--jwt-clock-skew", "1h", ...jwtArgs], /--jwt-clock-skew/],
    ["the interim --tokens-file, now gone", ["--tokens-file", "tokens.json"], /tokens-file/],
  ])("refuses %s, naming the setting", (_what, argv, message) => {
    expect(() => loadConfig(argv, {})).toThrow(ConfigError);
    expect(() => loadConfig(argv, {})).toThrow(message);
  });

  it("--help lists every auth setting", () => {
    for (const flag of ["--auth", "--jwt-hs256-secret-file", "--jwt-jwks-file", "--jwt-jwks-url", "--jwt-issuer", "--jwt-audience", "--jwt-clock-skew", "--jwt-tenant-claim", "--jwt-roles-claim", "--roles-file", "--protect-health"]) {
      expect(usage()).toContain(flag);
    }
    expect(usage()).not.toContain("--tokens-file");
  });
});
