/**
 * AIP-158 paging: page_size (0 = default, negative = invalid, large = clamped) and opaque page
 * tokens bound to the request's filter, so a token cannot be replayed against another query.
 */
import { createHash } from "node:crypto";
import { Effect } from "effect";
import { InvalidInput } from "./errors.js";

export const defaultPageSize = 50;
export const maxPageSize = 1000;

export const resolvePageSize = (pageSize: number): Effect.Effect<number, InvalidInput> =>
  pageSize < 0 || !Number.isInteger(pageSize)
    ? Effect.fail(new InvalidInput({ violations: [{ field: "page_size", description: "must be a whole number ≥ 0" }] }))
    : Effect.succeed(pageSize === 0 ? defaultPageSize : Math.min(pageSize, maxPageSize));

const fingerprint = (query: unknown): string =>
  createHash("sha256").update(stableJson(query)).digest("base64url").slice(0, 16);

/** JSON with object keys sorted, so equal queries give equal fingerprints. */
function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.keys(v)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v);
}

export const encodePageToken = <C>(cursor: C, query: unknown): string =>
  Buffer.from(JSON.stringify({ c: cursor, q: fingerprint(query) })).toString("base64url");

/** The cursor in a token, or INVALID_ARGUMENT when it is garbled or belongs to another query. */
export const decodePageToken = <C>(token: string, query: unknown): Effect.Effect<C | undefined, InvalidInput> => {
  if (token === "") return Effect.succeed(undefined);
  const invalid = (description: string) =>
    Effect.fail(new InvalidInput({ violations: [{ field: "page_token", description }] }));
  let parsed: { c?: C; q?: string };
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { c?: C; q?: string };
  } catch {
    return invalid("is not a page token this server issued");
  }
  if (typeof parsed !== "object" || parsed === null || parsed.c === undefined || typeof parsed.q !== "string") {
    return invalid("is not a page token this server issued");
  }
  if (parsed.q !== fingerprint(query)) return invalid("belongs to a request with different filters or order");
  return Effect.succeed(parsed.c);
};
