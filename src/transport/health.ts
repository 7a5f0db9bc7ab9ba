/**
 * grpc.health.v1.Health: Check, Watch and List over a table of per-service statuses.
 * "" is the server as a whole. The server marks every entry NOT_SERVING when it starts to drain,
 * so load balancers stop sending new calls while in-flight ones finish.
 */
import { Code, type ServiceImpl } from "@connectrpc/connect";
import { rpcError } from "./errors.js";
import { create } from "@bufbuild/protobuf";
import {
  Health,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  type HealthCheckResponse,
} from "../../gen/health/v1/health_pb.js";

export { ServingStatus };

export class HealthStatuses {
  readonly #statuses = new Map<string, ServingStatus>();
  readonly #listeners = new Set<(service: string) => void>();
  #draining = false;

  constructor(services: Iterable<string>) {
    this.#statuses.set("", ServingStatus.SERVING);
    for (const s of services) this.#statuses.set(s, ServingStatus.SERVING);
  }

  get(service: string): ServingStatus | undefined {
    return this.#statuses.get(service);
  }

  entries(): IterableIterator<[string, ServingStatus]> {
    return this.#statuses.entries();
  }

  set(service: string, status: ServingStatus): void {
    if (this.#statuses.get(service) === status) return;
    this.#statuses.set(service, status);
    for (const l of this.#listeners) l(service);
  }

  /** Marks the server and every service NOT_SERVING (shutdown has begun). */
  drain(): void {
    this.#draining = true;
    for (const service of [...this.#statuses.keys()]) this.set(service, ServingStatus.NOT_SERVING);
  }

  /** Status for Watch: SERVICE_UNKNOWN for a service that is not registered (the spec's choice). */
  watchStatus(service: string): ServingStatus {
    return this.#statuses.get(service) ?? ServingStatus.SERVICE_UNKNOWN;
  }

  /**
   * Yields the current status, then every change, until the signal aborts. Once the server
   * drains, the stream ends after reporting NOT_SERVING, so that it does not hold the drain open.
   */
  async *watch(service: string, signal: AbortSignal): AsyncGenerator<ServingStatus> {
    let wake: (() => void) | undefined;
    let changed = false;
    const listener = (s: string) => {
      if (s !== service) return;
      changed = true;
      wake?.();
    };
    const onAbort = () => wake?.();
    this.#listeners.add(listener);
    signal.addEventListener("abort", onAbort);
    try {
      let last = this.watchStatus(service);
      yield last;
      while (!signal.aborted && !this.#draining) {
        if (!changed) await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        changed = false;
        const now = this.watchStatus(service);
        if (now !== last && !signal.aborted) {
          last = now;
          yield now;
        }
      }
    } finally {
      this.#listeners.delete(listener);
      signal.removeEventListener("abort", onAbort);
    }
  }
}

const response = (status: ServingStatus): HealthCheckResponse => create(HealthCheckResponseSchema, { status });

export function healthService(statuses: HealthStatuses) {
  return {
    check(req) {
      const status = statuses.get(req.service);
      if (status === undefined) {
        throw rpcError({
          code: Code.NotFound,
          message: `unknown service "${req.service}"`,
          reason: "SERVICE_NOT_FOUND",
          metadata: { service: req.service },
        });
      }
      return response(status);
    },
    async *watch(req, ctx) {
      for await (const status of statuses.watch(req.service, ctx.signal)) yield response(status);
    },
    list() {
      return { statuses: Object.fromEntries([...statuses.entries()].map(([s, st]) => [s, response(st)])) };
    },
  } satisfies ServiceImpl<typeof Health>;
}
