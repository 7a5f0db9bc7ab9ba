/**
 * What the Redis Layers (rate limiter, token ledger) share: how a connection is made and watched,
 * and how a Lua script is run in one round trip with a timeout that a stalled process does not
 * trip. Each Layer owns its own connection (closing its scope disconnects it).
 */
import { createHash } from "node:crypto";
import { Effect, Runtime, type Scope } from "effect";
import { Redis } from "ioredis";

export interface RedisConnectionOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` for TLS. */
  readonly url: string;
  /** A command not answered within this is an error. */
  readonly commandTimeoutMs: number;
  /** How long to wait for the first connection before starting without it. Default 2 s. */
  readonly connectTimeoutMs?: number;
  /** Log prefix, e.g. "redis rate limiter". */
  readonly name: string;
  /** What happens while Redis is down, for the logs: e.g. "decisions refuse (fail closed)". */
  readonly whileDown: string;
  /** The same at start, when Redis cannot be reached: e.g. "decisions refuse". */
  readonly whileDownAtStart: string;
}

export interface Script {
  readonly source: string;
  readonly sha: string;
}

export const script = (source: string): Script => ({ source, sha: createHash("sha1").update(source).digest("hex") });

export const describe = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/**
 * Rejects when `promise` has not settled `ms` after the call. Not ioredis's commandTimeout: when
 * this process stalls (GC, a busy CPU) for longer than the timeout, Node runs the expired timers
 * before the socket reads that carry the answer, and an answer Redis gave in time would be
 * reported as a timeout. Here the expired timer first lets pending I/O run (setImmediate runs
 * after the poll phase), and only then gives up.
 */
export function within<A>(promise: Promise<A>, ms: number): Promise<A> {
  return new Promise<A>((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => setImmediate(() => settled || reject(new Error(`Redis did not answer within ${ms} ms`))), ms);
    promise.then(
      (v) => {
        settled = true;
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        settled = true;
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/**
 * A client that fails fast while disconnected (nothing queues: the caller's failure mode decides
 * at once), reconnects on its own, and logs losses and recoveries once each. The Layer starts
 * even when Redis is down.
 */
export const connectRedis = (options: RedisConnectionOptions): Effect.Effect<Redis, never, Scope.Scope> =>
  Effect.gen(function* () {
    const connectTimeoutMs = options.connectTimeoutMs ?? 2000;
    const runtime = yield* Effect.runtime<never>();
    const logFromCallback = (effect: Effect.Effect<void>) => void Runtime.runFork(runtime)(effect);
    const client = yield* Effect.acquireRelease(
      Effect.sync(
        () =>
          new Redis(options.url, {
            lazyConnect: true,
            enableOfflineQueue: false,
            maxRetriesPerRequest: 0,
            // A backstop that frees commands a hung Redis never answers; `within` decides sooner.
            commandTimeout: options.commandTimeoutMs * 10,
            connectTimeout: connectTimeoutMs,
            retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2000),
          }),
      ),
      (c) => Effect.sync(() => c.disconnect()),
    );

    // Log transitions, not every failed command.
    let reachable = true;
    client.on("error", (e: unknown) => {
      if (!reachable) return;
      reachable = false;
      logFromCallback(Effect.logWarning(`${options.name}: Redis unreachable, ${options.whileDown} until it is back`, describe(e)));
    });
    client.on("ready", () => {
      if (reachable) return;
      reachable = true;
      logFromCallback(Effect.logInfo(`${options.name}: Redis reachable again`));
    });

    yield* Effect.tryPromise({ try: () => client.connect(), catch: (e) => e }).pipe(
      Effect.timeout(`${connectTimeoutMs + 500} millis`),
      Effect.catchAll((e) => Effect.logError(`${options.name}: cannot reach Redis at start; ${options.whileDownAtStart} until it is reachable`, describe(e))),
    );
    return client;
  });

/** EVALSHA; on NOSCRIPT (cache empty after a restart or SCRIPT FLUSH) EVAL, which caches it again. */
export const runScript = (client: Redis, s: Script, keys: ReadonlyArray<string>, args: ReadonlyArray<string | number>, timeoutMs: number) =>
  Effect.tryPromise({
    try: () =>
      within(
        client.evalsha(s.sha, keys.length, ...keys, ...args).catch((e: unknown) => {
          if (!describe(e).startsWith("NOSCRIPT")) throw e;
          return client.eval(s.source, keys.length, ...keys, ...args);
        }),
        timeoutMs,
      ),
    catch: (e) => e,
  });
