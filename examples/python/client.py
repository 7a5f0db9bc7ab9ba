"""A Python client of the Orchestrator, with grpcio and stubs generated from proto/.

Generate the stubs once (from the repository root, with grpcio-tools installed):

    python -m grpc_tools.protoc -Iproto -Inode_modules/google-proto-files \
        --python_out=examples/python/gen --grpc_python_out=examples/python/gen \
        proto/orchestrator/v1/*.proto google/rpc/status.proto google/rpc/error_details.proto

then run it against a server started with --demo-operations:

    ORCHESTRATOR_ADDRESS=127.0.0.1:50051 ORCHESTRATOR_TOKEN=ork_... python examples/python/client.py

It checks health, runs demo.echo and follows its events, reads the execution back, and shows how
to read an error's details (google.rpc.ErrorInfo, BadRequest). Run by
test/examples/examples.test.ts (which puts the stubs elsewhere: ORCHESTRATOR_STUBS).
"""
import json
import os
import sys

sys.path.insert(0, os.environ.get("ORCHESTRATOR_STUBS", os.path.join(os.path.dirname(__file__), "gen")))

import grpc  # noqa: E402
from google.protobuf import json_format, struct_pb2  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from orchestrator.v1 import execution_service_pb2 as ex  # noqa: E402
from orchestrator.v1 import execution_service_pb2_grpc as ex_grpc  # noqa: E402

address = os.environ.get("ORCHESTRATOR_ADDRESS", "127.0.0.1:50051")
token = os.environ.get("ORCHESTRATOR_TOKEN")
# Every call carries the API key (or JWT) as a bearer token.
metadata = [("authorization", f"Bearer {token}")] if token else []

with grpc.insecure_channel(address) as channel:
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    print("health", health_pb2.HealthCheckResponse.ServingStatus.Name(health.status))

    executions = ex_grpc.ExecutionServiceStub(channel)

    # Execute streams the execution's events and ends with the terminal one.
    request_input = struct_pb2.Struct()
    request_input.update({"message": "hello from Python"})
    execution_id = ""
    for response in executions.Execute(ex.ExecuteRequest(operation="demo.echo", input=request_input), metadata=metadata, timeout=30):
        event = response.event
        kind = event.WhichOneof("kind")
        if kind == "accepted":
            execution_id = event.execution_id
            print("event accepted", execution_id)
        elif kind == "succeeded":
            result = json_format.MessageToDict(event.succeeded.result)
            print("event succeeded", json.dumps(result, separators=(",", ":")))
        elif kind == "failed":
            print("event failed", event.failed.error.type, event.failed.error.message)
        else:
            print("event", kind)

    got = executions.GetExecution(ex.GetExecutionRequest(execution_id=execution_id), metadata=metadata, timeout=10).execution
    print("execution", execution_id, ex.ExecutionState.Name(got.state), f"attempts={len(got.attempts)}")

    # Errors carry google.rpc details in the grpc-status-details-bin trailer.
    bad_input = struct_pb2.Struct()
    bad_input.update({"wrong": "field"})
    try:
        for _ in executions.Execute(ex.ExecuteRequest(operation="demo.echo", input=bad_input), metadata=metadata, timeout=10):
            pass
    except grpc.RpcError as e:
        reason, fields = "", []
        for key, value in e.trailing_metadata() or []:
            if key == "grpc-status-details-bin":
                for detail in status_pb2.Status.FromString(value).details:
                    if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                        info = error_details_pb2.ErrorInfo()
                        detail.Unpack(info)
                        reason = info.reason
                    elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                        bad = error_details_pb2.BadRequest()
                        detail.Unpack(bad)
                        fields = [v.field for v in bad.field_violations]
        print("error", e.code().name, f"reason={reason}", f"violations={','.join(fields)}")
