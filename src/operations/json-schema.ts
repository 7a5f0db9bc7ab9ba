/** A schema for arbitrary JSON, for operation inputs that carry caller data through untouched. */
import { Schema } from "effect";
import type { JsonValue } from "../core/model.js";

export const JsonValueSchema: Schema.Schema<JsonValue> = Schema.Union(
  Schema.Null,
  Schema.Boolean,
  // JSON has no NaN or Infinity; refusing them here keeps results serialisable.
  Schema.Number.pipe(Schema.finite()),
  Schema.String,
  Schema.Array(Schema.suspend(() => JsonValueSchema)),
  Schema.Record({ key: Schema.String, value: Schema.suspend(() => JsonValueSchema) }),
).annotations({ identifier: "JsonValue" });
