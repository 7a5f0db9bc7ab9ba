/**
 * ApiKeyStore in process memory, for tests and for embedding without a disk.
 */
import { Effect, Layer, Option } from "effect";
import { type ApiKeyRecord, ApiKeyStore } from "../ApiKeyStore.js";

const make = Effect.sync(() => {
  const keys = new Map<string, ApiKeyRecord>();
  const copy = (r: ApiKeyRecord): ApiKeyRecord => structuredClone(r);
  return ApiKeyStore.of({
    insert: (record) => Effect.sync(() => void keys.set(record.id, copy(record))),
    insertIfNone: (record) =>
      Effect.sync(() => {
        if (keys.size > 0) return false;
        keys.set(record.id, copy(record));
        return true;
      }),
    get: (id) => Effect.sync(() => Option.map(Option.fromNullable(keys.get(id)), copy)),
    list: () => Effect.sync(() => [...keys.values()].map(copy)),
    revoke: (id, time) =>
      Effect.sync(() => {
        const r = keys.get(id);
        if (r === undefined) return { _tag: "NotFound" as const };
        if (r.revokeTime !== undefined) return { _tag: "AlreadyRevoked" as const, record: copy(r) };
        const revoked = { ...r, revokeTime: time };
        keys.set(id, revoked);
        return { _tag: "Revoked" as const, record: copy(revoked) };
      }),
    touch: (id, time) =>
      Effect.sync(() => {
        const r = keys.get(id);
        if (r !== undefined) keys.set(id, { ...r, lastUsedTime: time });
      }),
  });
});

/** A fresh, empty store per Layer build. */
export const ApiKeyStoreMemory: Layer.Layer<ApiKeyStore> = Layer.effect(ApiKeyStore, make);
