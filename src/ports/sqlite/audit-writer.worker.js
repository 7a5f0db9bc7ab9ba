// The audit log's SQLite writer thread (started by audit-writer.ts, which documents the protocol).
//
// Plain JavaScript on purpose: a worker runs outside the loader that compiles the TypeScript
// sources (tsx registered in-process by the CLI, or vitest), and needs nothing but the driver.
// It knows no SQL of its own: the statements come from the main thread in workerData.
import { parentPort, workerData } from "node:worker_threads";
import Database from "better-sqlite3";

/** @type {{ filename: string, pragmas: string[], bumpSql: string, insertSql: string, columns: number, replies: MessagePort, answered: Int32Array }} */
const config = workerData;
const { replies, answered } = config;
/** Answers go on their own port, counted in shared memory so the main thread can poll for them. */
const answer = (message) => {
  replies.postMessage(message);
  Atomics.add(answered, 0, 1);
};
const db = new Database(config.filename);
for (const p of config.pragmas) db.pragma(p);
const bump = db.prepare(config.bumpSql);
const insert = db.prepare(config.insertSql);
const width = config.columns;

/**
 * One batch, one transaction (BEGIN IMMEDIATE: the write lock first, waiting busy_timeout for
 * it, so the counter bump can never meet a newer snapshot). Columns arrive dictionary-encoded:
 * `cells[r * width + c]` indexes `strings` (-1 = NULL); `times[r]` is column 0.
 */
const write = db.transaction((/** @type {{ n: number, strings: string[], cells: Int32Array, times: Float64Array }} */ m) => {
  const last = Number(bump.get(m.n).last_sequence);
  const first = last - m.n + 1;
  const { strings: s, cells: c, times } = m;
  const v = (k) => (k < 0 ? null : s[k]);
  for (let r = 0, q = 0; r < m.n; r++, q += width) {
    insert.run(first + r, times[r], v(c[q]), v(c[q + 1]), v(c[q + 2]), v(c[q + 3]), v(c[q + 4]), v(c[q + 5]), v(c[q + 6]), v(c[q + 7]), v(c[q + 8]), v(c[q + 9]), v(c[q + 10]));
  }
  return first;
});

parentPort.on("message", (m) => {
  if (m.exit === true) {
    db.close();
    process.exit(0);
  }
  try {
    answer({ id: m.id, first: write.immediate(m) });
  } catch (e) {
    answer({ id: m.id, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
  }
});
