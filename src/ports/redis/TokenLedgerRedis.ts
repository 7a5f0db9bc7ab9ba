/**
 * TokenLedger in Redis, so that several instances share budgets and model limits exactly.
 *
 * One round trip per operation (reserve, usage, settle, remaining): a Lua script (EVALSHA, EVAL
 * when the script cache is empty) reads every counter of the step, checks them and charges them
 * all or none. Redis runs a script atomically, so concurrent steps from any number of instances
 * are serialized: a budget of N admits exactly N.
 *
 * A counter is a hash: field = bucket index, value = tokens (or requests) charged in that bucket
 * (the buckets of src/policy/budgets/windows.ts, the same arithmetic line by line). A step drops
 * the buckets that rolled out; the key expires one bucket after its newest bucket rolls out.
 * Clock: Redis's own (TIME), like the rate limiter, so that instances with skewed clocks agree on
 * windows; the Redis tests therefore run in real time.
 *
 * Redis unreachable: a reservation is refused with RateLimiterUnavailable (`onError` "deny",
 * the default) or admitted without reserving ("allow"); reported usage is not charged until the
 * end; a settlement that fails is logged (those tokens go uncounted). Connection losses and
 * recoveries are logged once each. Not for Redis Cluster (one step touches several hash slots).
 */
import { Effect, Layer } from "effect";
import { makeTokenLedger, type CounterOp, type CounterStore, type StepResult } from "../../policy/budgets/ledger.js";
import { bucketsPerWindow } from "../../policy/budgets/windows.js";
import type { FailureMode } from "../RateLimiter.js";
import { TokenLedger } from "../TokenLedger.js";
import { connectRedis, runScript, script } from "./connection.js";

export interface RedisTokenLedgerOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` for TLS. */
  readonly url: string;
  /** When Redis cannot be asked: refuse reservations ("deny", default) or admit them ("allow"). */
  readonly onError?: FailureMode;
  /** Prefix of every key this Layer writes. Default "orchestrator:tl:". */
  readonly keyPrefix?: string;
  /** A step not answered within this is an error (then `onError` decides). Default 1000 ms. */
  readonly commandTimeoutMs?: number;
  /** How long the Layer waits for the first connection before it starts degraded. Default 2 s. */
  readonly connectTimeoutMs?: number;
}

/**
 * KEYS: the counters. ARGV: checked (1/0), buckets per window, then per key: limit, window (ms),
 * amount, need, at (ms; the bucket a refund comes from). Returns {admitted, now, then per key:
 * used before the step, retry after (ms, when the key cannot take `need`; else 0)}.
 */
export const stepScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local checked = ARGV[1] == '1'
local per = tonumber(ARGV[2])
local admitted = 1
local reply = { 0, now }
local geo = {}
for i = 1, #KEYS do
  local b = 2 + (i - 1) * 5
  local limit = tonumber(ARGV[b + 1])
  local window = tonumber(ARGV[b + 2])
  local need = tonumber(ARGV[b + 4])
  local w = math.max(1, math.ceil(window / per))
  local span = math.ceil(window / w)
  local j = math.floor(now / w)
  local flat = redis.call('HGETALL', KEYS[i])
  local live = {}
  local stale = {}
  local used = 0
  for f = 1, #flat, 2 do
    local idx = tonumber(flat[f])
    local n = tonumber(flat[f + 1])
    if idx < j - span or n <= 0 then
      stale[#stale + 1] = flat[f]
    else
      used = used + n
      live[#live + 1] = { idx, n }
    end
  end
  if #stale > 0 then redis.call('HDEL', KEYS[i], unpack(stale)) end
  local retry = 0
  if limit - used < need then
    if checked then admitted = 0 end
    table.sort(live, function(x, y) return x[1] < y[1] end)
    local toFree = used + need - limit
    local freed = 0
    retry = -1
    for k = 1, #live do
      freed = freed + live[k][2]
      if freed >= toFree then
        retry = (live[k][1] + span + 1) * w - now
        break
      end
    end
    if retry < 0 then
      if #live > 0 then retry = (live[#live][1] + span + 1) * w - now else retry = span * w end
    end
  end
  geo[i] = { w, span, j }
  reply[#reply + 1] = used
  reply[#reply + 1] = retry
end
if admitted == 1 then
  for i = 1, #KEYS do
    local b = 2 + (i - 1) * 5
    local amount = tonumber(ARGV[b + 3])
    local w, span, j = geo[i][1], geo[i][2], geo[i][3]
    if amount > 0 then
      redis.call('HINCRBY', KEYS[i], string.format('%d', j), amount)
      redis.call('PEXPIRE', KEYS[i], (span + 2) * w)
    elseif amount < 0 then
      local idx = math.floor(tonumber(ARGV[b + 5]) / w)
      if idx >= j - span then
        local field = string.format('%d', idx)
        local left = tonumber(redis.call('HGET', KEYS[i], field) or '0') + amount
        if left > 0 then redis.call('HSET', KEYS[i], field, left) else redis.call('HDEL', KEYS[i], field) end
      end
    end
  end
end
reply[1] = admitted
return reply
`;

const step = script(stepScript);

export const makeRedisTokenLedger = (options: RedisTokenLedgerOptions) =>
  Effect.gen(function* () {
    const onError = options.onError ?? "deny";
    const prefix = options.keyPrefix ?? "orchestrator:tl:";
    const timeoutMs = options.commandTimeoutMs ?? 1000;
    const client = yield* connectRedis({
      url: options.url,
      commandTimeoutMs: timeoutMs,
      ...(options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: options.connectTimeoutMs }),
      name: "redis token ledger",
      whileDown: `reservations ${onError === "deny" ? "refused (fail closed)" : "admitted unreserved (fail open)"}`,
      whileDownAtStart: `reservations ${onError === "deny" ? "refused" : "admitted unreserved"}`,
    });

    const store: CounterStore<unknown> = {
      step: (ops: ReadonlyArray<CounterOp>, checked: boolean) => {
        const args: Array<string | number> = [checked ? 1 : 0, bucketsPerWindow];
        for (const o of ops) args.push(o.counter.limit, o.counter.windowMs, o.amount, o.need, o.at ?? 0);
        return runScript(client, step, ops.map((o) => prefix + o.counter.key), args, timeoutMs).pipe(
          Effect.map((reply): StepResult => {
            const r = reply as ReadonlyArray<number>;
            return {
              admitted: r[0] === 1,
              now: r[1]!,
              used: ops.map((_, i) => r[2 + 2 * i]!),
              retryAfterMs: ops.map((_, i) => r[3 + 2 * i]!),
            };
          }),
        );
      },
    };
    return yield* makeTokenLedger(store, { name: "redis token ledger", onError });
  });

export const TokenLedgerRedis = {
  layer: (options: RedisTokenLedgerOptions): Layer.Layer<TokenLedger> => Layer.scoped(TokenLedger, makeRedisTokenLedger(options)),
};
