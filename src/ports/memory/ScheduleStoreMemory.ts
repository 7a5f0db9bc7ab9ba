/**
 * ScheduleStore in process memory, for tests and for embedding without a disk. The due queue is
 * a binary min-heap of (nextFireTime, scheduleId) with lazy deletion: an entry whose time no
 * longer matches the record is dropped when it surfaces.
 */
import { Effect, Layer, Option } from "effect";
import type { Claim, ClaimOutcome, ScheduleFilter, ScheduleRecord } from "../../core/schedule/model.js";
import { matchesFilter } from "../../core/schedule/model.js";
import { ScheduleStore, type SchedulePage, type StoredRequest } from "../ScheduleStore.js";
import { MinHeap, type HeapEntry } from "../../core/min-heap.js";

type Entry = HeapEntry<string>;

interface StoredClaim extends Claim {
  readonly settled: boolean;
}

const make = Effect.sync(() => {
  const byId = new Map<string, ScheduleRecord>();
  const heap = new MinHeap<string>();
  const claims = new Map<string, StoredClaim>();
  const requests = new Map<string, StoredRequest>();
  const key = (scheduleId: string, claimId: string) => `${scheduleId}\u0000${claimId}`;

  const valid = (e: Entry) => byId.get(e[1])?.nextFireTime === e[0];
  const index = (r: ScheduleRecord) => {
    if (r.nextFireTime !== undefined) heap.push([r.nextFireTime, r.scheduleId]);
  };
  const write = (r: ScheduleRecord, expectedRev: number): boolean => {
    const cur = byId.get(r.scheduleId);
    if (cur === undefined || cur.rev !== expectedRev) return false;
    const changed = cur.nextFireTime !== r.nextFireTime;
    byId.set(r.scheduleId, structuredClone(r));
    if (changed) index(r);
    return true;
  };
  const insertClaim = (c: Claim): boolean => {
    const k = key(c.scheduleId, c.claimId);
    if (claims.has(k)) return false;
    claims.set(k, { ...c, settled: false });
    return true;
  };

  return ScheduleStore.of({
    insert: (r) =>
      Effect.sync(() => {
        if (byId.has(r.scheduleId)) return false;
        byId.set(r.scheduleId, structuredClone(r));
        index(r);
        return true;
      }),
    get: (id) => Effect.sync(() => Option.map(Option.fromNullable(byId.get(id)), (r) => structuredClone(r))),
    list: (filter: ScheduleFilter, pageSize, after) =>
      Effect.sync((): SchedulePage => {
        const all = [...byId.values()]
          .filter((r) => (after === undefined || r.scheduleId > after) && matchesFilter(filter, r))
          .sort((a, b) => (a.scheduleId < b.scheduleId ? -1 : a.scheduleId > b.scheduleId ? 1 : 0));
        const items = all.slice(0, pageSize).map((r) => structuredClone(r));
        return { items, next: all.length > pageSize ? items.at(-1)?.scheduleId : undefined };
      }),
    replace: (r, expectedRev, settle) =>
      Effect.sync(() => {
        if (!write(r, expectedRev)) return false;
        if (settle !== undefined) claims.delete(key(r.scheduleId, settle.claimId)); // as settleClaim
        return true;
      }),
    advance: (r, expectedRev, cs) =>
      Effect.sync(() => {
        if (!write(r, expectedRev)) return false;
        for (const c of cs) insertClaim(c);
        return true;
      }),
    remove: (id) =>
      Effect.sync(() => {
        for (const k of [...claims.keys()]) if (k.startsWith(`${id}\u0000`)) claims.delete(k);
        return byId.delete(id);
      }),
    due: (now, limit) =>
      Effect.sync(() => {
        const out: string[] = [];
        const seen = new Set<string>();
        const keep: Entry[] = [];
        while (out.length < limit) {
          const top = heap.peek();
          if (top === undefined || top[0] > now) break;
          heap.pop();
          if (!valid(top) || seen.has(top[1])) continue;
          seen.add(top[1]);
          out.push(top[1]);
          keep.push(top);
        }
        // Due entries stay queued until an advance moves the schedule's time.
        for (const e of keep) heap.push(e);
        return out;
      }),
    earliest: () =>
      Effect.sync(() => {
        for (;;) {
          const top = heap.peek();
          if (top === undefined) return Option.none();
          if (valid(top)) return Option.some(top[0]);
          heap.pop();
        }
      }),
    claim: (c) => Effect.sync(() => insertClaim(c)),
    confirmClaim: (scheduleId, claimId, instanceId, leaseUntil, newLeaseUntil) =>
      Effect.sync(() => {
        const k = key(scheduleId, claimId);
        const c = claims.get(k);
        if (c === undefined || c.settled || c.instanceId !== instanceId || c.leaseUntil !== leaseUntil) return false;
        claims.set(k, { ...c, leaseUntil: newLeaseUntil });
        return true;
      }),
    settleClaim: (scheduleId, claimId, _outcome: ClaimOutcome) =>
      Effect.sync(() => {
        // One instance per memory store: the cursor alone keeps a slot from being claimed again.
        claims.delete(key(scheduleId, claimId));
      }),
    takeExpiredClaims: (now, instanceId, leaseUntil, limit) =>
      Effect.sync(() => {
        const out: Claim[] = [];
        for (const [k, c] of claims) {
          if (out.length >= limit) break;
          if (c.settled || c.leaseUntil >= now) continue;
          const taken = { ...c, instanceId, leaseUntil };
          claims.set(k, taken);
          const { settled: _s, ...claim } = taken;
          out.push(claim);
        }
        return out;
      }),
    count: () => Effect.sync(() => byId.size),
    findRequest: (subject, requestId) => Effect.sync(() => Option.fromNullable(requests.get(JSON.stringify([subject, requestId])))),
    saveRequest: (subject, requestId, request, expiredBefore) =>
      Effect.sync(() => {
        const k = JSON.stringify([subject, requestId]);
        for (const [key, r] of requests) if (r.time < expiredBefore) requests.delete(key);
        const old = requests.get(k);
        if (old === undefined || old.time < expiredBefore) requests.set(k, request);
      }),
  });
});

/** A fresh, empty store per Layer build. */
export const ScheduleStoreMemory: Layer.Layer<ScheduleStore> = Layer.effect(ScheduleStore, make);
