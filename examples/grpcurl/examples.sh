#!/usr/bin/env bash
# grpcurl one-liners against a running server (reflection is on, so no .proto file is needed).
# Each line works on its own when copied; here they run in order, as test/examples/examples.test.ts
# does against a server started with --demo-operations:
#
#   ORCHESTRATOR_ADDRESS=127.0.0.1:50051 ORCHESTRATOR_TOKEN=ork_… bash examples/grpcurl/examples.sh
#
# grpcurl: `go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3` (or .tools/bin/grpcurl
# after `bash .ci/setup`; set GRPCURL to use another path).
set -euo pipefail
grpcurl=${GRPCURL:-grpcurl}
addr=${ORCHESTRATOR_ADDRESS:-127.0.0.1:50051}
auth="authorization: Bearer ${ORCHESTRATOR_TOKEN:-}"

echo "# What the server offers (health and reflection need no credentials)"
"$grpcurl" -plaintext "$addr" list
"$grpcurl" -plaintext -d '{"service":""}' "$addr" grpc.health.v1.Health/Check

echo "# Describe a method and its request message"
"$grpcurl" -plaintext "$addr" describe orchestrator.v1.ExecutionService.Execute
"$grpcurl" -plaintext "$addr" describe orchestrator.v1.ExecuteRequest

echo "# Run an operation and stream its events"
"$grpcurl" -plaintext -H "$auth" -d '{"operation":"demo.echo","input":{"message":"hello from grpcurl"}}' "$addr" orchestrator.v1.ExecutionService/Execute

echo "# Start one detached, then read it back"
id=$("$grpcurl" -plaintext -H "$auth" -d '{"operation":"demo.sleep","input":{"durationMs":60000},"detach":true}' "$addr" orchestrator.v1.ExecutionService/Execute | sed -n 's/.*"executionId": "\([^"]*\)".*/\1/p' | head -1)
"$grpcurl" -plaintext -H "$auth" -d "{\"executionId\":\"$id\"}" "$addr" orchestrator.v1.ExecutionService/GetExecution

echo "# List the running ones, then cancel it"
"$grpcurl" -plaintext -H "$auth" -d '{"pageSize":10,"states":["EXECUTION_STATE_RUNNING"]}' "$addr" orchestrator.v1.ExecutionService/ListExecutions
"$grpcurl" -plaintext -H "$auth" -d "{\"executionId\":\"$id\",\"reason\":\"not needed\"}" "$addr" orchestrator.v1.ExecutionService/CancelExecution

echo "# An error, with its google.rpc details decoded (grpcurl exits non-zero)"
"$grpcurl" -plaintext -H "$auth" -d '{"operation":"demo.echo","input":{"wrong":"field"}}' "$addr" orchestrator.v1.ExecutionService/Execute || true
