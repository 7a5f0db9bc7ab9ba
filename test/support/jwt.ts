/**
 * Real JWTs for tests: an RSA and an EC key pair with their public JWKS, a shared HS256 secret,
 * files holding them, and tokens signed with any of them (or with nothing: `alg: none`).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from "jose";

export const issuer = "https://idp.example.test/";
export const audience = "orchestrator";

export interface Signer {
  readonly kid: string;
  readonly alg: "RS256" | "ES256";
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
  readonly publicPem: string;
}

export async function makeSigner(alg: "RS256" | "ES256", kid: string): Promise<Signer> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { kid, alg, privateKey, publicJwk, publicPem: await exportSPKI(publicKey) };
}

export const jwksOf = (...signers: ReadonlyArray<Signer>) => ({ keys: signers.map((s) => s.publicJwk) });

/** 32+ bytes, as a file would hold it (with an editor's trailing newline). */
export const hsSecret = "test-shared-secret-of-more-than-32-bytes-0123456789";

export interface Claims extends JWTPayload {
  readonly tenant?: string;
  readonly roles?: ReadonlyArray<string>;
}

/** Overrides; `undefined` removes a claim. */
export type ClaimOverrides = { [K in keyof Claims]?: Claims[K] | undefined };

/** Standard claims valid for an hour from `nowS` (seconds), overridable. */
export const claims = (over: ClaimOverrides = {}, nowS = Math.floor(Date.now() / 1000)): Claims => ({
  iss: issuer,
  aud: audience,
  sub: "bob",
  tenant: "acme",
  roles: ["operator"],
  iat: nowS,
  exp: nowS + 3600,
  ...(over as Claims),
});

export async function signRs(signer: Signer, payload: Claims, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg: signer.alg, kid: signer.kid, typ: "JWT", ...header }).sign(signer.privateKey);
}

/** HS256 with any secret bytes (the shared secret, or a public key's PEM for the confusion attack). */
export async function signHs(secret: string | Uint8Array, payload: Claims): Promise<string> {
  const key = typeof secret === "string" ? new TextEncoder().encode(secret) : secret;
  return new SignJWT(payload).setProtectedHeader({ alg: "HS256", typ: "JWT" }).sign(key);
}

const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");

/** An unsecured JWT: `alg: none`, no signature. */
export const unsigned = (payload: Claims): string => `${b64url({ alg: "none", typ: "JWT" })}.${b64url(payload)}.`;

/** Files in a fresh directory: the HS256 secret and a JWKS. */
export function writeKeyFiles(jwks: unknown): { dir: string; secretFile: string; jwksFile: string } {
  const dir = mkdtempSync(join(tmpdir(), "orchestrator-jwt-"));
  const secretFile = join(dir, "hs256.secret");
  const jwksFile = join(dir, "jwks.json");
  writeFileSync(secretFile, `${hsSecret}\n`);
  writeFileSync(jwksFile, JSON.stringify(jwks));
  return { dir, secretFile, jwksFile };
}
