/**
 * One cron expression, parsed by cron-parser and kept as a handful of bit masks, and the search
 * for its next matching *wall-clock* time. Wall-clock times are "naive" ms: the local calendar
 * date and time read as if they were UTC (2026-03-08 02:30 local is Date.UTC(2026, 2, 8, 2, 30)).
 * Turning them into instants, with the daylight-saving policy, is spec.ts's job.
 *
 * cron-parser does the grammar (fields, ranges, steps, names, macros, L and #, its validation
 * and error messages); its iterator is not used: it walks luxon dates step by step (~60 µs per
 * call here), holds a few KB per expression, and misplaces fires around some daylight-saving
 * changes (see spec.ts). The masks below are ~150 bytes and a search is a few bit operations.
 */
import { CronExpressionParser } from "cron-parser";
import { daysFromCivil } from "./time-zone.js";

export interface CronFields {
  /** Seconds 0-29 (bit n = second n) and 30-59 (bit n = second 30 + n). */
  readonly secLo: number;
  readonly secHi: number;
  readonly minLo: number;
  readonly minHi: number;
  /** Bit h = hour h (0-23). */
  readonly hours: number;
  /** Bit d = day of month d (1-31). */
  readonly dom: number;
  /** `L` in day of month: the last day. */
  readonly domLast: boolean;
  /** Day of month unrestricted (`*` or `?`). */
  readonly domStar: boolean;
  /** Bit m = month m (1-12). */
  readonly months: number;
  /** Bit w = weekday w (0 = Sunday). */
  readonly dow: number;
  /** `wL`: bit w = the last weekday w of the month. */
  readonly dowLast: number;
  /** `w#n`: n (1-5) applies to every weekday in `dow`; 0 = none. */
  readonly dowNth: number;
  readonly dowStar: boolean;
  /** Every hour matches: the expression is an interval (every N minutes/seconds, hourly). */
  readonly allHours: boolean;
}

export const MACROS: ReadonlySet<string> = new Set([
  "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly",
  "@minutely", "@secondly", "@weekdays", "@weekends",
]);

export type ParseResult = { readonly ok: true; readonly fields: CronFields } | { readonly ok: false; readonly reason: string };

const clip = (s: string, n = 200): string => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

const mask = (values: ReadonlyArray<number | string>, shift = 0): number => {
  let m = 0;
  for (const v of values) if (typeof v === "number") m |= 1 << (v - shift);
  return m;
};

/**
 * Parsed expressions by text, shared: many schedules use the same few expressions, and a parse
 * through cron-parser costs ~25 µs. First in, first out beyond the cap (entries still used by
 * compiled specs stay alive through them).
 */
const parsed = new Map<string, ParseResult>();
const PARSED_CAP = 10_000;

/** Parses one expression (already trimmed, non-empty). */
export const parseCron = (expression: string): ParseResult => {
  const cached = parsed.get(expression);
  if (cached !== undefined) return cached;
  const result = parseUncached(expression);
  if (parsed.size >= PARSED_CAP) parsed.delete(parsed.keys().next().value!);
  parsed.set(expression, result);
  return result;
};

const parseUncached = (expression: string): ParseResult => {
  let text = expression;
  if (text.startsWith("@")) {
    const macro = text.toLowerCase();
    if (!MACROS.has(macro)) return { ok: false, reason: clip(`unknown macro "${text}"`) };
    // cron-parser spells @midnight as @daily.
    text = macro === "@midnight" ? "@daily" : macro;
  } else {
    const parts = text.split(/\s+/);
    if (parts.length !== 5 && parts.length !== 6) {
      return { ok: false, reason: `expected 5 fields (minute hour day-of-month month day-of-week) or 6 (with seconds first), got ${parts.length}` };
    }
    // cron-parser's H picks a random value unless seeded: every instance would fire at a different time.
    if (parts.some((f) => /(^|[^a-z])h($|[^a-z])/i.test(f))) return { ok: false, reason: "H (hashed values) is not supported" };
    if (parts.some((f) => /w/i.test(f.replace(/wed/gi, "")))) return { ok: false, reason: "W (nearest weekday) is not supported" };
  }
  let fields;
  try {
    fields = CronExpressionParser.parse(text, { tz: "UTC", currentDate: 0 }).fields;
  } catch (e) {
    return { ok: false, reason: clip(e instanceof Error ? e.message : String(e)) };
  }
  const sec = fields.second.values as ReadonlyArray<number>;
  const min = fields.minute.values as ReadonlyArray<number>;
  let dow = 0;
  let dowLast = 0;
  for (const v of fields.dayOfWeek.values as ReadonlyArray<number | string>) {
    if (typeof v === "number") dow |= 1 << (v % 7);
    else if (/^[0-7]L$/.test(v)) dowLast |= 1 << (Number(v[0]) % 7);
    else return { ok: false, reason: clip(`unsupported day-of-week value "${v}"`) };
  }
  for (const v of fields.dayOfMonth.values as ReadonlyArray<number | string>) {
    if (typeof v !== "number" && v !== "L") return { ok: false, reason: clip(`unsupported day-of-month value "${v}"`) };
  }
  const hours = mask(fields.hour.values as ReadonlyArray<number>);
  return {
    ok: true,
    fields: {
      secLo: mask(sec.filter((s) => s < 30)),
      secHi: mask(sec.filter((s) => s >= 30), 30),
      minLo: mask(min.filter((s) => s < 30)),
      minHi: mask(min.filter((s) => s >= 30), 30),
      hours,
      dom: mask(fields.dayOfMonth.values as ReadonlyArray<number | string>),
      domLast: fields.dayOfMonth.hasLastChar,
      domStar: fields.dayOfMonth.isWildcard,
      months: mask(fields.month.values as ReadonlyArray<number>),
      dow,
      dowLast,
      dowNth: fields.dayOfWeek.nthDay,
      dowStar: fields.dayOfWeek.isWildcard,
      allHours: hours === 0xffffff,
    },
  };
};

/** Lowest set bit of `m` at position ≥ `from` (0-31), or -1. */
const nextBit = (m: number, from: number): number => {
  if (from > 31) return -1;
  const x = from <= 0 ? m : m & ~((1 << from) - 1);
  if (x === 0) return -1;
  return 31 - Math.clz32(x & -x);
};

/** Lowest value ≥ `from` in a 60-value set split in two 30-bit masks, or -1. */
const next60 = (lo: number, hi: number, from: number): number => {
  if (from < 30) {
    const b = nextBit(lo, from);
    if (b >= 0) return b;
    const c = nextBit(hi, 0);
    return c >= 0 ? c + 30 : -1;
  }
  const c = nextBit(hi, from - 30);
  return c >= 0 ? c + 30 : -1;
};

const daysInMonth = (y: number, m: number): number =>
  m === 2 ? ((y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28) : m === 4 || m === 6 || m === 9 || m === 11 ? 30 : 31;

/** Bit d set for every day d of month (y, m) that the day fields match (cron-parser's rules). */
const dayMask = (f: CronFields, y: number, m: number): number => {
  const dim = daysInMonth(y, m);
  const all = (2 ** (dim + 1) - 2) | 0; // bits 1..dim
  const domBits = (f.dom & all) | (f.domLast ? 1 << dim : 0);
  if (f.dowStar) return domBits; // a wildcard day of month matches every day
  // Weekday of the 1st: days since 1970-01-01 (a Thursday).
  const wd1 = (((daysFromCivil(y, m, 1) + 4) % 7) + 7) % 7;
  let dowBits = 0;
  for (let w = 0; w < 7; w++) {
    const plain = (f.dow >> w) & 1;
    const last = (f.dowLast >> w) & 1;
    if (plain === 0 && last === 0) continue;
    const first = 1 + ((w - wd1 + 7) % 7);
    if (plain === 1) {
      if (f.dowNth > 0) {
        const d = first + 7 * (f.dowNth - 1);
        if (d <= dim) dowBits |= 1 << d;
      } else {
        for (let d = first; d <= dim; d += 7) dowBits |= 1 << d;
      }
    }
    if (last === 1) dowBits |= 1 << (first + 7 * Math.floor((dim - first) / 7));
  }
  return f.domStar ? dowBits : domBits | dowBits;
};

/** Seconds into the day of the first matching time at or after `sod` seconds, or -1. */
const nextTimeOfDay = (f: CronFields, sod: number): number => {
  let h = Math.floor(sod / 3600);
  let mi = Math.floor((sod % 3600) / 60);
  let s = sod % 60;
  for (;;) {
    const hh = nextBit(f.hours, h);
    if (hh < 0) return -1;
    if (hh > h) {
      h = hh;
      mi = 0;
      s = 0;
    }
    const mm = next60(f.minLo, f.minHi, mi);
    if (mm < 0) {
      h += 1;
      mi = 0;
      s = 0;
      continue;
    }
    if (mm > mi) {
      mi = mm;
      s = 0;
    }
    const ss = next60(f.secLo, f.secHi, s);
    if (ss < 0) {
      mi += 1;
      s = 0;
      if (mi === 60) {
        h += 1;
        mi = 0;
      }
      continue;
    }
    return h * 3600 + mi * 60 + ss;
  }
};

/** Latest wall time searched: the end of year 9999. */
export const MAX_WALL_MS = Date.UTC(9999, 11, 31, 23, 59, 59);

/**
 * The first wall-clock time at or after `wallMs` that the fields match, or undefined when none
 * comes before `limitMs` (the Gregorian calendar repeats every 400 years, so a search over 400
 * years that finds nothing proves the expression never fires).
 */
export const nextWall = (f: CronFields, wallMs: number, limitMs: number = MAX_WALL_MS): number | undefined => {
  let days = Math.floor(wallMs / 86_400_000);
  let sod = Math.ceil((wallMs - days * 86_400_000) / 1000);
  if (sod >= 86_400) {
    days += 1;
    sod = 0;
  }
  // civil_from_days (Howard Hinnant)
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  let d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  let m = mp < 10 ? mp + 3 : mp - 9;
  let y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  const limitYear = new Date(limitMs).getUTCFullYear();
  while (y <= limitYear) {
    if (((f.months >> m) & 1) === 0) {
      m += 1;
      if (m > 12) {
        m = 1;
        y += 1;
      }
      d = 1;
      sod = 0;
      continue;
    }
    const days = dayMask(f, y, m);
    for (let day = nextBit(days, d); day >= 0; day = nextBit(days, day + 1)) {
      if (day > d) sod = 0;
      const t = nextTimeOfDay(f, sod);
      if (t >= 0) {
        const result = daysFromCivil(y, m, day) * 86_400_000 + t * 1000;
        return result <= limitMs ? result : undefined;
      }
      d = day + 1;
      sod = 0;
    }
    m += 1;
    if (m > 12) {
      m = 1;
      y += 1;
    }
    d = 1;
    sod = 0;
  }
  return undefined;
};
