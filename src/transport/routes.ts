/**
 * Everything served on the port: the orchestrator's services, health and reflection.
 */
import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { ExecutionService } from "../../gen/orchestrator/v1/execution_service_pb.js";
import { ScheduleService } from "../../gen/orchestrator/v1/schedule_service_pb.js";
import { AuditService } from "../../gen/orchestrator/v1/audit_service_pb.js";
import { PolicyService } from "../../gen/orchestrator/v1/policy_service_pb.js";
import { Health } from "../../gen/health/v1/health_pb.js";
import { file_google_rpc_error_details } from "../../gen/google/rpc/error_details_pb.js";
import { ServerReflection as ReflectionV1 } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { HealthStatuses, healthService } from "./health.js";
import { DescriptorIndex, reflectionServices } from "./reflection.js";
import { executionService, type OrchestratorRuntime } from "./execution-service.js";
import { policyService, type PolicyRuntime } from "./policy-service.js";
import { scheduleService, type ScheduleRuntime } from "./schedule-service.js";
import { auditService, type AuditRuntime } from "./audit-service.js";

/** The orchestrator's own services. */
export const orchestratorServices: ReadonlyArray<DescService> = [ExecutionService, ScheduleService, AuditService, PolicyService];

export const servedServices: ReadonlyArray<DescService> = [
  ...orchestratorServices,
  Health,
  ReflectionV1,
  ReflectionV1alpha,
];

export function createHealth(): HealthStatuses {
  return new HealthStatuses(orchestratorServices.map((s) => s.typeName));
}

export function routes(health: HealthStatuses, runtime: OrchestratorRuntime & PolicyRuntime & ScheduleRuntime & AuditRuntime): (router: ConnectRouter) => void {
  // error_details too, so that grpcurl and friends can print ErrorInfo, BadRequest and RetryInfo.
  const reflection = reflectionServices(new DescriptorIndex(servedServices, [file_google_rpc_error_details]));
  return (router) => {
    router.service(ExecutionService, executionService(runtime));
    router.service(PolicyService, policyService(runtime));
    router.service(ScheduleService, scheduleService(runtime));
    router.service(AuditService, auditService(runtime, health));
    router.service(Health, healthService(health));
    router.service(ReflectionV1, reflection.v1);
    router.service(ReflectionV1alpha, reflection.v1alpha);
  };
}
