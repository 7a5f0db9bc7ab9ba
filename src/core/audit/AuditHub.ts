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

export interface HubSubscriber {
  readonly filter: AuditFilter;
  /** Events at or below this are not for this subscriber (it has them already). */
  readonly after: number;
  readonly capacity: number;
  buffer: AuditEvent[];
  /** Every event up to this sequence is in `buffer`, was taken, or did not match. */
  examined: number;
  overflowed: boolean;
  /** Set while the subscriber's stream waits for events. */
  wake: (() => void) | undefined;
}

export class AuditHub {
  /** Highest sequence published (or known to be committed, when nobody listened). */
  last: number;
  private readonly subscribers = new Set<HubSubscriber>();
  /** Recent published events, oldest first: they are every committed event in (ringFrom, last]. */
  private ring: AuditEvent[] = [];
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
    for (const e of events) {
      if (e.sequence <= this.last) continue;
      this.last = e.sequence;
      this.remember(e);
      for (const s of this.subscribers) {
        if (e.sequence > s.after && matchesFilter(e, s.filter)) {
          if (s.buffer.length >= s.capacity) {
            this.drop(s);
            continue;
          }
          s.buffer.push(e);
        }
        if (e.sequence > s.examined) s.examined = e.sequence;
      }
    }
    for (const s of this.subscribers) {
      if (s.wake !== undefined && s.buffer.length > 0) {
        const w = s.wake;
        s.wake = undefined;
        w();
      }
    }
  }

  /**
   * `last` moves to `to` without events: allowed only when nobody is registered (nobody needs
   * the events in between), which the caller checks with `registrations`.
   */
  skipTo(to: number): void {
    if (this.subscribers.size > 0 || to <= this.last) return;
    this.last = to;
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
    const buffer: AuditEvent[] = [];
    if (cursor < this.last) {
      for (let i = this.ringHead; i < this.ring.length; i++) {
        const e = this.ring[i]!;
        if (e.sequence > cursor && matchesFilter(e, filter)) buffer.push(e);
      }
      // Too much to start with is the same as falling behind later.
      if (buffer.length > capacity) return undefined;
    }
    const s: HubSubscriber = {
      filter,
      after: cursor,
      capacity,
      buffer,
      examined: Math.max(cursor, this.last),
      overflowed: false,
      wake: undefined,
    };
    this.subscribers.add(s);
    this.registrations++;
    return s;
  }

  unregister(s: HubSubscriber): void {
    this.subscribers.delete(s);
  }

  private drop(s: HubSubscriber): void {
    s.overflowed = true;
    s.buffer = [];
    this.subscribers.delete(s);
    if (s.wake !== undefined) {
      const w = s.wake;
      s.wake = undefined;
      w();
    }
  }

  private remember(e: AuditEvent): void {
    if (this.ringSize <= 0) {
      this.ringFrom = e.sequence;
      return;
    }
    this.ring.push(e);
    if (this.ring.length - this.ringHead > this.ringSize) {
      this.ringFrom = this.ring[this.ringHead]!.sequence;
      this.ringHead++;
      // Compact now and then rather than shifting on every event.
      if (this.ringHead >= this.ringSize) {
        this.ring = this.ring.slice(this.ringHead);
        this.ringHead = 0;
      }
    }
  }
}
