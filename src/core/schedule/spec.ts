// A schedule's spec (cron expressions in an IANA time zone, bounds, jitter), validated and
// compiled into a small object that answers "when is the next slot after t?". Pure functions:
// every time is an argument (epoch ms), nothing reads a clock. Slots are searched from
// 1900-01-01 to the end of 9999 (local time); a compiled spec is a few hundred bytes.
//
// Cron: 5 fields (minute hour day-of-month month day-of-week; the second is 0) or 6 (a leading
// seconds field). Grammar and validation come from cron-parser 5.10.6: `*`, `?`, lists, ranges,
// steps, JAN-DEC / SUN-SAT, 0 and 7 = Sunday, `L` in day of month, `wL` (last weekday w of the
// month) and `w#n` (nth weekday w) in day of week, and the macros @yearly @annually @monthly
// @weekly @daily @midnight @hourly (also @minutely @secondly @weekdays @weekends). When both
// day fields are restricted a day matching either one matches. Not supported: `W` (cron-parser
// has none) and `H` (cron-parser draws it at random, so instances would disagree).
//
// Daylight saving (wall-clock times that do not exist or exist twice in the zone):
//
// - Skipped time (spring forward, e.g. 02:00→03:00 in America/New_York): a wall time in the gap
//   fires once, shifted forward by the length of the gap, i.e. read with the offset in effect
//   before the change (JavaScript Temporal's "compatible" disambiguation): 02:30 fires at 03:30
//   EDT; on Australia/Lord_Howe (a 30-minute change, 02:00→02:30) 02:15 fires at 02:45. That is
//   the instant the slot would have had without the change, so it stays in real-time order:
//   for `*/15 * * * *`, `0 * * * *` or `* * * * * *` the shifted slots fall on real slots and
//   fire once there (every 15 real minutes / real hour / real second across the change), and
//   `10 * * * *` on Lord_Howe fires at 01:10, 02:40 (one real hour later), 03:10.
// - Repeated time (fall back, e.g. 02:00→01:00): a wall time that occurs twice fires once, at its
//   first occurrence (`30 1 * * *` fires at 01:30 EDT, not again at 01:30 EST) — unless the
//   expression's hour field is every hour (`*`, `0-23`, `*/1`): such an expression is an
//   interval and fires at every real occurrence, so `*/15 * * * *` keeps firing every 15 real
//   minutes through the repeated hour and `0 * * * *` fires at 01:00 EDT and at 01:00 EST. This is
//   classic cron's rule (fixed-time jobs run once, wildcard-hour jobs follow real time) and what
//   cron-parser does on America/New_York and Europe/London; it does not on Lord_Howe, see below.
// - A zone without daylight saving (UTC, Asia/Tokyo) has neither case.
//
// Why not cron-parser's iterator: probed on 5.10.6, it follows the rules above on
// America/New_York, Europe/London and Europe/Rome (the issue #404 "hasNext false after the gap"
// repro passes), but on Australia/Lord_Howe's 30-minute changes it drops slots: on 2026-10-04
// `15 2 * * *` does not fire at all and `*/15 * * * *` skips the real 02:30 and 02:45; on
// 2026-04-05 `*/15 * * * *` skips the second 01:30 and 01:45, and from 2026-04-04T13:10Z
// `0 2 * * *` throws "loop limit exceeded" (hasNext() false). It also costs 20-900 µs per
// next() here (0.3-0.6 µs below; bench/schedule-spec.ts) and a few KB per expression. So cron-parser parses, and the search here runs on the parsed
// fields (cron.ts) over a per-zone table of offset changes (time-zone.ts).
//
// Jitter: `jitterFor` is deterministic (a hash of schedule id and slot), below `jitterMs` and
// below the gap to the next slot, so a jittered fire never reaches the next nominal time.
import { Data, Either } from "effect";
import { MAX_WALL_MS, nextWall, parseCron, type CronFields } from "./cron.js";
import { TimeZone } from "./time-zone.js";

/** A schedule's spec in domain form (handlers convert from the proto's ScheduleSpec). */
export interface ScheduleSpec {
  /** At least 1, at most 10. */
  readonly cronExpressions: ReadonlyArray<string>;
  /** IANA zone; "" means "UTC". */
  readonly timeZone: string;
  /** Epoch ms, inclusive: no slot before it. */
  readonly startTime?: number | undefined;
  /** Epoch ms, inclusive: no slot after it. */
  readonly endTime?: number | undefined;
  /** ≥ 0, at most one hour. */
  readonly jitterMs?: number | undefined;
}

export class InvalidScheduleSpec extends Data.TaggedError("InvalidScheduleSpec")<{
  /** Proto path of the offending field, e.g. "spec.cron_expressions[1]". */
  readonly field: string;
  readonly reason: string;
}> {
  override get message() {
    return `${this.field}: ${this.reason}`;
  }
}

export interface CompiledSpec {
  /** The spec as given, with the time zone defaulted ("" → "UTC"). */
  readonly spec: ScheduleSpec;
  /**
   * The first nominal fire time strictly after `afterMs` (epoch ms), within start/end; undefined
   * when none is left. Union over all expressions, duplicates (same instant) once.
   */
  next(afterMs: number): number | undefined;
  /** Nominal times t with fromMs <= t <= toMs (inclusive), ascending, at most `max`. */
  between(fromMs: number, toMs: number, max: number): { readonly times: ReadonlyArray<number>; readonly truncated: boolean };
}

export const MAX_CRON_EXPRESSIONS = 10;
export const MAX_CRON_EXPRESSION_LENGTH = 256;
export const MAX_JITTER_MS = 3_600_000;

/** Earliest instant searched: 1900-01-01 (offsets before standard time are not meaningful). */
const MIN_MS = Date.UTC(1900, 0, 1);
/** 400 Gregorian years: the calendar's full period. */
const CALENDAR_PERIOD_MS = 146_097 * 86_400_000;

/** The first instant > `after` at which `f` fires in `zone`, under the daylight-saving policy above. */
const nextInstant = (f: CronFields, zone: TimeZone, after: number): number | undefined => {
  let cur = Math.max(Math.floor(after), MIN_MS - 1);
  for (;;) {
    const from = cur + 1;
    const seg = zone.segmentAt(from);
    const o = seg.offset;
    const p = seg.previousOffset;
    let best: number | undefined;
    // Slots read with this segment's offset. After a backward change, the wall times in
    // [start + o, start + p) are the second occurrence: only interval expressions fire there.
    let lo = Math.max(from, seg.start);
    if (p > o && !f.allHours) lo = Math.max(lo, seg.start + (p - o));
    const w = nextWall(f, lo + o, Math.min(MAX_WALL_MS, seg.end - 1 + o));
    if (w !== undefined) best = w - o;
    // After a forward change, wall times in [start + p, start + o) do not exist: they fire read
    // with the previous offset, i.e. shifted forward by the gap, into [start, start + o - p).
    if (p < o && from < seg.start + (o - p)) {
      const g = nextWall(f, Math.max(from, seg.start) + p, seg.start + o - 1);
      if (g !== undefined && g - p < seg.end && (best === undefined || g - p < best)) best = g - p;
    }
    if (best !== undefined) return best;
    if (seg.end - 1 + o >= MAX_WALL_MS) return undefined;
    cur = seg.end - 1;
  }
};

class Compiled implements CompiledSpec {
  constructor(
    readonly spec: ScheduleSpec,
    private readonly zone: TimeZone,
    private readonly crons: ReadonlyArray<CronFields>,
  ) {}

  next(afterMs: number): number | undefined {
    if (Number.isNaN(afterMs) || afterMs === Infinity) return undefined;
    const start = this.spec.startTime;
    const after = start !== undefined && afterMs < start ? start - 1 : afterMs;
    let best: number | undefined;
    for (const f of this.crons) {
      const t = nextInstant(f, this.zone, after);
      if (t !== undefined && (best === undefined || t < best)) best = t;
    }
    const end = this.spec.endTime;
    return best !== undefined && end !== undefined && best > end ? undefined : best;
  }

  between(fromMs: number, toMs: number, max: number) {
    const times: Array<number> = [];
    let t = this.next(fromMs - 1);
    while (t !== undefined && t <= toMs) {
      if (times.length >= max) return { times, truncated: true };
      times.push(t);
      t = this.next(t);
    }
    return { times, truncated: false };
  }
}

const invalid = (field: string, reason: string) => Either.left(new InvalidScheduleSpec({ field, reason }));

/** Validates a spec and compiles it; an invalid spec names the offending field. */
export const compileSpec = (spec: ScheduleSpec): Either.Either<CompiledSpec, InvalidScheduleSpec> => {
  const exprs = spec.cronExpressions;
  if (exprs.length === 0) return invalid("spec.cron_expressions", "at least one cron expression is required");
  if (exprs.length > MAX_CRON_EXPRESSIONS) {
    return invalid("spec.cron_expressions", `at most ${MAX_CRON_EXPRESSIONS} cron expressions are allowed, got ${exprs.length}`);
  }
  const crons: Array<CronFields> = [];
  for (let i = 0; i < exprs.length; i++) {
    const field = `spec.cron_expressions[${i}]`;
    const raw = exprs[i]!;
    if (raw.length > MAX_CRON_EXPRESSION_LENGTH) return invalid(field, `longer than ${MAX_CRON_EXPRESSION_LENGTH} characters`);
    const text = raw.trim();
    if (text === "") return invalid(field, "empty cron expression");
    const parsed = parseCron(text);
    if (!parsed.ok) return invalid(field, `invalid cron expression "${text}": ${parsed.reason}`);
    // The calendar repeats every 400 years: no match in a full period means never.
    const probe = Date.UTC(2000, 0, 1);
    if (nextWall(parsed.fields, probe, probe + CALENDAR_PERIOD_MS) === undefined) {
      return invalid(field, `cron expression "${text}" never fires (no date matches it)`);
    }
    crons.push(parsed.fields);
  }
  const zoneName = spec.timeZone === "" ? "UTC" : spec.timeZone;
  const zone = TimeZone.get(zoneName);
  if (zone === undefined) return invalid("spec.time_zone", `unknown time zone "${zoneName.slice(0, 100)}"`);
  const { startTime, endTime, jitterMs } = spec;
  if (startTime !== undefined && !Number.isFinite(startTime)) return invalid("spec.start_time", "not a valid time");
  if (endTime !== undefined && !Number.isFinite(endTime)) return invalid("spec.end_time", "not a valid time");
  if (startTime !== undefined && endTime !== undefined && endTime <= startTime) {
    return invalid("spec.end_time", "must be after start_time");
  }
  if (jitterMs !== undefined) {
    if (!Number.isFinite(jitterMs) || jitterMs < 0) return invalid("spec.jitter", "must not be negative");
    if (jitterMs > MAX_JITTER_MS) return invalid("spec.jitter", "must be at most 1 hour");
  }
  return Either.right(new Compiled({ ...spec, timeZone: zoneName }, zone, crons));
};

/** cyrb53 (public domain): a fast 53-bit string hash with good mixing. */
const hash53 = (s: string): number => {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
};

/**
 * Deterministic jitter for one slot, in whole ms: 0 ≤ j < jitterMs, and j < nextNominal - nominal
 * when there is a next nominal time, so a jittered fire never reaches the next nominal time.
 * Same inputs → same output (a hash of scheduleId and nominal), so every instance agrees.
 */
export const jitterFor = (scheduleId: string, nominalMs: number, jitterMs: number, nextNominalMs: number | undefined): number => {
  const bound = nextNominalMs === undefined ? jitterMs : Math.min(jitterMs, nextNominalMs - nominalMs);
  if (!(bound > 0)) return 0;
  const fraction = hash53(`${scheduleId}\u0000${nominalMs}`) / 2 ** 53;
  return Math.min(Math.floor(fraction * bound), Math.ceil(bound) - 1);
};
