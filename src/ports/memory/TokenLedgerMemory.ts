/**
 * TokenLedger in this process's memory (the default; one instance). Each step — check the
 * counters, then charge them all or none — runs in one synchronous block, which Node's single
 * thread never interleaves: a budget of N admits exactly N under any concurrency. Time comes from
 * Effect's Clock (TestClock in tests). Counters with nothing left in their window are swept every
 * minute; a counter costs at most 61 numbers (src/policy/budgets/windows.ts).
 */
import { Clock, Effect, Layer, Schedule } from "effect";
import { makeTokenLedger, type CounterOp, type CounterStore, type StepResult } from "../../policy/budgets/ledger.js";
import { RollingCounter } from "../../policy/budgets/windows.js";
import { TokenLedger } from "../TokenLedger.js";

export const makeMemoryTokenLedger = (options: { readonly sweepIntervalMs?: number } = {}) =>
  Effect.gen(function* () {
    const counters = new Map<string, RollingCounter>();
    const counterOf = (op: CounterOp) => {
      let c = counters.get(op.counter.key);
      if (c === undefined) counters.set(op.counter.key, (c = new RollingCounter(op.counter.windowMs)));
      return c;
    };

    const stepAt = (now: number, ops: ReadonlyArray<CounterOp>, checked: boolean): StepResult => {
      const cs = ops.map(counterOf);
      const used = cs.map((c) => c.used(now));
      const retryAfterMs = ops.map((o, i) => (o.counter.limit - used[i]! < o.need ? cs[i]!.retryAfter(now, o.counter.limit, o.need) : 0));
      const admitted = !checked || ops.every((o, i) => o.counter.limit - used[i]! >= o.need);
      if (admitted) {
        ops.forEach((o, i) => {
          if (o.amount > 0) cs[i]!.charge(now, o.amount);
          else if (o.amount < 0) cs[i]!.refund(now, o.at ?? now, -o.amount);
        });
      }
      return { admitted, now, used, retryAfterMs };
    };

    const store: CounterStore<never> = {
      step: (ops, checked) => Effect.map(Clock.currentTimeMillis, (now) => stepAt(now, ops, checked)),
    };

    yield* Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.sync(() => {
        for (const [k, c] of counters) if (c.empty(now)) counters.delete(k);
      }),
    ).pipe(Effect.repeat(Schedule.spaced(`${options.sweepIntervalMs ?? 60_000} millis`)), Effect.forkScoped);

    return yield* makeTokenLedger(store, { name: "token ledger" });
  });

export const TokenLedgerMemory: Layer.Layer<TokenLedger> = Layer.scoped(TokenLedger, makeMemoryTokenLedger());
