/**
 * Credentials for tests: real API keys created in a running server's database, and client
 * interceptors that send a bearer token (or any other headers).
 */
import type { Interceptor } from "@connectrpc/connect";
import { createApiKey, type NewApiKey } from "../../src/core/api-keys.js";
import type { AppRuntime } from "../../src/runtime.js";

/** Creates a key in the server's store (as `orchestrator keys create` would) and returns it. */
export async function createKey(server: { readonly runtime: AppRuntime }, spec: NewApiKey): Promise<string> {
  const { key } = await server.runtime.runPromise(createApiKey(spec));
  return key;
}

/** Sends these headers on every call. */
export const withHeaders = (headers: Readonly<Record<string, string>>): Interceptor => (next) => (req) => {
  for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
  return next(req);
};

export const bearer = (token: string): Interceptor => withHeaders({ authorization: `Bearer ${token}` });
