"""Interop client for the Orchestrator server, written with grpcio.

Run by test/interop/python.test.ts with the .tools venv python:

    python client.py HOST:PORT STUBS_DIR

STUBS_DIR holds Python stubs that the test generated at run time with grpc_tools.protoc from
proto/ (orchestrator/v1/*) and from node_modules/google-proto-files (google/rpc/status.proto and
error_details.proto, to decode grpc-status-details-bin). Health comes from grpcio-health-checking
(grpc_health.v1); nothing generated is named `grpc`, so grpcio is never shadowed.

The server runs with --demo-operations and --auth none (every caller is the local admin). The
client streams Execute of demo.echo, reads the execution back with GetExecution, and decodes the
google.rpc.ErrorInfo / BadRequest details of the errors (unknown execution, bad input, and
GetSchedule of a schedule that does not exist).

Prints one JSON summary line on stdout; exits 1 on any mismatch (each reported on stderr).
"""

import json
import sys


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: client.py HOST:PORT STUBS_DIR", file=sys.stderr)
        return 2
    address, stubs = sys.argv[1], sys.argv[2]
    sys.path.insert(0, stubs)

    import grpc
    from google.protobuf import json_format, struct_pb2
    from google.rpc import error_details_pb2, status_pb2
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from orchestrator.v1 import (
        execution_service_pb2,
        execution_service_pb2_grpc,
        schedule_service_pb2,
        schedule_service_pb2_grpc,
    )

    failures: list[str] = []
    summary: dict[str, object] = {"grpcio": grpc.__version__, "failures": failures}

    def describe(err: grpc.RpcError) -> dict[str, object]:
        """Code, message, and the ErrorInfo and BadRequest decoded from grpc-status-details-bin."""
        result: dict[str, object] = {
            "code": err.code().name,
            "message": err.details() or "",
            "reason": "",
            "domain": "",
            "metadata": {},
            "violations": [],
        }
        for key, value in err.trailing_metadata() or ():
            if key != "grpc-status-details-bin":
                continue
            status = status_pb2.Status.FromString(value)
            if status.code != err.code().value[0]:
                failures.append(f"grpc-status-details-bin: code {status.code}, want {err.code().value[0]}")
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    result["reason"] = info.reason
                    result["domain"] = info.domain
                    result["metadata"] = dict(info.metadata)
                elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad_request = error_details_pb2.BadRequest()
                    detail.Unpack(bad_request)
                    result["violations"] = [v.field for v in bad_request.field_violations]
        return result

    def expect_error(rpc: str, result: dict[str, object], code: grpc.StatusCode, reason: str) -> None:
        if result["code"] != code.name:
            failures.append(f"{rpc}: code {result['code']} ({result['message']}), want {code.name}")
        if result["reason"] != reason or result["domain"] != "orchestrator.v1":
            failures.append(
                f"{rpc}: ErrorInfo reason {result['reason']!r} domain {result['domain']!r}, want {reason} / orchestrator.v1"
            )

    def struct(value: dict[str, object]) -> struct_pb2.Struct:
        s = struct_pb2.Struct()
        s.update(value)
        return s

    # Loopback only: never route through an HTTP proxy from the environment.
    with grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
        grpc.channel_ready_future(channel).result(timeout=20)

        # Unary health Check of the server as a whole.
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=20)
            summary["health"] = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
            if response.status != health_pb2.HealthCheckResponse.SERVING:
                failures.append(f"health Check: status {summary['health']}, want SERVING")
        except grpc.RpcError as err:
            failures.append(f"health Check: {err.code().name} {err.details()}")

        executions = execution_service_pb2_grpc.ExecutionServiceStub(channel)

        # Server streaming: Execute demo.echo with a Struct input, read to the end of the stream.
        execution_id = ""
        try:
            request = execution_service_pb2.ExecuteRequest(operation="demo.echo", input=struct({"message": "hi"}))
            stream = [response.event for response in executions.Execute(request, timeout=20)]
            kinds = [event.WhichOneof("kind") for event in stream]
            summary["execute"] = {"events": kinds}
            if kinds != ["accepted", "attempt_started", "succeeded"]:
                failures.append(f"Execute: events {kinds}, want accepted, attempt_started, succeeded")
            else:
                execution_id = stream[0].accepted.execution.execution_id
                summary["execute"] = {
                    "events": kinds,
                    "result": json_format.MessageToDict(stream[2].succeeded.result),
                    "attempts": stream[2].succeeded.attempts,
                }
                if not execution_id or any(event.execution_id != execution_id for event in stream):
                    failures.append(f"Execute: execution ids {[e.execution_id for e in stream]}, want {execution_id!r} on every event")
                if stream[1].attempt_started.attempt != 1:
                    failures.append(f"Execute: attempt_started.attempt {stream[1].attempt_started.attempt}, want 1")
        except grpc.RpcError as err:
            failures.append(f"Execute: {err.code().name} {err.details()}")

        # Unary: GetExecution of that execution.
        if execution_id:
            try:
                got = executions.GetExecution(execution_service_pb2.GetExecutionRequest(execution_id=execution_id), timeout=20)
                summary["get_execution"] = {
                    "state": execution_service_pb2.ExecutionState.Name(got.execution.state),
                    "result": json_format.MessageToDict(got.execution.result),
                    "attempts": len(got.execution.attempts),
                }
                if got.execution.execution_id != execution_id:
                    failures.append(f"GetExecution: execution_id {got.execution.execution_id!r}, want {execution_id!r}")
            except grpc.RpcError as err:
                failures.append(f"GetExecution: {err.code().name} {err.details()}")

        # Unary: GetExecution of an unknown id.
        try:
            executions.GetExecution(execution_service_pb2.GetExecutionRequest(execution_id="no-such-execution"), timeout=20)
            failures.append("GetExecution (unknown id): succeeded, want NOT_FOUND")
        except grpc.RpcError as err:
            summary["get_execution_unknown"] = result = describe(err)
            expect_error("GetExecution (unknown id)", result, grpc.StatusCode.NOT_FOUND, "EXECUTION_NOT_FOUND")

        # Server streaming: Execute with an input that does not match demo.echo's schema; the
        # stream ends with the status before any message.
        request = execution_service_pb2.ExecuteRequest(operation="demo.echo", input=struct({"message": 5}))
        try:
            for message in executions.Execute(request, timeout=20):
                failures.append(f"Execute (bad input): unexpected message {message}")
            failures.append("Execute (bad input): stream ended OK, want INVALID_ARGUMENT")
        except grpc.RpcError as err:
            summary["execute_invalid"] = result = describe(err)
            expect_error("Execute (bad input)", result, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")

        # Unary: a ScheduleService RPC on a schedule that does not exist.
        try:
            schedules = schedule_service_pb2_grpc.ScheduleServiceStub(channel)
            schedules.GetSchedule(schedule_service_pb2.GetScheduleRequest(schedule_id="x"), timeout=20)
            failures.append("GetSchedule: succeeded, want NOT_FOUND")
        except grpc.RpcError as err:
            summary["get_schedule"] = result = describe(err)
            expect_error("GetSchedule", result, grpc.StatusCode.NOT_FOUND, "SCHEDULE_NOT_FOUND")

    print(json.dumps(summary, sort_keys=True))
    for failure in failures:
        print(f"mismatch: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
