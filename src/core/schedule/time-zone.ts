/**
 * UTC offsets and offset changes of an IANA time zone, read from `Intl` (the tz database that
 * ships with Node's ICU) and cached per zone, never per schedule: 100,000 schedules in
 * `Europe/Paris` share one table.
 *
 * The table is built lazily in fixed chunks of time: each chunk samples the offset every few
 * hours and bisects every change down to the second (tz database changes happen on whole
 * seconds). After that an offset lookup is a short array search, with no `Intl` call.
 */

/** One stretch of time with a single UTC offset, as seen from an instant inside it. */
export interface ZoneSegment {
  /** The change that started this offset, or the start of the horizon searched (then `previousOffset === offset`). */
  readonly start: number;
  /** The next change, or the end of the horizon searched, exclusive. */
  readonly end: number;
  /** Local wall time minus UTC, in ms, in this segment. */
  readonly offset: number;
  /** The offset just before `start` (equal to `offset` when `start` is not a change). */
  readonly previousOffset: number;
}

interface Chunk {
  /** Offset in effect at the start of the chunk. */
  readonly startOffset: number;
  /** Instants (ms) where the offset changes in (chunk start, chunk end], ascending. */
  readonly at: ReadonlyArray<number>;
  /** The offset from `at[i]` on. */
  readonly offsets: ReadonlyArray<number>;
}

/** 2^33 ms ≈ 99.4 days. */
const CHUNK_MS = 2 ** 33;
/** Sampling step inside a chunk: two changes closer than this are not told apart. */
const SAMPLE_MS = 6 * 3_600_000;
/** How many chunks to look back / ahead for a change before giving up (≈ 2 years). */
const SEARCH_CHUNKS = 8;

const daysFromCivil = (y: number, m: number, d: number): number => {
  // Howard Hinnant's days_from_civil: proleptic Gregorian, any year.
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
};

export class TimeZone {
  readonly #format: Intl.DateTimeFormat;
  readonly #chunks = new Map<number, Chunk>();
  /** The segment found last: consecutive calls of one schedule mostly land in it again. */
  #lastSegment: ZoneSegment = { start: 0, end: 0, offset: 0, previousOffset: 0 };

  private constructor(readonly name: string) {
    this.#format = new Intl.DateTimeFormat("en-US", {
      timeZone: name,
      hourCycle: "h23",
      era: "short",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
  }

  static readonly #zones = new Map<string, TimeZone>();

  /** The zone named `name` (shared), or undefined when `Intl` does not know it. */
  static get(name: string): TimeZone | undefined {
    const cached = TimeZone.#zones.get(name);
    if (cached !== undefined) return cached;
    let zone: TimeZone;
    try {
      zone = new TimeZone(name);
    } catch {
      return undefined;
    }
    TimeZone.#zones.set(name, zone);
    return zone;
  }

  /** Offset straight from Intl (slow; used to build the tables). */
  #rawOffset(t: number): number {
    const s = Math.floor(t / 1000) * 1000;
    let y = 0, mo = 0, d = 0, h = 0, mi = 0, se = 0, bc = false;
    for (const p of this.#format.formatToParts(s)) {
      switch (p.type) {
        case "year": y = Number(p.value); break;
        case "month": mo = Number(p.value); break;
        case "day": d = Number(p.value); break;
        case "hour": h = Number(p.value); break;
        case "minute": mi = Number(p.value); break;
        case "second": se = Number(p.value); break;
        case "era": bc = p.value.startsWith("B"); break;
      }
    }
    if (bc) y = 1 - y;
    const local = daysFromCivil(y, mo, d) * 86_400_000 + ((h * 60 + mi) * 60 + se) * 1000;
    return local - s;
  }

  #chunk(index: number): Chunk {
    const cached = this.#chunks.get(index);
    if (cached !== undefined) return cached;
    const from = index * CHUNK_MS;
    const to = from + CHUNK_MS;
    const startOffset = this.#rawOffset(from);
    const at: Array<number> = [];
    const offsets: Array<number> = [];
    let prevT = from;
    let prevOffset = startOffset;
    for (let t = from + SAMPLE_MS; ; t += SAMPLE_MS) {
      const sampleT = Math.min(t, to);
      const o = this.#rawOffset(sampleT);
      if (o !== prevOffset) {
        // Bisect on whole seconds: the change is in (prevT, sampleT].
        let lo = Math.floor(prevT / 1000);
        let hi = Math.floor(sampleT / 1000);
        while (hi - lo > 1) {
          const mid = Math.floor((lo + hi) / 2);
          if (this.#rawOffset(mid * 1000) === prevOffset) lo = mid;
          else hi = mid;
        }
        at.push(hi * 1000);
        offsets.push(o);
        prevOffset = o;
      }
      prevT = sampleT;
      if (sampleT >= to) break;
    }
    const chunk: Chunk = { startOffset, at, offsets };
    this.#chunks.set(index, chunk);
    return chunk;
  }

  /** Local wall time minus UTC at instant `t` (ms). */
  offsetAt(t: number): number {
    const c = this.#chunk(Math.floor(t / CHUNK_MS));
    let o = c.startOffset;
    for (let i = 0; i < c.at.length && c.at[i]! <= t; i++) o = c.offsets[i]!;
    return o;
  }

  /** The segment of constant offset that contains instant `t`. */
  segmentAt(t: number): ZoneSegment {
    const last = this.#lastSegment;
    if (t >= last.start && t < last.end) return last;
    const index = Math.floor(t / CHUNK_MS);
    // The last change at or before t.
    let start = (index - SEARCH_CHUNKS) * CHUNK_MS;
    let offset = 0;
    let previousOffset = 0;
    let found = false;
    for (let k = 0; k <= SEARCH_CHUNKS && !found; k++) {
      const c = this.#chunk(index - k);
      for (let i = c.at.length - 1; i >= 0; i--) {
        if (c.at[i]! <= t) {
          start = c.at[i]!;
          offset = c.offsets[i]!;
          previousOffset = i > 0 ? c.offsets[i - 1]! : c.startOffset;
          found = true;
          break;
        }
      }
    }
    if (!found) {
      offset = this.offsetAt(t);
      previousOffset = offset;
    }
    // The first change after t.
    let end = (index + SEARCH_CHUNKS + 1) * CHUNK_MS;
    outer: for (let k = 0; k <= SEARCH_CHUNKS; k++) {
      const c = this.#chunk(index + k);
      for (let i = 0; i < c.at.length; i++) {
        if (c.at[i]! > t) {
          end = c.at[i]!;
          break outer;
        }
      }
    }
    const segment = { start, end, offset, previousOffset };
    this.#lastSegment = segment;
    return segment;
  }
}

export { daysFromCivil };
