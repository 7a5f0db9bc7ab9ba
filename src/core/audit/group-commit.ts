/**
 * Group commit: callers put items on a bounded queue; a single writer fiber takes everything
 * queued (up to a batch size) and commits it in one go, so the cost of a transaction is shared
 * by every event that arrived while the previous one was being written. Under light load a
 * batch is one event and nothing waits; under heavy load batches grow and throughput follows
 * the database's bulk-insert speed rather than its per-transaction cost.
 *
 * `flush` is the durability barrier: a marker queued behind the caller's earlier items and
 * completed once the batch holding them is committed (same fiber's items are always ahead of
 * its marker, whatever other fibers do concurrently).
 *
 * The queue is bounded: if the database cannot keep up, `offer` waits (backpressure) rather
 * than letting memory grow without limit. Closing the scope commits what is queued first.
 */
import { Deferred, Effect, Queue } from "effect";
import type * as Scope from "effect/Scope";

export interface GroupCommit<A> {
  readonly offer: (item: A) => Effect.Effect<void>;
  readonly flush: Effect.Effect<void>;
}

interface Barrier {
  readonly _barrier: Deferred.Deferred<void>;
}

export interface GroupCommitOptions<A> {
  /** Items waiting at most; beyond it `offer` waits. */
  readonly capacity: number;
  /** Items per commit at most. */
  readonly maxBatch: number;
  /** Commits one batch. Must not fail: it reports its own errors (the barrier completes anyway). */
  readonly commit: (batch: ReadonlyArray<A>) => Effect.Effect<void>;
}

const isBarrier = (x: unknown): x is Barrier => typeof x === "object" && x !== null && "_barrier" in x;

export const makeGroupCommit = <A extends object>(options: GroupCommitOptions<A>): Effect.Effect<GroupCommit<A>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const queue = yield* Queue.bounded<A | Barrier>(options.capacity);

    // Taking waits interruptibly; a batch once taken is committed whole (an interruption then
    // would drop events that were already handed over).
    const writer = Queue.takeBetween(queue, 1, options.maxBatch).pipe(
      Effect.flatMap((taken) =>
        Effect.uninterruptible(
          Effect.suspend(() => {
            const items: A[] = [];
            const barriers: Deferred.Deferred<void>[] = [];
            for (const x of taken) {
              if (isBarrier(x)) barriers.push(x._barrier);
              else items.push(x);
            }
            return (items.length > 0 ? options.commit(items) : Effect.void).pipe(
              Effect.zipRight(Effect.forEach(barriers, (b) => Deferred.succeed(b, undefined), { discard: true })),
            );
          }),
        ),
      ),
      Effect.forever,
    );

    yield* Effect.forkScoped(writer);

    const flush = Effect.flatMap(Deferred.make<void>(), (d) =>
      Queue.offer(queue, { _barrier: d }).pipe(Effect.zipRight(Deferred.await(d))),
    );
    // Registered after the fork, so it runs before the writer is interrupted: what was logged
    // before the scope closed is committed. The commit itself runs uninterruptibly.
    yield* Effect.addFinalizer(() => flush.pipe(Effect.zipRight(Queue.shutdown(queue))));

    return {
      offer: (item: A) => Effect.asVoid(Queue.offer(queue, item)),
      flush,
    };
  });
