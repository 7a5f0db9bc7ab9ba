/**
 * The SQLite audit log's writer thread, seen from the main thread: `insert` hands a batch to a
 * worker (audit-writer.worker.js) that owns its own connection to the audit database and
 * commits the batch there; the Effect completes with the batch's first sequence once the
 * transaction has committed.
 *
 * Why a thread: a durable audit append costs ~4 µs of SQLite work (B-tree, three indexes, WAL
 * pages, checkpoints) plus ~2 µs of preparing the event (scrubbing, JSON), and both ran on the
 * thread that also serves RPCs. On the second core the SQLite part overlaps with everything
 * else, so appends run at the speed of the slower half instead of the sum
 * (bench/audit.ts: `AUDIT_BENCH_CASES=appends npm run bench:audit`).
 * Why a file of its own (AuditDatabase.ts): SQLite has one write lock per file; a second
 * connection writing orchestrator.db would make the main thread's execution and schedule writes
 * wait for it synchronously, blocking the event loop.
 *
 * Transfer: a batch crosses as dictionary-encoded columns — each distinct string once, cells as
 * indexes in an Int32Array, times in a Float64Array, both buffers moved, not copied. The audit
 * columns repeat a lot (type, principal, tenant, operation, trace id, details shape), and the
 * cost of cloning is per string, so this is cheaper than cloning the rows.
 *
 * Answers: the worker counts them in shared memory, and whoever waits for one polls that count
 * (`receiveMessageOnPort`) on every turn of Effect's scheduler, besides the port's listener. A
 * main thread busy with fibers (a thousand subscribers being fed) turns the event loop only
 * every few tens of milliseconds, and a listener alone would add that much to every commit,
 * i.e. to every execution's outcome (Orchestrator.finish flushes) and every delivery.
 *
 * Failures: a batch whose transaction fails comes back as an error; a worker that dies (crash,
 * out of memory) fails every batch in flight with AuditWorkerFailed, and the next batch starts a
 * new worker. Either way the caller (the group commit) logs and counts the dropped events. A
 * worker that dies after committing but before answering makes a batch count as failed although
 * it is stored; readers still find it (the hub reads the table on a sequence gap).
 */
import { Data, Deferred, Effect } from "effect";
import type * as Scope from "effect/Scope";
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from "node:worker_threads";

export class AuditWorkerFailed extends Data.TaggedError("AuditWorkerFailed")<{ readonly reason: string }> {
  override get message() {
    return `audit writer: ${this.reason}`;
  }
}

export interface AuditWriterConfig<R> {
  readonly filename: string;
  /** Run on the worker's connection when it opens. */
  readonly pragmas: ReadonlyArray<string>;
  /** `UPDATE … RETURNING last_sequence` with one parameter, the batch size. */
  readonly bumpSql: string;
  /** One row: sequence, time, then `columns` string columns. */
  readonly insertSql: string;
  readonly columns: number;
  /** A row's time (the column after sequence). */
  readonly time: (row: R) => number;
  /** Writes a row's `columns` string cells (null for NULL) into `out` from `at` on. */
  readonly fill: (row: R, out: Array<unknown>, at: number) => void;
  /** Called with each worker started (tests stop one to see what a crash does). */
  readonly onStart?: (worker: Worker) => void;
}

export interface AuditWriter<R> {
  /**
   * Hands the rows over, to be committed in one transaction after those handed over before;
   * returns what waits for that commit: the first sequence given to them.
   */
  readonly send: (rows: ReadonlyArray<R>) => Effect.Effect<Effect.Effect<number, AuditWorkerFailed>>;
}

interface Encoded {
  readonly id: number;
  readonly n: number;
  readonly strings: string[];
  readonly cells: Int32Array;
  readonly times: Float64Array;
}

const encode = <R>(id: number, rows: ReadonlyArray<R>, config: AuditWriterConfig<R>): Encoded => {
  const n = rows.length;
  const width = config.columns;
  const strings: string[] = [];
  const index = new Map<string, number>();
  const cells = new Int32Array(n * width);
  const times = new Float64Array(n);
  const row: unknown[] = new Array(width);
  for (let r = 0, q = 0; r < n; r++) {
    times[r] = config.time(rows[r]!);
    config.fill(rows[r]!, row, 0);
    for (let c = 0; c < width; c++, q++) {
      const s = row[c];
      if (typeof s !== "string") {
        cells[q] = -1;
        continue;
      }
      let k = index.get(s);
      if (k === undefined) {
        k = strings.length;
        strings.push(s);
        index.set(s, k);
      }
      cells[q] = k;
    }
  }
  return { id, n, strings, cells, times };
};

/** See `answer`. */
const pollTurns = 256;

type Reply = { readonly id: number; readonly first: number } | { readonly id: number; readonly error: string };

/** The writer for the scope's lifetime; closing the scope stops the worker (after what it holds). */
export const makeAuditWriter = <R>(config: AuditWriterConfig<R>): Effect.Effect<AuditWriter<R>, never, Scope.Scope> =>
  Effect.gen(function* () {
    let worker: Worker | undefined;
    let nextId = 0;
    const inFlight = new Map<number, Deferred.Deferred<number, AuditWorkerFailed>>();
    // Of the current worker: its answers' port, how many it has sent and how many were taken.
    let replies: MessagePort | undefined;
    let answered = new Int32Array(new SharedArrayBuffer(4));
    let taken = 0;

    const onReply = (reply: Reply) => {
      taken++;
      const done = inFlight.get(reply.id);
      if (done === undefined) return;
      inFlight.delete(reply.id);
      // Idle, the port must not keep the process alive; busy, it must (a pending flush).
      if (inFlight.size === 0) replies?.unref();
      Deferred.unsafeDone(done, "first" in reply ? Effect.succeed(reply.first) : Effect.fail(new AuditWorkerFailed({ reason: reply.error })));
    };

    /** Takes the answers already sent, without waiting for the event loop. */
    const poll = () => {
      const port = replies;
      while (port !== undefined && Atomics.load(answered, 0) > taken) {
        const m = receiveMessageOnPort(port);
        if (m === undefined) break;
        onReply(m.message as Reply);
      }
    };

    const start = (): Worker => {
      const channel = new MessageChannel();
      const count = new Int32Array(new SharedArrayBuffer(4));
      const workerData = { filename: config.filename, pragmas: config.pragmas, bumpSql: config.bumpSql, insertSql: config.insertSql, columns: config.columns, replies: channel.port2, answered: count };
      // Plain JavaScript: none of the process's loader flags (tsx) are needed there.
      const w = new Worker(new URL("./audit-writer.worker.js", import.meta.url), { workerData, transferList: [channel.port2], execArgv: [] });
      replies = channel.port1;
      answered = count;
      taken = 0;
      channel.port1.on("message", onReply);
      channel.port1.unref();
      let failure: string | undefined;
      w.on("error", (e) => void (failure = e instanceof Error ? `${e.name}: ${e.message}` : String(e)));
      w.on("exit", (code) => {
        // Answers it sent before dying still count.
        if (worker === w) poll();
        channel.port1.close();
        if (worker === w) {
          worker = undefined;
          replies = undefined;
        }
        // Messages are answered in order, so whatever is still in flight went to this worker.
        const waiting = [...inFlight.values()];
        inFlight.clear();
        const error = new AuditWorkerFailed({ reason: failure ?? `the worker exited (code ${code})` });
        for (const done of waiting) Deferred.unsafeDone(done, Effect.fail(error));
      });
      w.unref();
      config.onStart?.(w);
      return w;
    };

    /**
     * The answer, polled for on each of the next `pollTurns` scheduler turns, then left to the
     * port's listener (see the file comment). Busy, a turn lasts as long as the other fibers'
     * slices, so the polls cover the commit; idle, they pass in microseconds and the event loop,
     * free, delivers the answer at once.
     */
    const answer = (id: number, done: Deferred.Deferred<number, AuditWorkerFailed>, turns = pollTurns): Effect.Effect<number, AuditWorkerFailed> =>
      Effect.suspend(() => {
        poll();
        return inFlight.has(id) && turns > 0 ? Effect.zipRight(Effect.yieldNow(), answer(id, done, turns - 1)) : Deferred.await(done);
      });

    const send = (rows: ReadonlyArray<R>): Effect.Effect<Effect.Effect<number, AuditWorkerFailed>> =>
      Effect.map(Deferred.make<number, AuditWorkerFailed>(), (done) => {
        const w = (worker ??= start());
        const message = encode(nextId++, rows, config);
        inFlight.set(message.id, done);
        replies?.ref();
        w.postMessage(message, [message.cells.buffer as ArrayBuffer, message.times.buffer as ArrayBuffer]);
        return answer(message.id, done);
      });

    // Finalizers run in reverse: the logger built on this writer flushes before this runs.
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        const w = worker;
        worker = undefined;
        if (w === undefined) return Effect.void;
        return Effect.async<void>((resume) => {
          w.once("exit", () => resume(Effect.void));
          w.ref();
          // Closes its connection (checkpointing the WAL) after what it already holds.
          w.postMessage({ exit: true });
        }).pipe(
          Effect.timeout("10 seconds"),
          Effect.catchAll(() => Effect.promise(() => w.terminate())),
          Effect.asVoid,
        );
      }),
    );

    return { send };
  });
