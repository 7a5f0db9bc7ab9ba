/**
 * AuditService handlers: proto ⇄ domain around src/core/audit/AuditLog.ts. No rule lives here.
 */
import { Effect, Stream, type ManagedRuntime } from "effect";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  type AuditEvent as PbAuditEvent,
  AuditEventOrder,
  AuditEventSchema,
  AuditEventType as PbType,
  AuditHeartbeatSchema,
  AuditService,
  Decision,
  type AuditFilter as PbFilter,
  ListAuditEventsResponseSchema,
  type SubscribeResponse,
  SubscribeResponseSchema,
} from "../../gen/orchestrator/v1/audit_service_pb.js";
import { PrincipalSchema } from "../../gen/orchestrator/v1/common_pb.js";
import { AuditLog, type SubscribeItem, type SubscribeStart } from "../core/audit/AuditLog.js";
import { InvalidInput } from "../core/errors.js";
import { type AuditEvent, type AuditEventType, type AuditFilter, auditEventTypes } from "../ports/AuditLogger.js";
import { principalOf } from "./auth-interceptor.js";
import { Violations } from "./convert.js";
import { toConnectError } from "./error-mapping.js";
import { rpcError } from "./errors.js";
import type { HealthStatuses } from "./health.js";
import { runRpc, runStream } from "./run-rpc.js";

/** The runtime the handlers run on (see run-rpc.ts for why its error type is unknown). */
export type AuditRuntime = ManagedRuntime.ManagedRuntime<AuditLog, unknown>;

const typeToPb = new Map<AuditEventType, PbType>(auditEventTypes.map((t) => [t, PbType[t]]));
const typeFromPb = new Map<PbType, AuditEventType>(auditEventTypes.map((t) => [PbType[t], t]));

export function auditEventToPb(e: AuditEvent): PbAuditEvent {
  return create(AuditEventSchema, {
    sequence: BigInt(e.sequence),
    time: timestampFromMs(Math.floor(e.time)),
    type: typeToPb.get(e.type) ?? PbType.UNSPECIFIED,
    ...(e.principal === undefined ? {} : { principal: create(PrincipalSchema, { subject: e.principal.subject, tenant: e.principal.tenant, roles: [...e.principal.roles] }) }),
    operation: e.operation ?? "",
    executionId: e.executionId ?? "",
    scheduleId: e.scheduleId ?? "",
    traceId: e.traceId ?? "",
    decision: e.decision === "ALLOW" ? Decision.ALLOW : e.decision === "DENY" ? Decision.DENY : Decision.UNSPECIFIED,
    reason: e.reason ?? "",
    ...(e.details === undefined ? {} : { details: e.details as NonNullable<PbAuditEvent["details"]> }),
  });
}

export function auditFilterFromPb(f: PbFilter | undefined, v: Violations): AuditFilter {
  if (f === undefined) return {};
  const types: AuditEventType[] = [];
  f.types.forEach((t, i) => {
    const d = typeFromPb.get(t);
    if (d === undefined) v.add(`filter.types[${i}]`, t === PbType.UNSPECIFIED ? "must not be AUDIT_EVENT_TYPE_UNSPECIFIED" : `unknown event type ${t}`);
    else types.push(d);
  });
  return {
    ...(types.length === 0 ? {} : { types: [...new Set(types)].sort() }),
    ...(f.principalSubject === "" ? {} : { principalSubject: f.principalSubject }),
    ...(f.tenant === "" ? {} : { tenant: f.tenant }),
    ...(f.operation === "" ? {} : { operation: f.operation }),
    ...(f.executionId === "" ? {} : { executionId: f.executionId }),
    ...(f.scheduleId === "" ? {} : { scheduleId: f.scheduleId }),
  };
}

const itemToPb = (item: SubscribeItem): SubscribeResponse =>
  item._tag === "Event"
    ? create(SubscribeResponseSchema, { kind: { case: "event", value: auditEventToPb(item.event) } })
    : create(SubscribeResponseSchema, {
        kind: { case: "heartbeat", value: create(AuditHeartbeatSchema, { lastSequence: BigInt(item.lastSequence), time: timestampFromMs(Math.floor(item.time)) }) },
      });

/**
 * Completes when the server starts draining (health NOT_SERVING): a Subscribe stream never ends
 * on its own, so it must not hold the drain open until the drain timeout cuts it.
 */
const drainingOf = (health: HealthStatuses | undefined) =>
  health === undefined
    ? Effect.never
    : Effect.async<void>((resume) => {
        const stop = new AbortController();
        void (async () => {
          for await (const status of health.watch(AuditService.typeName, stop.signal)) {
            if (status === ServingStatus.NOT_SERVING) return resume(Effect.void);
          }
        })();
        return Effect.sync(() => stop.abort());
      });

export function auditService(runtime: AuditRuntime, health?: HealthStatuses) {
  return {
    async *subscribe(req, ctx): AsyncGenerator<SubscribeResponse> {
      const principal = principalOf(ctx);
      const v = new Violations();
      const filter = auditFilterFromPb(req.filter, v);
      let start: SubscribeStart = { _tag: "Now" };
      if (req.start.case === "fromEarliest") start = { _tag: "Earliest" };
      else if (req.start.case === "afterSequence") {
        if (req.start.value < 0n) v.add("after_sequence", "must be ≥ 0");
        else start = { _tag: "After", sequence: Number(req.start.value) };
      }
      if (v.list.length > 0) throw toConnectError(new InvalidInput({ violations: v.list }));
      // Where a client resumes after this stream: the last sequence it was sent.
      let resumeAfter = start._tag === "After" ? start.sequence : undefined;
      let drained = false;
      yield* runStream(
        runtime,
        ctx,
        Stream.unwrap(Effect.map(AuditLog, (log) => log.subscribe(principal, filter, start))).pipe(
          Stream.tap((item) => Effect.sync(() => void (resumeAfter = item._tag === "Event" ? item.event.sequence : item.lastSequence))),
          Stream.map(itemToPb),
          Stream.interruptWhen(drainingOf(health).pipe(Effect.tap(() => Effect.sync(() => void (drained = true))))),
        ),
      );
      if (drained) {
        throw rpcError({
          code: Code.Unavailable,
          message: `the server is shutting down; resume${resumeAfter === undefined ? "" : ` with after_sequence ${resumeAfter}`} on another instance or after the restart`,
          reason: "SHUTTING_DOWN",
          metadata: resumeAfter === undefined ? {} : { last_sequence: String(resumeAfter) },
          retryDelayMs: 1_000,
        });
      }
    },

    async listAuditEvents(req, ctx) {
      const principal = principalOf(ctx);
      return runRpc(
        runtime,
        ctx,
        Effect.gen(function* () {
          const v = new Violations();
          const filter = auditFilterFromPb(req.filter, v);
          if (req.order !== AuditEventOrder.UNSPECIFIED && req.order !== AuditEventOrder.SEQUENCE_ASCENDING && req.order !== AuditEventOrder.SEQUENCE_DESCENDING) {
            v.add("order", `unknown order ${req.order}`);
          }
          if (v.list.length > 0) return yield* Effect.fail(new InvalidInput({ violations: v.list }));
          const log = yield* AuditLog;
          const page = yield* log.list(principal, {
            filter,
            order: req.order === AuditEventOrder.SEQUENCE_DESCENDING ? "DESCENDING" : "ASCENDING",
            pageSize: req.pageSize,
            pageToken: req.pageToken,
          });
          return create(ListAuditEventsResponseSchema, { events: page.events.map(auditEventToPb), nextPageToken: page.nextPageToken });
        }),
      );
    },
  } satisfies ServiceImpl<typeof AuditService>;
}
