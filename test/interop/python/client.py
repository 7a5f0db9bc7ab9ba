"""Interop client for the Orchestrator server, written with grpcio.

Run by test/interop/python.test.ts with the .tools venv python:

    python client.py HOST:PORT STUBS_DIR

STUBS_DIR holds Python stubs that the test generated at run time with grpc_tools.protoc from
proto/ (orchestrator/v1/*) and from node_modules/google-proto-files (google/rpc/status.proto and
error_details.proto, to decode grpc-status-details-bin). Health comes from grpcio-health-checking
(grpc_health.v1); nothing generated is named `grpc`, so grpcio is never shadowed.

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
    from google.protobuf import struct_pb2
    from google.rpc import error_details_pb2, status_pb2
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from orchestrator.v1 import execution_service_pb2, execution_service_pb2_grpc

    failures: list[str] = []
    summary: dict[str, object] = {"grpcio": grpc.__version__, "failures": failures}

    def describe(err: grpc.RpcError) -> dict[str, str]:
        """Code, message and the ErrorInfo decoded from grpc-status-details-bin."""
        result = {"code": err.code().name, "message": err.details() or "", "reason": "", "domain": ""}
        for key, value in err.trailing_metadata() or ():
            if key != "grpc-status-details-bin":
                continue
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    result["reason"] = info.reason
                    result["domain"] = info.domain
        return result

    def expect_not_implemented(rpc: str, result: dict[str, str]) -> None:
        if result["code"] != grpc.StatusCode.UNIMPLEMENTED.name:
            failures.append(f"{rpc}: code {result['code']} ({result['message']}), want UNIMPLEMENTED")
        if result["reason"] != "NOT_IMPLEMENTED" or result["domain"] != "orchestrator.v1":
            failures.append(
                f"{rpc}: ErrorInfo reason {result['reason']!r} domain {result['domain']!r},"
                " want NOT_IMPLEMENTED / orchestrator.v1"
            )

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

        # Unary: GetExecution.
        try:
            executions.GetExecution(execution_service_pb2.GetExecutionRequest(execution_id="x"), timeout=20)
            failures.append("GetExecution: succeeded, want UNIMPLEMENTED")
        except grpc.RpcError as err:
            summary["get_execution"] = result = describe(err)
            expect_not_implemented("GetExecution", result)
            if "issue #3" not in result["message"]:
                failures.append(f"GetExecution: message {result['message']!r} does not name issue #3")

        # Server streaming: Execute with a Struct input; the stream ends with the status.
        request_input = struct_pb2.Struct()
        request_input.update({"message": "hi", "n": 1})
        request = execution_service_pb2.ExecuteRequest(operation="demo.echo", input=request_input)
        try:
            for message in executions.Execute(request, timeout=20):
                failures.append(f"Execute: unexpected message {message}")
            failures.append("Execute: stream ended OK, want UNIMPLEMENTED")
        except grpc.RpcError as err:
            summary["execute"] = result = describe(err)
            expect_not_implemented("Execute", result)

    print(json.dumps(summary, sort_keys=True))
    for failure in failures:
        print(f"mismatch: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
