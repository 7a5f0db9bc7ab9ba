/**
 * Daylight saving in schedule specs (policy at the top of src/core/schedule/spec.ts):
 * - a skipped wall time fires once, shifted forward by the gap;
 * - a repeated wall time fires once, at its first occurrence, unless the hour field is every
 *   hour (an interval), which fires at every real occurrence;
 * on America/New_York, Europe/London, Australia/Lord_Howe (30-minute changes), Europe/Rome
 * (cron-parser issue #404), and zones without daylight saving (UTC, Asia/Tokyo). Also the
 * per-zone offset table, whole-year properties, next() from any instant, and the cron-parser
 * 5.10.6 behaviour the module works around.
 */
import { CronExpressionParser } from "cron-parser";
import { Either } from "effect";
import { describe, expect, it } from "vitest";
import { compileSpec, type CompiledSpec } from "../../src/core/schedule/spec.js";
import { TimeZone } from "../../src/core/schedule/time-zone.js";

const H = 3_600_000;
const M = 60_000;
const compile = (expr: string | ReadonlyArray<string>, timeZone: string): CompiledSpec => {
  const r = compileSpec({ cronExpressions: typeof expr === "string" ? [expr] : expr, timeZone });
  if (Either.isLeft(r)) throw new Error(r.left.message);
  return r.right;
};
const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
/** Fires in [from, to] as ISO instants. */
const fires = (expr: string | ReadonlyArray<string>, timeZone: string, from: string, to: string): Array<string | undefined> =>
  compile(expr, timeZone).between(Date.parse(from), Date.parse(to), 10_000).times.map(iso);
/** Local wall time of an instant, "YYYY-MM-DD HH:MM:SS±offset" style, for readable failures. */
const local = (ms: number, timeZone: string) =>
  new Intl.DateTimeFormat("sv-SE", { timeZone, dateStyle: "short", timeStyle: "medium" }).format(ms);

describe("the per-zone offset table", () => {
  it("finds each 2026 change to the second, with the offsets on both sides", () => {
    const cases: Array<[string, string, number, number]> = [
      ["America/New_York", "2026-03-08T07:00:00Z", -5 * H, -4 * H],
      ["America/New_York", "2026-11-01T06:00:00Z", -4 * H, -5 * H],
      ["Europe/London", "2026-03-29T01:00:00Z", 0, H],
      ["Europe/London", "2026-10-25T01:00:00Z", H, 0],
      ["Australia/Lord_Howe", "2026-04-04T15:00:00Z", 11 * H, 10.5 * H],
      ["Australia/Lord_Howe", "2026-10-03T15:30:00Z", 10.5 * H, 11 * H],
      ["Europe/Rome", "2026-03-29T01:00:00Z", H, 2 * H],
      ["Europe/Rome", "2026-10-25T01:00:00Z", 2 * H, H],
    ];
    for (const [name, change, before, after] of cases) {
      const zone = TimeZone.get(name)!;
      const t = Date.parse(change);
      expect({ name, offsets: [zone.offsetAt(t - 1000), zone.offsetAt(t - 1), zone.offsetAt(t), zone.offsetAt(t + 1000)] }).toEqual({
        name,
        offsets: [before, before, after, after],
      });
      const seg = zone.segmentAt(t);
      expect({ name, start: iso(seg.start), offset: seg.offset, previousOffset: seg.previousOffset }).toEqual({
        name,
        start: iso(t),
        offset: after,
        previousOffset: before,
      });
      expect(zone.segmentAt(t - 1).end).toBe(t);
    }
  });

  it("zones without daylight saving have one offset all year; unknown zones are refused", () => {
    for (const [name, offset] of [["UTC", 0], ["Asia/Tokyo", 9 * H], ["Asia/Kolkata", 5.5 * H]] as const) {
      const zone = TimeZone.get(name)!;
      for (let t = Date.UTC(2026, 0, 1); t < Date.UTC(2027, 0, 1); t += 86_400_000) expect(zone.offsetAt(t)).toBe(offset);
      const seg = zone.segmentAt(Date.UTC(2026, 5, 1));
      expect(seg.previousOffset).toBe(seg.offset);
    }
    expect(TimeZone.get("Nowhere/Special")).toBeUndefined();
    expect(TimeZone.get("UTC")).toBe(TimeZone.get("UTC")); // one table per zone, shared
  });

  it("reads historical offsets with seconds (local mean time)", () => {
    // Monrovia kept -00:44:30 until 1972.
    expect(TimeZone.get("Africa/Monrovia")!.offsetAt(Date.UTC(1960, 0, 1))).toBe(-(44 * 60 + 30) * 1000);
    // and a daily 09:00 there fires on the half minute in UTC
    expect(iso(compile("0 9 * * *", "Africa/Monrovia").next(Date.UTC(1960, 0, 1)))).toBe("1960-01-01T09:44:30.000Z");
  });
});

describe("America/New_York (spring 2026-03-08 02:00→03:00, fall 2026-11-01 02:00→01:00)", () => {
  const tz = "America/New_York";

  it("spring: a skipped 02:30 fires once at 03:30 EDT; 02:00 at 03:00", () => {
    expect(fires("30 2 * * *", tz, "2026-03-07T00:00:00Z", "2026-03-10T00:00:00Z")).toEqual([
      "2026-03-07T07:30:00.000Z", // 02:30 EST
      "2026-03-08T07:30:00.000Z", // 03:30 EDT (02:30 does not exist)
      "2026-03-09T06:30:00.000Z", // 02:30 EDT
    ]);
    expect(fires("0 2 * * *", tz, "2026-03-08T00:00:00Z", "2026-03-09T00:00:00Z")).toEqual(["2026-03-08T07:00:00.000Z"]);
    // 02:00 shifted and the real 03:00 are the same instant: once
    expect(fires("0 2,3 * * *", tz, "2026-03-08T00:00:00Z", "2026-03-09T00:00:00Z")).toEqual(["2026-03-08T07:00:00.000Z"]);
    expect(fires(["30 2 * * *", "30 3 * * *"], tz, "2026-03-08T00:00:00Z", "2026-03-09T00:00:00Z")).toEqual(["2026-03-08T07:30:00.000Z"]);
  });

  it("spring: hourly, every 15 minutes and every second keep real time", () => {
    expect(fires("0 * * * *", tz, "2026-03-08T05:00:00Z", "2026-03-08T08:00:00Z")).toEqual([
      "2026-03-08T05:00:00.000Z", // 00:00 EST
      "2026-03-08T06:00:00.000Z", // 01:00 EST
      "2026-03-08T07:00:00.000Z", // 03:00 EDT
      "2026-03-08T08:00:00.000Z", // 04:00 EDT
    ]);
    expect(fires("*/15 * * * *", tz, "2026-03-08T06:30:00Z", "2026-03-08T07:30:00Z")).toEqual([
      "2026-03-08T06:30:00.000Z",
      "2026-03-08T06:45:00.000Z",
      "2026-03-08T07:00:00.000Z",
      "2026-03-08T07:15:00.000Z",
      "2026-03-08T07:30:00.000Z",
    ]);
    expect(fires("* * * * * *", tz, "2026-03-08T06:59:58Z", "2026-03-08T07:00:01Z")).toEqual([
      "2026-03-08T06:59:58.000Z",
      "2026-03-08T06:59:59.000Z", // 01:59:59 EST
      "2026-03-08T07:00:00.000Z", // 03:00:00 EDT
      "2026-03-08T07:00:01.000Z",
    ]);
  });

  it("fall: a repeated 01:30 fires once, at its first occurrence (EDT)", () => {
    expect(fires("30 1 * * *", tz, "2026-10-31T00:00:00Z", "2026-11-03T00:00:00Z")).toEqual([
      "2026-10-31T05:30:00.000Z",
      "2026-11-01T05:30:00.000Z", // 01:30 EDT; not again at 06:30Z (01:30 EST)
      "2026-11-02T06:30:00.000Z",
    ]);
    expect(fires("*/15 1 * * *", tz, "2026-11-01T04:00:00Z", "2026-11-01T08:00:00Z")).toEqual([
      "2026-11-01T05:00:00.000Z",
      "2026-11-01T05:15:00.000Z",
      "2026-11-01T05:30:00.000Z",
      "2026-11-01T05:45:00.000Z",
    ]);
    expect(fires("30 2 * * *", tz, "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z")).toEqual(["2026-11-01T07:30:00.000Z"]);
  });

  it("fall: an expression firing every hour fires in both passes of the repeated hour", () => {
    expect(fires("0 * * * *", tz, "2026-11-01T04:00:00Z", "2026-11-01T07:00:00Z")).toEqual([
      "2026-11-01T04:00:00.000Z", // 00:00 EDT
      "2026-11-01T05:00:00.000Z", // 01:00 EDT
      "2026-11-01T06:00:00.000Z", // 01:00 EST
      "2026-11-01T07:00:00.000Z", // 02:00 EST
    ]);
    const quarter = compile("*/15 * * * *", tz).between(Date.parse("2026-11-01T04:00:00Z"), Date.parse("2026-11-01T08:00:00Z"), 100).times;
    expect(quarter).toHaveLength(17);
    quarter.slice(1).forEach((t, i) => expect(t - quarter[i]!).toBe(15 * M));
    expect(fires("* * * * * *", tz, "2026-11-01T05:59:58Z", "2026-11-01T06:00:01Z")).toEqual([
      "2026-11-01T05:59:58.000Z",
      "2026-11-01T05:59:59.000Z", // 01:59:59 EDT
      "2026-11-01T06:00:00.000Z", // 01:00:00 EST
      "2026-11-01T06:00:01.000Z",
    ]);
  });
});

describe("Europe/London (spring 2026-03-29 01:00→02:00, fall 2026-10-25 02:00→01:00)", () => {
  const tz = "Europe/London";

  it("spring: 01:30 fires at 02:30 BST, the same instant as a real 02:30 (once)", () => {
    expect(fires("30 1 * * *", tz, "2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z")).toEqual([
      "2026-03-28T01:30:00.000Z",
      "2026-03-29T01:30:00.000Z", // 02:30 BST
      "2026-03-30T00:30:00.000Z",
    ]);
    expect(fires(["30 1 * * *", "30 2 * * *"], tz, "2026-03-29T00:00:00Z", "2026-03-29T23:00:00Z")).toEqual(["2026-03-29T01:30:00.000Z"]);
    expect(fires("0 * * * *", tz, "2026-03-29T00:00:00Z", "2026-03-29T02:00:00Z")).toEqual([
      "2026-03-29T00:00:00.000Z",
      "2026-03-29T01:00:00.000Z", // 02:00 BST
      "2026-03-29T02:00:00.000Z",
    ]);
  });

  it("fall: 01:30 once (BST); hourly in both passes", () => {
    expect(fires("30 1 * * *", tz, "2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z")).toEqual([
      "2026-10-24T00:30:00.000Z",
      "2026-10-25T00:30:00.000Z", // 01:30 BST only
      "2026-10-26T01:30:00.000Z",
    ]);
    expect(fires("0 * * * *", tz, "2026-10-24T23:00:00Z", "2026-10-25T02:00:00Z")).toEqual([
      "2026-10-24T23:00:00.000Z", // 00:00 BST
      "2026-10-25T00:00:00.000Z", // 01:00 BST
      "2026-10-25T01:00:00.000Z", // 01:00 GMT
      "2026-10-25T02:00:00.000Z", // 02:00 GMT
    ]);
  });
});

describe("Australia/Lord_Howe (30 minutes: 2026-04-05 02:00→01:30, 2026-10-04 02:00→02:30)", () => {
  const tz = "Australia/Lord_Howe";

  it("spring: a skipped 02:15 fires at 02:45, 02:00 at 02:30; every 15 minutes keeps real time", () => {
    expect(fires("15 2 * * *", tz, "2026-10-02T12:00:00Z", "2026-10-05T12:00:00Z")).toEqual([
      "2026-10-02T15:45:00.000Z", // 10-03 02:15 +10:30
      "2026-10-03T15:45:00.000Z", // 10-04 02:45 +11 (02:15 does not exist)
      "2026-10-04T15:15:00.000Z", // 10-05 02:15 +11
    ]);
    expect(fires("0 2 * * *", tz, "2026-10-03T12:00:00Z", "2026-10-04T12:00:00Z")).toEqual(["2026-10-03T15:30:00.000Z"]);
    expect(fires("*/15 * * * *", tz, "2026-10-03T15:00:00Z", "2026-10-03T16:00:00Z")).toEqual([
      "2026-10-03T15:00:00.000Z", // 01:30 +10:30
      "2026-10-03T15:15:00.000Z", // 01:45
      "2026-10-03T15:30:00.000Z", // 02:30 +11 (02:00 shifted and the real 02:30: once)
      "2026-10-03T15:45:00.000Z", // 02:45
      "2026-10-03T16:00:00.000Z", // 03:00
    ]);
    // :10 every hour: the skipped 02:10 fires at 02:40, one real hour after 01:10
    expect(fires("10 * * * *", tz, "2026-10-03T14:00:00Z", "2026-10-03T16:30:00Z")).toEqual([
      "2026-10-03T14:40:00.000Z", // 01:10 +10:30
      "2026-10-03T15:40:00.000Z", // 02:40 +11
      "2026-10-03T16:10:00.000Z", // 03:10 +11
    ]);
  });

  it("fall: a repeated 01:45 fires once (first, +11); every 15 minutes in both passes", () => {
    expect(fires("45 1 * * *", tz, "2026-04-03T12:00:00Z", "2026-04-06T12:00:00Z")).toEqual([
      "2026-04-03T14:45:00.000Z",
      "2026-04-04T14:45:00.000Z", // 04-05 01:45 +11; not at 15:15Z (+10:30)
      "2026-04-05T15:15:00.000Z",
    ]);
    expect(fires("*/15 * * * *", tz, "2026-04-04T14:15:00Z", "2026-04-04T15:30:00Z")).toEqual([
      "2026-04-04T14:15:00.000Z", // 01:15 +11
      "2026-04-04T14:30:00.000Z", // 01:30 +11
      "2026-04-04T14:45:00.000Z", // 01:45 +11
      "2026-04-04T15:00:00.000Z", // 01:30 +10:30
      "2026-04-04T15:15:00.000Z", // 01:45 +10:30
      "2026-04-04T15:30:00.000Z", // 02:00 +10:30
    ]);
    expect(fires("30 * * * *", tz, "2026-04-04T14:00:00Z", "2026-04-04T16:00:00Z")).toEqual([
      "2026-04-04T14:30:00.000Z", // 01:30 +11
      "2026-04-04T15:00:00.000Z", // 01:30 +10:30 (interval: both passes)
      "2026-04-04T16:00:00.000Z", // 02:30 +10:30
    ]);
    // 01:00 and 02:00 are not repeated (only 01:30-01:59 is): each once
    expect(fires("0 * * * *", tz, "2026-04-04T13:00:00Z", "2026-04-04T16:30:00Z")).toEqual([
      "2026-04-04T13:00:00.000Z", // 00:00 +11
      "2026-04-04T14:00:00.000Z", // 01:00 +11
      "2026-04-04T15:30:00.000Z", // 02:00 +10:30
      "2026-04-04T16:30:00.000Z", // 03:00 +10:30
    ]);
  });
});

describe("Europe/Rome (cron-parser issue #404: hasNext false across the 2026-03-29 gap)", () => {
  const tz = "Europe/Rome";

  it("Sunday slots around the gap, and the following week", () => {
    const from = "2026-03-28T23:59:59Z";
    expect(fires("30 2 * * 7", tz, from, "2026-04-06T00:00:00Z")).toEqual(["2026-03-29T01:30:00.000Z", "2026-04-05T00:30:00.000Z"]);
    expect(fires("0 3 * * 7", tz, from, "2026-04-06T00:00:00Z")).toEqual(["2026-03-29T01:00:00.000Z", "2026-04-05T01:00:00.000Z"]);
    expect(fires("0 5 * * 7", tz, from, "2026-04-06T00:00:00Z")).toEqual(["2026-03-29T03:00:00.000Z", "2026-04-05T03:00:00.000Z"]);
    expect(fires("0 * * * 0", tz, "2026-03-28T23:00:00Z", "2026-03-29T03:00:00Z")).toEqual([
      "2026-03-28T23:00:00.000Z", // 00:00 CET
      "2026-03-29T00:00:00.000Z", // 01:00 CET
      "2026-03-29T01:00:00.000Z", // 03:00 CEST
      "2026-03-29T02:00:00.000Z",
      "2026-03-29T03:00:00.000Z",
    ]);
  });
});

describe("America/Santiago (changes at midnight: 2026-04-05 00:00→Sat 23:00, 2026-09-06 00:00→01:00)", () => {
  const tz = "America/Santiago";

  it("the repeated Saturday 23:30 fires once; the skipped Sunday midnight fires at 01:00, still on Sunday", () => {
    expect(fires("30 23 * * 6", tz, "2026-04-04T00:00:00Z", "2026-04-06T00:00:00Z")).toEqual(["2026-04-05T02:30:00.000Z"]); // 23:30 -03
    expect(fires("0 0 * * 0", tz, "2026-09-05T00:00:00Z", "2026-09-07T00:00:00Z")).toEqual(["2026-09-06T04:00:00.000Z"]); // Sun 01:00 -03
    expect(local(Date.parse("2026-09-06T04:00:00Z"), tz)).toBe("2026-09-06 01:00:00");
    expect(fires("0 * * * 6", tz, "2026-04-05T01:00:00Z", "2026-04-05T05:00:00Z")).toEqual([
      "2026-04-05T01:00:00.000Z", // Sat 22:00 -03
      "2026-04-05T02:00:00.000Z", // Sat 23:00 -03
      "2026-04-05T03:00:00.000Z", // Sat 23:00 -04 (every hour: both passes)
    ]);
  });
});

describe("zones without daylight saving", () => {
  it("02:30 every day is 24 hours apart all year (Asia/Tokyo, UTC)", () => {
    for (const [tz, utc] of [["Asia/Tokyo", "17:30"], ["UTC", "02:30"]] as const) {
      const times = compile("30 2 * * *", tz).between(Date.UTC(2026, 0, 1), Date.UTC(2027, 0, 1) - 1, 1000).times;
      expect(times).toHaveLength(365);
      times.slice(1).forEach((t, i) => expect(t - times[i]!).toBe(24 * H));
      expect(iso(times[0])!.slice(11, 16)).toBe(utc);
    }
  });
});

describe("properties over all of 2026", () => {
  const zones = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Europe/Rome", "Asia/Tokyo", "UTC"];
  const year = [Date.UTC(2025, 11, 30), Date.UTC(2027, 0, 2)] as const;

  it("a fixed daily time fires exactly once on every local date, gap and repeat included", () => {
    for (const tz of zones) {
      for (const expr of ["30 2 * * *", "30 1 * * *", "45 1 * * *", "0 2 * * *", "15 2 * * *"]) {
        const times = compile(expr, tz).between(year[0], year[1], 1000).times;
        const dates = times.map((t) => local(t, tz).slice(0, 10)).filter((d) => d.startsWith("2026"));
        expect({ tz, expr, days: dates.length, distinct: new Set(dates).size }).toEqual({ tz, expr, days: 365, distinct: 365 });
      }
    }
  });

  it("every 15 minutes is 15 real minutes apart all year, in every zone", () => {
    for (const tz of zones) {
      const times = compile("*/15 * * * *", tz).between(Date.UTC(2026, 0, 1), Date.UTC(2027, 0, 1) - 1, 40_000).times;
      expect({ tz, n: times.length }).toEqual({ tz, n: 365 * 96 });
      let irregular = 0;
      for (let i = 1; i < times.length; i++) if (times[i]! - times[i - 1]! !== 15 * M) irregular += 1;
      expect({ tz, irregular }).toEqual({ tz, irregular: 0 });
    }
  });

  it("next() from any instant is the first fire after it (starting inside gaps and repeats too)", () => {
    let seed = 7;
    const rnd = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const exprs = ["30 2 * * *", "30 1 * * *", "*/15 * * * *", "10 * * * *", "*/15 1 * * *", "0 1-3 * * *", "7 */5 * * * *"];
    const windows: Array<[string, string]> = [
      ["America/New_York", "2026-03-08T03:00:00Z"],
      ["America/New_York", "2026-11-01T02:00:00Z"],
      ["Europe/London", "2026-03-28T22:00:00Z"],
      ["Europe/London", "2026-10-24T22:00:00Z"],
      ["Australia/Lord_Howe", "2026-04-04T11:00:00Z"],
      ["Australia/Lord_Howe", "2026-10-03T11:00:00Z"],
      ["Europe/Rome", "2026-03-28T22:00:00Z"],
    ];
    for (const [tz, start] of windows) {
      for (const expr of exprs) {
        const c = compile(expr, tz);
        const from = Date.parse(start);
        const times = c.between(from - 2 * 86_400_000, from + 3 * 86_400_000, 10_000).times;
        expect(new Set(times).size).toBe(times.length);
        for (let i = 1; i < times.length; i++) {
          expect(times[i]!).toBeGreaterThan(times[i - 1]!);
          for (let k = 0; k < 4; k++) {
            const t = times[i - 1]! + Math.floor(rnd() * (times[i]! - times[i - 1]!));
            expect({ tz, expr, t: iso(t), next: iso(c.next(t)) }).toEqual({ tz, expr, t: iso(t), next: iso(times[i]) });
          }
        }
      }
    }
  });
});

describe("cron-parser 5.10.6, probed (what the module works around)", () => {
  // These pin the library's behaviour as of 5.10.6. If one fails after an upgrade, the library
  // changed: re-check whether its iterator now follows the policy (the module does not use it).
  const theirs = (expr: string, tz: string, from: string, n: number): Array<string> => {
    const it = CronExpressionParser.parse(expr, { tz, currentDate: from });
    const out: Array<string> = [];
    for (let i = 0; i < n; i++) {
      try {
        out.push(it.next().toISOString()!);
      } catch (e) {
        out.push(`throws: ${(e as Error).message}`);
        break;
      }
    }
    return out;
  };

  it("agrees with the policy on New York, London and Rome", () => {
    const exprs = ["30 2 * * *", "0 2 * * *", "30 1 * * *", "0 * * * *", "*/15 * * * *", "*/15 1 * * *", "0 1,2,3 * * *", "*/7 * * * *"];
    const windows: Array<[string, string]> = [
      ["America/New_York", "2026-03-07T12:00:00Z"],
      ["America/New_York", "2026-10-31T12:00:00Z"],
      ["Europe/London", "2026-03-28T12:00:00Z"],
      ["Europe/London", "2026-10-24T12:00:00Z"],
      ["Europe/Rome", "2026-03-28T12:00:00Z"],
      ["Europe/Rome", "2026-10-24T12:00:00Z"],
    ];
    for (const [tz, from] of windows) {
      for (const expr of exprs) {
        const ours = fires(expr, tz, from, new Date(Date.parse(from) + 2 * 86_400_000).toISOString());
        const reference = theirs(expr, tz, new Date(Date.parse(from) - 1).toISOString(), ours.length);
        expect({ tz, expr, fires: ours }).toEqual({ tz, expr, fires: reference });
      }
    }
  });

  it("drops or cannot find slots on Lord Howe's 30-minute changes", () => {
    const tz = "Australia/Lord_Howe";
    // spring: 10-04 02:15 never fires (we fire at 02:45 +11 = 15:45Z)
    expect(theirs("15 2 * * *", tz, "2026-10-02T12:00:00Z", 2)).toEqual(["2026-10-02T15:45:00.000Z", "2026-10-04T15:15:00.000Z"]);
    // spring: */15 skips the real 02:30 and 02:45 (15:30Z, 15:45Z)
    expect(theirs("*/15 * * * *", tz, "2026-10-03T15:10:00Z", 2)).toEqual(["2026-10-03T15:15:00.000Z", "2026-10-03T16:00:00.000Z"]);
    // fall: after 01:00 +11 the iterator gives up ("loop limit exceeded", so hasNext() is false)
    expect(theirs("0 * * * *", tz, "2026-04-04T13:10:00Z", 2)).toEqual(["2026-04-04T14:00:00.000Z", "throws: Invalid expression, loop limit exceeded"]);
    expect(CronExpressionParser.parse("0 2 * * *", { tz, currentDate: "2026-04-04T13:10:00Z" }).hasNext()).toBe(false);
    expect(fires("0 2 * * *", tz, "2026-04-04T13:10:00Z", "2026-04-05T23:59:59Z")).toEqual(["2026-04-04T15:30:00.000Z", "2026-04-05T15:30:00.000Z"]);
  });
});
