/**
 * Rolling windows for token budgets and model limits: sub-window buckets.
 *
 * A window of W ms is cut into buckets of w = ceil(W / 60) ms; a counter keeps one number per
 * bucket (the tokens, or requests, charged while it was current) and their sum. Bucket i holds
 * what was charged in [i·w, (i+1)·w) and still counts while the current bucket j = floor(now / w)
 * is at most i + K, with K = ceil(W / w) (K = 60 when 60 divides W), so it rolls out at
 * (i + K + 1)·w.
 *
 * Why buckets and not a sliding log of every charge: a log is exact to the millisecond but holds
 * one entry per execution per budget (a tenant's 30-day budget would hold millions), and every
 * decision would have to sum or maintain them — in one Lua script, in Redis. Buckets cost at
 * most K + 1 numbers per counter, whatever the traffic, so a decision is O(61) per budget.
 *
 * The exactness trade-off, and which way it errs: admission is exact (check-and-charge is one
 * atomic step against the exact sum of live buckets, so a budget of N admits exactly N under any
 * concurrency), but time is quantized to w. The quantization is conservative: a charge made at t
 * counts for at least W (through t + W) and at most W + w (e.g. 1 s late for a 1-minute window,
 * 24 min for a day, 12 h for 30 days; W + 2w when 60 does not divide W) — never less. So the
 * tokens charged in ANY interval of length W never exceed the limit; the cost is that capacity
 * comes back up to W / 60 later than a sliding log would give it back.
 *
 * The same arithmetic runs in memory (RollingCounter) and in Redis (the Lua script in
 * src/ports/redis/TokenLedgerRedis.ts, line by line).
 */

/** Buckets per window (the resolution of a rolling window). */
export const bucketsPerWindow = 60;

export interface WindowGeometry {
  /** Bucket width, ms. */
  readonly width: number;
  /** A bucket counts while the current one is at most this many buckets later. */
  readonly span: number;
}

export const geometry = (windowMs: number): WindowGeometry => {
  const width = Math.max(1, Math.ceil(windowMs / bucketsPerWindow));
  return { width, span: Math.ceil(windowMs / width) };
};

/** The tokens (or requests) charged to one budget, per bucket, in this process's memory. */
export class RollingCounter {
  /** [bucket index, amount], ascending by index. */
  private readonly buckets: Array<[number, number]> = [];
  private total = 0;
  readonly width: number;
  readonly span: number;

  constructor(windowMs: number) {
    const g = geometry(windowMs);
    this.width = g.width;
    this.span = g.span;
  }

  /** Drops buckets that rolled out at `now`; returns what is still charged. */
  used(now: number): number {
    const oldest = Math.floor(now / this.width) - this.span;
    let drop = 0;
    while (drop < this.buckets.length && this.buckets[drop]![0] < oldest) {
      this.total -= this.buckets[drop]![1];
      drop++;
    }
    if (drop > 0) this.buckets.splice(0, drop);
    return this.total;
  }

  /** True when nothing is charged any more (the counter can be forgotten). */
  empty(now: number): boolean {
    // Buckets hold positive amounts only (a bucket refunded to 0 is removed).
    return this.used(now) === 0;
  }

  /** Adds `amount` to the current bucket. */
  charge(now: number, amount: number): void {
    if (amount <= 0) return;
    this.used(now);
    const i = Math.floor(now / this.width);
    const last = this.buckets.at(-1);
    if (last !== undefined && last[0] === i) last[1] += amount;
    else this.buckets.push([i, amount]);
    this.total += amount;
  }

  /**
   * Takes back up to `amount` from the bucket that was current at `at` (a reservation's time).
   * Nothing when that bucket has rolled out: its tokens already stopped counting.
   */
  refund(now: number, at: number, amount: number): void {
    if (amount <= 0) return;
    this.used(now);
    const i = Math.floor(at / this.width);
    for (let k = this.buckets.length - 1; k >= 0; k--) {
      const b = this.buckets[k]!;
      if (b[0] < i) return;
      if (b[0] === i) {
        const taken = Math.min(amount, b[1]);
        b[1] -= taken;
        this.total -= taken;
        if (b[1] === 0) this.buckets.splice(k, 1);
        return;
      }
    }
  }

  /**
   * How long from `now` until `need` more fits under `limit`: the time at which enough buckets
   * will have rolled out. When `need` exceeds the limit it never fits; then the time until
   * everything charged now has rolled out (or a whole window when nothing is).
   */
  retryAfter(now: number, limit: number, need: number): number {
    const toFree = this.used(now) + need - limit;
    if (toFree <= 0) return 0;
    let freed = 0;
    for (const [i, n] of this.buckets) {
      freed += n;
      if (freed >= toFree) return (i + this.span + 1) * this.width - now;
    }
    const last = this.buckets.at(-1);
    return last === undefined ? this.span * this.width : (last[0] + this.span + 1) * this.width - now;
  }
}
