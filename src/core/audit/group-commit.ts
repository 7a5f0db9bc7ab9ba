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
 * Not an Effect Queue: appending is the hot path of every audited decision (hundreds of
 * thousands per second), and a plain array push plus a wake-up costs a fraction of a queue offer.
 */
import { Effect } from "effect";
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
  /** Commits one batch. Must not fail: it reports its own errors (barriers complete anyway). */
  readonly commit: (batch: ReadonlyArray<A>) => Effect.Effect<void>;
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

    // Waiting for work is interruptible; a batch once taken is committed whole (an interruption
    // then would drop events that were already handed over).
    const writer = waitForWork.pipe(
      Effect.zipRight(
        Effect.uninterruptible(
          Effect.suspend(() => {
            const batch = takeBatch();
            return Effect.ensuring(options.commit(batch), Effect.sync(() => settle(batch.length)));
          }),
        ),
      ),
      Effect.forever,
    );
    yield* Effect.forkScoped(writer);

    const flush: Effect.Effect<void> = Effect.suspend(() => {
      const target = appended;
      if (committed >= target || stopped) return Effect.void;
      return Effect.async<void>((resume) => {
        barriers.push({ target, resume: () => resume(Effect.void) });
        wakeWriter();
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
