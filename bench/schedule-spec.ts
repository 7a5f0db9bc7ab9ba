/**
 * The schedule spec's hot path and footprint: next() per call (what the scheduler engine calls
 * once per fire), compileSpec() per call, and the heap held by 100,000 compiled specs.
 * cron-parser's own iterator is timed alongside for comparison.
 *
 *   node --expose-gc --import tsx bench/schedule-spec.ts
 */
import { CronExpressionParser } from "cron-parser";
import { Either } from "effect";
import { compileSpec, type CompiledSpec } from "../src/core/schedule/spec.js";

const N = 100_000;
const base = Date.UTC(2026, 0, 1);
const span = 2 * 365 * 86_400_000;
const gc = (globalThis as { gc?: () => void }).gc;

const cases: ReadonlyArray<readonly [string, string]> = [
  ["*/15 * * * *", "America/New_York"],
  ["30 2 * * *", "Europe/London"],
  ["0 9 * * 1-5", "UTC"],
  ["0 0 * * 5L", "Australia/Lord_Howe"],
  ["* * * * * *", "Europe/Rome"],
];
for (const [expr, tz] of cases) {
  const c = Either.getOrThrow(compileSpec({ cronExpressions: [expr], timeZone: tz }));
  // Warm: the zone's offset table for the two years is built once, then shared.
  for (let i = 0; i < 2000; i++) c.next(base + (i * span) / 2000);
  let sink = 0;
  const t0 = performance.now();
  for (let i = 0; i < N; i++) sink += c.next(base + ((i * 7919) % 10_000) * (span / 10_000))!;
  const ms = performance.now() - t0;
  const cp = CronExpressionParser.parse(expr, { tz, currentDate: new Date(base) });
  const t1 = performance.now();
  for (let i = 0; i < 10_000; i++) cp.next();
  const cpUs = ((performance.now() - t1) * 1000) / 10_000;
  console.log(
    JSON.stringify({ expr, tz, nextCalls: N, totalMs: +ms.toFixed(1), usPerNext: +((ms * 1000) / N).toFixed(3), cronParserUsPerNext: +cpUs.toFixed(2), sink: sink > 0 }),
  );
}

{
  // distinct expressions (each goes through cron-parser), then the same ones again (parse cache)
  const expr = (i: number) => `${i % 60} ${Math.floor(i / 60) % 24} ${1 + (Math.floor(i / 1440) % 28)} * *`;
  const t0 = performance.now();
  for (let i = 0; i < 10_000; i++) compileSpec({ cronExpressions: [expr(i)], timeZone: "Europe/Paris" });
  const t1 = performance.now();
  for (let i = 0; i < 10_000; i++) compileSpec({ cronExpressions: [expr(i)], timeZone: "Europe/Paris" });
  const t2 = performance.now();
  console.log(JSON.stringify({ compileSpecUsDistinct: +(((t1 - t0) * 1000) / 10_000).toFixed(2), compileSpecUsRepeated: +(((t2 - t1) * 1000) / 10_000).toFixed(2) }));
}

{
  gc?.();
  const before = process.memoryUsage().heapUsed;
  const held: Array<CompiledSpec> = [];
  const zones = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"];
  for (let i = 0; i < N; i++) {
    held.push(
      Either.getOrThrow(
        compileSpec({ cronExpressions: [`${i % 60} ${i % 24} * * ${i % 7}`, `*/${1 + (i % 30)} * * * *`], timeZone: zones[i % 4]!, jitterMs: i % 1000 }),
      ),
    );
  }
  for (const c of held) c.next(base);
  gc?.();
  const after = process.memoryUsage().heapUsed;
  console.log(
    JSON.stringify({
      compiledSpecs: held.length,
      expressionsEach: 2,
      heapMB: +((after - before) / 1e6).toFixed(1),
      bytesPerSpec: Math.round((after - before) / held.length),
      gcExposed: gc !== undefined,
    }),
  );
}
