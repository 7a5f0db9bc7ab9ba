/**
 * The in-process fan-out of committed audit events to Subscribe streams.
 *
 * The database table is the truth; the hub is a fast path over it. It publishes events in
 * sequence order, each once, and keeps `last`: every committed event with a sequence up to
 * `last` has been offered to every subscriber registered at the time. Events arrive two ways:
 * - this process's commits, straight from the writer (`onCommit`), when the batch starts right
 *   after `last` (nothing can be missing in between: sequences are handed out in commit order,
 *   see src/ports/AuditLogger.ts);
 * - otherwise (another instance wrote, a NOTIFY or the poll says so) the tailer reads the table
 *   after `last` (`catchUp`).
 *
 * Registration is synchronous against `last`, which is what makes the Subscribe seam exact: a
 * stream that has replayed the table through sequence N registers only when N is `last` (or
 * when the ring of recent events covers what lies between), so from then on the hub delivers
 * exactly the events after N.
 *
 * Each subscriber has a bounded buffer. Publishing never waits: a subscriber whose buffer is
 * full is dropped from the hub (its stream then ends with SUBSCRIBER_TOO_SLOW and the position
 * to resume from), so a slow reader never slows the writer or the other readers.
 */
import type { AuditEvent, AuditFilter } from "../../ports/AuditLogger.js";
import { matchesFilter } from "../../ports/AuditLogger.js";

/**
 * One delivered event, wrapped once when published and shared by every subscriber's buffer (with
 * a thousand subscribers, a wrapper per subscriber per event is most of the delivery cost).
 */
export interface EventItem {
  readonly _tag: "Event";
  readonly event: AuditEvent;
}

export interface HubSubscriber {
  readonly filter: AuditFilter;
  /** Events at or below this are not for this subscriber (it has them already). */
  readonly after: number;
  readonly capacity: number;
  /** Everything matching the filter equally: then it shares each published batch as it is. */
  readonly matchesAll: boolean;
  /**
   * Waiting events, as the batches they were published in (shared between subscribers, and
   * never modified once taken; see AuditHub.open): appending a batch is one push per subscriber
   * at most, not one per event.
   */
  buffer: Array<ReadonlyArray<EventItem>>;
  /** Events in `buffer`. */
  buffered: number;
  /** Set by a delivery (wakeAll): what is buffered may be taken; until then it accumulates. */
  ready: boolean;
  /** Every event up to this sequence is in `buffer`, was taken, or did not match. */
  examined: number;
  overflowed: boolean;
  /** Heartbeat ticks since it last had something to take; at the interval, a heartbeat is due. */
  idleTicks: number;
  heartbeatDue: boolean;
  /** Set while the subscriber's stream waits for events. */
  wake: (() => void) | undefined;
}

const isEmptyFilter = (f: AuditFilter): boolean =>
  (f.types === undefined || f.types.length === 0) &&
  f.principalSubject === undefined &&
  f.tenant === undefined &&
  f.operation === undefined &&
  f.executionId === undefined &&
  f.scheduleId === undefined;

/** Resumes the subscriber's stream if it is waiting. */
const wake = (s: HubSubscriber): void => {
  const w = s.wake;
  if (w === undefined) return;
  s.wake = undefined;
  w();
};

export class AuditHub {
  /** Highest sequence published (or known to be committed, when nobody listened). */
  last: number;
  private readonly subscribers = new Set<HubSubscriber>();
  /**
   * The events published since a subscriber last took this array, in one array that grows
   * with each publish and is shared by every subscriber whose buffer ends with it (those taking
   * every event, in step). A delivery round then hands each of them this one array, however
   * many commits it spans, instead of each subscriber copying the batches into an array of its
   * own (a thousand copies per round, most of the garbage of a round when commits are small
   * and frequent, as on the SQLite writer thread). The first subscriber to take it closes it:
   * an array once handed out never changes.
   */
  private open: EventItem[] | undefined;

  /** Takes everything waiting, in order (the events of several batches, joined). */
  take(s: HubSubscriber): ReadonlyArray<EventItem> {
    const batches = s.buffer;
    const n = s.buffered;
    s.buffer = [];
    s.buffered = 0;
    s.ready = false;
    if (batches.length > 0 && batches[batches.length - 1] === this.open) this.open = undefined;
    if (batches.length === 1) return batches[0]!;
    // A plain copy loop: Array.prototype.flat is several times slower on this path.
    const out = new Array<EventItem>(n);
    let k = 0;
    for (let b = 0; b < batches.length; b++) {
      const batch = batches[b]!;
      for (let i = 0; i < batch.length; i++) out[k++] = batch[i]!;
    }
    return out;
  }

  /** Recent published events, oldest first: they are every committed event in (ringFrom, last]. */
  private ring: EventItem[] = [];
  private ringHead = 0;
  private ringFrom: number;
  /** Bumped by every registration, so that an async step can tell whether one happened meanwhile. */
  registrations = 0;

  constructor(
    last: number,
    private readonly ringSize: number,
  ) {
    this.last = last;
    this.ringFrom = last;
  }

  get size(): number {
    return this.subscribers.size;
  }

  /** Publishes events in sequence order; those at or below `last` are skipped (already out). */
  publish(events: ReadonlyArray<AuditEvent>): void {
    const items: EventItem[] = [];
    for (const e of events) {
      if (e.sequence <= this.last) continue;
      this.last = e.sequence;
      const item: EventItem = { _tag: "Event", event: e };
      this.remember(item);
      items.push(item);
    }
    if (items.length === 0) return;
    const first = items[0]!.event.sequence;
    // Into the open array (see `open`): `items` becomes it, or is appended to it (and is then
    // shared as it is, never changed, by the subscribers not in step).
    const open = this.open;
    if (open === undefined) this.open = items;
    else for (let i = 0; i < items.length; i++) open.push(items[i]!);
    let held = false;
    for (const s of this.subscribers) {
      const all = s.matchesAll && first > s.after;
      const mine = all ? items : items.filter((i) => i.event.sequence > s.after && matchesFilter(i.event, s.filter));
      if (mine.length > 0) {
        if (s.buffered + mine.length > s.capacity) {
          this.drop(s);
          continue;
        }
        // In step: the open array it already holds has grown by these.
        if (all && open !== undefined && s.buffer[s.buffer.length - 1] === open) held = true;
        else {
          s.buffer.push(mine);
          if (mine === this.open) held = true;
        }
        s.buffered += mine.length;
        // Half full: deliver now rather than at the next interval, well before overflowing.
        if (s.buffered * 2 >= s.capacity) this.deliver(s);
      }
      if (this.last > s.examined) s.examined = this.last;
    }
    // Held by nobody (no subscriber in step), it would only grow.
    if (!held) this.open = undefined;
    if (this.onPublish !== undefined) this.onPublish();
    else this.wakeAll();
  }

  /**
   * When set, `publish` calls it instead of waking the subscribers at once: the caller wakes
   * them (`wakeAll`) at most once per delivery interval. With many subscribers and a busy writer,
   * waking every subscriber after every small commit makes each one pull a handful of events at a
   * time; coalescing the wake-ups lets each pull take a batch, for a few milliseconds of latency.
   */
  onPublish: (() => void) | undefined;

  wakeAll(): void {
    for (const s of this.subscribers) if (s.buffered > 0) this.deliver(s);
  }

  private deliver(s: HubSubscriber): void {
    s.ready = true;
    wake(s);
  }

  /**
   * `last` moves to `to` without events: allowed only when nobody is registered (nobody needs
   * the events in between), which the caller checks with `registrations`.
   */
  skipTo(to: number): void {
    if (this.subscribers.size > 0 || to <= this.last) return;
    this.last = to;
    this.open = undefined;
    this.ring = [];
    this.ringHead = 0;
    this.ringFrom = to;
  }

  /**
   * Registers a subscriber that has everything up to `cursor`, if the hub can take it from
   * there: `cursor` is `last`, or beyond it, or the ring holds what lies between (then those
   * events start its buffer). Undefined: read the table up to `last` first, then try again.
   */
  register(cursor: number, filter: AuditFilter, capacity: number): HubSubscriber | undefined {
    if (cursor < this.last && cursor < this.ringFrom) return undefined;
    const buffer: EventItem[] = [];
    if (cursor < this.last) {
      for (let i = this.ringHead; i < this.ring.length; i++) {
        const item = this.ring[i]!;
        if (item.event.sequence > cursor && matchesFilter(item.event, filter)) buffer.push(item);
      }
      // Too much to start with is the same as falling behind later.
      if (buffer.length > capacity) return undefined;
    }
    const s: HubSubscriber = {
      filter,
      after: cursor,
      capacity,
      matchesAll: isEmptyFilter(filter),
      buffer: buffer.length === 0 ? [] : [buffer],
      buffered: buffer.length,
      ready: buffer.length > 0,
      examined: Math.max(cursor, this.last),
      overflowed: false,
      idleTicks: 0,
      heartbeatDue: false,
      wake: undefined,
    };
    this.subscribers.add(s);
    this.registrations++;
    this.onRegister?.();
    return s;
  }

  /** Called after each registration (the heartbeat ticker sleeps while nobody is registered). */
  onRegister: (() => void) | undefined;

  /**
   * One heartbeat tick: a subscriber with nothing to take for `ticksPerHeartbeat` ticks in a row
   * is woken with a heartbeat due. One ticker for all subscribers, rather than a timer raced
   * against every wait of every subscriber (with a thousand subscribers, that timer churn was
   * most of the cost of delivering an event).
   */
  tick(ticksPerHeartbeat: number): void {
    for (const s of this.subscribers) {
      if (s.buffered > 0) continue;
      if (++s.idleTicks >= ticksPerHeartbeat) {
        s.idleTicks = 0;
        s.heartbeatDue = true;
        wake(s);
      }
    }
  }

  unregister(s: HubSubscriber): void {
    this.subscribers.delete(s);
  }

  private drop(s: HubSubscriber): void {
    s.overflowed = true;
    s.buffer = [];
    s.buffered = 0;
    s.ready = false;
    this.subscribers.delete(s);
    wake(s);
  }

  private remember(item: EventItem): void {
    if (this.ringSize <= 0) {
      this.ringFrom = item.event.sequence;
      return;
    }
    this.ring.push(item);
    if (this.ring.length - this.ringHead > this.ringSize) {
      this.ringFrom = this.ring[this.ringHead]!.event.sequence;
      this.ringHead++;
      // Compact now and then rather than shifting on every event.
      if (this.ringHead >= this.ringSize) {
        this.ring = this.ring.slice(this.ringHead);
        this.ringHead = 0;
      }
    }
  }
}
