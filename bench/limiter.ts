/**
 * Rate-limiter decisions per second, in memory and in Redis, in the same run.
 *
 *   node --import tsx bench/limiter.ts
 *
 * Starts its own redis-server (Debian's, on a free loopback port, like the tests) and stops it.
 * Each case is bounded by a count and by time (whichever comes first):
 *   LIMITER_BENCH_DECISIONS (default 200000 in memory, a tenth of it per Redis case)
 *   LIMITER_BENCH_SECONDS   (default 5 per case)
 * A decision is what the server does: the request limit (one GCRA key, 10,000 principals), or an
 * execution (operation + interval + tenant keys and an in-flight slot, released right after).
 */
import { Context, Effect, Layer, type Scope } from "effect";
import { type LimitRequest, RateLimiter, RateLimiterMemory } from "../src/ports/RateLimiter.js";
import { RateLimiterRedis } from "../src/ports/redis/RateLimiterRedis.js";
import { startRedisServer } from "../test/support/redis.js";

const envInt = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
};
const decisions = envInt("LIMITER_BENCH_DECISIONS", 200_000);
const seconds = envInt("LIMITER_BENCH_SECONDS", 5);
const principals = 10_000;

const requestDecision = (i: number): LimitRequest => ({
  rates: [{ scope: "request", key: `rq:default:p${i % principals}`, limit: { limit: 1_000_000, windowMs: 1000 } }],
});
const executionDecision = (i: number): LimitRequest => {
  const p = `default:p${i % principals}`;
  return {
    rates: [
      { scope: "operation", key: `op:${p}:demo.echo`, limit: { limit: 1_000_000, windowMs: 60_000 } },
      { scope: "interval", key: `iv:${p}:demo.echo`, limit: { limit: 1, windowMs: 1 } },
      { scope: "tenant", key: "tn:default", limit: { limit: 1_000_000, windowMs: 1000 } },
    ],
    concurrency: { scope: "in_flight", key: `if:${p}`, max: 1_000_000 },
  };
};

interface Result {
  readonly name: string;
  readonly n: number;
  readonly perSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly admitted: number;
  readonly degraded: number;
}

const measure = (
  name: string,
  layer: Layer.Layer<RateLimiter>,
  make: (i: number) => LimitRequest,
  count: number,
  inFlight: number,
): Effect.Effect<Result, never, Scope.Scope> =>
  Effect.gen(function* () {
    const limiter = Context.get(yield* Layer.build(layer), RateLimiter);
    const one = (i: number) => Effect.flatMap(limiter.decide(make(i)), (d) => (d.lease === undefined ? Effect.succeed(d) : Effect.as(d.lease.release, d)));
    // Warm up (JIT, script cache, connection).
    yield* Effect.forEach(Array.from({ length: Math.min(2000, count) }, (_, i) => i), one, { concurrency: inFlight, discard: true });
    const latencies = new Float64Array(count);
    let done = 0;
    let admitted = 0;
    let degraded = 0;
    const deadline = performance.now() + seconds * 1000;
    const started = performance.now();
    const worker = Effect.gen(function* () {
      while (done < count && performance.now() < deadline) {
        const i = done++;
        const t0 = performance.now();
        const d = yield* one(i);
        latencies[i] = performance.now() - t0;
        if (d.allowed) admitted++;
        if (d.degraded !== undefined) degraded++;
      }
    });
    yield* Effect.all(Array.from({ length: inFlight }, () => worker), { concurrency: "unbounded", discard: true });
    const elapsed = (performance.now() - started) / 1000;
    const sorted = latencies.slice(0, done).sort();
    return {
      name,
      n: done,
      perSec: done / elapsed,
      p50Ms: sorted[Math.floor(done * 0.5)] ?? Number.NaN,
      p99Ms: sorted[Math.floor(done * 0.99)] ?? Number.NaN,
      admitted,
      degraded,
    };
  });

const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

async function main() {
  const redis = await startRedisServer();
  try {
    const redisLayer = () => RateLimiterRedis.layer({ url: redis.url, keyPrefix: `bench${Math.random().toString(36).slice(2, 8)}:` });
    const redisCount = Math.max(1, Math.floor(decisions / 10));
    const label = (backend: string, what: string, inFlight: number) => `${backend.padEnd(8)}${what.padEnd(34)}${String(inFlight).padStart(3)} in flight`;
    const request = "request limit (1 key)";
    const execution = "execution (3 keys + slot, freed)";
    const cases: Array<[string, () => Layer.Layer<RateLimiter>, (i: number) => LimitRequest, number, number]> = [
      [label("memory", request, 1), () => RateLimiterMemory, requestDecision, decisions, 1],
      [label("memory", execution, 1), () => RateLimiterMemory, executionDecision, decisions, 1],
      [label("redis", request, 1), redisLayer, requestDecision, redisCount, 1],
      [label("redis", request, 64), redisLayer, requestDecision, redisCount, 64],
      [label("redis", execution, 64), redisLayer, executionDecision, redisCount, 64],
    ];
    const results: Result[] = [];
    for (const [name, layer, make, count, inFlight] of cases) {
      results.push(await Effect.runPromise(Effect.scoped(measure(name, layer(), make, count, inFlight))));
    }
    console.log(`rate-limiter decisions (node ${process.version}, redis-server on 127.0.0.1:${redis.port}, ${principals} principals, ≤ ${seconds} s per case)`);
    console.log(`${"case".padEnd(54)} ${"decisions".padStart(10)} ${"per second".padStart(12)} ${"p50 ms".padStart(8)} ${"p99 ms".padStart(8)}`);
    for (const r of results) {
      console.log(`${r.name.padEnd(54)} ${fmt(r.n).padStart(10)} ${fmt(r.perSec).padStart(12)} ${fmt(r.p50Ms, 3).padStart(8)} ${fmt(r.p99Ms, 3).padStart(8)}`);
      if (r.admitted !== r.n || r.degraded > 0) console.log(`  !! ${r.n - r.admitted} refused, ${r.degraded} degraded: the numbers above are not all real decisions`);
    }
    const mem = results[0]!.perSec;
    const red = results[3]!.perSec;
    console.log(`memory / redis (request limit, 64 in flight on Redis): ${fmt(mem / red, 1)}×`);
  } finally {
    await redis.stop();
  }
}

await main();
