/**
 * Port: where API keys live. Only a hash of each key is stored (src/ports/auth/api-key.ts says
 * which and why); the key itself is shown once, when it is created, and never again.
 * Layers: ApiKeyStoreSqlite (the embedded default, in the same database file as executions, so
 * `orchestrator keys …` can work on a data dir while the server runs), ApiKeyStoreMemory (tests,
 * embedding without a disk).
 */
import { Context, type Effect, type Option } from "effect";
import type { StoreError } from "../core/errors.js";

export interface ApiKeyRecord {
  /** Public identifier: the `<id>` of `ork_<id>_<secret>`. Safe to log and to show. */
  readonly id: string;
  /** Hex SHA-256 of the whole key. */
  readonly hash: string;
  readonly subject: string;
  readonly tenant: string;
  readonly roles: ReadonlyArray<string>;
  readonly description: string;
  readonly createTime: number;
  readonly revokeTime?: number;
  /** Updated at most about once a minute per key and process (see api-key.ts). */
  readonly lastUsedTime?: number;
}

export type RevokeResult =
  | { readonly _tag: "Revoked"; readonly record: ApiKeyRecord }
  | { readonly _tag: "AlreadyRevoked"; readonly record: ApiKeyRecord }
  | { readonly _tag: "NotFound" };

export interface ApiKeyStoreShape {
  readonly insert: (record: ApiKeyRecord) => Effect.Effect<void, StoreError>;
  /**
   * Inserts only if no key was ever stored (revoked ones count): the first-run key. Atomic, so
   * two processes starting on one fresh data dir cannot both create one. True when inserted.
   */
  readonly insertIfNone: (record: ApiKeyRecord) => Effect.Effect<boolean, StoreError>;
  readonly get: (id: string) => Effect.Effect<Option.Option<ApiKeyRecord>, StoreError>;
  /** Every key, revoked ones included, oldest first. */
  readonly list: () => Effect.Effect<ReadonlyArray<ApiKeyRecord>, StoreError>;
  readonly revoke: (id: string, time: number) => Effect.Effect<RevokeResult, StoreError>;
  readonly touch: (id: string, time: number) => Effect.Effect<void, StoreError>;
}

export class ApiKeyStore extends Context.Tag("orchestrator/ApiKeyStore")<ApiKeyStore, ApiKeyStoreShape>() {}
