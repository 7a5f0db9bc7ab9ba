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
 * A write made inside a transaction the caller already holds runs at once, in a savepoint of it:
 * the leader could not take the connection that transaction holds, and the caller's commit is
 * the one that counts anyway.
 *
 * If the database itself fails during a batch (a defect, or an SqlError such as SQLITE_FULL,
 * which may roll back the whole transaction and with it the writes before), the batch is given up
 * and each of its writes is tried again in a transaction of its own: no writer is told its write
 * is stored when it is not.
 */
import * as SqlClient from "@effect/sql/SqlClient";
import { SqlError } from "@effect/sql/SqlError";
import { Cause, Deferred, Effect, Exit, FiberId, Option } from "effect";

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

  /** The database itself failed (not the write's own refusal): SQLite may have rolled the whole transaction back. */
  const databaseFailed = (e: Exit.Exit<unknown, unknown>) =>
    Exit.isFailure(e) && (Cause.isDie(e.cause) || Option.exists(Cause.failureOption(e.cause), (x) => x instanceof SqlError));

  /** Each write in a transaction of its own, as without grouping. */
  const alone = (batch: ReadonlyArray<Job>) =>
    Effect.forEach(batch, (j) => Effect.flatMap(Effect.exit(sql.withTransaction(j.write)), (e) => Deferred.done(j.done, e)), { discard: true });

  const commit = (batch: ReadonlyArray<Job>) =>
    Effect.suspend(() => {
      const exits: Array<Exit.Exit<unknown, unknown>> = [];
      const together = Effect.forEach(
        batch,
        (j) =>
          Effect.flatMap(Effect.exit(sql.withTransaction(j.write)), (e) => {
            exits.push(e);
            // A statement error such as SQLITE_FULL or SQLITE_IOERR can roll back the whole
            // transaction, the savepoints of the writes before it included: the batch is given up.
            return databaseFailed(e) ? Effect.fail(batchGivenUp) : Effect.void;
          }),
        { discard: true },
      );
      return sql.withTransaction(together).pipe(
        Effect.matchCauseEffect({
          onSuccess: () => Effect.forEach(batch, (j, i) => Deferred.done(j.done, exits[i]!), { discard: true }),
          // Rolled back, or BEGIN or COMMIT failed: nothing of the batch is stored. Each write is
          // tried again on its own, so that each hears its own outcome.
          onFailure: () => alone(batch),
        }),
      );
    });

  return <A, E>(write: Effect.Effect<A, E>): Effect.Effect<A, E | SqlError> =>
    // Uninterruptible from the first look at `waiting` to the end: a leader interrupted between
    // taking the lead and committing would leave every later writer waiting on its batch.
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(Effect.serviceOption(SqlClient.TransactionConnection), (inTransaction) => {
        // In the caller's transaction: a savepoint of it, as sql.withTransaction does there.
        if (Option.isSome(inTransaction)) return restore(sql.withTransaction(write));
        const job: Job = { write, done: Deferred.unsafeMake<unknown, unknown>(FiberId.none) };
        // Once queued the write happens, and its writer waits to hear how.
        const awaitDone = Deferred.await(job.done) as Effect.Effect<A, E>;
        if (waiting !== undefined) {
          waiting.push(job);
          return awaitDone;
        }
        const batch: Job[] = [job];
        waiting = batch;
        return Effect.yieldNow().pipe(
          Effect.zipRight(
            Effect.suspend(() => {
              waiting = undefined;
              return commit(batch);
            }),
          ),
          Effect.zipRight(awaitDone),
        );
      }),
    );
};

const batchGivenUp = Symbol("batchGivenUp");
