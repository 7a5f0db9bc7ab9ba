/**
 * An unauthenticated caller cannot fill the audit log: AUTH_DENIED rows are capped per peer and
 * window (nothing else limits a caller before it is authenticated).
 */
import { describe, expect, it } from "@effect/vitest";
import { Effect, TestClock } from "effect";
import { deniedAuditSampler } from "../../src/transport/auth-interceptor.js";

const count = (sample: (peer: string) => Effect.Effect<boolean>, peer: string, n: number) =>
  Effect.gen(function* () {
    let kept = 0;
    for (let i = 0; i < n; i++) if (yield* sample(peer)) kept++;
    return kept;
  });

describe("AUTH_DENIED audit sampling", () => {
  it.effect("keeps at most N rows per peer per window, other peers unaffected, and resets each window", () =>
    Effect.gen(function* () {
      const sample = deniedAuditSampler(20, 1_000);
      expect(yield* count(sample, "10.0.0.1", 25)).toBe(20);
      expect(yield* count(sample, "10.0.0.2", 5)).toBe(5);
      yield* TestClock.adjust("999 millis");
      expect(yield* count(sample, "10.0.0.1", 3)).toBe(0);
      yield* TestClock.adjust("1 millis");
      expect(yield* count(sample, "10.0.0.1", 25)).toBe(20);
    }),
  );
});
