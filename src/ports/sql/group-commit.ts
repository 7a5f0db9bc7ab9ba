/**
 * Group commit: writes that arrive together share one transaction, so a burst of them pays for
 * one commit (one WAL append of the pages they touch, one fsync on PostgreSQL) instead of one
 * each. @effect/sql has nothing of the kind; this is the usual leader scheme, small enough to
 * own.
 *
 * The first write to arrive while none waits leads: it yields once to the scheduler, so that the
 * fibers ready to run can add theirs, then runs the whole batch in one transaction, each write in
 * a savepoint of its own (a write that fails is rolled back alone and fails alone), and answers
 * every writer only once the transaction has committed. A writer learns its outcome exactly as
 * if it had committed alone: nothing it wrote is visible to it as committed before it is.
 *
 * A write made inside a transaction the caller already holds runs at once, in it: the leader
 * could not take the connection that transaction holds, and the caller's commit is the one
 * that counts anyway.
 */
import * as SqlClient from "@effect/sql/SqlClient";
import type { SqlError } from "@effect/sql/SqlError";
import { Deferred, Effect, Exit, FiberId, Option } from "effect";

interface Job {
  readonly write: Effect.Effect<unknown, unknown>;
  readonly done: Deferred.Deferred<unknown, unknown>;
}

/**
 * Writes through `sql` in shared transactions (see above), or, not `enabled`, each in a
 * transaction of its own.
 */
export const makeGroupCommit = (sql: SqlClient.SqlClient, enabled: boolean): (<A, E>(write: Effect.Effect<A, E>) => Effect.Effect<A, E | SqlError>) => {
  if (!enabled) return sql.withTransaction;
  let waiting: Job[] | undefined;

  const commit = (batch: ReadonlyArray<Job>) =>
    Effect.suspend(() => {
      const exits: Array<Exit.Exit<unknown, unknown>> = [];
      return sql
        .withTransaction(Effect.forEach(batch, (j) => Effect.map(Effect.exit(sql.withTransaction(j.write)), (e) => void exits.push(e)), { discard: true }))
        .pipe(
          Effect.matchCauseEffect({
            onSuccess: () => Effect.forEach(batch, (j, i) => Deferred.done(j.done, exits[i]!), { discard: true }),
            // BEGIN or COMMIT failed: nothing of the batch is stored, every writer hears why.
            onFailure: (cause) => Effect.forEach(batch, (j) => Deferred.failCause(j.done, cause), { discard: true }),
          }),
        );
    });

  return <A, E>(write: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    Effect.flatMap(Effect.serviceOption(SqlClient.TransactionConnection), (inTransaction) => {
      if (Option.isSome(inTransaction)) return write;
      const job: Job = { write, done: Deferred.unsafeMake<unknown, unknown>(FiberId.none) };
      // Uninterruptible: once queued the write happens, and its writer waits to hear how.
      const awaitDone = Deferred.await(job.done) as Effect.Effect<A, E>;
      if (waiting !== undefined) {
        waiting.push(job);
        return Effect.uninterruptible(awaitDone);
      }
      const batch: Job[] = [job];
      waiting = batch;
      return Effect.uninterruptible(
        Effect.yieldNow().pipe(
          Effect.zipRight(
            Effect.suspend(() => {
              waiting = undefined;
              return commit(batch);
            }),
          ),
          Effect.zipRight(awaitDone),
        ),
      );
    });
};
