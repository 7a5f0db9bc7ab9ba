/**
 * Messages between instances that share a store: what one instance's scheduler does that callers
 * connected to another should see (WatchSchedule), or that another must act on (CANCEL_OTHER of
 * a run that instance runs). Best effort, at most once: a message sent while an instance's
 * listening connection is down is lost. The store stays the truth; the bus only makes the other
 * instances hear of a change now rather than never.
 *
 * One process (SQLite, memory stores) has no one to tell: without this service in the context,
 * the scheduler keeps its events to itself. PostgreSQL: InstanceBusPostgres (NOTIFY/LISTEN).
 */
import { Context, type Effect, type Stream } from "effect";

export interface InstanceBusShape {
  /** Sends `message` (text, at most 7,500 bytes) to every other instance listening on `channel`. */
  readonly send: (channel: string, message: string) => Effect.Effect<void>;
  /** What the other instances send on `channel` (never this one's own), for as long as it is read. */
  readonly receive: (channel: string) => Stream.Stream<string>;
}

export class InstanceBus extends Context.Tag("orchestrator/InstanceBus")<InstanceBus, InstanceBusShape>() {}

/** The most a message may carry: PostgreSQL refuses NOTIFY payloads of 8,000 bytes or more. */
export const maxMessageBytes = 7_500;
