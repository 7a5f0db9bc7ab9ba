/**
 * Settings of the audit log's readers and its retention.
 */
import { Context, Layer } from "effect";
import { builtinRoles, type RoleTable } from "../permissions.js";

export interface AuditSettings {
  /** Delete events older than this; undefined = keep regardless of age. */
  readonly retentionMaxAgeMs: number | undefined;
  /** Keep at most this many of the newest events; undefined = no count limit. */
  readonly retentionMaxEvents: number | undefined;
  /** How often retention runs. */
  readonly pruneIntervalMs: number;
  /** A Subscribe stream with no matching event for this long gets a heartbeat. */
  readonly heartbeatIntervalMs: number;
  /** Live events a subscriber may have waiting; one more and its stream ends SUBSCRIBER_TOO_SLOW. */
  readonly subscriberBufferSize: number;
  /** Rows per read while a subscriber replays stored events. */
  readonly replayPageSize: number;
  /** Recent events kept in memory so that a subscriber close behind can join without a read. */
  readonly recentEvents: number;
  /** How often the log is checked for events written by other processes (besides NOTIFY). */
  readonly pollIntervalMs: number;
  /**
   * Subscribers waiting for events are woken at most this often (events published in between
   * arrive together); 0 wakes them on every commit. See AuditHub.onPublish.
   */
  readonly deliveryIntervalMs: number;
  readonly roles: RoleTable;
}

export const defaultAuditSettings: AuditSettings = {
  retentionMaxAgeMs: 90 * 86_400_000,
  retentionMaxEvents: undefined,
  pruneIntervalMs: 600_000,
  heartbeatIntervalMs: 15_000,
  subscriberBufferSize: 10_000,
  replayPageSize: 500,
  recentEvents: 4_096,
  pollIntervalMs: 1_000,
  deliveryIntervalMs: 10,
  roles: builtinRoles,
};

export class AuditConfig extends Context.Tag("orchestrator/AuditConfig")<AuditConfig, AuditSettings>() {
  static layer(overrides: Partial<AuditSettings> = {}) {
    return Layer.succeed(AuditConfig, { ...defaultAuditSettings, ...overrides });
  }
}

/** Reads the audit log of the caller's own tenant. */
export const auditReadPermission = "audit:read";
/** Reads every tenant's events, and those with no tenant (failed authentications, policy reloads). */
export const auditReadAllTenantsPermission = "audit:read-all-tenants";
