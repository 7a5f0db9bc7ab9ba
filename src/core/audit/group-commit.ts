/**
 * Group commit: callers append items to a buffer; a single writer fiber takes everything
 * buffered (up to a batch size) and commits it in one go, so the cost of a transaction is shared
 * by every event that arrived while the previous one was being written. Under light load a
 * batch is one event and nothing waits; under heavy load batches grow and throughput follows
 * the database's bulk-insert speed rather than its per-transaction cost.
 *
 * `flush` is the durability barrier: it waits until the writer has committed every item appended
 * before the call (items are numbered in append order, which is exact: appending is synchronous).
 *
 * The buffer is bounded: if the database cannot keep up, `offer` waits (backpressure) rather
 * than letting memory grow without limit. Closing the scope commits what is buffered first.
 *
 * Pipelining: a commit has two halves, handing the batch over (`commit` itself, run by the
 * writer) and waiting for its end (the Effect it returns). With `inFlight` above 1 the writer
 * hands the next batch over while earlier ones are still being committed elsewhere (SQLite: on
 * the audit writer thread), so that thread never idles between batches; the second halves still
 * run one at a time, in batch order, so listeners see commits in order and `flush` is exact.
 *
 * Not an Effect Queue: appending is the hot path of every audited decision (hundreds of
 * thousands per second), and a plain array push plus a wake-up costs a fraction of a queue offer.
 */
import { Effect, Queue } from "effect";
import type * as Scope from "effect/Scope";

export interface GroupCommit<A> {
  readonly offer: (item: A) => Effect.Effect<void>;
  readonly flush: Effect.Effect<void>;
}

export interface GroupCommitOptions<A> {
  /** Items waiting at most; beyond it `offer` waits. */
  readonly capacity: number;
  /** Items per commit at most. */
  readonly maxBatch: number;
  /**
   * Starts committing one batch and returns what waits for that commit to end. Neither half
   * may fail: they report their own errors (barriers complete anyway).
   */
  readonly commit: (batch: ReadonlyArray<A>) => Effect.Effect<Effect.Effect<void>>;
  /** Batches handed over and not yet committed, at most. Default 1. */
  readonly inFlight?: number;
}

export const makeGroupCommit = <A>(options: GroupCommitOptions<A>): Effect.Effect<GroupCommit<A>, never, Scope.Scope> =>
  Effect.gen(function* () {
    let buffer: A[] = [];
    /** Items ever appended / ever committed (or dropped by a failed commit). */
    let appended = 0;
    let committed = 0;
    let writerWake: (() => void) | undefined;
    // Waiting flushes, in target order (targets only grow, so appending keeps them sorted).
    const barriers: Array<{ readonly target: number; readonly resume: () => void }> = [];
    // Offers waiting for room.
    let roomWaiters: Array<() => void> = [];
    let closed = false;
    /** The writer is gone (scope closed): nothing more will be committed, so nothing waits. */
    let stopped = false;

    const wakeWriter = () => {
      if (writerWake !== undefined) {
        const w = writerWake;
        writerWake = undefined;
        w();
      }
    };

    const waitForWork = Effect.async<void>((resume) => {
      if (buffer.length > 0) return resume(Effect.void);
      writerWake = () => resume(Effect.void);
      return Effect.sync(() => void (writerWake = undefined));
    });

    const takeBatch = (): A[] => {
      if (buffer.length <= options.maxBatch) {
        const all = buffer;
        buffer = [];
        return all;
      }
      return buffer.splice(0, options.maxBatch);
    };

    const settle = (n: number) => {
      committed += n;
      while (barriers.length > 0 && barriers[0]!.target <= committed) barriers.shift()!.resume();
      if (roomWaiters.length > 0 && buffer.length < options.capacity) {
        const ws = roomWaiters;
        roomWaiters = [];
        for (const w of ws) w();
      }
    };

    const slots = yield* Effect.makeSemaphore(Math.max(1, options.inFlight ?? 1));
    const ends = yield* Queue.unbounded<{ readonly size: number; readonly end: Effect.Effect<void> }>();

    // Waiting for room and for work is interruptible; a batch once taken is handed over and
    // waited for whole (an interruption then would drop events that were already handed over).
    const writer = slots.take(1).pipe(
      Effect.zipRight(waitForWork),
      Effect.zipRight(
        Effect.uninterruptible(
          Effect.suspend(() => {
            const batch = takeBatch();
            return options.commit(batch).pipe(
              Effect.catchAllCause(() => Effect.succeed(Effect.void)),
              Effect.flatMap((end) => ends.offer({ size: batch.length, end })),
            );
          }),
        ),
      ),
      Effect.forever,
    );
    const ender = ends.take.pipe(
      Effect.flatMap(({ size, end }) =>
        Effect.uninterruptible(Effect.ensuring(Effect.catchAllCause(end, () => Effect.void), Effect.zipRight(Effect.sync(() => settle(size)), slots.release(1)))),
      ),
      Effect.forever,
    );
    yield* Effect.forkScoped(ender);
    yield* Effect.forkScoped(writer);

    const flush: Effect.Effect<void> = Effect.suspend(() => {
      const target = appended;
      if (committed >= target || stopped) return Effect.void;
      return Effect.async<void>((resume) => {
        // The writer needs no wake-up: what is buffered woke it (a wake-up with nothing buffered
        // would commit an empty batch while others are in flight).
        barriers.push({ target, resume: () => resume(Effect.void) });
      });
    });

    const offer = (item: A): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (stopped) return Effect.logWarning("audit log already closed: event not written");
        if (buffer.length < options.capacity || closed) {
          buffer.push(item);
          appended++;
          wakeWriter();
          return Effect.void;
        }
        return Effect.async<void>((resume) => {
          roomWaiters.push(() => resume(Effect.void));
        }).pipe(Effect.zipRight(offer(item)));
      });

    // Registered after the fork, so it runs before the writer is interrupted: what was logged
    // before the scope closed is committed.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => void (closed = true)).pipe(
        Effect.zipRight(flush),
        Effect.ensuring(Effect.sync(() => void (stopped = true))),
      ),
    );

    return { offer, flush };
  });
