/**
 * Reading the audit log: Subscribe (replay from the store, then live, with no gap and no
 * duplicate at the join), ListAuditEvents (paged history), who may read what, and retention.
 *
 * Who reads what: `audit:read` reads the caller's own tenant (events whose principal belongs to
 * it); `audit:read-all-tenants` reads every tenant's events and those with no principal (failed
 * authentications, policy reloads). Asking for another tenant without it is PERMISSION_DENIED.
 *
 * A Subscribe stream is a small state machine:
 * - replay: read the table after the cursor, through the hub's `last`, page by page, in
 *   sequence order; after each page, check the retention watermark (rows pruned under the
 *   reader would be a silent gap: that is AUDIT_SEQUENCE_EXPIRED instead);
 * - join: when the cursor reaches the hub's `last` (or the hub's ring of recent events covers
 *   the rest), register with the hub synchronously at exactly that point (AuditHub.ts);
 * - live: take whatever the hub buffered, all at once; with nothing for a heartbeat interval,
 *   send a heartbeat carrying the position; when the hub dropped the subscriber for being too
 *   slow, fail with SUBSCRIBER_TOO_SLOW and the position to resume from (everything up to it was
 *   delivered or did not match).
 */
import { Channel, Chunk, Clock, Duration, Effect, Schedule, Stream } from "effect";
import { AuditLogger, type AuditEvent, type AuditFilter } from "../../ports/AuditLogger.js";
import {
  AuditSequenceAhead,
  AuditSequenceExpired,
  PermissionDenied,
  SubscriberTooSlow,
  type InvalidInput,
  type StoreError,
} from "../errors.js";
import type { Principal } from "../model.js";
import { decodePageToken, encodePageToken, resolvePageSize } from "../paging.js";
import { hasPermission } from "../permissions.js";
import { AuditConfig, auditReadAllTenantsPermission, auditReadPermission } from "./AuditConfig.js";
import { AuditHub, type EventItem, type HubSubscriber } from "./AuditHub.js";

export type SubscribeStart =
  | { readonly _tag: "Now" }
  | { readonly _tag: "Earliest" }
  /** Events after this sequence; 0 is the same as Earliest. */
  | { readonly _tag: "After"; readonly sequence: number };

export type SubscribeItem = EventItem | { readonly _tag: "Heartbeat"; readonly lastSequence: number; readonly time: number };

export interface ListAuditQuery {
  readonly filter: AuditFilter;
  readonly order?: "ASCENDING" | "DESCENDING";
  readonly pageSize?: number;
  readonly pageToken?: string;
}

export type SubscribeError = PermissionDenied | AuditSequenceExpired | AuditSequenceAhead | SubscriberTooSlow | StoreError;

/** A flag one fiber waits on: `raise` sets it and wakes the waiter; `wait` returns while it is set. */
const makeFlag = () => {
  let raised = false;
  let waiter: (() => void) | undefined;
  return {
    raise: (): void => {
      raised = true;
      const w = waiter;
      waiter = undefined;
      w?.();
    },
    lower: (): void => void (raised = false),
    wait: Effect.async<void>((resume) => {
      if (raised) return resume(Effect.void);
      waiter = () => resume(Effect.void);
      return Effect.sync(() => void (waiter = undefined));
    }),
  };
};

/** Rows per read when the hub catches up from the table. */
const tailPage = 1_000;

export class AuditLog extends Effect.Service<AuditLog>()("orchestrator/AuditLog", {
  scoped: Effect.gen(function* () {
    const config = yield* AuditConfig;
    const audit = yield* AuditLogger;

    const initial = yield* audit.bounds.pipe(
      Effect.catchAll((e) => Effect.logError("audit log: cannot read its bounds; starting from 0", e.cause).pipe(Effect.as({ last: 0 }))),
    );
    const hub = new AuditHub(initial.last, config.recentEvents);

    // The tailer: wakes on a signal (another process wrote, or this process's batch did not
    // follow `last`) or on the poll interval, and reads the table after `last`.
    const tail = makeFlag();

    const catchUp: Effect.Effect<void, StoreError> = Effect.gen(function* () {
      for (;;) {
        if (hub.size === 0) {
          // Nobody to deliver to: learn where the log ends without reading it, unless someone
          // registered meanwhile (then their events must be read and published).
          const epoch = hub.registrations;
          const b = yield* audit.bounds;
          if (hub.size === 0 && hub.registrations === epoch) return hub.skipTo(b.last);
        }
        const rows = yield* audit.query({ filter: {}, after: hub.last, order: "ASCENDING", limit: tailPage });
        hub.publish(rows);
        if (rows.length < tailPage) return;
      }
    });

    yield* audit.watch((committed) => {
      if (committed !== undefined && committed.length > 0) {
        const first = committed[0]!.sequence;
        if (first === hub.last + 1) return hub.publish(committed);
        if (first <= hub.last) return; // already read from the table
      }
      tail.raise();
    });

    yield* Effect.gen(function* () {
      yield* Effect.timeoutOption(tail.wait, Duration.millis(config.pollIntervalMs));
      tail.lower();
      yield* catchUp.pipe(Effect.catchAll((e) => Effect.logWarning("audit log: catching up failed; retrying", e.cause)));
    }).pipe(Effect.forever, Effect.forkScoped);

    // Delivery: wake subscribers at most once per interval (AuditHub.onPublish).
    //
    // A round first waits, for one interval at most, until what this process logged before it
    // is committed (and so published): a round of many subscribers holds the thread for tens of
    // milliseconds, and a commit that ends meanwhile on another thread (SQLite's writer thread)
    // or connection is seen only after it, its events then waiting for the next round: a whole
    // round of latency more (bench/audit.ts fan-out: p50 +6 ms, p99 +30 ms or more). With the
    // commits in flight taken in, a round carries everything logged before it, as when commits
    // ran on this thread. Idle, there is nothing in flight and the wait is none; with no
    // subscriber it is skipped.
    if (config.deliveryIntervalMs > 0) {
      const published = makeFlag();
      hub.onPublish = published.raise;
      const interval = Duration.millis(config.deliveryIntervalMs);
      yield* Effect.gen(function* () {
        yield* published.wait;
        if (hub.size > 0) yield* Effect.timeoutOption(audit.flush, interval);
        published.lower();
        hub.wakeAll();
        yield* Effect.sleep(interval);
      }).pipe(Effect.forever, Effect.forkScoped);
    }

    // Heartbeats: one ticker for every subscriber (AuditHub.tick), asleep while there is none.
    const tickMs = Math.min(1_000, config.heartbeatIntervalMs);
    const ticksPerHeartbeat = Math.max(1, Math.round(config.heartbeatIntervalMs / tickMs));
    let wakeTicker: (() => void) | undefined;
    hub.onRegister = () => {
      if (wakeTicker !== undefined) {
        const w = wakeTicker;
        wakeTicker = undefined;
        w();
      }
    };
    const untilSubscribed = Effect.async<void>((resume) => {
      if (hub.size > 0) return resume(Effect.void);
      wakeTicker = () => resume(Effect.void);
      return Effect.sync(() => void (wakeTicker = undefined));
    });
    yield* Effect.gen(function* () {
      yield* untilSubscribed;
      yield* Effect.sleep(Duration.millis(tickMs));
      hub.tick(ticksPerHeartbeat);
    }).pipe(Effect.forever, Effect.forkScoped);

    // Retention: by age and/or count, in the background.
    if (config.retentionMaxAgeMs !== undefined || config.retentionMaxEvents !== undefined) {
      yield* Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis;
        const n = yield* audit.prune({
          ...(config.retentionMaxAgeMs === undefined ? {} : { olderThan: now - config.retentionMaxAgeMs }),
          ...(config.retentionMaxEvents === undefined ? {} : { keepLast: config.retentionMaxEvents }),
        });
        if (n > 0) yield* Effect.logInfo(`pruned ${n} audit events`);
      }).pipe(
        Effect.catchAll((e) => Effect.logError("audit log: prune failed", e.cause)),
        Effect.repeat(Schedule.spaced(Duration.millis(config.pruneIntervalMs))),
        Effect.forkScoped,
      );
    }

    /** The filter narrowed to what the principal may read; fails when it asks for more. */
    const scope = (principal: Principal, filter: AuditFilter) =>
      Effect.gen(function* () {
        const allowed = hasPermission(principal, auditReadPermission, config.roles);
        if (!allowed) {
          yield* audit.log({ type: "AUTH_DENIED", principal, decision: "DENY", reason: "PERMISSION_DENIED", details: { permission: auditReadPermission } });
          return yield* new PermissionDenied({ subject: principal.subject, permission: auditReadPermission });
        }
        if (hasPermission(principal, auditReadAllTenantsPermission, config.roles)) return filter;
        if (filter.tenant !== undefined && filter.tenant !== principal.tenant) {
          yield* audit.log({ type: "AUTH_DENIED", principal, decision: "DENY", reason: "PERMISSION_DENIED", details: { permission: auditReadAllTenantsPermission, tenant: filter.tenant } });
          return yield* new PermissionDenied({ subject: principal.subject, permission: auditReadAllTenantsPermission });
        }
        return { ...filter, tenant: principal.tenant };
      });

    const subscribe = (principal: Principal, requested: AuditFilter, start: SubscribeStart): Stream.Stream<SubscribeItem, SubscribeError> =>
      Stream.unwrapScoped(
        Effect.gen(function* () {
          // The span lasts as long as the stream (its scope) and is the parent of the stream's
          // reads. Not Stream.withSpan: that provides the span to every step of the stream, a
          // context change on every pull of every subscriber; with a thousand subscribers that
          // was about half the cost of a delivery round (bench/audit.ts fan-out: p50 ~27 ms,
          // ~15 ms without it).
          const span = yield* Effect.makeSpanScoped("AuditLog.subscribe");
          const traced = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.withParentSpan(effect, span);
          const filter = yield* traced(scope(principal, requested));
          let cursor: number;
          if (start._tag === "Now") {
            cursor = hub.last;
          } else {
            const b = yield* traced(audit.bounds);
            if (start._tag === "Earliest" || start.sequence === 0) {
              cursor = b.prunedThrough;
            } else {
              const last = Math.max(b.last, hub.last);
              if (start.sequence > last) return yield* new AuditSequenceAhead({ afterSequence: start.sequence, lastSequence: last });
              if (start.sequence < b.prunedThrough) {
                return yield* new AuditSequenceExpired({ afterSequence: start.sequence, earliestSequence: b.earliest === 0 ? b.prunedThrough + 1 : b.earliest });
              }
              cursor = start.sequence;
            }
          }

          let sub: HubSubscriber | undefined;
          // Everything up to here was delivered or did not match: where a resume should start.
          let position = cursor;
          yield* Effect.addFinalizer(() => Effect.sync(() => sub !== undefined && hub.unregister(sub)));

          const replayPage = traced(Effect.gen(function* () {
            const through = hub.last;
            const rows = yield* audit.query({ filter, after: cursor, through, order: "ASCENDING", limit: config.replayPageSize });
            const b = yield* audit.bounds;
            if (b.prunedThrough > cursor) {
              return yield* new AuditSequenceExpired({ afterSequence: position, earliestSequence: b.earliest === 0 ? b.prunedThrough + 1 : b.earliest });
            }
            cursor = rows.length < config.replayPageSize ? Math.max(cursor, through) : rows[rows.length - 1]!.sequence;
            return rows;
          }));

          const waitLive = (s: HubSubscriber) =>
            Effect.async<void>((resume) => {
              if ((s.ready && s.buffered > 0) || s.overflowed || s.heartbeatDue) return resume(Effect.void);
              s.wake = () => resume(Effect.void);
              return Effect.sync(() => void (s.wake = undefined));
            });

          const pull: Effect.Effect<Chunk.Chunk<SubscribeItem>, SubscribeError> = Effect.gen(function* () {
            for (;;) {
              if (sub === undefined) {
                sub = hub.register(cursor, filter, config.subscriberBufferSize);
                if (sub === undefined) {
                  const rows = yield* replayPage;
                  // Delivered with this chunk, before anything this stream pulls later can fail.
                  position = cursor;
                  if (rows.length > 0) {
                    return Chunk.unsafeFromArray(rows.map((event): SubscribeItem => ({ _tag: "Event", event })));
                  }
                  continue;
                }
              }
              const s: HubSubscriber = sub;
              if (s.overflowed) return yield* new SubscriberTooSlow({ lastSequence: position, bufferSize: s.capacity });
              if (s.ready && s.buffered > 0) {
                const items: ReadonlyArray<SubscribeItem> = hub.take(s);
                s.idleTicks = 0;
                s.heartbeatDue = false;
                position = s.examined;
                return Chunk.unsafeFromArray(items);
              }
              if (s.heartbeatDue) {
                s.heartbeatDue = false;
                position = s.examined;
                const time = yield* Clock.currentTimeMillis;
                return Chunk.of<SubscribeItem>({ _tag: "Heartbeat", lastSequence: position, time });
              }
              yield* waitLive(s);
            }
          });

          // Pull, write, again: the channel Stream.repeatEffectChunk builds, without the Option
          // boxing and the error mapping it adds on every pull (end of stream is never pulled).
          const loop: Channel.Channel<Chunk.Chunk<SubscribeItem>, unknown, SubscribeError, unknown, void, unknown> = Channel.flatMap(Channel.fromEffect(pull), (chunk) =>
            Channel.flatMap(Channel.write(chunk), () => loop),
          );
          return Stream.fromChannel(loop);
        }),
      );

    const list = (principal: Principal, q: ListAuditQuery): Effect.Effect<{ events: ReadonlyArray<AuditEvent>; nextPageToken: string }, PermissionDenied | InvalidInput | StoreError> =>
      Effect.gen(function* () {
        const filter = yield* scope(principal, q.filter);
        const pageSize = yield* resolvePageSize(q.pageSize ?? 0);
        const order = q.order ?? "ASCENDING";
        const after = yield* decodePageToken<number>(q.pageToken ?? "", { filter, order });
        const rows = yield* audit.query({
          filter,
          order,
          limit: pageSize + 1,
          ...(after === undefined ? {} : order === "ASCENDING" ? { after } : { before: after }),
        });
        const events = rows.slice(0, pageSize);
        return {
          events,
          nextPageToken: rows.length > pageSize ? encodePageToken(events[events.length - 1]!.sequence, { filter, order }) : "",
        };
      }).pipe(Effect.withSpan("AuditLog.list"));

    return {
      subscribe,
      list,
      /** The highest sequence delivered to subscribers of this process (tests, metrics). */
      lastPublished: () => hub.last,
      subscribers: () => hub.size,
    };
  }),
}) {}
