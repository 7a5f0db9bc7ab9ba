/**
 * The schedule spec (src/core/schedule/spec.ts): validation naming the proto field, the cron
 * grammar (5/6 fields, macros, L and #), next() against cron-parser's own iterator away from
 * daylight-saving changes, start/end bounds, between() with truncation, several expressions,
 * and the jitter bounds. Daylight saving is in dst.test.ts. Pure functions: plain `it`.
 */
import { CronExpressionParser } from "cron-parser";
import { Either } from "effect";
import { describe, expect, it } from "vitest";
import { nextWall, parseCron } from "../../src/core/schedule/cron.js";
import { compileSpec, InvalidScheduleSpec, jitterFor, type CompiledSpec, type ScheduleSpec } from "../../src/core/schedule/spec.js";

const compile = (spec: Partial<ScheduleSpec> & { cronExpressions: ReadonlyArray<string> }): CompiledSpec => {
  const r = compileSpec({ timeZone: "UTC", ...spec });
  if (Either.isLeft(r)) throw new Error(`unexpected: ${r.left.message}`);
  return r.right;
};
const failure = (spec: Partial<ScheduleSpec> & { cronExpressions: ReadonlyArray<string> }): InvalidScheduleSpec => {
  const r = compileSpec({ timeZone: "UTC", ...spec });
  if (Either.isRight(r)) throw new Error("expected an invalid spec");
  return r.left;
};
const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
const at = (s: string) => Date.parse(s);
/** The next n fires after `from`, as ISO strings. */
const take = (c: CompiledSpec, from: string, n: number): Array<string | undefined> => {
  const out: Array<string | undefined> = [];
  let t: number | undefined = at(from);
  for (let i = 0; i < n && t !== undefined; i++) {
    t = c.next(t);
    out.push(iso(t));
  }
  return out;
};

describe("validation", () => {
  it("names the field and says why", () => {
    const cases: Array<[Partial<ScheduleSpec> & { cronExpressions: ReadonlyArray<string> }, string, RegExp]> = [
      [{ cronExpressions: [] }, "spec.cron_expressions", /at least one/],
      [{ cronExpressions: Array.from({ length: 11 }, () => "* * * * *") }, "spec.cron_expressions", /at most 10/],
      [{ cronExpressions: ["* * * * *", `0 0 * * ${"1,".repeat(200)}1`] }, "spec.cron_expressions[1]", /longer than 256/],
      [{ cronExpressions: ["   "] }, "spec.cron_expressions[0]", /empty/],
      [{ cronExpressions: ["* * * * *", "61 * * * *"] }, "spec.cron_expressions[1]", /61 \* \* \* \*.*Constraint error/],
      [{ cronExpressions: ["* * *"] }, "spec.cron_expressions[0]", /expected 5 fields .* got 3/],
      [{ cronExpressions: ["0 0 0 * * * 2026"] }, "spec.cron_expressions[0]", /got 7/],
      [{ cronExpressions: ["0 0 30 2 *"] }, "spec.cron_expressions[0]", /Invalid explicit day of month/],
      [{ cronExpressions: ["0 0 15W * *"] }, "spec.cron_expressions[0]", /W \(nearest weekday\) is not supported/],
      [{ cronExpressions: ["H * * * *"] }, "spec.cron_expressions[0]", /H \(hashed values\) is not supported/],
      [{ cronExpressions: ["@reboot"] }, "spec.cron_expressions[0]", /unknown macro/],
      [{ cronExpressions: ["*/0 * * * *"] }, "spec.cron_expressions[0]", /cannot repeat at every 0/],
      [{ cronExpressions: ["0 0 * * 1#6"] }, "spec.cron_expressions[0]", /occurrence number/],
      [{ cronExpressions: ["0 0 * * *"], timeZone: "Mars/Olympus_Mons" }, "spec.time_zone", /unknown time zone "Mars\/Olympus_Mons"/],
      [{ cronExpressions: ["0 0 * * *"], timeZone: "EST5EDT-nope" }, "spec.time_zone", /unknown time zone/],
      [{ cronExpressions: ["0 0 * * *"], startTime: 2000, endTime: 1000 }, "spec.end_time", /after start_time/],
      [{ cronExpressions: ["0 0 * * *"], startTime: 1000, endTime: 1000 }, "spec.end_time", /after start_time/],
      [{ cronExpressions: ["0 0 * * *"], startTime: Number.NaN }, "spec.start_time", /not a valid time/],
      [{ cronExpressions: ["0 0 * * *"], jitterMs: -1 }, "spec.jitter", /negative/],
      [{ cronExpressions: ["0 0 * * *"], jitterMs: 3_600_001 }, "spec.jitter", /at most 1 hour/],
      [{ cronExpressions: ["0 0 * * *"], jitterMs: Number.POSITIVE_INFINITY }, "spec.jitter", /negative/],
    ];
    for (const [spec, field, reason] of cases) {
      const e = failure(spec);
      expect(e).toBeInstanceOf(InvalidScheduleSpec);
      expect(e._tag).toBe("InvalidScheduleSpec");
      expect({ spec, field: e.field }).toEqual({ spec, field });
      expect(e.reason).toMatch(reason);
      expect(e.message).toBe(`${field}: ${e.reason}`);
      expect(e.reason.length).toBeLessThanOrEqual(400);
    }
  });

  it("clips long parser messages", () => {
    const e = failure({ cronExpressions: [`0 0 * * ${"x".repeat(240)}`] });
    expect(e.field).toBe("spec.cron_expressions[0]");
    expect(e.reason.length).toBeLessThan(520);
  });

  it("a full 400-year period without a match means never (the check behind cron-parser's own)", () => {
    // cron-parser already refuses the obvious ones (30 February); the search is the safety net.
    const feb30 = { ...(parseCron("0 0 1 2 *") as { ok: true; fields: Parameters<typeof nextWall>[0] }).fields, dom: 1 << 30 };
    const from = Date.UTC(2000, 0, 1);
    expect(nextWall(feb30, from, from + 146_097 * 86_400_000)).toBeUndefined();
    const leapMonday = (parseCron("0 0 * 2 1#5") as { ok: true; fields: Parameters<typeof nextWall>[0] }).fields;
    expect(iso(nextWall(leapMonday, Date.UTC(2026, 0, 1)))).toBe("2044-02-29T00:00:00.000Z");
  });

  it("accepts the defaults and keeps the spec, with the zone defaulted", () => {
    const c = compile({ cronExpressions: [" 0 9 * * MON-FRI "], timeZone: "" });
    expect(c.spec).toEqual({ cronExpressions: [" 0 9 * * MON-FRI "], timeZone: "UTC" });
    expect(iso(c.next(at("2026-11-27T09:00:00Z")))).toBe("2026-11-30T09:00:00.000Z");
    const full = compile({ cronExpressions: ["@daily"], timeZone: "Europe/Paris", startTime: 0, endTime: 1, jitterMs: 3_600_000 });
    expect(full.spec.jitterMs).toBe(3_600_000);
  });
});

describe("cron grammar", () => {
  it("5 fields fire at second 0; 6 fields start with seconds", () => {
    expect(take(compile({ cronExpressions: ["*/20 * * * *"] }), "2026-01-01T00:00:30Z", 2)).toEqual([
      "2026-01-01T00:20:00.000Z",
      "2026-01-01T00:40:00.000Z",
    ]);
    expect(take(compile({ cronExpressions: ["*/20 * * * * *"] }), "2026-01-01T00:00:30Z", 3)).toEqual([
      "2026-01-01T00:00:40.000Z",
      "2026-01-01T00:01:00.000Z",
      "2026-01-01T00:01:20.000Z",
    ]);
    expect(take(compile({ cronExpressions: ["15,45 30 12 * * *"] }), "2026-01-01T12:30:15Z", 2)).toEqual([
      "2026-01-01T12:30:45.000Z",
      "2026-01-02T12:30:15.000Z",
    ]);
  });

  it("macros, case-insensitive", () => {
    const from = "2026-05-13T10:20:30Z"; // a Wednesday
    const first = (m: string) => take(compile({ cronExpressions: [m] }), from, 1)[0];
    expect(first("@yearly")).toBe("2027-01-01T00:00:00.000Z");
    expect(first("@annually")).toBe("2027-01-01T00:00:00.000Z");
    expect(first("@monthly")).toBe("2026-06-01T00:00:00.000Z");
    expect(first("@weekly")).toBe("2026-05-17T00:00:00.000Z");
    expect(first("@daily")).toBe("2026-05-14T00:00:00.000Z");
    expect(first("@MIDNIGHT")).toBe("2026-05-14T00:00:00.000Z");
    expect(first("@Hourly")).toBe("2026-05-13T11:00:00.000Z");
    expect(first("@minutely")).toBe("2026-05-13T10:21:00.000Z");
    expect(first("@secondly")).toBe("2026-05-13T10:20:31.000Z");
    expect(first("@weekends")).toBe("2026-05-16T00:00:00.000Z");
    expect(first("@weekdays")).toBe("2026-05-14T00:00:00.000Z");
  });

  it("L, wL and w#n; both day fields restricted means either", () => {
    const from = "2026-01-01T00:00:00Z";
    expect(take(compile({ cronExpressions: ["0 0 L * *"] }), from, 3)).toEqual([
      "2026-01-31T00:00:00.000Z",
      "2026-02-28T00:00:00.000Z",
      "2026-03-31T00:00:00.000Z",
    ]);
    expect(take(compile({ cronExpressions: ["0 0 L 2 *"] }), "2027-03-01T00:00:00Z", 1)).toEqual(["2028-02-29T00:00:00.000Z"]);
    expect(take(compile({ cronExpressions: ["0 0 * * 5L"] }), from, 2)).toEqual(["2026-01-30T00:00:00.000Z", "2026-02-27T00:00:00.000Z"]);
    expect(take(compile({ cronExpressions: ["0 0 * * FRI#3"] }), from, 2)).toEqual(["2026-01-16T00:00:00.000Z", "2026-02-20T00:00:00.000Z"]);
    expect(take(compile({ cronExpressions: ["0 0 * * 7#1"] }), from, 2)).toEqual(["2026-01-04T00:00:00.000Z", "2026-02-01T00:00:00.000Z"]);
    // the 1st and 15th, or any Monday
    expect(take(compile({ cronExpressions: ["0 0 1,15 * 1"] }), from, 5)).toEqual([
      "2026-01-05T00:00:00.000Z",
      "2026-01-12T00:00:00.000Z",
      "2026-01-15T00:00:00.000Z",
      "2026-01-19T00:00:00.000Z",
      "2026-01-26T00:00:00.000Z",
    ]);
    expect(take(compile({ cronExpressions: ["0 0 L,15 * *"] }), from, 3)).toEqual([
      "2026-01-15T00:00:00.000Z",
      "2026-01-31T00:00:00.000Z",
      "2026-02-15T00:00:00.000Z",
    ]);
    expect(take(compile({ cronExpressions: ["0 0 ? JAN,jul 1,5L"] }), from, 5)).toEqual([
      "2026-01-05T00:00:00.000Z",
      "2026-01-12T00:00:00.000Z",
      "2026-01-19T00:00:00.000Z",
      "2026-01-26T00:00:00.000Z",
      "2026-01-30T00:00:00.000Z",
    ]);
    // 5th Monday of February: only a leap year whose February starts on a Monday
    expect(take(compile({ cronExpressions: ["0 0 * 2 1#5"] }), from, 2)).toEqual(["2044-02-29T00:00:00.000Z", "2072-02-29T00:00:00.000Z"]);
  });

  it("agrees with cron-parser's iterator away from daylight saving (random expressions, UTC and Asia/Tokyo)", () => {
    let seed = 42;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const pick = <A>(xs: ReadonlyArray<A>): A => xs[rnd(xs.length)]!;
    const field = (min: number, max: number, extra: ReadonlyArray<string> = []) =>
      pick([
        "*",
        `${min + rnd(max - min + 1)}`,
        `*/${1 + rnd(Math.min(20, max))}`,
        `${min + rnd(3)}-${max - rnd(3)}`,
        `${min + rnd(max - min + 1)},${min + rnd(max - min + 1)}`,
        `${min + rnd(5)}-${max - rnd(5)}/${2 + rnd(5)}`,
        ...extra,
      ]);
    let compared = 0;
    for (let i = 0; i < 300; i++) {
      const six = rnd(2) === 0;
      const parts = [
        ...(six ? [field(0, 59)] : []),
        field(0, 59),
        field(0, 23),
        field(1, 31, ["L", "L,10", "?"]),
        field(1, 12, ["JAN-JUN", "*/3"]),
        field(0, 7, ["5L", "MON-FRI", "2#3", "0#5", "SUN,SAT", "?"]),
      ];
      const expr = parts.join(" ");
      try {
        CronExpressionParser.parse(expr, { tz: "UTC", currentDate: 0 });
      } catch {
        expect(Either.isLeft(compileSpec({ cronExpressions: [expr], timeZone: "UTC" }))).toBe(true);
        continue; // e.g. 31 in a month range without 31 days: rejected by both
      }
      for (const tz of ["UTC", "Asia/Tokyo"]) {
        const from = Date.UTC(2020 + rnd(10), rnd(12), 1 + rnd(28), rnd(24), rnd(60), rnd(60));
        const ours = compile({ cronExpressions: [expr], timeZone: tz });
        const theirs = CronExpressionParser.parse(expr, { tz, currentDate: new Date(from) });
        let t: number | undefined = from;
        for (let k = 0; k < 8; k++) {
          t = ours.next(t!);
          const expected = theirs.next().getTime();
          expect({ expr, tz, k, t: iso(t) }).toEqual({ expr, tz, k, t: iso(expected) });
        }
        compared += 1;
      }
    }
    expect(compared).toBeGreaterThan(300);
  });
});

describe("next and between", () => {
  it("several expressions fire as one sequence, a shared instant once", () => {
    const c = compile({ cronExpressions: ["0 */6 * * *", "0 9 * * *", "0 0 * * *", "30 9 * * MON"] });
    expect(take(c, "2026-01-04T23:00:00Z", 7)).toEqual([
      "2026-01-05T00:00:00.000Z",
      "2026-01-05T06:00:00.000Z",
      "2026-01-05T09:00:00.000Z",
      "2026-01-05T09:30:00.000Z",
      "2026-01-05T12:00:00.000Z",
      "2026-01-05T18:00:00.000Z",
      "2026-01-06T00:00:00.000Z",
    ]);
  });

  it("next is strictly after, from any millisecond", () => {
    const c = compile({ cronExpressions: ["0 * * * *"] });
    expect(iso(c.next(at("2026-01-01T10:00:00Z")))).toBe("2026-01-01T11:00:00.000Z");
    expect(iso(c.next(at("2026-01-01T09:59:59.999Z")))).toBe("2026-01-01T10:00:00.000Z");
    expect(iso(c.next(at("2026-01-01T10:00:00.001Z")))).toBe("2026-01-01T11:00:00.000Z");
    expect(c.next(Number.NaN)).toBeUndefined();
    expect(c.next(Number.POSITIVE_INFINITY)).toBeUndefined();
    expect(iso(compile({ cronExpressions: ["0 0 1 1 *"] }).next(Number.NEGATIVE_INFINITY))).toBe("1900-01-01T00:00:00.000Z");
    expect(compile({ cronExpressions: ["0 0 1 1 *"] }).next(Date.UTC(9999, 0, 1))).toBeUndefined();
  });

  it("start and end bound the slots, both inclusive", () => {
    const c = compile({
      cronExpressions: ["0 * * * *"],
      startTime: at("2026-01-01T10:00:00Z"),
      endTime: at("2026-01-01T12:00:00Z"),
    });
    expect(iso(c.next(0))).toBe("2026-01-01T10:00:00.000Z");
    expect(iso(c.next(at("2026-01-01T09:59:59Z")))).toBe("2026-01-01T10:00:00.000Z");
    expect(iso(c.next(at("2026-01-01T11:00:00Z")))).toBe("2026-01-01T12:00:00.000Z");
    expect(c.next(at("2026-01-01T12:00:00Z"))).toBeUndefined();
    expect(c.between(0, at("2030-01-01T00:00:00Z"), 100).times.map(iso)).toEqual([
      "2026-01-01T10:00:00.000Z",
      "2026-01-01T11:00:00.000Z",
      "2026-01-01T12:00:00.000Z",
    ]);
    const offSlot = compile({ cronExpressions: ["0 * * * *"], startTime: at("2026-01-01T10:00:00.500Z") });
    expect(iso(offSlot.next(0))).toBe("2026-01-01T11:00:00.000Z");
    const endOnly = compile({ cronExpressions: ["@daily"], endTime: at("2026-01-02T00:00:00Z") });
    expect(endOnly.between(at("2025-12-31T00:00:00Z"), at("2026-12-31T00:00:00Z"), 10).times.map(iso)).toEqual([
      "2025-12-31T00:00:00.000Z",
      "2026-01-01T00:00:00.000Z",
      "2026-01-02T00:00:00.000Z",
    ]);
  });

  it("between is inclusive at both ends and reports truncation", () => {
    const c = compile({ cronExpressions: ["*/15 * * * *"] });
    const from = at("2026-01-01T00:00:00Z");
    const to = at("2026-01-01T01:00:00Z");
    expect(c.between(from, to, 10)).toEqual({
      times: [0, 15, 30, 45, 60].map((m) => from + m * 60_000),
      truncated: false,
    });
    expect(c.between(from, to, 5).truncated).toBe(false);
    expect(c.between(from, to, 4)).toEqual({ times: [0, 15, 30, 45].map((m) => from + m * 60_000), truncated: true });
    expect(c.between(from, to, 0)).toEqual({ times: [], truncated: true });
    expect(c.between(from + 1, from + 899_999, 10)).toEqual({ times: [], truncated: false });
    expect(c.between(to, from, 10)).toEqual({ times: [], truncated: false });
    // 1,000 of them, continuing from just after the last one
    const page1 = c.between(from, from + 365 * 86_400_000, 1000);
    expect(page1.times).toHaveLength(1000);
    expect(page1.truncated).toBe(true);
    const page2 = c.between(page1.times[999]! + 1, from + 365 * 86_400_000, 1000);
    expect(page2.times[0]).toBe(page1.times[999]! + 15 * 60_000);
  });
});

describe("jitterFor", () => {
  it("stays in [0, jitter), below the gap to the next slot, and is the same on every call", () => {
    const c = compile({ cronExpressions: ["*/5 * * * *", "1 * * * *", "0 0 * * *"] });
    const jitterMs = 10 * 60_000; // longer than most gaps, so the next-slot bound bites
    let nominal = c.next(at("2026-01-01T00:00:00Z"))!;
    const seen = new Set<number>();
    let cappedByNext = 0;
    for (let i = 0; i < 5000; i++) {
      const next = c.next(nominal)!;
      for (const id of ["sched-a", "sched-b"]) {
        const j = jitterFor(id, nominal, jitterMs, next);
        expect(Number.isInteger(j)).toBe(true);
        expect(j).toBeGreaterThanOrEqual(0);
        expect(j).toBeLessThan(jitterMs);
        expect(nominal + j).toBeLessThan(next);
        expect(jitterFor(id, nominal, jitterMs, next)).toBe(j);
        seen.add(j);
      }
      if (next - nominal < jitterMs) cappedByNext += 1;
      nominal = next;
    }
    expect(cappedByNext).toBeGreaterThan(1000);
    expect(seen.size).toBeGreaterThan(5000); // spread, not a constant
  });

  it("spreads evenly, and is 0 with no jitter or no room", () => {
    const jitterMs = 60_000;
    const buckets = new Array<number>(10).fill(0);
    for (let i = 0; i < 20_000; i++) {
      const j = jitterFor(`schedule-${i % 37}`, Date.UTC(2026, 0, 1) + i * 60_000, jitterMs, undefined);
      expect(j).toBeGreaterThanOrEqual(0);
      expect(j).toBeLessThan(jitterMs);
      buckets[Math.floor((j / jitterMs) * 10)]! += 1;
    }
    for (const b of buckets) expect(b).toBeGreaterThan(1700); // 2,000 expected per bucket
    expect(jitterFor("s", 1000, 0, 2000)).toBe(0);
    expect(jitterFor("s", 1000, 5000, 1000)).toBe(0);
    expect(jitterFor("s", 1000, 5000, 1001)).toBe(0);
    expect(jitterFor("a", 1000, 5000, undefined)).not.toBe(jitterFor("b", 1000, 5000, undefined));
  });
});
